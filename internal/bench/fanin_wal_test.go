package bench

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// TestFanInReadinessWAL measures what a join's count costs per dependency success
// (issue 14): 2×N runs of the e2e fan shape (a root, 98 tasks after it, a join after
// all of them) in one install; the joins of every other run are turned into rows an
// older package wrote (the count on the task row, which this package still counts
// down there: the code before migration 008), the others keep theirs apart
// (task_deps_unmet). Every middle task is claimed, then reported in batches that hold
// one middle task of each run of one kind, the kinds alternating, so each join is
// counted down once per batch, as in the e2e drive. Per success it reports the WAL
// of the call (EXPLAIN's, which counts the function's own statements and does not
// depend on other sessions) and the backend's CPU (/proc/<pid>/schedstat; run as
// root on the database's machine). Run by hand:
//
//	ORK_FANIN_WAL=200 go test ./internal/bench -run TestFanInReadinessWAL -v
func TestFanInReadinessWAL(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ORK_FANIN_WAL"))
	if n <= 0 {
		t.Skip("ORK_FANIN_WAL=<runs of each kind> runs it")
	}
	ctx := context.Background()
	s := testdb.Store(t)
	// ORK_FANIN_FF=<fillfactor> tries another fillfactor for task_deps_unmet (on an install of its own)
	ff := os.Getenv("ORK_FANIN_FF")
	if ff != "" {
		s = testdb.FreshStore(t)
	}
	pool := s.Pool()
	q := func(sql string) string {
		return strings.NewReplacer("{ork}", s.Schema(), "{api}", s.Schema()+"_api").Replace(sql)
	}
	if ff != "" {
		if _, err := pool.Exec(ctx, q(`alter table {ork}.task_deps_unmet set (fillfactor = `+strconv.Quote(ff)[1:len(ff)+1]+`)`)); err != nil {
			t.Fatal(err)
		}
	}
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "fanin-wal", ExecutorType: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplaceWorkflowTasks(ctx, wf.ID, fanShape().specs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2*n; i++ {
		if _, err := s.CreateRun(ctx, wf.ID, "bench"); err != nil {
			t.Fatal(err)
		}
	}
	for started := 0; started < 2*n; {
		k, err := s.StartPendingRuns(ctx, 100)
		if err != nil || len(k) == 0 {
			t.Fatalf("started %d runs: %v", started, err)
		}
		started += len(k)
	}
	// Odd runs: the join's count goes onto its row, as an older package kept it.
	if _, err := pool.Exec(ctx, q(`
		with legacy as (
			delete from {ork}.task_deps_unmet n using {ork}.tasks t
			where t.id = n.task_id and t.run_id % 2 = 1
			returning t.id, n.unmet)
		update {ork}.tasks t set unmet_deps = legacy.unmet from legacy where t.id = legacy.id`)); err != nil {
		t.Fatal(err)
	}
	// The roots succeed (the same for both kinds), then every middle task is claimed.
	claimAll := func() []orkstate.Task {
		var all []orkstate.Task
		for {
			c, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(c) == 0 {
				return all
			}
			for _, k := range c {
				all = append(all, orkstate.Task{ID: k.ID, RunID: k.RunID, TaskName: k.TaskName})
			}
		}
	}
	roots := claimAll()
	ups := make([]orkstate.TaskUpdate, len(roots))
	for i, k := range roots {
		ups[i] = orkstate.TaskUpdate{TaskID: k.ID, Status: orkstate.TaskSuccess}
	}
	if _, err := s.SetTaskStates(ctx, ups); err != nil {
		t.Fatal(err)
	}
	mids := claimAll()
	if len(mids) != 2*n*98 {
		t.Fatalf("claimed %d middle tasks, want %d", len(mids), 2*n*98)
	}
	if _, err := pool.Exec(ctx, q(`vacuum analyze {ork}.tasks, {ork}.task_deps_unmet, {ork}.task_queue`)); err != nil {
		t.Fatal(err)
	}
	// batches[kind][j]: the j-th middle task of each run of that kind (0 apart, 1 on the row)
	var batches [2][98][]int64
	seen := map[int64]int{}
	for _, k := range mids {
		j := seen[k.RunID]
		seen[k.RunID]++
		kind := int(k.RunID % 2)
		batches[kind][j] = append(batches[kind][j], k.ID)
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	cpu := schedCPU(t, pid)
	var walB, fpi [2]float64
	var cpuPer [2][]float64
	var done [2]int
	for j := 0; j < 98; j++ {
		for step := 0; step < 2; step++ {
			kind := (j + step) % 2 // which kind goes first alternates
			ids := batches[kind][j]
			st := make([]string, len(ids))
			for i := range st {
				st[i] = "success"
			}
			before := cpu()
			var plan []map[string]any
			if err := conn.QueryRow(ctx, q(`explain (analyze, wal, timing off, format json)
				select * from {api}.set_task_states($1, $2)`), ids, st).Scan(&plan); err != nil {
				t.Fatal(err)
			}
			after := cpu()
			top := plan[0]["Plan"].(map[string]any)
			walB[kind] += top["WAL Bytes"].(float64)
			fpi[kind] += top["WAL FPI"].(float64)
			cpuPer[kind] = append(cpuPer[kind], float64(after-before)/1e3/float64(len(ids)))
			done[kind] += len(ids)
		}
	}
	var queued int
	if err := pool.QueryRow(ctx, q(`select count(*) from {ork}.task_queue q join {ork}.tasks t on t.id = q.task_id
		where t.task_name = 'sink'`)).Scan(&queued); err != nil || queued != 2*n {
		t.Fatalf("%d joins queued, want %d (%v)", queued, 2*n, err)
	}
	var upd, hot int64
	if err := pool.QueryRow(ctx, `select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables
		where schemaname = $1 and relname = 'task_deps_unmet'`, s.Schema()).Scan(&upd, &hot); err == nil {
		t.Logf("task_deps_unmet: %d of %d updates HOT (statistics as the collector last flushed them)", hot, upd)
	}
	for kind, name := range []string{"count apart (task_deps_unmet)", "count on the task row (before 008)"} {
		c := cpuPer[kind]
		sort.Float64s(c)
		t.Logf("%s: %d successes in batches of %d; WAL %.0f B per success (%.2f full-page images per 1,000); server CPU per success min %.1f µs, median %.1f µs, max %.1f µs",
			name, done[kind], n, walB[kind]/float64(done[kind]), 1000*fpi[kind]/float64(done[kind]), c[0], c[len(c)/2], c[len(c)-1])
	}
}
