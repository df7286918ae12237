package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
)

// dagShape is the DAG of every run of an end-to-end scenario.
type dagShape struct {
	name  string
	specs []orkstate.TaskSpec
}

// chainsShape: 10 independent chains of 10 tasks (100 tasks, 10 ready at a time).
func chainsShape() dagShape {
	var specs []orkstate.TaskSpec
	for c := 0; c < 10; c++ {
		for l := 0; l < 10; l++ {
			s := orkstate.TaskSpec{Name: fmt.Sprintf("c%d_%d", c, l), ExecutorType: "noop", DependsOn: []string{}}
			if l > 0 {
				s.DependsOn = []string{fmt.Sprintf("c%d_%d", c, l-1)}
			}
			specs = append(specs, s)
		}
	}
	return dagShape{name: "chains", specs: specs}
}

// fanShape: one root, 98 parallel tasks after it, one sink after all of them.
func fanShape() dagShape {
	specs := []orkstate.TaskSpec{{Name: "root", ExecutorType: "noop", DependsOn: []string{}}}
	var mids []string
	for i := 0; i < 98; i++ {
		name := fmt.Sprintf("mid_%d", i)
		mids = append(mids, name)
		specs = append(specs, orkstate.TaskSpec{Name: name, ExecutorType: "noop", DependsOn: []string{"root"}})
	}
	specs = append(specs, orkstate.TaskSpec{Name: "sink", ExecutorType: "noop", DependsOn: mids})
	return dagShape{name: "fan-out/fan-in", specs: specs}
}

// waiterFactory gives each scheduler loop its own wait (a Waker serves one loop).
type waiterFactory func() (wait func(ctx context.Context) error, stop func())

// e2eOutcome is what one end-to-end drive measured.
type e2eOutcome struct {
	tasks          int
	secs           float64
	dups, lost     int
	runDurations   []time.Duration
	unfinishedRuns int
}

// driveE2E creates runs pending runs of shape through the Store, then lets
// schedulers goroutines run them to the end with instant executors: each loop
// starts pending runs, claims up to claimBatch tasks and reports every claimed task
// successful in one SetTaskStates call; a loop that found nothing to do
// waits on its waiter. It is written against orkstate.Store, so it drives pgstore
// and sqlitecompat alike.
func driveE2E(ctx context.Context, s orkstate.Store, newWaiter waiterFactory, shape dagShape, runs, schedulers, claimBatch int) (*e2eOutcome, error) {
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "bench_" + shape.name, JobName: "bench-job", ExecutorType: "noop"})
	if err != nil {
		return nil, err
	}
	snap, err := s.CreateSnapshot(ctx, wf.ID, shape.specs)
	if err != nil {
		return nil, err
	}
	if err := s.SetCurrentSnapshot(ctx, wf.ID, snap.ID); err != nil {
		return nil, err
	}
	for i := 0; i < runs; i++ {
		if _, err := s.CreateRun(ctx, wf.ID, "bench"); err != nil {
			return nil, err
		}
	}
	total := runs * len(shape.specs)

	var succeeded atomic.Int64
	var mu sync.Mutex
	claimed := make(map[int64]int, total)
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	start := time.Now()
	for i := 0; i < schedulers; i++ {
		g.Go(func() error {
			wait, stop := newWaiter()
			defer stop()
			name := fmt.Sprintf("scheduler-%d", i)
			for gctx.Err() == nil {
				started, err := s.StartPendingRuns(gctx, 20)
				if err != nil {
					return err
				}
				got, err := s.ClaimTasks(gctx, orkstate.ClaimParams{Claimer: name, Limit: claimBatch})
				if err != nil {
					return err
				}
				if len(got) > 0 {
					// Instant executors: the task is done when dispatched, so the report is
					// dispatched → success — the same two writes a River job gets (fetch, complete).
					ups := make([]orkstate.TaskUpdate, len(got))
					for i, t := range got {
						ups[i] = orkstate.TaskUpdate{TaskID: t.ID, Status: orkstate.TaskSuccess, Attempt: t.Attempt}
					}
					out, err := s.SetTaskStates(gctx, ups)
					if err != nil {
						return err
					}
					done := 0
					for _, o := range out {
						if o.Outcome == orkstate.OutcomeApplied && o.Status == orkstate.TaskSuccess {
							done++
						}
					}
					mu.Lock()
					for _, t := range got {
						claimed[t.ID]++
					}
					mu.Unlock()
					if succeeded.Add(int64(done)) >= int64(total) {
						cancel()
						return nil
					}
					continue
				}
				if len(started) == 0 {
					if err := wait(gctx); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	err = g.Wait()
	secs := time.Since(start).Seconds()
	if err != nil && !(errors.Is(err, context.Canceled) && succeeded.Load() >= int64(total)) {
		return nil, fmt.Errorf("%d of %d tasks done: %w", succeeded.Load(), total, err)
	}
	out := &e2eOutcome{tasks: total, secs: secs}
	for _, c := range claimed {
		out.dups += c - 1
	}
	out.lost = total - int(succeeded.Load())
	all, err := s.ListRuns(ctx, wf.ID)
	if err != nil {
		return nil, err
	}
	for _, run := range all {
		if run.Status != orkstate.RunSuccess || run.StartedAt == nil || run.FinishedAt == nil {
			out.unfinishedRuns++
			continue
		}
		out.runDurations = append(out.runDurations, run.FinishedAt.Sub(*run.StartedAt))
	}
	return out, nil
}

// e2eResult turns an outcome into a Result.
func e2eResult(system, variant string, o *e2eOutcome, schedulers int) Result {
	p50, p99 := percentiles(o.runDurations)
	res := Result{Scenario: "e2e", Variant: variant, System: system, Items: o.tasks, Unit: "tasks",
		Seconds: o.secs, P50Ms: p50, P99Ms: p99, LatencyOf: "run start → finish",
		Duplicates: o.dups, Losses: o.lost, Note: fmt.Sprintf("%d schedulers", schedulers)}
	if o.unfinishedRuns > 0 {
		res.Note += fmt.Sprintf(", %d runs not successful", o.unfinishedRuns)
	}
	return res
}

// pgWaiters gives each loop a Waker on the install's LISTEN/NOTIFY listener.
func pgWaiters(l *notify.Listener, poll time.Duration) waiterFactory {
	return func() (func(context.Context) error, func()) {
		w, err := notify.NewWaker(l, &notify.WakerConfig{PollInterval: poll})
		if err != nil {
			return func(ctx context.Context) error { return err }, func() {}
		}
		return func(ctx context.Context) error { _, err := w.Wait(ctx); return err }, w.Close
	}
}

// runE2E: the DAG shapes on orkstate (schedulers woken by NOTIFY), on ork-v1, and
// River's no-op jobs of the same count.
func runE2E(ctx context.Context, r *runner) error {
	sz := r.sizes
	for _, shape := range []dagShape{chainsShape(), fanShape()} {
		r.try("e2e", shape.name, SystemOrkstate, func() error {
			s, drop, err := r.install(ctx)
			if err != nil {
				return err
			}
			defer drop()
			l, err := notify.NewListener(r.pool, &notify.ListenerConfig{Schema: s.Schema(), Logger: discardLogger()})
			if err != nil {
				return err
			}
			if err := l.Start(ctx); err != nil {
				return err
			}
			defer l.Stop()
			o, err := driveE2E(ctx, s, pgWaiters(l, 100*time.Millisecond), shape, sz.E2ERuns, sz.Schedulers, 1000)
			if err != nil {
				return err
			}
			r.add(e2eResult(SystemOrkstate, shape.name, o, sz.Schedulers))
			return nil
		})

		r.try("e2e", shape.name, SystemOrkV1, func() error {
			v, drop, err := r.newOrkV1(ctx)
			if err != nil {
				return err
			}
			defer drop()
			o, err := driveV1E2E(ctx, v, shape, sz.E2EV1Runs, sz.Schedulers, 1000)
			if err != nil {
				return err
			}
			res := e2eResult(SystemOrkV1, shape.name, o, sz.Schedulers)
			res.Note += fmt.Sprintf("; %d runs (fewer: it is slow)", sz.E2EV1Runs)
			r.add(res)
			return nil
		})
	}
	r.add(runRiverNoop(ctx, r, "e2e", sz.E2ERuns*100))
	return nil
}

// driveV1E2E runs the same workload with ork-v1's algorithm: schedulers poll
// (every 10 ms when idle), start runs, dispatch and report running then success,
// each report followed by its one-by-one follow-ups.
func driveV1E2E(ctx context.Context, v *orkV1, shape dagShape, runs, schedulers, batch int) (*e2eOutcome, error) {
	wf, err := v.createWorkflow(ctx, "bench_"+shape.name, shape.specs)
	if err != nil {
		return nil, err
	}
	if _, err := v.pool.Exec(ctx, v.sql(`insert into {ork}.runs (workflow_id, status, triggered_by)
		select $1, 'pending', 'bench' from generate_series(1, $2)`), wf, runs); err != nil {
		return nil, err
	}
	total := runs * len(shape.specs)
	var mu sync.Mutex
	claimed := make(map[int64]int, total)
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	start := time.Now()
	for i := 0; i < schedulers; i++ {
		g.Go(func() error {
			for gctx.Err() == nil {
				started, err := v.startPendingRuns(gctx, 20)
				if err != nil {
					return err
				}
				tasks, err := v.dispatch(gctx, batch)
				if err != nil {
					return err
				}
				if len(tasks) == 0 {
					if started == 0 {
						select {
						case <-gctx.Done():
						case <-time.After(10 * time.Millisecond):
						}
					}
					continue
				}
				ids := make([]int64, len(tasks))
				for i, t := range tasks {
					ids[i] = t.ID
				}
				if err := v.report(gctx, ids, orkstate.TaskRunning); err != nil {
					return err
				}
				if err := v.report(gctx, ids, orkstate.TaskSuccess); err != nil {
					return err
				}
				mu.Lock()
				for _, id := range ids {
					claimed[id]++
				}
				done := len(claimed)
				mu.Unlock()
				if done >= total {
					cancel()
					return nil
				}
			}
			return nil
		})
	}
	err = g.Wait()
	secs := time.Since(start).Seconds()
	mu.Lock()
	done := len(claimed)
	mu.Unlock()
	if err != nil && !(errors.Is(err, context.Canceled) && done >= total) {
		return nil, fmt.Errorf("%d of %d tasks done: %w", done, total, err)
	}
	out := &e2eOutcome{tasks: total, secs: secs}
	for _, c := range claimed {
		out.dups += c - 1
	}
	out.lost = total - done
	rows, err := v.pool.Query(ctx, v.sql(`select status, extract(epoch from finished_at - started_at)::float8 from {ork}.runs`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var secs *float64
		if err := rows.Scan(&status, &secs); err != nil {
			return nil, err
		}
		if status != "success" || secs == nil {
			out.unfinishedRuns++
			continue
		}
		out.runDurations = append(out.runDurations, time.Duration(*secs*float64(time.Second)))
	}
	return out, rows.Err()
}
