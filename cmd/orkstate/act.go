package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate"
)

func (a *app) triggerCommand() *cobra.Command {
	var watch bool
	c := &cobra.Command{
		Use:   "trigger WORKFLOW",
		Short: "Create a run of a workflow (a scheduler starts it)",
		Long: `Create a pending run of WORKFLOW, triggered by "cli". It captures the
workflow's current snapshot; a scheduler's StartPendingRuns starts it.`,
		Example:           "  orkstate trigger nightly_etl\n  orkstate trigger nightly_etl --watch\n  orkstate trigger nightly_etl --json | jq .id",
		Args:              args("WORKFLOW"),
		ValidArgsFunction: a.workflowNames,
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			be, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer be.close()
			wf, err := be.store.GetWorkflowByName(ctx, args[0])
			if err != nil {
				return notFound(err, "workflow", fmt.Sprintf("%q", args[0]))
			}
			r, err := be.store.CreateRun(ctx, wf.ID, "cli")
			if err != nil {
				return err
			}
			if watch {
				return a.watchRun(ctx, be, r.ID)
			}
			if a.json {
				return a.printJSON(runOut(*r, wf.Name, orkstate.TaskStats{}))
			}
			fmt.Fprintf(a.stdout, "run %d of %s created (pending; a scheduler starts it)\n", r.ID, wf.Name)
			return nil
		}),
	}
	c.Flags().BoolVar(&watch, "watch", false, "follow the new run until it finishes (as run --watch)")
	return c
}

// runActionCommand builds cancel, pause and resume.
func (a *app) runActionCommand(action string) *cobra.Command {
	short := map[string]string{
		"cancel": "Cancel a run with its unfinished tasks and their deferred jobs",
		"pause":  "Pause a running run: its pending tasks are not dispatched until resume",
		"resume": "Resume a paused run",
	}[action]
	return &cobra.Command{
		Use:     action + " RUN_ID",
		Short:   short,
		Example: fmt.Sprintf("  orkstate %s 42", action),
		Args:    args("RUN_ID"),
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id, be, err := a.openByID(ctx, "run", args[0])
			if err != nil {
				return err
			}
			defer be.close()
			before, err := be.store.GetRun(ctx, id)
			if err != nil {
				return notFound(err, "run", id)
			}
			switch action {
			case "cancel":
				err = be.store.CancelRun(ctx, id)
			case "pause":
				err = be.store.PauseRun(ctx, id)
			case "resume":
				err = be.store.ResumeRun(ctx, id)
			}
			if errors.Is(err, orkstate.ErrInvalidTransition) {
				want := map[string]string{"cancel": "an unfinished", "pause": "a running", "resume": "a paused"}[action]
				return errorf(orkstate.ErrInvalidTransition, "run %d is %s; only %s run can be %s", id, before.Status, want, pastTense(action))
			}
			if err != nil {
				return notFound(err, "run", id)
			}
			return a.printRunState(ctx, be.store, id)
		}),
	}
}

func pastTense(action string) string {
	return map[string]string{"cancel": "cancelled", "pause": "paused", "resume": "resumed"}[action]
}

func (a *app) printRunState(ctx context.Context, st orkstate.Store, id int64) error {
	r, err := st.GetRun(ctx, id)
	if err != nil {
		return notFound(err, "run", id)
	}
	stats, err := st.RunTaskStats(ctx, id)
	if err != nil {
		return err
	}
	name := "?"
	if wf, err := st.GetWorkflow(ctx, r.WorkflowID); err == nil {
		name = wf.Name
	}
	if a.json {
		return a.printJSON(runOut(*r, name, *stats))
	}
	fmt.Fprintf(a.stdout, "run %d of %s: %s (%s)\n", r.ID, name, r.Status, statsLine(*stats))
	return nil
}

func (a *app) retryCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "retry TASK_ID",
		Short: "Retry a finished task of an unfinished run, with the dependents it took down",
		Long: `Put a finished (success, failed or cancelled) task of an unfinished run back
to pending, attempts reset; its dependents that failed or were cancelled because
of it go back to pending too. A task of a finished run cannot be retried.`,
		Example: "  orkstate retry 1234",
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
			err = be.store.RetryTask(ctx, id)
			if errors.Is(err, orkstate.ErrInvalidTransition) {
				return a.whyNoRetry(ctx, be.store, t, err)
			}
			if err != nil {
				return notFound(err, "task", id)
			}
			after, err := be.store.GetTask(ctx, id)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(taskOut(*after, nil))
			}
			fmt.Fprintf(a.stdout, "task %d (%s) of run %d: %s → %s\n", id, t.TaskName, t.RunID, t.Status, after.Status)
			return nil
		}),
	}
}

// whyNoRetry names the rule a refused retry broke.
func (a *app) whyNoRetry(ctx context.Context, st orkstate.Store, t *orkstate.Task, err error) error {
	if !t.Status.IsTerminal() {
		return errorf(orkstate.ErrInvalidTransition, "task %d (%s) is %s; only a finished task can be retried", t.ID, t.TaskName, t.Status)
	}
	if r, rerr := st.GetRun(ctx, t.RunID); rerr == nil && r.Status.IsTerminal() {
		return errorf(orkstate.ErrInvalidTransition, "task %d (%s) cannot be retried: its run %d is %s, and a finished run never changes (trigger a new run)",
			t.ID, t.TaskName, r.ID, r.Status)
	}
	return fmt.Errorf("task %d (%s) cannot be retried: %w", t.ID, t.TaskName, err)
}

func (a *app) scheduleCommand() *cobra.Command {
	var off bool
	c := &cobra.Command{
		Use:   `schedule WORKFLOW "CRON" | schedule WORKFLOW --off`,
		Short: "Set and enable a workflow's cron schedule, or turn it off",
		Long: `Set WORKFLOW's schedule to CRON and enable it: 5 fields (minute hour day month
weekday), 6 with seconds first, or a descriptor such as @hourly. The next fire
time is computed from now. --off disables the schedule and keeps its
expression, so setting it again turns it back on.`,
		Example: `  orkstate schedule nightly_etl "0 3 * * *"
  orkstate schedule nightly_etl @hourly
  orkstate schedule nightly_etl --off`,
		ValidArgsFunction: a.workflowNames,
		Args: func(cmd *cobra.Command, a []string) error {
			if off {
				return args("WORKFLOW")(cmd, a)
			}
			return args("WORKFLOW", `"CRON"`)(cmd, a)
		},
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			be, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer be.close()
			wf, err := be.store.GetWorkflowByName(ctx, args[0])
			if err != nil {
				return notFound(err, "workflow", fmt.Sprintf("%q", args[0]))
			}
			expr := wf.Schedule
			if !off {
				expr = strings.TrimSpace(args[1])
				// Checked here too, so the message names the flag's input even on a store
				// that words it differently.
				if _, err := orkstate.ParseSchedule(expr); err != nil {
					return err
				}
			} else if expr == "" {
				return orkstate.Invalid("schedule", nil, fmt.Sprintf("workflow %q has no schedule to turn off", wf.Name))
			}
			if err := be.store.SetSchedule(ctx, wf.ID, expr, !off, a.now()); err != nil {
				return err
			}
			if wf, err = be.store.GetWorkflow(ctx, wf.ID); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(workflowOut(*wf))
			}
			if off {
				fmt.Fprintf(a.stdout, "%s: schedule %q off\n", wf.Name, wf.Schedule)
			} else {
				fmt.Fprintf(a.stdout, "%s: schedule %q on, next fire %s\n", wf.Name, wf.Schedule, when(wf.NextScheduledAt))
			}
			return nil
		}),
	}
	c.Flags().BoolVar(&off, "off", false, "turn the schedule off (the expression is kept)")
	return c
}
