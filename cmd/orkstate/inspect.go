package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate"
)

func (a *app) workflowsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "workflows",
		Short:   "List the workflows with their schedules",
		Example: "  orkstate workflows\n  orkstate --db ork.db workflows --json | jq -r '.workflows[].name'",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			be, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer be.close()
			wfs, err := be.store.ListWorkflows(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				out := make([]workflowJSON, len(wfs))
				for i, w := range wfs {
					out[i] = workflowOut(w)
				}
				return a.printJSON(map[string]any{"workflows": out})
			}
			if len(wfs) == 0 {
				fmt.Fprintln(a.stdout, "no workflows")
				return nil
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tEXECUTOR\tSCHEDULE\tNEXT FIRE\tLAST FIRE\tDESCRIPTION")
			for _, w := range wfs {
				sched := "-"
				if w.Schedule != "" {
					sched = w.Schedule
					if !w.ScheduleEnabled {
						sched += " (off)"
					}
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", w.ID, w.Name, dash(w.ExecutorType), sched,
					when(w.NextScheduledAt), when(w.LastScheduledAt), oneLine(w.Description, 50))
			}
			return tw.Flush()
		}),
	}
}

func (a *app) runsCommand() *cobra.Command {
	var workflow, status string
	var limit int
	c := &cobra.Command{
		Use:   "runs",
		Short: "List runs, newest first",
		Example: `  orkstate runs
  orkstate runs --workflow nightly_etl --status failed --limit 5
  orkstate runs --status running --json | jq '.runs[].id'`,
		Args: args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			q := orkstate.RunListQuery{WorkflowName: workflow, Limit: limit}
			if limit < 1 || limit > orkstate.MaxPageLimit {
				return orkstate.Invalid("--limit", limit, fmt.Sprintf("must be 1 to %d", orkstate.MaxPageLimit))
			}
			if status != "" {
				st, err := orkstate.ParseRunStatus(strings.ToLower(status))
				if err != nil {
					return fmt.Errorf("--status: %w (one of %s)", err, runStatusNames())
				}
				q.Status = st
			}
			be, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer be.close()
			if workflow != "" {
				if _, err := be.store.GetWorkflowByName(ctx, workflow); err != nil {
					return notFound(err, "workflow", fmt.Sprintf("%q", workflow))
				}
			}
			runs, total, err := listRuns(ctx, be.store, q, workflow)
			if err != nil {
				return err
			}
			if a.json {
				out := make([]runJSON, len(runs))
				for i, r := range runs {
					out[i] = runOut(r.Run, r.WorkflowName, r.Stats)
				}
				return a.printJSON(map[string]any{"runs": out, "total": total})
			}
			if len(runs) == 0 {
				fmt.Fprintln(a.stdout, "no runs")
				return nil
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tWORKFLOW\tSTATUS\tTRIGGERED BY\tCREATED\tTOOK\tTASKS\tERROR")
			for _, r := range runs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.WorkflowName, r.Status, dash(r.TriggeredBy),
					when(&r.CreatedAt), took(r.StartedAt, r.FinishedAt), statsLine(r.Stats), dash(oneLine(r.Error, 50)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if total > len(runs) {
				fmt.Fprintf(a.stdout, "(%d of %d runs; --limit shows more)\n", len(runs), total)
			}
			return nil
		}),
	}
	c.Flags().StringVar(&workflow, "workflow", "", "only runs of this workflow (its exact name)")
	c.Flags().StringVar(&status, "status", "", "only runs in this status: "+runStatusNames())
	c.Flags().IntVar(&limit, "limit", orkstate.DefaultPageLimit, fmt.Sprintf("at most this many runs (1 to %d)", orkstate.MaxPageLimit))
	_ = c.RegisterFlagCompletionFunc("workflow", a.workflowNames)
	_ = c.RegisterFlagCompletionFunc("status", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return strings.Split(runStatusNames(), ", "), cobra.ShellCompDirectiveNoFileComp
	})
	return c
}

func runStatusNames() string {
	names := make([]string, len(orkstate.RunStatuses))
	for i, s := range orkstate.RunStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// listRuns pages through runs. The store matches WorkflowName as a substring, so
// for an exact workflow name the pages are filtered and read on until full.
func listRuns(ctx context.Context, st orkstate.Store, q orkstate.RunListQuery, exact string) ([]orkstate.RunSummary, int, error) {
	var out []orkstate.RunSummary
	total := 0
	for {
		page, err := st.ListRunsPage(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		if exact == "" {
			return page.Runs, page.Total, nil
		}
		for _, r := range page.Runs {
			if r.WorkflowName == exact {
				if len(out) < q.Limit {
					out = append(out, r)
				}
				total++
			}
		}
		q.Offset += len(page.Runs)
		if len(page.Runs) == 0 || q.Offset >= page.Total {
			return out, total, nil
		}
	}
}

// runView is what `run ID` shows: the run, its workflow's name and its tasks with
// what each waits for.
type runView struct {
	run      orkstate.Run
	workflow string
	stats    orkstate.TaskStats
	tasks    []orkstate.Task
	waits    [][]string
}

func loadRun(ctx context.Context, st orkstate.Store, id int64, now time.Time) (*runView, error) {
	r, err := st.GetRun(ctx, id)
	if err != nil {
		return nil, notFound(err, "run", id)
	}
	v := &runView{run: *r, workflow: "?"}
	if wf, err := st.GetWorkflow(ctx, r.WorkflowID); err == nil {
		v.workflow = wf.Name
	}
	if v.tasks, err = st.ListTasks(ctx, id); err != nil {
		return nil, err
	}
	stats, err := st.RunTaskStats(ctx, id)
	if err != nil {
		return nil, err
	}
	v.stats = *stats
	status := map[string]orkstate.TaskStatus{}
	for _, t := range v.tasks {
		status[t.TaskName] = t.Status
	}
	v.waits = make([][]string, len(v.tasks))
	for i, t := range v.tasks {
		if v.waits[i], err = waitsFor(ctx, st, t, status, now); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// waitsFor says what an unfinished task waits for: its dependencies that have
// not succeeded, its retry time, the run's resume, a claim, its executor's
// report or its deferred jobs.
func waitsFor(ctx context.Context, st orkstate.Store, t orkstate.Task, status map[string]orkstate.TaskStatus, now time.Time) ([]string, error) {
	switch t.Status {
	case orkstate.TaskPending:
		var deps []string
		for _, d := range t.DependsOn {
			if status[d] != orkstate.TaskSuccess {
				deps = append(deps, d)
			}
		}
		if len(deps) > 0 {
			return deps, nil
		}
		if t.RetryAt != nil && t.RetryAt.After(now) {
			return []string{"retry at " + when(t.RetryAt)}, nil
		}
		return []string{"a claim"}, nil
	case orkstate.TaskPaused:
		return []string{"resume of the run"}, nil
	case orkstate.TaskDispatched:
		return []string{fmt.Sprintf("start report from %s (lease until %s)", dash(t.ClaimedBy), when(t.LeaseExpiresAt))}, nil
	case orkstate.TaskRunning:
		jobs, err := st.DeferredJobsForTask(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		open := 0
		for _, j := range jobs {
			if !j.Status.IsTerminal() {
				open++
			}
		}
		if open > 0 {
			return []string{fmt.Sprintf("%d deferred job(s)", open)}, nil
		}
		return []string{"result from " + dash(t.ClaimedBy)}, nil
	}
	return nil, nil
}

func (v *runView) json() map[string]any {
	tasks := make([]taskJSON, len(v.tasks))
	for i, t := range v.tasks {
		tasks[i] = taskOut(t, v.waits[i])
	}
	return map[string]any{"run": runOut(v.run, v.workflow, v.stats), "tasks": tasks}
}

func (v *runView) print(w io.Writer) error {
	r := v.run
	fmt.Fprintf(w, "run %d of %s: %s (triggered by %s)\n", r.ID, v.workflow, strings.ToUpper(string(r.Status)), dash(r.TriggeredBy))
	fmt.Fprintf(w, "created %s, started %s, finished %s, took %s\n", when(&r.CreatedAt), when(r.StartedAt), when(r.FinishedAt), took(r.StartedAt, r.FinishedAt))
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	if r.Status == orkstate.RunPending {
		fmt.Fprintln(w, "waits for a scheduler to start it")
		return nil
	}
	fmt.Fprintf(w, "%s\n\n", statsLine(v.stats))
	if len(v.tasks) == 0 {
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTASK\tAFTER\tSTATUS\tATTEMPTS\tSTARTED\tFINISHED\tTOOK\tWAITS FOR\tERROR")
	for i, t := range v.tasks {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.TaskName, dash(oneLine(strings.Join(t.DependsOn, ","), 40)),
			t.Status, t.Attempts, t.MaxRetries+1,
			offset(r.StartedAt, t.StartedAt), offset(r.StartedAt, t.FinishedAt), took(t.StartedAt, t.FinishedAt),
			dash(strings.Join(v.waits[i], ", ")), dash(oneLine(errorNote(t), 60)))
	}
	return tw.Flush()
}

// errorNote is a task's error as a table shows it: the error of a task that did
// not end failed or cancelled belongs to an earlier attempt.
func errorNote(t orkstate.Task) string {
	if t.Error == "" || t.Status == orkstate.TaskFailed || t.Status == orkstate.TaskCancelled {
		return t.Error
	}
	return "earlier attempt: " + t.Error
}

func (a *app) runCommand() *cobra.Command {
	var watch bool
	c := &cobra.Command{
		Use:   "run RUN_ID",
		Short: "Show a run's DAG: each task's status, attempts, timings, error and what it waits for",
		Long: `Show a run and its DAG: each task with the tasks it runs AFTER (its
dependencies), its status, ATTEMPTS (made / allowed: max_retries + 1), STARTED
and FINISHED relative to the run's start, how long it TOOK, what it WAITS FOR
and its error.

--watch follows the run until it finishes (woken by NOTIFY on PostgreSQL, by
polling on SQLite) and exits 0 if it succeeded, 6 if it failed or was cancelled.`,
		Example: "  orkstate run 42\n  orkstate run 42 --watch\n  orkstate run 42 --json | jq '.tasks[] | select(.status == \"failed\")'",
		Args:    args("RUN_ID"),
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			id, be, err := a.openByID(cmd.Context(), "run", args[0])
			if err != nil {
				return err
			}
			defer be.close()
			if watch {
				return a.watchRun(cmd.Context(), be, id)
			}
			v, err := loadRun(cmd.Context(), be.store, id, a.now())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(v.json())
			}
			return v.print(a.stdout)
		}),
	}
	c.Flags().BoolVar(&watch, "watch", false, "follow the run live until it finishes")
	return c
}

func (a *app) taskCommand() *cobra.Command {
	var log, follow bool
	c := &cobra.Command{
		Use:   "task TASK_ID",
		Short: "Show one task, or its log",
		Long: `Show one task: where it belongs, its status, attempts, timings, error,
output and deferred jobs. --log prints its log instead; --follow keeps printing
what is appended until the task is finished (with --json: one JSON line per
chunk, then one with the final status).`,
		Example: "  orkstate task 1234\n  orkstate task 1234 --log\n  orkstate task 1234 --follow",
		Args:    args("TASK_ID"),
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id, be, err := a.openByID(ctx, "task", args[0])
			if err != nil {
				return err
			}
			defer be.close()
			t, err := be.store.GetTask(ctx, id)
			if err != nil {
				return notFound(err, "task", id)
			}
			if follow {
				return a.followLog(ctx, be.store, t.ID)
			}
			if log {
				text, err := be.store.TaskLog(ctx, id)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(map[string]any{"task_id": id, "log": text})
				}
				_, err = io.WriteString(a.stdout, text)
				return err
			}
			return a.printTask(ctx, be.store, t)
		}),
	}
	c.Flags().BoolVar(&log, "log", false, "print the task's log")
	c.Flags().BoolVar(&follow, "follow", false, "print the log as it grows, until the task is finished")
	return c
}

func (a *app) printTask(ctx context.Context, st orkstate.Store, t *orkstate.Task) error {
	ident, err := st.TaskIdentity(ctx, t.ID)
	if err != nil {
		return err
	}
	jobs, err := st.DeferredJobsForTask(ctx, t.ID)
	if err != nil {
		return err
	}
	run, err := st.ListTasks(ctx, t.RunID)
	if err != nil {
		return err
	}
	status := map[string]orkstate.TaskStatus{}
	for _, k := range run {
		status[k.TaskName] = k.Status
	}
	waits, err := waitsFor(ctx, st, *t, status, a.now())
	if err != nil {
		return err
	}
	if a.json {
		js := make([]deferredJobJSON, len(jobs))
		for i, j := range jobs {
			js[i] = deferredJobOut(j)
		}
		return a.printJSON(map[string]any{"task": taskOut(*t, waits), "workflow": ident.WorkflowName, "deferred_jobs": js})
	}
	tw := newTable(a.stdout)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("task", fmt.Sprintf("%d %s (index %d)", t.ID, t.TaskName, t.TaskIndex))
	row("run", fmt.Sprintf("%d of %s", t.RunID, ident.WorkflowName))
	row("status", string(t.Status))
	row("attempts", fmt.Sprintf("%d of %d", t.Attempts, t.MaxRetries+1))
	row("executor", dash(t.ExecutorType))
	if t.Priority != 0 || t.PriorityOverride != nil {
		own := "the workflow's"
		if t.PriorityOverride != nil {
			own = "its spec's"
		}
		row("priority", fmt.Sprintf("%d (%s)", t.Priority, own))
	}
	if t.ConcurrencyKey != "" {
		row("key", t.ConcurrencyKey)
	}
	row("depends on", dash(strings.Join(t.DependsOn, ", ")))
	row("waits for", dash(strings.Join(waits, ", ")))
	row("execution", dash(t.ExecutionName))
	row("claimed by", dash(t.ClaimedBy))
	row("lease until", when(t.LeaseExpiresAt))
	row("retry at", when(t.RetryAt))
	row("created", when(&t.CreatedAt))
	row("dispatched", when(t.DispatchedAt))
	row("started", when(t.StartedAt))
	row("finished", when(t.FinishedAt))
	row("took", took(t.StartedAt, t.FinishedAt))
	if t.TimeoutSeconds > 0 {
		row("timeout", (time.Duration(t.TimeoutSeconds) * time.Second).String())
	}
	row("error", dash(errorNote(*t)))
	row("output", dash(string(t.Output)))
	for _, j := range jobs {
		row("deferred job", fmt.Sprintf("%d %s %s: %s, %d polls%s", j.ID, j.ServiceType, j.JobID, j.Status, j.Attempts,
			strings.TrimSuffix(", "+j.Error, ", ")))
	}
	return tw.Flush()
}
