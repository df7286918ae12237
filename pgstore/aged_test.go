package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestAgedInstall measures an install with months of history against a fresh one,
// with autovacuum on (it is off on the test server; this test turns it on and back
// off, also when it fails). Skipped unless ORK_AGED_TASKS names the history size:
//
//	ORK_AGED_TASKS=1000000 go test -run TestAgedInstall -v -timeout 60m ./pgstore/
//
// e2e (start runs, claim and report every task) and claim latency on a fresh
// install, then on one with ORK_AGED_TASKS finished tasks of history spread over 60
// days (with logs, deferred jobs and lease rows), never vacuumed by hand, while a
// purger removes everything older than 30 days beside the workers.
// The numbers are in docs/architecture.md ("Retention").
func TestAgedInstall(t *testing.T) {
	history, _ := strconv.Atoi(os.Getenv("ORK_AGED_TASKS"))
	if history <= 0 {
		t.Skip("set ORK_AGED_TASKS (e.g. 1000000) to measure an aged install")
	}
	withAutovacuum(t)

	const runs, perRun, workers = 10, 2000, 4
	fresh := setup(t)
	freshRate, freshClaim := agedWorkload(t, fresh.s, runs, perRun, workers, nil)
	t.Logf("fresh: %.0f tasks/s e2e, claim of 100 p50 %v p99 %v", freshRate, pct(freshClaim, 50), pct(freshClaim, 99))

	aged := setup(t)
	w := aged.workflow(t, "history")
	start := time.Now()
	const chunkRuns = 10000
	for done, day := 0, 0; done < history; day++ {
		n := min(chunkRuns, (history-done)/10)
		if n == 0 {
			break
		}
		aged.history(t, w.ID, n, 10, time.Duration(60-6*day%60)*24*time.Hour)
		done += n * 10
	}
	t.Logf("history: %d tasks in %v; tasks %s, install %s", history, time.Since(start).Round(time.Second),
		size(t, aged, "tasks"), installSize(t, aged))

	var purged pgstore.PurgeResult
	var purgeErr error
	var purgeTook time.Duration
	purging := make(chan struct{})
	agedRate, agedClaim := agedWorkload(t, aged.s, runs, perRun, workers, func(ctx context.Context) {
		defer close(purging)
		t0 := time.Now()
		pause, _ := time.ParseDuration(os.Getenv("ORK_AGED_PAUSE"))
		purged, purgeErr = aged.s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: 30 * 24 * time.Hour, Pause: pause})
		purgeTook = time.Since(t0)
	})
	<-purging
	if purgeErr != nil {
		t.Fatal(purgeErr)
	}
	t.Logf("aged, purging: %.0f tasks/s e2e (%.2f× fresh), claim of 100 p50 %v p99 %v; purged %d runs, %d tasks in %d batches in %v (%.0f tasks/s)",
		agedRate, agedRate/freshRate, pct(agedClaim, 50), pct(agedClaim, 99), purged.Runs, purged.Tasks, purged.Batches,
		purgeTook.Round(time.Second), float64(purged.Tasks)/purgeTook.Seconds())
	again, againClaim := agedWorkload(t, fresh.s, runs, perRun, workers, nil)
	t.Logf("fresh again: %.0f tasks/s e2e, claim p50 %v p99 %v", again, pct(againClaim, 50), pct(againClaim, 99))

}

// TestChurnUnderRetention runs ORK_CHURN_TASKS tasks through a fresh install in
// waves of 20,000, purging each wave's runs as soon as they finish, with autovacuum
// on, and compares the install's size with one wave freshly loaded. With
// ORK_CHURN_TUNED=1 it first applies candidate per-table autovacuum settings (the
// ones migration 004 would carry) to see whether they earn their place:
//
//	ORK_CHURN_TASKS=400000 go test -run TestChurnUnderRetention -v -timeout 60m ./pgstore/
func TestChurnUnderRetention(t *testing.T) {
	churnTasks, _ := strconv.Atoi(os.Getenv("ORK_CHURN_TASKS"))
	if churnTasks <= 0 {
		t.Skip("set ORK_CHURN_TASKS (e.g. 400000) to measure churn under retention")
	}
	ctx := context.Background()
	withAutovacuum(t)
	const runs, perRun, workers = 10, 2000, 4
	ref := setup(t)
	agedWorkload(t, ref.s, runs, perRun, workers, nil)
	refBytes := installBytes(t, ref)

	churn := setup(t)
	if os.Getenv("ORK_CHURN_TUNED") != "" {
		for _, table := range []string{"tasks", "runs", "task_logs", "task_log_sizes", "deferred_jobs"} {
			churn.exec(t, `alter table {ork}.`+table+` set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02)`)
		}
		for _, table := range []string{"task_queue", "task_leases", "task_deadlines"} {
			churn.exec(t, `alter table {ork}.`+table+` set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)`)
		}
	}
	// ORK_CHURN_VACUUM=1: a plain VACUUM of the purged tables after each purge, as a
	// purge job could run, instead of waiting for autovacuum's next round.
	vacuum := os.Getenv("ORK_CHURN_VACUUM") != ""
	start := time.Now()
	var peak int64
	var rates []float64
	for wave := 0; wave*runs*perRun < churnTasks; wave++ {
		rate, _ := agedWorkload(t, churn.s, runs, perRun, workers, nil)
		rates = append(rates, rate)
		peak = max(peak, installBytes(t, churn))
		if _, err := churn.s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: 0}); err != nil {
			t.Fatal(err)
		}
		if vacuum {
			churn.exec(t, `vacuum {ork}.runs, {ork}.tasks, {ork}.task_queue, {ork}.task_leases, {ork}.task_deadlines, {ork}.task_logs, {ork}.task_log_sizes, {ork}.deferred_jobs`)
		}
	}
	end := installBytes(t, churn)
	t.Logf("churn of %d tasks in %v (tuned %v, vacuum after purge %v): e2e first wave %.0f, last %.0f tasks/s; install at the end %.1f MB, peak %.1f MB; one wave freshly loaded %.1f MB; end/fresh %.2f×, peak/fresh %.2f×",
		churnTasks, time.Since(start).Round(time.Second), os.Getenv("ORK_CHURN_TUNED") != "", vacuum, rates[0], rates[len(rates)-1],
		mb(end), mb(peak), mb(refBytes), float64(end)/float64(refBytes), float64(peak)/float64(refBytes))
	rows, err := churn.s.Pool().Query(ctx, `select relname, pg_total_relation_size(relid), n_dead_tup, autovacuum_count
		from pg_stat_user_tables where schemaname = $1 order by 2 desc`, churn.s.Schema())
	noErr(t, err)
	for rows.Next() {
		var name string
		var bytes, dead, vacuums int64
		noErr(t, rows.Scan(&name, &bytes, &dead, &vacuums))
		t.Logf("  %-16s %7.1f MB  dead %7d  autovacuums %d", name, mb(bytes), dead, vacuums)
	}
	noErr(t, rows.Err())
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// withAutovacuum turns autovacuum on for the test and back off when it ends, failed or not.
func withAutovacuum(t *testing.T) {
	pool := testdb.Pool(t)
	set := func(on string) {
		if _, err := pool.Exec(context.Background(), "alter system set autovacuum = "+on); err != nil {
			t.Errorf("autovacuum %s: %v", on, err)
		}
		if _, err := pool.Exec(context.Background(), "select pg_reload_conf()"); err != nil {
			t.Errorf("reload: %v", err)
		}
	}
	t.Cleanup(func() { set("off") })
	set("on")
}

// agedWorkload creates runs of perRun independent tasks, starts them and has workers
// claim 100 at a time and succeed them until all are done, with beside running
// alongside (nil: nothing). It returns tasks per second and the claim latencies.
func agedWorkload(t *testing.T, s *pgstore.Store, runs, perRun, workers int, beside func(context.Context)) (float64, []time.Duration) {
	t.Helper()
	ctx := context.Background()
	specs := make([]orkstate.TaskSpec, perRun)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%05d", i)}
	}
	w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: fmt.Sprintf("wl-%d", time.Now().UnixNano())})
	noErr(t, err)
	_, err = s.ReplaceWorkflowTasks(ctx, w.ID, specs)
	noErr(t, err)
	var wg sync.WaitGroup
	if beside != nil {
		wg.Add(1)
		go func() { defer wg.Done(); beside(ctx) }()
	}
	start := time.Now()
	for range runs {
		_, err := s.CreateRun(ctx, w.ID, "load")
		noErr(t, err)
	}
	for started := 0; started < runs; {
		got, err := s.StartPendingRuns(ctx, runs)
		noErr(t, err)
		started += len(got)
	}
	var mu sync.Mutex
	var lat []time.Duration
	applied := map[int64]int{}
	g, gctx := errgroup.WithContext(ctx)
	for i := range workers {
		g.Go(func() error {
			for idle := 0; idle < 20; {
				t0 := time.Now()
				got, err := s.ClaimTasks(gctx, orkstate.ClaimParams{Claimer: fmt.Sprint("w", i), Limit: 100})
				if err != nil {
					return err
				}
				d := time.Since(t0)
				if len(got) == 0 {
					idle++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				idle = 0
				ups := make([]orkstate.TaskUpdate, len(got))
				for k, c := range got {
					ups[k] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
				}
				out, err := s.SetTaskStates(gctx, ups)
				if err != nil {
					return err
				}
				mu.Lock()
				lat = append(lat, d)
				for _, o := range out {
					if o.Outcome == orkstate.OutcomeApplied {
						applied[o.TaskID]++
					}
				}
				mu.Unlock()
			}
			return nil
		})
	}
	noErr(t, g.Wait())
	elapsed := time.Since(start)
	wg.Wait()
	if len(applied) != runs*perRun {
		t.Fatalf("%d tasks applied; want %d", len(applied), runs*perRun)
	}
	return float64(runs*perRun) / elapsed.Seconds(), lat
}

func size(t *testing.T, b *testBundle, table string) string {
	t.Helper()
	var s string
	if err := b.s.Pool().QueryRow(b.ctx, `select pg_size_pretty(pg_total_relation_size($1::regclass))`, b.s.Schema()+"."+table).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// installBytes is the tables that hold runs and what hangs off them, with their
// indexes and TOAST (not the workflows, which the workloads add one of per wave).
func installBytes(t *testing.T, b *testBundle) int64 {
	t.Helper()
	var n int64
	if err := b.s.Pool().QueryRow(b.ctx, `select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_class c
		join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relkind = 'r'
		and c.relname in ('runs', 'tasks', 'task_queue', 'task_leases', 'task_deadlines', 'task_logs', 'task_log_sizes', 'deferred_jobs')`,
		b.s.Schema()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func installSize(t *testing.T, b *testBundle) string {
	return fmt.Sprintf("%.1f MB", float64(installBytes(t, b))/(1<<20))
}
