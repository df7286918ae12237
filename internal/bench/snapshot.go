package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// The snapshot scenario: a steady open-loop workload with and without a session that
// holds a snapshot (`begin isolation level repeatable read; select 1;`, left open) —
// what a long report, a pg_dump or a forgotten session does in production. While the
// snapshot is held no row deleted after it began can be removed: not by VACUUM, not by
// page pruning, and the index entries of the queue rows the claims delete cannot be
// marked dead either. Every claim's ordered scan of task_queue starts at the front of
// the index, where those entries are, and steps over each of them.

// snapshotLoad is the workload of the scenario.
type snapshotLoad struct {
	tasksPerSec float64
	clean, held time.Duration
}

// snapshotLoadOf: 2,000 tasks/s, so the dead queue rows the claim steps over reach
// the order the issue saw (about 92k after 240 s at 400 tasks/s) in a fifth of its
// time: full mode (OpenLoopSeconds ≥ 10) holds the snapshot 50 s (about 100k dead
// rows), quick mode 12.5 × OpenLoopSeconds (quick: 25 s, about 50k).
func snapshotLoadOf(sz Sizes) snapshotLoad {
	if sz.OpenLoopSeconds >= 10 {
		return snapshotLoad{tasksPerSec: 2000, clean: 20 * time.Second, held: 50 * time.Second}
	}
	secs := func(f float64) time.Duration { return time.Duration(f * sz.OpenLoopSeconds * float64(time.Second)) }
	return snapshotLoad{tasksPerSec: 2000, clean: secs(5), held: secs(12.5)}
}

// snapshotVariant is one measured configuration: whether a snapshot is held, and
// the queue maintenance a deployment would run beside the schedulers (nil: none).
type snapshotVariant struct {
	name     string
	hold     bool
	maintain func(ctx context.Context, s *pgstore.Store) (acted bool, err error)
	note     string
}

// runSnapshot: claim latency under a steady open-loop workload, clean and with a
// snapshot held, each on a fresh install; then the held snapshot again with each
// candidate fix. One repetition per variant (each is tens of seconds of thousands of
// claims; the latencies are the measure), reported as p50/p99 of every claim call —
// empty ones too, which step over the same entries — the dead queue rows at the end
// and how latency grew with them.
func runSnapshot(ctx context.Context, r *runner) error {
	const sc = "snapshot"
	load := snapshotLoadOf(r.sizes)
	variants := []snapshotVariant{
		{name: "clean"},
		{name: "snapshot held", hold: true},
		{name: "snapshot held, queue rotated", hold: true, maintain: rotateQueue,
			note: "rotate_task_queue(10000) every second"},
	}
	var clean Result
	var cleanBufs float64
	for _, v := range variants {
		dur := load.clean
		if v.hold {
			dur = load.held
		}
		base := Result{Scenario: sc, Variant: v.name, System: SystemOrkstate, Unit: "tasks",
			LatencyOf: "claim_tasks call (limit 1000, empty ones too)"}
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		smp, st, err := r.snapshotPhase(ctx, s, load.tasksPerSec, dur, v)
		drop()
		if err != nil {
			base.Error = err.Error()
			r.add(base)
			continue
		}
		smp.note = fmt.Sprintf("chains runs at %.0f tasks/s for %.0fs, %d schedulers; %s", load.tasksPerSec, dur.Seconds(), r.sizes.Schedulers, st)
		if v.note != "" {
			smp.note += "; " + v.note
		}
		res := aggregate(base, []*sample{smp})
		if v.hold && clean.P50Ms > 0 && clean.P99Ms > 0 {
			res.Ratios = map[string]float64{"p50 ÷ clean": round2(res.P50Ms / clean.P50Ms), "p99 ÷ clean": round2(res.P99Ms / clean.P99Ms)}
			if cleanBufs > 0 {
				// buffers do not depend on how loaded the machine is; latencies do
				res.Ratios["scan buffers ÷ clean"] = round2(st.scanBufsMean / cleanBufs)
			}
		}
		r.add(res)
		if !v.hold {
			clean, cleanBufs = res, st.scanBufsMean
		}
	}
	return nil
}

// rotateQueue is the maintenance call of the rotation fix: once a second, as a
// deployment would beside its lease sweep.
func rotateQueue(ctx context.Context, s *pgstore.Store) (bool, error) {
	var rotated bool
	var dead int64
	err := s.Pool().QueryRow(ctx, fmt.Sprintf("select rotated, dead_rows from %s_api.rotate_task_queue(10000)", s.Schema())).Scan(&rotated, &dead)
	return rotated, err
}

// phaseStats is what a phase saw besides its latencies.
type phaseStats struct {
	deadQueueRows int64   // queue rows the claims deleted while the snapshot was held
	scanBuffers   int64   // buffers the claim's ordered scan of task_queue read at the end
	scanMs        float64 // … and its time
	msPer1000     float64 // least-squares slope of claim latency over dead queue rows
	maintained    int64   // maintenance calls that acted (rotations)
	// the same scan once a second during the phase
	scanBufsMean float64
	scanBufsMax  int64
}

func (p phaseStats) String() string {
	s := fmt.Sprintf("claim scan to its first ready row: %.0f buffers on average, %d at most (once a second), %d at the end (%.2f ms)",
		p.scanBufsMean, p.scanBufsMax, p.scanBuffers, p.scanMs)
	if p.deadQueueRows > 0 {
		s = fmt.Sprintf("%s queue rows deleted under the snapshot, claim latency +%.3f ms per 1,000 of them (fit); %s", humanInt(float64(p.deadQueueRows)), p.msPer1000, s)
	}
	if p.maintained > 0 {
		s += fmt.Sprintf("; %d rotations", p.maintained)
	}
	return s
}

// snapshotPhase drives one variant for dur: runs of the chains DAG created at a fixed
// rate through the Store, sz.Schedulers loops that start runs, claim (up to 1,000) and
// report success, woken by NOTIFY (polling every 100 ms); with v.hold a separate
// connection holds a repeatable-read snapshot for the whole phase, and v.maintain
// runs every second. It returns the claims' latencies as a sample.
func (r *runner) snapshotPhase(ctx context.Context, s *pgstore.Store, tasksPerSec float64, dur time.Duration, v snapshotVariant) (*sample, phaseStats, error) {
	var st phaseStats
	shape := chainsShape()
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "bench_snapshot", JobName: "bench-job", ExecutorType: "noop"})
	if err != nil {
		return nil, st, err
	}
	snap, err := s.CreateSnapshot(ctx, wf.ID, shape.specs)
	if err != nil {
		return nil, st, err
	}
	if err := s.SetCurrentSnapshot(ctx, wf.ID, snap.ID); err != nil {
		return nil, st, err
	}
	l, err := notify.NewListener(r.pool, &notify.ListenerConfig{Schema: s.Schema(), Logger: discardLogger()})
	if err != nil {
		return nil, st, err
	}
	if err := l.Start(ctx); err != nil {
		return nil, st, err
	}
	defer l.Stop()

	if v.hold {
		// Its own connection, outside the pool: nothing else may run on it.
		conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
		if err != nil {
			return nil, st, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "begin isolation level repeatable read"); err != nil {
			return nil, st, err
		}
		if _, err := conn.Exec(ctx, "select 1"); err != nil {
			return nil, st, err
		}
		defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "rollback") }()
	}

	var claimed atomic.Int64 // queue rows deleted by claims so far
	var maintained atomic.Int64
	type point struct {
		dead int64
		lat  time.Duration
	}
	var mu sync.Mutex
	var points []point
	interval := time.Duration(float64(time.Second) * float64(len(shape.specs)) / tasksPerSec)
	phaseCtx, stop := context.WithTimeout(ctx, dur)
	defer stop()
	g, gctx := errgroup.WithContext(phaseCtx)
	newWaiter := pgWaiters(l, 100*time.Millisecond)
	m := r.startMeter(ctx)
	g.Go(func() error {
		t0 := time.Now()
		for i := 0; ; i++ {
			select {
			case <-gctx.Done():
				return nil
			case <-time.After(time.Until(t0.Add(time.Duration(i) * interval))):
			}
			if _, err := s.CreateRun(gctx, wf.ID, "bench"); err != nil {
				return phaseErr(gctx, err)
			}
		}
	})
	if v.maintain != nil {
		g.Go(func() error {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
				}
				acted, err := v.maintain(gctx, s)
				if err != nil {
					return phaseErr(gctx, fmt.Errorf("queue maintenance: %w", err))
				}
				if acted {
					maintained.Add(1)
				}
			}
		})
	}
	// Once a second, what a claim's scan reads to reach its first ready row: buffers do
	// not depend on how loaded the machine is.
	var scanBufs []int64
	g.Go(func() error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
			b, _, err := claimScanCost(gctx, r, s.Schema())
			if err != nil {
				return phaseErr(gctx, err)
			}
			scanBufs = append(scanBufs, b)
		}
	})
	for i := 0; i < r.sizes.Schedulers; i++ {
		g.Go(func() error {
			wait, stopWaiter := newWaiter()
			defer stopWaiter()
			name := fmt.Sprintf("scheduler-%d", i)
			for {
				started, err := s.StartPendingRuns(gctx, 20)
				if err != nil {
					return phaseErr(gctx, err)
				}
				dead := claimed.Load()
				t := time.Now()
				got, err := s.ClaimTasks(gctx, orkstate.ClaimParams{Claimer: name, Limit: 1000})
				if err != nil {
					return phaseErr(gctx, err)
				}
				lat := time.Since(t)
				mu.Lock()
				points = append(points, point{dead, lat})
				mu.Unlock()
				claimed.Add(int64(len(got)))
				if len(got) > 0 {
					ups := make([]orkstate.TaskUpdate, len(got))
					for j, ct := range got {
						ups[j] = orkstate.TaskUpdate{TaskID: ct.ID, Status: orkstate.TaskSuccess, Attempt: ct.Attempt}
					}
					if _, err := s.SetTaskStates(gctx, ups); err != nil {
						return phaseErr(gctx, err)
					}
				} else if len(started) == 0 {
					if err := wait(gctx); err != nil {
						return phaseErr(gctx, err)
					}
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, st, err
	}
	smp := &sample{items: int(claimed.Load())}
	m.stop(smp)
	for _, p := range points {
		smp.lat = append(smp.lat, p.lat)
	}
	// Still under the snapshot: what a claim's scan of the queue reads now.
	st.scanBuffers, st.scanMs, err = claimScanCost(ctx, r, s.Schema())
	if err != nil {
		return nil, st, err
	}
	st.maintained = maintained.Load()
	for _, b := range scanBufs {
		st.scanBufsMean += float64(b) / float64(len(scanBufs))
		st.scanBufsMax = max(st.scanBufsMax, b)
	}
	if v.hold {
		st.deadQueueRows = claimed.Load()
		var xs, ys []float64
		for _, p := range points {
			xs = append(xs, float64(p.dead)/1000)
			ys = append(ys, float64(p.lat.Microseconds())/1000)
		}
		st.msPer1000 = slope(xs, ys)
	}
	return smp, st, nil
}

// phaseErr is nil for an error that only says the phase's time is up.
func phaseErr(gctx context.Context, err error) error {
	if gctx.Err() != nil {
		return nil
	}
	return err
}

// claimScanCost runs the claim's candidate scan — task_queue in priority and id
// order, as claim_tasks reads it, without locking — to its first ready row under
// EXPLAIN (ANALYZE, BUFFERS), and returns the buffers it read and its time: the cost of
// reaching the first live entry, whatever the backlog behind it.
func claimScanCost(ctx context.Context, r *runner, schema string) (int64, float64, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "set local enable_seqscan = off"); err != nil {
		return 0, 0, err
	}
	var out []byte
	if err := tx.QueryRow(ctx, fixture{schema: schema}.sql(`explain (analyze, buffers, format json)
		select q.task_id from {ork}.task_queue q
		where q.slot_group = 0 and (q.ready_at is null or q.ready_at <= now())
		order by q.priority desc, q.task_id limit 1`)).Scan(&out); err != nil {
		return 0, 0, err
	}
	var plan []struct {
		Plan struct {
			Hit  int64 `json:"Shared Hit Blocks"`
			Read int64 `json:"Shared Read Blocks"`
		} `json:"Plan"`
		Ms float64 `json:"Execution Time"`
	}
	if err := json.Unmarshal(out, &plan); err != nil || len(plan) == 0 {
		return 0, 0, fmt.Errorf("explain of the claim scan: %v", err)
	}
	return plan[0].Plan.Hit + plan[0].Plan.Read, plan[0].Ms, nil
}

// slope is the least-squares slope of ys over xs (0 with fewer than two distinct xs).
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// snapshotTargets: claim p99 under the held snapshot at most 5× the clean p99 (issue 14).
func snapshotTargets(results []Result) []Target {
	var ts []Target
	for _, r := range results {
		if r.Scenario != "snapshot" || r.System != SystemOrkstate || r.Error != "" {
			continue
		}
		if v, ok := r.Ratios["p99 ÷ clean"]; ok {
			ts = append(ts, Target{Goal: "claim p99 under a held snapshot (" + r.Variant + ") ÷ clean p99", Value: v,
				Want: "≤ 5×", Met: v <= 5, Detail: fmt.Sprintf("p50 ratio %.2f; issue 14", r.Ratios["p50 ÷ clean"])})
		}
	}
	return ts
}
