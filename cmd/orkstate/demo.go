package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// The demo runs orkstate's main job where a newcomer can watch it: a workflow with a
// real DAG (fan-out, fan-in, a task that fails once and succeeds on its retry) is
// run by two scheduler loops with simulated executors. The loops are written
// against orkstate.Store and orkstate.Waker, so the same code runs on PostgreSQL
// (LISTEN/NOTIFY wake-ups) and, when no PostgreSQL is reachable, on sqlitecompat.

// demoDAG is the workflow:
//
//	extract ─┬─ clean_orders ────┐
//	         ├─ clean_customers ─┼─ join ── load_warehouse ─┬─ refresh_dashboard
//	         └─ clean_products ──┘                          └─ email_report
var demoDAG = []orkstate.TaskSpec{
	{Name: "extract", ExecutorType: "process", DependsOn: []string{}},
	{Name: "clean_orders", ExecutorType: "process", DependsOn: []string{"extract"}},
	{Name: "clean_customers", ExecutorType: "process", DependsOn: []string{"extract"}, MaxRetries: 2},
	{Name: "clean_products", ExecutorType: "process", DependsOn: []string{"extract"}},
	{Name: "join", ExecutorType: "process", DependsOn: []string{"clean_orders", "clean_customers", "clean_products"}},
	{Name: "load_warehouse", ExecutorType: "process", DependsOn: []string{"join"}},
	{Name: "refresh_dashboard", ExecutorType: "process", DependsOn: []string{"load_warehouse"}},
	{Name: "email_report", ExecutorType: "process", DependsOn: []string{"load_warehouse"}},
}

const demoDAGPicture = `    extract ─┬─ clean_orders ────┐
             ├─ clean_customers ─┼─ join ── load_warehouse ─┬─ refresh_dashboard
             └─ clean_products ──┘                          └─ email_report
    (clean_customers fails on its first attempt and succeeds on the retry)`

// demoWork is how long each simulated executor works.
var demoWork = map[string]time.Duration{
	"extract": 400 * time.Millisecond, "clean_orders": 500 * time.Millisecond,
	"clean_customers": 300 * time.Millisecond, "clean_products": 700 * time.Millisecond,
	"join": 300 * time.Millisecond, "load_warehouse": 600 * time.Millisecond,
	"refresh_dashboard": 250 * time.Millisecond, "email_report": 150 * time.Millisecond,
}

// demoFlaky fails on its first attempt.
const demoFlaky = "clean_customers"

// demoBackend is a store with a way to make Wakers for it: newWaker returns a
// Waker that wakes on tasks becoming ready and polls every poll, and its stop.
type demoBackend struct {
	store    orkstate.Store
	desc     string
	newWaker func(poll time.Duration) (orkstate.Waker, func(), error)
	cleanup  func()
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	schema := fs.String("schema", fmt.Sprintf("ork_demo_%d", os.Getpid()), "install schema (created, and dropped at the end unless --keep)")
	keep := fs.Bool("keep", false, "keep the schema (or the SQLite file) to look at afterwards")
	sqlitePath := fs.String("sqlite", "", "use the SQLite store in this file instead of PostgreSQL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var be *demoBackend
	var err error
	if *sqlitePath == "" {
		be, err = postgresDemoBackend(ctx, *schema, *keep, stdout)
		if err != nil {
			fmt.Fprintf(stdout, "%v\n\n", err)
			fmt.Fprintf(stdout, "Falling back to the single-file SQLite store (sqlitecompat): same contract, one node, in-process wake-ups.\n\n")
		}
	}
	if be == nil {
		be, err = sqliteDemoBackend(ctx, *sqlitePath, *keep, stdout)
		if err != nil {
			return err
		}
	}
	defer be.cleanup()
	return runDemo(ctx, be, stdout)
}

func postgresDemoBackend(ctx context.Context, schema string, keep bool, stdout io.Writer) (*demoBackend, error) {
	if err := pgstore.ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	pool, err := connect(ctx, 8)
	if err != nil {
		return nil, err
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, q := range []string{"drop schema if exists " + schema + "_api cascade", "drop schema if exists " + schema + " cascade",
			"drop table if exists " + pgstore.VersionTable(schema)} {
			_, _ = pool.Exec(dctx, q)
		}
	}
	if err := pgstore.Migrate(ctx, pool, schema); err != nil {
		drop()
		pool.Close()
		return nil, fmt.Errorf("install into %s: %w", schema, err)
	}
	store, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		drop()
		pool.Close()
		return nil, err
	}
	listener, err := notify.NewListener(pool, &notify.ListenerConfig{Schema: schema, ApplicationName: "orkstate_demo"})
	if err == nil {
		err = listener.Start(ctx)
	}
	if err != nil {
		drop()
		pool.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	be := &demoBackend{
		store: store,
		desc:  fmt.Sprintf("PostgreSQL %s, schema %s (fresh install), wake-ups by LISTEN/NOTIFY", redact(databaseURL()), schema),
		newWaker: func(poll time.Duration) (orkstate.Waker, func(), error) {
			w, err := notify.NewWaker(listener, &notify.WakerConfig{PollInterval: poll, RunStatus: notify.StoreRunStatus(store)})
			if err != nil {
				return nil, nil, err
			}
			return w, w.Close, nil
		},
	}
	be.cleanup = func() {
		listener.Stop()
		if keep {
			fmt.Fprintf(stdout, "\nKept schema %s. Look inside: psql -c 'select task_name, status, attempts, error from %s.tasks order by id'\n", schema, schema)
		} else {
			drop()
			fmt.Fprintf(stdout, "\nDropped schema %s (run with --keep to look at it afterwards).\n", schema)
		}
		pool.Close()
	}
	return be, nil
}

func sqliteDemoBackend(ctx context.Context, path string, keep bool, stdout io.Writer) (*demoBackend, error) {
	dir := ""
	if path == "" {
		var err error
		if dir, err = os.MkdirTemp("", "orkstate-demo-*"); err != nil {
			return nil, err
		}
		path = filepath.Join(dir, "orkstate.db")
	}
	store, err := sqlitecompat.Open(ctx, path, nil)
	if err != nil {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return &demoBackend{
		store: store,
		desc:  fmt.Sprintf("SQLite file %s, in-process wake-ups", path),
		newWaker: func(poll time.Duration) (orkstate.Waker, func(), error) {
			w, err := store.Waker(&sqlitecompat.WakerConfig{PollInterval: poll})
			if err != nil {
				return nil, nil, err
			}
			return w, w.Stop, nil
		},
		cleanup: func() {
			store.Close()
			switch {
			case keep || dir == "":
				fmt.Fprintf(stdout, "\nKept %s.\n", path)
			default:
				os.RemoveAll(dir)
			}
		},
	}, nil
}

// demoLog prints timestamped progress lines from many goroutines.
type demoLog struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (l *demoLog) printf(who, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "  %5.2fs  %-12s %s\n", time.Since(l.start).Seconds(), who, fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, be *demoBackend, stdout io.Writer) error {
	s := be.store
	fmt.Fprintf(stdout, "orkstate demo — %s\n\nWorkflow nightly_etl:\n%s\n\n", be.desc, demoDAGPicture)

	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "nightly_etl", Description: "orkstate demo",
		JobName: "nightly-etl", Project: "demo", Region: "local", ExecutorType: "process"})
	if err != nil {
		return err
	}
	snap, err := s.CreateSnapshot(ctx, wf.ID, demoDAG)
	if err != nil {
		return err
	}
	if err := s.SetCurrentSnapshot(ctx, wf.ID, snap.ID); err != nil {
		return err
	}
	run, err := s.CreateRun(ctx, wf.ID, "demo")
	if err != nil {
		return err
	}
	log := &demoLog{w: stdout, start: time.Now()}
	log.printf("demo", "created run %d of nightly_etl (pending); starting two scheduler loops", run.ID)

	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	loopCtx, stopLoops := context.WithCancel(runCtx)
	var loops, executors sync.WaitGroup
	errc := make(chan error, 2)
	for i := 1; i <= 2; i++ {
		// The poll interval bounds how late a retry is noticed once its backoff ends
		// (a retry's NOTIFY is sent when it is scheduled, not when it becomes due).
		waker, stop, err := be.newWaker(250 * time.Millisecond)
		if err != nil {
			stopLoops()
			return err
		}
		loops.Add(1)
		go func() {
			defer loops.Done()
			defer stop()
			if err := schedulerLoop(loopCtx, s, fmt.Sprintf("scheduler-%d", i), waker, log, &executors); err != nil && loopCtx.Err() == nil {
				errc <- err
			}
		}()
	}

	runWaker, stopRunWaker, err := be.newWaker(250 * time.Millisecond)
	if err != nil {
		stopLoops()
		return err
	}
	defer stopRunWaker()
	type waited struct {
		status orkstate.RunStatus
		err    error
	}
	done := make(chan waited, 1)
	go func() {
		// WaitForRun returns its lookup's first error; a transient one (the
		// connection was lost) is waited out like the loops' own.
		for n := 1; ; n++ {
			st, err := runWaker.WaitForRun(runCtx, run.ID)
			if err == nil || !pgstore.IsTransient(err) || runCtx.Err() != nil {
				done <- waited{st, err}
				return
			}
			log.printf("demo", "%v; again in a moment", err)
			time.Sleep(transientBackoff(n))
		}
	}()
	var final waited
	select {
	case final = <-done:
	case err := <-errc:
		final.err = err
	}
	stopLoops()
	loops.Wait()
	executors.Wait()
	if final.err != nil {
		if errors.Is(final.err, context.DeadlineExceeded) {
			return fmt.Errorf("the run did not finish within 2 minutes")
		}
		return final.err
	}
	log.printf("demo", "run %d finished: %s", run.ID, strings.ToUpper(string(final.status)))
	if err := printSummary(ctx, s, run.ID, stdout); err != nil {
		return err
	}
	if final.status != orkstate.RunSuccess {
		return exitError(1)
	}
	return nil
}

// schedulerLoop is what a scheduler process does: sweep expired leases and
// timeouts, start pending runs, claim what is dispatchable, hand each task to an
// executor, and sleep on the Waker when there is nothing to do. A transient error
// (pgstore.IsTransient: a lost connection, a Postgres restart, a deadlock) pauses
// it with a growing backoff and the round runs again, as in notify's example.
func schedulerLoop(ctx context.Context, s orkstate.Store, name string, waker orkstate.Waker, log *demoLog, executors *sync.WaitGroup) error {
	var swept time.Time
	failures := 0
	for ctx.Err() == nil {
		idle, err := schedulerRound(ctx, s, name, &swept, log, executors)
		if err != nil {
			if !pgstore.IsTransient(err) {
				return err
			}
			failures++
			pause := transientBackoff(failures)
			log.printf(name, "%v; again in %s", err, pause.Round(time.Millisecond))
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			continue
		}
		failures = 0
		if idle {
			if _, err := waker.Wait(ctx); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// schedulerRound is one pass of schedulerLoop; idle means it found nothing to do.
func schedulerRound(ctx context.Context, s orkstate.Store, name string, swept *time.Time, log *demoLog, executors *sync.WaitGroup) (idle bool, err error) {
	if time.Since(*swept) >= time.Second { // the sweeps, once a second as in notify's example
		expired, err := s.ExpireTaskLeases(ctx, 100)
		if err != nil {
			return false, err
		}
		timedOut, err := s.FailTimedOutTasks(ctx, 100)
		if err != nil {
			return false, err
		}
		if len(expired)+len(timedOut) > 0 {
			log.printf(name, "swept %d expired leases and %d timeouts", len(expired), len(timedOut))
		}
		*swept = time.Now()
	}
	started, err := s.StartPendingRuns(ctx, 10)
	if err != nil {
		return false, err
	}
	for _, r := range started {
		log.printf(name, "started run %d: %d tasks created (%s)", r.RunID, r.TasksCreated, r.Status)
	}
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: name, Limit: 4, Lease: time.Minute})
	if err != nil {
		return false, err
	}
	for _, t := range claimed {
		ups := ""
		if len(t.UpstreamOutputs) > 0 {
			ups = fmt.Sprintf(", inputs from %d upstream", len(t.UpstreamOutputs))
		}
		log.printf(name, "claimed %-17s attempt %d%s", t.TaskName, t.Attempt, ups)
		executors.Add(1)
		go func() {
			defer executors.Done()
			execute(context.WithoutCancel(ctx), s, t, log)
		}()
	}
	return len(claimed) == 0 && len(started) == 0, nil
}

// transientBackoff is the pause after the nth consecutive transient error: 100 ms,
// doubling up to 5 s, with jitter so that loops cut off together come back apart.
func transientBackoff(n int) time.Duration {
	d := 5 * time.Second
	if n < 7 {
		d = 100 * time.Millisecond << (n - 1)
	}
	return d/2 + rand.N(d/2)
}

// report sends one report, again after a transient error (reports carry their
// attempt, so one applied before the connection died comes back ignored). It
// gives up after a minute: by then the lease has ended and the sweep re-queues
// the task.
func report(ctx context.Context, s orkstate.Store, u orkstate.TaskUpdate) (*orkstate.TaskOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for n := 1; ; n++ {
		out, err := s.UpdateTaskStatus(ctx, u)
		if err == nil || !pgstore.IsTransient(err) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(transientBackoff(n)):
		}
	}
}

// execute is a simulated executor: it reports running, works a while, and reports
// success — or, for the flaky task's first attempt, a failure that will be retried.
// Every report carries the claim's attempt as its fencing token.
func execute(ctx context.Context, s orkstate.Store, t orkstate.ClaimedTask, log *demoLog) {
	who := "  " + t.TaskName
	if _, err := report(ctx, s, orkstate.TaskUpdate{TaskID: t.ID, Status: orkstate.TaskRunning,
		ExecutionName: fmt.Sprintf("%s-%d", t.TaskName, t.Attempt), Attempt: t.Attempt}); err != nil {
		log.printf(who, "report running: %v", err)
		return
	}
	work := demoWork[t.TaskName]
	time.Sleep(work)
	if t.TaskName == demoFlaky && t.Attempt == 1 {
		out, err := report(ctx, s, orkstate.TaskUpdate{TaskID: t.ID, Status: orkstate.TaskFailed,
			Error: "upstream API answered 503", Attempt: t.Attempt})
		if err != nil {
			log.printf(who, "report failure: %v", err)
			return
		}
		if out.Outcome == orkstate.OutcomeRetrying {
			log.printf(who, "FAILED after %s: upstream API answered 503 — retrying in %s (max_retries %d)",
				work, orkstate.RetryBackoff(t.Attempt), t.MaxRetries)
		} else {
			log.printf(who, "FAILED for good: %s", out.Outcome)
		}
		return
	}
	output, _ := json.Marshal(map[string]any{"rows": 1000 + len(t.TaskName)*37, "attempt": t.Attempt})
	if _, err := report(ctx, s, orkstate.TaskUpdate{TaskID: t.ID, Status: orkstate.TaskSuccess,
		Output: output, Attempt: t.Attempt}); err != nil {
		log.printf(who, "report success: %v", err)
		return
	}
	log.printf(who, "succeeded in %s", work)
}

func printSummary(ctx context.Context, s orkstate.Store, runID int64, w io.Writer) error {
	run, err := s.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	tasks, err := s.ListTasks(ctx, runID)
	if err != nil {
		return err
	}
	took := "-"
	if run.StartedAt != nil && run.FinishedAt != nil {
		took = run.FinishedAt.Sub(*run.StartedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "\nRun %d: %s in %s (%d tasks)\n\n", run.ID, run.Status, took, len(tasks))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TASK\tSTATUS\tATTEMPTS\tSTARTED\tFINISHED\tTOOK\tNOTE")
	rel := func(t *time.Time) string {
		if t == nil || run.StartedAt == nil {
			return "-"
		}
		return fmt.Sprintf("+%.2fs", t.Sub(*run.StartedAt).Seconds())
	}
	for _, t := range tasks {
		dur := "-"
		if t.StartedAt != nil && t.FinishedAt != nil {
			dur = t.FinishedAt.Sub(*t.StartedAt).Round(time.Millisecond).String()
		}
		note := ""
		if t.Error != "" {
			note = "earlier attempt: " + t.Error
			if t.Status == orkstate.TaskFailed {
				note = t.Error
			}
		}
		if len(t.DependsOn) > 0 {
			note = strings.TrimPrefix(note+"; after "+strings.Join(t.DependsOn, ", "), "; ")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\n", t.TaskName, t.Status, t.Attempts, rel(t.StartedAt), rel(t.FinishedAt), dur, note)
	}
	return tw.Flush()
}
