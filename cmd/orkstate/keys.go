package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate"
)

// limitsInUse is what status shows of priorities and limits (issue 13), read through
// the Store contract: each concurrency key with its tasks in flight against its
// slots, and each workflow with a priority, a limit or fairness with what it uses.
type limitsInUse struct {
	Keys      []keyJSON           `json:"concurrency_keys"`
	Workflows []workflowLimitJSON `json:"workflow_limits"`
}

type keyJSON struct {
	Key      string `json:"key"`
	Slots    int    `json:"slots"`
	InFlight int    `json:"in_flight"`
}

type workflowLimitJSON struct {
	Workflow         string `json:"workflow"`
	Priority         int    `json:"priority"`
	Fair             bool   `json:"fair"`
	MaxActiveRuns    *int   `json:"max_active_runs"`
	ActiveRuns       int    `json:"active_runs"`
	MaxTasksInFlight *int   `json:"max_tasks_in_flight"`
	TasksInFlight    int    `json:"tasks_in_flight"`
}

// readLimitsInUse lists the keys (ConcurrencyKeys) and, for every workflow whose
// limits are not the defaults (GetWorkflowLimits), its running and paused runs and
// their dispatched and running tasks (ListRunsPage by status: the active runs only,
// never the history).
func readLimitsInUse(ctx context.Context, st orkstate.Store) (*limitsInUse, error) {
	keys, err := st.ConcurrencyKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := &limitsInUse{Keys: make([]keyJSON, 0, len(keys)), Workflows: []workflowLimitJSON{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyJSON{Key: k.Key, Slots: k.Slots, InFlight: k.InFlight})
	}
	wfs, err := st.ListWorkflows(ctx)
	if err != nil {
		return nil, err
	}
	// One read per workflow (the contract has no list of limits), a few at once so
	// that status --watch keeps its pace on an install with many workflows.
	found := make([]*workflowLimitJSON, len(wfs))
	errs := make([]error, len(wfs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(limitReaders, len(wfs)) {
		wg.Go(func() {
			for i := range next {
				found[i], errs[i] = workflowInUse(ctx, st, wfs[i])
			}
		})
	}
	for i := range wfs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i := range wfs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if found[i] != nil {
			out.Workflows = append(out.Workflows, *found[i])
		}
	}
	return out, nil
}

// limitReaders is how many workflows readLimitsInUse reads at once (the CLI's pool
// has 4 connections).
const limitReaders = 3

// workflowInUse is wf's limits and their use, or nil when its limits are the defaults.
func workflowInUse(ctx context.Context, st orkstate.Store, wf orkstate.Workflow) (*workflowLimitJSON, error) {
	l, err := st.GetWorkflowLimits(ctx, wf.ID)
	if err != nil {
		return nil, err
	}
	if l.Priority == 0 && !l.Fair && l.MaxActiveRuns == nil && l.MaxTasksInFlight == nil {
		return nil, nil
	}
	w := workflowLimitJSON{Workflow: wf.Name, Priority: l.Priority, Fair: l.Fair, MaxActiveRuns: l.MaxActiveRuns,
		MaxTasksInFlight: l.MaxTasksInFlight}
	if err := countActive(ctx, st, wf, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// countActive counts wf's running and paused runs and their tasks in flight.
func countActive(ctx context.Context, st orkstate.Store, wf orkstate.Workflow, w *workflowLimitJSON) error {
	for _, status := range []orkstate.RunStatus{orkstate.RunRunning, orkstate.RunPaused} {
		// WorkflowName matches by substring: keep the runs of wf itself.
		for offset := 0; ; offset += orkstate.MaxPageLimit {
			page, err := st.ListRunsPage(ctx, orkstate.RunListQuery{Status: status, WorkflowName: wf.Name,
				Limit: orkstate.MaxPageLimit, Offset: offset})
			if err != nil {
				return err
			}
			for _, r := range page.Runs {
				if r.WorkflowID == wf.ID {
					w.ActiveRuns++
					w.TasksInFlight += r.Stats.Dispatched + r.Stats.Running
				}
			}
			if len(page.Runs) < orkstate.MaxPageLimit {
				break
			}
		}
	}
	return nil
}

// printLimitsInUse adds status's lines per concurrency key and per limited workflow.
func printLimitsInUse(u *limitsInUse, w io.Writer) {
	for _, k := range u.Keys {
		fmt.Fprintf(w, "  key %-10s %8d  in flight of %d slots\n", k.Key, k.InFlight, k.Slots)
	}
	for _, l := range u.Workflows {
		fmt.Fprintf(w, "  workflow %-10s %s\n", l.Workflow, limitsLine(l))
	}
}

// limitsLine is one workflow's limits and their use.
func limitsLine(l workflowLimitJSON) string {
	of := func(n *int) string {
		if n == nil {
			return "no limit"
		}
		return fmt.Sprint(*n)
	}
	line := fmt.Sprintf("priority %d, runs active %d of %s, tasks in flight %d of %s",
		l.Priority, l.ActiveRuns, of(l.MaxActiveRuns), l.TasksInFlight, of(l.MaxTasksInFlight))
	if l.Fair {
		line += ", fair"
	}
	return line
}

// keysCommand lists the concurrency keys; keys set creates one or changes its slots.
func (a *app) keysCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "List the concurrency keys with their tasks in flight and slots",
		Long: `List every concurrency key with its slots and the tasks holding one now.
A task spec names a key (concurrency_key); at most slots tasks naming it are
dispatched or running at once (docs/semantics.md, "Priorities and limits").
keys set creates a key or changes its slots.`,
		Example: "  orkstate keys\n  orkstate keys set gpu 4",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			return a.printKeys(cmd.Context(), nil)
		}),
	}
	set := &cobra.Command{
		Use:   "set KEY SLOTS",
		Short: "Create a concurrency key or change its slots",
		Long: fmt.Sprintf(`Create KEY with SLOTS slots, or change an existing key's slots (1 to %d).
Lowering the slots below the tasks in flight takes nothing back: the key's tasks
wait until enough have left flight. A key is 1 to %d bytes without surrounding
spaces. A task spec may name only a key that exists when its run starts.`, orkstate.MaxSlots, orkstate.MaxConcurrencyKeyLen),
		Example: "  orkstate keys set gpu 4\n  orkstate keys set warehouse-7 1",
		Args:    args("KEY", "SLOTS"),
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := orkstate.ValidConcurrencyKey(key); err != nil {
				return err
			}
			slots, err := strconv.Atoi(args[1])
			if err != nil {
				return orkstate.Invalid("slots", args[1], fmt.Sprintf("must be a whole number from 1 to %d", orkstate.MaxSlots))
			}
			if err := orkstate.ValidSlots(slots); err != nil {
				return err
			}
			return a.printKeys(cmd.Context(), func(ctx context.Context, st orkstate.Store) error {
				return st.SetConcurrencyKey(ctx, key, slots)
			})
		}),
	}
	c.AddCommand(set)
	return c
}

// printKeys runs change (if any) on the store, then lists the keys.
func (a *app) printKeys(ctx context.Context, change func(context.Context, orkstate.Store) error) error {
	be, err := a.openDB(ctx)
	if err != nil {
		return err
	}
	defer be.close()
	if change != nil {
		if err := change(ctx, be.store); err != nil {
			return err
		}
	}
	keys, err := be.store.ConcurrencyKeys(ctx)
	if err != nil {
		return err
	}
	u := &limitsInUse{}
	for _, k := range keys {
		u.Keys = append(u.Keys, keyJSON{Key: k.Key, Slots: k.Slots, InFlight: k.InFlight})
	}
	if a.json {
		if u.Keys == nil {
			u.Keys = []keyJSON{}
		}
		return a.printJSON(map[string]any{"concurrency_keys": u.Keys})
	}
	if len(u.Keys) == 0 {
		fmt.Fprintln(a.stdout, "no concurrency keys")
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "KEY\tIN FLIGHT\tSLOTS")
	for _, k := range u.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", k.Key, k.InFlight, k.Slots)
	}
	return tw.Flush()
}

// limitsCommand shows a workflow's priority, limits and fairness, and changes those
// its flags name.
func (a *app) limitsCommand() *cobra.Command {
	var priority int
	var maxRuns, maxTasks string
	var fair bool
	c := &cobra.Command{
		Use:   "limits WORKFLOW [--priority N] [--max-active-runs N|none] [--max-tasks-in-flight N|none] [--fair[=false]]",
		Short: "Show or set a workflow's priority, limits and fairness",
		Long: fmt.Sprintf(`Show WORKFLOW's priority, limits and fairness with what it uses now, or change
the ones given as flags and keep the others (docs/semantics.md, "Priorities and
limits"):

  --priority N              the default priority of its tasks, %d to %d (higher
                            is claimed first); reaches its tasks not ready yet
  --max-active-runs N       at most N running or paused runs (1 to %d);
                            none removes the limit
  --max-tasks-in-flight N   at most N tasks dispatched or running (1 to %d);
                            none removes the limit
  --fair                    round-robin between its runs (--fair=false: id order)

A value out of bounds changes nothing.`, orkstate.MinPriority, orkstate.MaxPriority, orkstate.MaxSlots, orkstate.MaxSlots),
		Example: `  orkstate limits nightly_etl
  orkstate limits nightly_etl --priority 10 --max-active-runs 1
  orkstate limits nightly_etl --max-tasks-in-flight none --fair=false`,
		ValidArgsFunction: a.workflowNames,
		Args:              args("WORKFLOW"),
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			// Every flag is read before the store is opened: bad input changes nothing.
			var runsLimit, tasksLimit *int
			var err error
			if flags.Changed("max-active-runs") {
				if runsLimit, err = parseLimit("max_active_runs", maxRuns); err != nil {
					return err
				}
			}
			if flags.Changed("max-tasks-in-flight") {
				if tasksLimit, err = parseLimit("max_tasks_in_flight", maxTasks); err != nil {
					return err
				}
			}
			if flags.Changed("priority") {
				if err := orkstate.ValidPriority(priority); err != nil {
					return err
				}
			}
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
			l, err := be.store.GetWorkflowLimits(ctx, wf.ID)
			if err != nil {
				return err
			}
			if flags.Changed("priority") || flags.Changed("max-active-runs") || flags.Changed("max-tasks-in-flight") || flags.Changed("fair") {
				if flags.Changed("priority") {
					l.Priority = priority
				}
				if flags.Changed("max-active-runs") {
					l.MaxActiveRuns = runsLimit
				}
				if flags.Changed("max-tasks-in-flight") {
					l.MaxTasksInFlight = tasksLimit
				}
				if flags.Changed("fair") {
					l.Fair = fair
				}
				if err := be.store.SetWorkflowLimits(ctx, wf.ID, *l); err != nil {
					return err
				}
				if l, err = be.store.GetWorkflowLimits(ctx, wf.ID); err != nil {
					return err
				}
			}
			w := workflowLimitJSON{Workflow: wf.Name, Priority: l.Priority, Fair: l.Fair, MaxActiveRuns: l.MaxActiveRuns,
				MaxTasksInFlight: l.MaxTasksInFlight}
			if err := countActive(ctx, be.store, *wf, &w); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(w)
			}
			fmt.Fprintf(a.stdout, "%s: %s\n", w.Workflow, limitsLine(w))
			return nil
		}),
	}
	c.Flags().IntVar(&priority, "priority", 0, fmt.Sprintf("default priority of the workflow's tasks (%d to %d)", orkstate.MinPriority, orkstate.MaxPriority))
	c.Flags().StringVar(&maxRuns, "max-active-runs", "", fmt.Sprintf("at most this many running or paused runs (1 to %d, or none)", orkstate.MaxSlots))
	c.Flags().StringVar(&maxTasks, "max-tasks-in-flight", "", fmt.Sprintf("at most this many tasks dispatched or running (1 to %d, or none)", orkstate.MaxSlots))
	c.Flags().BoolVar(&fair, "fair", false, "round-robin between the workflow's runs (--fair=false: id order)")
	return c
}

// parseLimit reads a limit flag: a whole number 1 … MaxSlots, or none (no limit).
func parseLimit(field, s string) (*int, error) {
	if strings.EqualFold(strings.TrimSpace(s), "none") {
		return nil, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > orkstate.MaxSlots {
		return nil, orkstate.Invalid(field, s, fmt.Sprintf("must be a whole number from 1 to %d, or none for no limit", orkstate.MaxSlots))
	}
	return &n, nil
}
