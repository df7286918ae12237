package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// TestE2ECPUBreakdown splits the server CPU of an e2e drive by call: each scheduler
// has a connection of its own, whose backend's CPU (/proc/<pid>/schedstat: run on
// the database's machine) is read around every StartPendingRuns and ReportAndClaim
// call; the rest (the runs' creation, 10 per CreateRuns, and the NOTIFY listener) is
// the shared pool's backends. The scheduler loop is driveE2E's without failures.
// Rounds alternate the chains and fan shapes. Run by hand:
//
//	ORK_E2E_CPU=100 go test ./internal/bench -run TestE2ECPUBreakdown -v
//
// (runs per drive; ORK_E2E_CPU_ROUNDS rounds, default 3).
func TestE2ECPUBreakdown(t *testing.T) {
	runs := envInt("ORK_E2E_CPU", 0)
	if runs <= 0 {
		t.Skip("ORK_E2E_CPU=<runs per drive> runs it")
	}
	rounds := envInt("ORK_E2E_CPU_ROUNDS", 3)
	ctx := context.Background()
	url := testdb.URL()
	const app = "ork_e2e_cpu"
	newPool := func(conns int32, app string) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns, cfg.MinConns = conns, min(conns, 1)
		cfg.ConnConfig.RuntimeParams["application_name"] = app
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return pool
	}
	pool := newPool(32, app)
	defer pool.Close()
	r := &runner{pool: pool, sizes: QuickSizes(), progress: os.Stderr, start: time.Now()}
	poolCPU := func(p *pgxpool.Pool) int64 {
		var pids []int
		rows, err := p.Query(ctx, `select pid from pg_stat_activity where application_name = $1`, app)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var pid int
			_ = rows.Scan(&pid)
			pids = append(pids, pid)
		}
		rows.Close()
		var ns int64
		for _, pid := range pids {
			if v, err := procCPU(pid); err == nil {
				ns += v
			}
		}
		return ns
	}
	selfCPU := func() int64 { return int64(processCPU()) }

	type split struct {
		all, start, startHit, loop, rest, client float64 // µs per task
		startCalls, startHits, loops, tasks      int
		rate                                     float64
	}
	drive := func(shape dagShape) split {
		s, drop, err := r.install(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer drop()
		wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "cpu_" + shape.name, JobName: "j", ExecutorType: "noop"})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := s.CreateSnapshot(ctx, wf.ID, shape.specs)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrentSnapshot(ctx, wf.ID, snap.ID); err != nil {
			t.Fatal(err)
		}
		l, err := notify.NewListener(pool, &notify.ListenerConfig{Schema: s.Schema(), Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer l.Stop()
		newWaiter := pgWaiters(l, 100*time.Millisecond)
		nsched := r.sizes.Schedulers
		type sched struct {
			st  *pgstore.Store
			pid int
		}
		scheds := make([]sched, nsched)
		for i := range scheds {
			p := newPool(1, app+"_scheduler")
			defer p.Close()
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pid := int(c.Conn().PgConn().PID())
			c.Release()
			st, err := pgstore.New(p, &pgstore.Config{Schema: s.Schema()})
			if err != nil {
				t.Fatal(err)
			}
			scheds[i] = sched{st, pid}
		}
		total := runs * len(shape.specs)
		var startNs, startHitNs, loopNs, startCalls, startHits, loops, succeeded atomic.Int64
		shared0, self0 := poolCPU(pool), selfCPU()
		var sched0 []int64
		for _, sc := range scheds {
			sched0 = append(sched0, schedCPU(t, sc.pid)())
		}
		t0 := time.Now()
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		g, gctx := errgroup.WithContext(runCtx)
		g.Go(func() error {
			rb := e2eRunBatch(shape)
			for i := 0; i < runs; i += rb {
				batch := make([]orkstate.NewRun, min(rb, runs-i))
				for k := range batch {
					batch[k] = orkstate.NewRun{WorkflowID: wf.ID, TriggeredBy: "bench"}
				}
				if _, err := s.CreateRuns(gctx, batch); err != nil {
					return err
				}
			}
			return nil
		})
		var once sync.Once
		for i, sc := range scheds {
			g.Go(func() error {
				wait, stop := newWaiter()
				defer stop()
				var ups []orkstate.TaskUpdate
				for gctx.Err() == nil {
					c0 := schedCPU(t, sc.pid)()
					started, err := sc.st.StartPendingRuns(gctx, 20)
					if err != nil {
						return err
					}
					c1 := schedCPU(t, sc.pid)()
					startNs.Add(c1 - c0)
					startCalls.Add(1)
					if len(started) > 0 {
						startHits.Add(1)
						startHitNs.Add(c1 - c0)
					}
					out, got, err := sc.st.ReportAndClaim(gctx, ups, orkstate.ClaimParams{Claimer: fmt.Sprintf("s%d", i), Limit: 1000})
					if err != nil {
						return err
					}
					loopNs.Add(schedCPU(t, sc.pid)() - c1)
					loops.Add(1)
					for _, o := range out {
						if o.Outcome == orkstate.OutcomeApplied && o.Status == orkstate.TaskSuccess {
							succeeded.Add(1)
						}
					}
					ups = ups[:0]
					for _, tk := range got {
						ups = append(ups, orkstate.TaskUpdate{TaskID: tk.ID, Status: orkstate.TaskSuccess, Attempt: tk.Attempt})
					}
					if len(got) == 0 && len(started) == 0 {
						if err := wait(gctx); err != nil {
							return err
						}
					}
					if succeeded.Load() >= int64(total) {
						once.Do(cancel)
						return nil
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil && succeeded.Load() < int64(total) {
			t.Fatal(err)
		}
		secs := time.Since(t0).Seconds()
		var schedNs int64
		for i, sc := range scheds {
			schedNs += schedCPU(t, sc.pid)() - sched0[i]
		}
		shared, self := poolCPU(pool)-shared0, selfCPU()-self0
		per := func(ns int64) float64 { return float64(ns) / 1e3 / float64(total) }
		return split{all: per(schedNs + shared), start: per(startNs.Load()), startHit: per(startHitNs.Load()),
			loop: per(loopNs.Load()), rest: per(shared), client: per(self),
			startCalls: int(startCalls.Load()), startHits: int(startHits.Load()), loops: int(loops.Load()), tasks: total,
			rate: float64(total) / secs}
	}
	shapes := []dagShape{chainsShape(), fanShape()}
	res := make([][]split, len(shapes))
	for round := 0; round < rounds; round++ {
		for k := range shapes {
			i := (k + round) % len(shapes)
			x := drive(shapes[i])
			res[i] = append(res[i], x)
			t.Logf("round %d %-15s %6.0f tasks/s; server CPU per task %.1f µs: start %.1f (%d calls, %d started runs: %.1f), report+claim %.1f (%d calls, %.0f tasks each), creation+listener %.1f; client %.1f µs",
				round, shapes[i].name, x.rate, x.all, x.start, x.startCalls, x.startHits, x.startHit, x.loop, x.loops, float64(x.tasks)/float64(x.loops), x.rest, x.client)
		}
	}
	for i, sh := range shapes {
		med := func(f func(split) float64) string {
			var v []float64
			for _, x := range res[i] {
				v = append(v, f(x))
			}
			sort.Float64s(v)
			return fmt.Sprintf("%.1f", v[(len(v)-1)/2])
		}
		t.Logf("%-15s medians: server %s µs per task (start %s, report+claim %s, creation+listener %s), client %s µs",
			sh.name, med(func(x split) float64 { return x.all }), med(func(x split) float64 { return x.start }),
			med(func(x split) float64 { return x.loop }), med(func(x split) float64 { return x.rest }),
			med(func(x split) float64 { return x.client }))
	}
}
