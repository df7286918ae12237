package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
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
	tasks          int // tasks of the runs
	secs           float64
	dups, lost     int
	runDurations   []time.Duration // run created → finished
	unfinishedRuns int
	cancelled      int
	failedOnce     int
	createSecs     float64 // from the start until the last run was created
	// The schedulers' time in their calls, summed over the schedulers: the
	// StartPendingRuns calls (those that started runs apart) and the report-and-claim
	// calls.
	startCalls, startHits             int
	startSecs, startHitSecs, loopSecs float64
}

// loopStats collects e2eOutcome's call times while the schedulers run.
type loopStats struct {
	startCalls, startHits, startNanos, startHitNanos, loopNanos atomic.Int64
}

// failurePlan makes the failure-path workload: a task fails its first attempt when
// failFirst says so (it has a retry left and is claimed again after the backoff),
// and the run of every cancelEvery-th created run is cancelled when one of its tasks
// is first claimed. The zero plan fails nothing.
type failurePlan struct {
	failEvery   int // a task fails its first attempt when its key hashes to 0 mod failEvery
	cancelEvery int
	// interval, when set, spaces the runs' creation (an open loop: runs arrive at a
	// fixed rate whatever the schedulers do); zero creates them back to back.
	interval time.Duration
	// twoCalls makes the schedulers report and claim in two calls (SetTaskStates,
	// then ClaimTasks) instead of one ReportAndClaim: the loop as it was before it.
	twoCalls bool
	// runBatch, above 1, creates the runs that many at a time with CreateRuns (the
	// analogue of River's InsertMany); 0 or 1 creates them one CreateRun at a time.
	// It applies only when interval is zero.
	runBatch int
}

func (p failurePlan) active() bool { return p.failEvery > 0 || p.cancelEvery > 0 }

func (p failurePlan) failFirst(key uint64) bool {
	return p.failEvery > 0 && (key*0x9E3779B97F4A7C15)>>32%uint64(p.failEvery) == 0
}

// workflowSeq names the workflows of driveE2E apart (an install may serve several drives).
var workflowSeq atomic.Int64

// driveE2E starts schedulers goroutines and creates runs runs of shape through the
// Store, all on the clock (as River's inserts are): each loop starts pending runs,
// reports the tasks it claimed last time and claims up to claimBatch more — in one
// ReportAndClaim call when the store is an orkstate.ReportClaimer, else a
// SetTaskStates and a ClaimTasks call (twoCalls forces that); a loop that found
// nothing to do waits on its waiter. It ends when every run has
// finished. It is written against orkstate.Store, so it drives pgstore and
// sqlitecompat alike.
func driveE2E(ctx context.Context, s orkstate.Store, newWaiter waiterFactory, shape dagShape, runs, schedulers, claimBatch int, plan failurePlan) (*e2eOutcome, error) {
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: fmt.Sprintf("bench_%s_%d", shape.name, workflowSeq.Add(1)), JobName: "bench-job", ExecutorType: "noop"})
	if err != nil {
		return nil, err
	}
	specs := shape.specs
	if plan.failEvery > 0 {
		specs = slices.Clone(specs)
		for i := range specs {
			specs[i].MaxRetries = 1
		}
	}
	snap, err := s.CreateSnapshot(ctx, wf.ID, specs)
	if err != nil {
		return nil, err
	}
	if err := s.SetCurrentSnapshot(ctx, wf.ID, snap.ID); err != nil {
		return nil, err
	}
	total := runs * len(shape.specs)

	var mu sync.Mutex
	claimed := make(map[[2]int64]int, total) // (task, attempt) → claims
	toCancel := map[int64]bool{}
	var finishedRuns, cancelled, failedOnce, succeeded atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	var createNanos atomic.Int64
	var calls loopStats
	g.Go(func() error {
		t0 := time.Now()
		defer func() { createNanos.Store(int64(time.Since(t0))) }()
		created := func(i int, run *orkstate.Run) {
			if plan.cancelEvery > 0 && i%plan.cancelEvery == plan.cancelEvery-1 {
				mu.Lock()
				toCancel[run.ID] = true
				mu.Unlock()
			}
		}
		if plan.runBatch > 1 && plan.interval == 0 {
			batch := make([]orkstate.NewRun, 0, plan.runBatch)
			for i := 0; i < runs; i += plan.runBatch {
				batch = batch[:0]
				for range min(plan.runBatch, runs-i) {
					batch = append(batch, orkstate.NewRun{WorkflowID: wf.ID, TriggeredBy: "bench"})
				}
				out, err := s.CreateRuns(gctx, batch)
				if err != nil {
					return err
				}
				for k := range out {
					created(i+k, &out[k])
				}
			}
			return nil
		}
		for i := 0; i < runs; i++ {
			if plan.interval > 0 {
				select {
				case <-gctx.Done():
					return gctx.Err()
				case <-time.After(time.Until(t0.Add(time.Duration(i) * plan.interval))):
				}
			}
			run, err := s.CreateRun(gctx, wf.ID, "bench")
			if err != nil {
				return err
			}
			created(i, run)
		}
		return nil
	})
	rc, oneCall := s.(orkstate.ReportClaimer)
	for i := 0; i < schedulers; i++ {
		g.Go(func() error {
			wait, stop := newWaiter()
			defer stop()
			name := fmt.Sprintf("scheduler-%d", i)
			var ups []orkstate.TaskUpdate // the last loop's reports, sent with this loop's claim
			for gctx.Err() == nil {
				tq := time.Now()
				started, err := s.StartPendingRuns(gctx, 20)
				if err != nil {
					return err
				}
				calls.startCalls.Add(1)
				calls.startNanos.Add(int64(time.Since(tq)))
				if len(started) > 0 {
					calls.startHits.Add(1)
					calls.startHitNanos.Add(int64(time.Since(tq)))
				}
				tq = time.Now()
				var out []orkstate.TaskOutcome
				var got []orkstate.ClaimedTask
				cp := orkstate.ClaimParams{Claimer: name, Limit: claimBatch}
				if oneCall {
					out, got, err = rc.ReportAndClaim(gctx, ups, cp)
				} else {
					if len(ups) > 0 {
						out, err = s.SetTaskStates(gctx, ups)
					}
					if err == nil {
						got, err = s.ClaimTasks(gctx, cp)
					}
				}
				if err != nil {
					return err
				}
				calls.loopNanos.Add(int64(time.Since(tq)))
				for _, o := range out {
					if o.Outcome == orkstate.OutcomeApplied && o.Status == orkstate.TaskSuccess {
						succeeded.Add(1)
					}
				}
				ups = ups[:0]
				if len(got) > 0 {
					// Instant executors: the task is done when dispatched, so the report is
					// dispatched → success — the same two writes a River job gets (fetch, complete).
					var cancelNow []int64
					mu.Lock()
					for _, t := range got {
						claimed[[2]int64{t.ID, int64(t.Attempt)}]++
						if toCancel[t.RunID] {
							delete(toCancel, t.RunID)
							cancelNow = append(cancelNow, t.RunID)
						}
					}
					mu.Unlock()
					for _, t := range got {
						st := orkstate.TaskSuccess
						if t.Attempt == 1 && plan.failFirst(uint64(t.RunID)<<20|uint64(t.TaskIndex)) {
							st = orkstate.TaskFailed
							failedOnce.Add(1)
						}
						ups = append(ups, orkstate.TaskUpdate{TaskID: t.ID, Status: st, Attempt: t.Attempt, Error: "bench failure"})
					}
					for _, id := range cancelNow {
						if err := s.CancelRun(gctx, id); err != nil {
							return err
						}
						cancelled.Add(1)
					}
				} else if len(started) == 0 {
					if err := wait(gctx); err != nil {
						return err
					}
				}
				if !plan.active() {
					// every task succeeds: done when all have (no query on the loop's path)
					if succeeded.Load() >= int64(total) {
						finishedRuns.Store(int64(runs))
					}
				} else if finishedRuns.Load() < int64(runs) {
					var n int
					if err := countFinishedRuns(gctx, s, wf.ID, &n); err != nil {
						return err
					}
					finishedRuns.Store(int64(n))
				}
				if finishedRuns.Load() >= int64(runs) {
					cancel()
					return nil
				}
			}
			return nil
		})
	}
	start := time.Now()
	err = g.Wait()
	secs := time.Since(start).Seconds()
	if err != nil && !(errors.Is(err, context.Canceled) && finishedRuns.Load() >= int64(runs)) {
		return nil, fmt.Errorf("%d of %d runs finished: %w", finishedRuns.Load(), runs, err)
	}
	out := &e2eOutcome{tasks: total, secs: secs, cancelled: int(cancelled.Load()), failedOnce: int(failedOnce.Load()),
		createSecs: time.Duration(createNanos.Load()).Seconds(),
		startCalls: int(calls.startCalls.Load()), startHits: int(calls.startHits.Load()),
		startSecs:    time.Duration(calls.startNanos.Load()).Seconds(),
		startHitSecs: time.Duration(calls.startHitNanos.Load()).Seconds(),
		loopSecs:     time.Duration(calls.loopNanos.Load()).Seconds()}
	for _, c := range claimed {
		out.dups += c - 1
	}
	all, err := s.ListRuns(ctx, wf.ID)
	if err != nil {
		return nil, err
	}
	for _, run := range all {
		want := orkstate.RunSuccess
		if plan.cancelEvery > 0 && run.Status == orkstate.RunCancelled {
			want = orkstate.RunCancelled
		}
		if run.Status != want || run.FinishedAt == nil {
			out.unfinishedRuns++
			continue
		}
		out.runDurations = append(out.runDurations, run.FinishedAt.Sub(run.CreatedAt))
	}
	if !plan.active() {
		// every task must have succeeded exactly once
		tasks := 0
		for range claimed {
			tasks++
		}
		out.lost = total - tasks
	}
	return out, nil
}

// twoCallsSuffix marks the e2e variants whose loops report and claim in two calls.
const twoCallsSuffix = ", two calls per loop"

// twoCalls hides a store's ReportAndClaim: driveE2E's loops then report and claim
// in two calls, as they did before it (the bench's comparison).
type twoCalls struct{ orkstate.Store }

// countFinishedRuns counts the workflow's runs that ended.
func countFinishedRuns(ctx context.Context, s orkstate.Store, wf int64, n *int) error {
	if w, ok := s.(twoCalls); ok {
		s = w.Store
	}
	if ps, ok := s.(*pgstore.Store); ok {
		return ps.Pool().QueryRow(ctx, fmt.Sprintf(`select count(*) from %s.runs where workflow_id = $1 and status in ('success', 'failed', 'cancelled')`, ps.Schema()), wf).Scan(n)
	}
	runs, err := s.ListRuns(ctx, wf)
	if err != nil {
		return err
	}
	*n = 0
	for _, r := range runs {
		if r.Status.IsTerminal() {
			*n++
		}
	}
	return nil
}

// e2eSample turns an outcome into a sample.
func e2eSample(o *e2eOutcome) *sample {
	s := &sample{items: o.tasks, secs: o.secs, lat: o.runDurations, dups: o.dups, lost: o.lost}
	if o.unfinishedRuns > 0 {
		s.note = fmt.Sprintf("%d runs not finished as planned", o.unfinishedRuns)
	}
	return s
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

// runOrkstateE2E installs a schema, drives runs runs of shape through it with the
// plan, and returns the sample (the on-disk size of the install per task included).
func (r *runner) runOrkstateE2E(ctx context.Context, shape dagShape, runs int, plan failurePlan) (*sample, *e2eOutcome, error) {
	s, drop, err := r.install(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer drop()
	return r.orkstateE2EOn(ctx, s, shape, runs, plan, true)
}

// orkstateE2EOn drives runs runs of shape through an existing install.
func (r *runner) orkstateE2EOn(ctx context.Context, s *pgstore.Store, shape dagShape, runs int, plan failurePlan, disk bool) (*sample, *e2eOutcome, error) {
	l, err := notify.NewListener(r.pool, &notify.ListenerConfig{Schema: s.Schema(), Logger: discardLogger()})
	if err != nil {
		return nil, nil, err
	}
	if err := l.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer l.Stop()
	m := r.startMeter(ctx)
	var st orkstate.Store = s
	if plan.twoCalls {
		st = twoCalls{s}
	}
	o, err := driveE2E(ctx, st, pgWaiters(l, 100*time.Millisecond), shape, runs, r.sizes.Schedulers, 1000, plan)
	if err != nil {
		return nil, nil, err
	}
	smp := e2eSample(o)
	m.stop(smp)
	smp.secs = o.secs
	if disk {
		smp.diskBytes, err = r.diskSize(ctx, s.Schema())
		smp.diskItems = o.tasks
	}
	return smp, o, err
}

// e2eRunBatch is how many runs of shape one CreateRuns call of the e2e scenario
// creates: runs worth 1,000 tasks (10 runs of 100), as River's baseline inserts its
// jobs 1,000 per InsertMany — the same number of insert calls for the same tasks.
func e2eRunBatch(shape dagShape) int { return max(1, 1000/len(shape.specs)) }

// oneRunSuffix marks the e2e variants that create their runs one CreateRun at a time.
const oneRunSuffix = ", one CreateRun per run"

// runE2E: the DAG shapes on orkstate (schedulers woken by NOTIFY; runs created
// with CreateRuns in batches worth 1,000 tasks, as River's jobs go in 1,000 per
// InsertMany), on ork-v1 (its scheduler loop: one as deployed at batch 100 and
// 1,000, four as an extra), and River's no-op jobs of the same count.
func runE2E(ctx context.Context, r *runner) error {
	sz := r.sizes
	for _, shape := range []dagShape{chainsShape(), fanShape()} {
		rb := e2eRunBatch(shape)
		create := fmt.Sprintf("runs created %d per CreateRuns (%d tasks, as River's 1,000 jobs per InsertMany)", rb, rb*len(shape.specs))
		base := Result{Scenario: "e2e", System: SystemOrkstate, Unit: "tasks", LatencyOf: "run created → finished"}
		variants := []struct {
			suffix, note string
			plan         failurePlan
		}{
			{"", "report and claim in one call, " + create, failurePlan{runBatch: rb}},
			// The runs created one CreateRun at a time, as before CreateRuns: what
			// the batched creation is worth.
			{oneRunSuffix, "report and claim in one call, runs created one CreateRun at a time", failurePlan{}},
			// The loop in two calls (SetTaskStates, then ClaimTasks), as before
			// ReportAndClaim: what the one round trip is worth.
			{twoCallsSuffix, "report and claim in two calls, " + create, failurePlan{twoCalls: true, runBatch: rb}},
		}
		bases := make([]Result, len(variants))
		for v, vr := range variants {
			bases[v] = base
			bases[v].Variant = shape.name + vr.suffix
			bases[v].Note = fmt.Sprintf("%d schedulers, batch 1000, %s; variants alternate", sz.Schedulers, vr.note)
		}
		r.measureAlternating(bases, func(v, _ int) (*sample, error) {
			smp, _, err := r.runOrkstateE2E(ctx, shape, sz.E2ERuns, variants[v].plan)
			return smp, err
		})
		for _, cfg := range v1Configs(sz) {
			r.measure(Result{Scenario: "e2e", Variant: shape.name, System: SystemOrkV1, Unit: "tasks",
				Config: cfg.String(), LatencyOf: "run created → finished",
				Note: fmt.Sprintf("%d runs (fewer: it is slow)", sz.E2EV1Runs)},
				func(int) (*sample, error) {
					smp, _, err := r.runV1E2E(ctx, shape, sz.E2EV1Runs, cfg.schedulers, cfg.batch, failurePlan{})
					return smp, err
				})
		}
	}
	r.measure(Result{Scenario: "e2e", Variant: "no-op jobs", System: SystemRiver, Unit: "jobs", LatencyOf: "job insert → completed"},
		func(int) (*sample, error) { return runRiverNoop(ctx, r, sz.E2ERuns*100) })
	return nil
}

// runV1E2E drives runs runs of shape through ork-v1's scheduler loop and returns the sample.
func (r *runner) runV1E2E(ctx context.Context, shape dagShape, runs, schedulers, batch int, plan failurePlan) (*sample, *e2eOutcome, error) {
	v, drop, err := r.newOrkV1(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer drop()
	m := r.startMeter(ctx)
	o, err := driveV1E2E(ctx, v, shape, runs, schedulers, batch, plan)
	if err != nil {
		return nil, nil, err
	}
	smp := e2eSample(o)
	m.stop(smp)
	smp.secs = o.secs
	smp.diskBytes, err = r.diskSize(ctx, v.schema)
	smp.diskItems = o.tasks
	return smp, o, err
}

// driveV1E2E runs the same workload through ork-v1's scheduler loop (loopOnce):
// runs are created (create_run) on the clock while schedulers loop; a loop without
// work sleeps its poll interval (0.5 s, config.rs:28-31; nothing else wakes it, as
// executors report within the loop). It ends when every run has finished.
func driveV1E2E(ctx context.Context, v *orkV1, shape dagShape, runs, schedulers, batch int, plan failurePlan) (*e2eOutcome, error) {
	specs := make([]specV1, len(shape.specs))
	for i, s := range shape.specs {
		specs[i] = specV1{name: s.Name, deps: s.DependsOn}
		if plan.failEvery > 0 {
			specs[i].params = map[string]any{"max_retries": 1}
		}
	}
	wf, err := v.createWorkflow(ctx, "bench_"+shape.name, specs)
	if err != nil {
		return nil, err
	}
	total := runs * len(shape.specs)
	var mu sync.Mutex
	claimed := make(map[uuid]int, total)
	attempts := map[uuid]int{}
	cancelledRuns := map[uuid]bool{}
	failed := map[uuid]bool{}
	var cancelled, failedOnce atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	var created atomic.Int64
	g.Go(func() error {
		t0 := time.Now()
		for i := 0; i < runs; i++ {
			if plan.interval > 0 {
				select {
				case <-gctx.Done():
					return gctx.Err()
				case <-time.After(time.Until(t0.Add(time.Duration(i) * plan.interval))):
				}
			}
			if err := v.createRun(gctx, wf); err != nil {
				return err
			}
			created.Add(1)
		}
		return nil
	})
	var finished atomic.Int64
	for i := 0; i < schedulers; i++ {
		g.Go(func() error {
			for gctx.Err() == nil {
				var cancelNow []uuid
				fail := func(t v1Task) bool {
					mu.Lock()
					defer mu.Unlock()
					claimed[t.ID]++
					attempts[t.ID]++
					if plan.cancelEvery > 0 && !cancelledRuns[t.RunID] && runIndex(t.RunID)%uint64(plan.cancelEvery) == 0 {
						cancelledRuns[t.RunID] = true
						cancelNow = append(cancelNow, t.RunID)
					}
					if attempts[t.ID] == 1 && plan.failFirst(runIndex(t.ID)) {
						failed[t.ID] = true
						failedOnce.Add(1)
						return true
					}
					return false
				}
				worked, _, done, err := v.loopOnce(gctx, batch, fail)
				if err != nil {
					return err
				}
				for _, id := range cancelNow {
					if err := v.cancelRun(gctx, id); err != nil {
						return err
					}
					cancelled.Add(1)
					done++
				}
				// Count finished runs only when the loop's own count says all may be
				// (schedulers that dispatched the same task count a run twice).
				if finished.Add(int64(done)) >= int64(runs) {
					var n int64
					if err := v.pool.QueryRow(gctx, v.sql(`select count(*) from {ork}.runs where status in ('success', 'failed', 'cancelled')`)).Scan(&n); err != nil {
						return err
					}
					if n >= int64(runs) {
						cancel()
						return nil
					}
					finished.Store(n)
				}
				if !worked {
					select {
					case <-gctx.Done():
					case <-time.After(v1PollInterval):
					}
				}
			}
			return nil
		})
	}
	start := time.Now()
	err = g.Wait()
	secs := time.Since(start).Seconds()
	if err != nil && !(errors.Is(err, context.Canceled) && finished.Load() >= int64(runs)) {
		return nil, fmt.Errorf("%d of %d runs finished: %w", finished.Load(), runs, err)
	}
	out := &e2eOutcome{tasks: total, secs: secs, cancelled: int(cancelled.Load()), failedOnce: int(failedOnce.Load())}
	for id, c := range claimed {
		if failed[id] {
			c-- // its retry is not a duplicate
		}
		out.dups += max(0, c-1)
	}
	if !plan.active() {
		out.lost = total - len(claimed)
	}
	rows, err := v.pool.Query(ctx, v.sql(`select status, extract(epoch from finished_at - created_at)::float8 from {ork}.runs`))
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
		ok := status == "success" || plan.cancelEvery > 0 && status == "cancelled"
		if !ok || secs == nil {
			out.unfinishedRuns++
			continue
		}
		out.runDurations = append(out.runDurations, time.Duration(*secs*float64(time.Second)))
	}
	return out, rows.Err()
}

// v1PollInterval is the original's default poll_interval_secs (config.rs:28-31).
const v1PollInterval = 500 * time.Millisecond

// runIndex is a stable number from a UUID, for choosing which runs and tasks fail.
func runIndex(id uuid) uint64 {
	var x uint64
	for _, b := range id[:8] {
		x = x<<8 | uint64(b)
	}
	return x
}
