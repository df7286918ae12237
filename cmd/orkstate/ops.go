package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate"
)

// statusCommand: on PostgreSQL the figures of <schema>_api.stats() (indexes and
// counters, never a scan of history); on SQLite the rows by status.
func (a *app) statusCommand() *cobra.Command {
	var watch bool
	var every time.Duration
	c := &cobra.Command{
		Use:   "status [--watch]",
		Short: "Show the install's version, queue, tasks in flight, sweeps due and runs",
		Long: `Show the install's schema version and what it is doing. On PostgreSQL the
figures come from <schema>_api.stats(), which reads indexes and counters only,
so status costs the same on an install with months of history: ready and
delayed tasks, the age of the queue's head, tasks in flight, lease rows and
deadlines due for a sweep, runs by status (finished ones within the last hour;
all runs as the planner's estimate), and deferred jobs. On SQLite it counts the
rows by status.

--watch redraws it every --interval on a terminal (one block per refresh when
piped, one JSON line per refresh with --json) until interrupted.`,
		Example: "  orkstate status\n  orkstate status --watch --interval 5s\n  orkstate status --json | jq .stats.ready_tasks",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			if every <= 0 {
				return orkstate.Invalid("interval", every, "must be positive")
			}
			ctx := cmd.Context()
			be, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer be.close()
			if !watch {
				return a.printStatus(ctx, be, a.stdout)
			}
			var last []byte
			for {
				var b bytes.Buffer
				if err := a.printStatus(ctx, be, &b); err != nil {
					if ctx.Err() != nil {
						return nil // interrupted mid-reading
					}
					return err
				}
				switch {
				case a.json:
				case a.outTerminal:
					io.WriteString(a.stdout, "\x1b[H\x1b[2J") // home, clear screen
				case last != nil:
					fmt.Fprintln(a.stdout)
				}
				last = b.Bytes()
				if _, err := a.stdout.Write(last); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil // interrupted: the watch is over, not failed
				case <-time.After(every):
				}
			}
		}),
	}
	c.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	c.Flags().DurationVar(&every, "interval", 2*time.Second, "how often --watch refreshes")
	return c
}

// statusJSON is status --json on PostgreSQL (docs/cli.md).
type statusJSON struct {
	Schema  string           `json:"schema"`
	Version int              `json:"version"`
	Stats   installStatsJSON `json:"stats"`
	At      time.Time        `json:"at"`
	Runs    map[string]int64 `json:"runs"`
	// Per concurrency key and per workflow with limits.
	limitsInUse
}

type installStatsJSON struct {
	ReadyTasks         int64   `json:"ready_tasks"`
	DelayedTasks       int64   `json:"delayed_tasks"`
	OldestReadySeconds float64 `json:"oldest_ready_seconds"`
	TasksInFlight      int64   `json:"tasks_in_flight"`
	TasksUnfinished    int64   `json:"tasks_unfinished"`
	LeasesDue          int64   `json:"leases_due"`
	DeadlinesDue       int64   `json:"deadlines_due"`
	FinishedWindowSecs float64 `json:"finished_window_seconds"`
	RunsEstimate       int64   `json:"runs_estimate"`
	DeferredJobsActive int64   `json:"deferred_jobs_active"`
	DeferredJobsDue    int64   `json:"deferred_jobs_due"`
}

// printStatus writes one status reading to w.
func (a *app) printStatus(ctx context.Context, be *backend, w io.Writer) error {
	if be.pg == nil {
		return a.printSQLiteStatus(ctx, be, w)
	}
	v, _ := schemaVersion(ctx, be.pool, a.schema)
	// The keys and limits beside stats(), on another connection.
	var use *limitsInUse
	var useErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		use, useErr = readLimitsInUse(ctx, be.store)
	}()
	st, err := be.pg.Stats(ctx, 0)
	<-done
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42883" { // undefined function
		return fmt.Errorf("%w (the install's functions are older than this orkstate: run orkstate migrate --schema %s)", err, a.schema)
	}
	if err != nil {
		return err
	}
	runs := map[string]int64{"pending": st.RunsPending, "running": st.RunsRunning, "paused": st.RunsPaused,
		"success": st.RunsSucceeded, "failed": st.RunsFailed, "cancelled": st.RunsCancelled}
	if useErr != nil {
		return useErr
	}
	if a.json {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(statusJSON{Schema: a.schema, Version: v, At: a.now().UTC(), Runs: runs, limitsInUse: *use, Stats: installStatsJSON{
			ReadyTasks: st.ReadyTasks, DelayedTasks: st.DelayedTasks, OldestReadySeconds: st.OldestReadyAge.Seconds(),
			TasksInFlight: st.TasksInFlight, TasksUnfinished: st.TasksUnfinished, LeasesDue: st.LeasesDue,
			DeadlinesDue: st.DeadlinesDue, FinishedWindowSecs: st.Window.Seconds(), RunsEstimate: st.RunsEstimate,
			DeferredJobsActive: st.DeferredJobsActive, DeferredJobsDue: st.DeferredJobsDue}})
	}
	oldest := "-"
	if st.ReadyTasks > 0 {
		oldest = st.OldestReadyAge.Round(time.Second).String()
	}
	estimate := "unknown (no ANALYZE yet)"
	if st.RunsEstimate >= 0 {
		estimate = fmt.Sprintf("~%d", st.RunsEstimate)
	}
	fmt.Fprintf(w, "install %s: schema version %d\n", a.schema, v)
	fmt.Fprintf(w, "  %-14s ready %d, delayed %d, oldest ready %s\n", "queue", st.ReadyTasks, st.DelayedTasks, oldest)
	fmt.Fprintf(w, "  %-14s in flight %d, unfinished %d\n", "tasks", st.TasksInFlight, st.TasksUnfinished)
	fmt.Fprintf(w, "  %-14s lease rows %d, deadlines %d\n", "sweeps due", st.LeasesDue, st.DeadlinesDue)
	fmt.Fprintf(w, "  %-14s pending %d, running %d, paused %d\n", "runs", st.RunsPending, st.RunsRunning, st.RunsPaused)
	fmt.Fprintf(w, "  %-14s success %d, failed %d, cancelled %d\n", "finished "+shortDuration(st.Window), st.RunsSucceeded, st.RunsFailed, st.RunsCancelled)
	fmt.Fprintf(w, "  %-14s %s\n", "runs in all", estimate)
	fmt.Fprintf(w, "  %-14s active %d, due %d\n", "deferred jobs", st.DeferredJobsActive, st.DeferredJobsDue)
	printLimitsInUse(use, w)
	return nil
}

// printSQLiteStatus counts rows by status: a SQLite file has no stats() and its
// history is as small as one process makes it.
func (a *app) printSQLiteStatus(ctx context.Context, be *backend, w io.Writer) error {
	v, _ := be.sqlite.SchemaVersion(ctx)
	var text bytes.Buffer
	fmt.Fprintf(&text, "%s: schema version %d\n", be.desc, v)
	out := sqliteStatusJSON{Store: be.desc, Version: v, At: a.now().UTC(), Rows: map[string]map[string]int{}}
	for _, table := range []string{"runs", "tasks", "deferred_jobs"} {
		counts, err := countByStatus(ctx, be, "select status, count(*) from "+table+" group by status order by status")
		if err != nil {
			return err
		}
		total, parts := 0, []string{}
		out.Rows[table] = map[string]int{}
		for _, c := range counts {
			parts = append(parts, fmt.Sprintf("%s %d", c.status, c.n))
			total += c.n
			out.Rows[table][c.status] = c.n
		}
		line := strings.Join(parts, ", ")
		if line == "" {
			line = "none"
		}
		fmt.Fprintf(&text, "  %-14s %8d  (%s)\n", table, total, line)
	}
	wfs, err := be.store.ListWorkflows(ctx)
	if err != nil {
		return err
	}
	out.Workflows = len(wfs)
	fmt.Fprintf(&text, "  %-14s %8d\n", "workflows", len(wfs))
	use, err := readLimitsInUse(ctx, be.store)
	if err != nil {
		return err
	}
	if a.json {
		out.limitsInUse = *use
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	printLimitsInUse(use, &text)
	_, err = w.Write(text.Bytes())
	return err
}

// sqliteStatusJSON is status --json on SQLite (docs/cli.md).
type sqliteStatusJSON struct {
	Store   string    `json:"store"`
	Version int       `json:"version"`
	At      time.Time `json:"at"`
	// Rows counts runs, tasks and deferred jobs by status.
	Rows      map[string]map[string]int `json:"rows"`
	Workflows int                       `json:"workflows"`
	limitsInUse
}

// shortDuration prints 1h for an hour, 30m for half of one.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

func (a *app) purgeCommand() *cobra.Command {
	var olderThan string
	var batch int
	var vacuum bool
	var pause time.Duration
	var maxRate float64
	c := &cobra.Command{
		Use:   "purge --older-than 30d",
		Short: "Delete finished runs older than a period, with their tasks, logs and deferred jobs",
		Long: `Delete the history: runs that finished (success, failed, cancelled) longer ago
than --older-than, with their tasks, log chunks, deferred jobs, deadline rows
and the lease rows of that age that name no dispatched task. A run anything live
refers to stays (an unfinished task, a pending or polling deferred job, a lock).

It works in batches of --batch tasks, each its own transaction, so the hot paths
are never blocked for longer than a batch, a kill loses at most the batch in
progress, and running it again goes on where it stopped. Several purges at once
take disjoint runs. PostgreSQL and SQLite files alike (docs/operations.md: when
and how often).

--max-rate caps the pace in tasks per second, so a purge beside busy workers
takes a bounded share of the server: set it above the rate tasks finish (history
ages no faster than that) and the purge keeps up however long it runs.`,
		Example: "  orkstate purge --older-than 30d\n  orkstate purge --older-than 30d --max-rate 2000   # a backlog beside busy workers\n  orkstate purge --older-than 12h --batch 5000 --vacuum --json",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			period, err := parsePeriod(olderThan)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			be, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer be.close()
			purger, ok := be.store.(orkstate.Purger)
			if !ok {
				return errorf(orkstate.ErrUnsupported, "%s cannot purge its history", be.desc)
			}
			p := orkstate.PurgeParams{OlderThan: period, BatchSize: batch, Vacuum: vacuum, Pause: pause, MaxRate: maxRate}
			if a.errTerminal && !a.json {
				p.Progress = func(r orkstate.PurgeResult) {
					fmt.Fprintf(a.stderr, "\rpurging: %d runs, %d tasks (%d batches)", r.Runs, r.Tasks, r.Batches)
				}
			}
			got, err := purger.PurgeRuns(ctx, p)
			if p.Progress != nil && got.Batches > 0 {
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				if errors.Is(err, context.Canceled) {
					err = fmt.Errorf("interrupted after %d runs (run it again to go on): %w", got.Runs, err)
				}
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"older_than_seconds": period.Seconds(), "batches": got.Batches, "runs": got.Runs,
					"tasks": got.Tasks, "log_chunks": got.LogChunks, "deferred_jobs": got.DeferredJobs, "lease_rows": got.Leases})
			}
			fmt.Fprintf(a.stdout, "purged %d runs, %d tasks, %d log chunks, %d deferred jobs, %d lease rows (finished before %s) in %d batches\n",
				got.Runs, got.Tasks, got.LogChunks, got.DeferredJobs, got.Leases,
				a.now().Add(-period).UTC().Format(time.RFC3339), got.Batches)
			return nil
		}),
	}
	c.Flags().StringVar(&olderThan, "older-than", "", "retention period: 30d, 12h, 90m (required)")
	c.Flags().IntVar(&batch, "batch", orkstate.DefaultPurgeBatch, "tasks per batch and transaction (1–10,000)")
	c.Flags().DurationVar(&pause, "pause", 0, "wait this long between batches, to leave the server to the hot paths")
	c.Flags().Float64Var(&maxRate, "max-rate", 0, "purge at most this many tasks per second (0: no cap); above the rate tasks finish, it keeps up")
	c.Flags().BoolVar(&vacuum, "vacuum", false, "PostgreSQL: VACUUM the purged tables afterwards, so the space is reused at once (needs the tables' owner); SQLite: PRAGMA incremental_vacuum")
	_ = c.MarkFlagRequired("older-than")
	return c
}

// parsePeriod reads a retention period: a Go duration (12h, 90m) or whole days (30d).
func parsePeriod(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	return 0, orkstate.Invalid("older-than", s, "must be whole days (30d) or a duration (12h, 90m), not negative")
}
