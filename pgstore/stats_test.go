package pgstore_test

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// stats() counts what is live: ready and delayed tasks, the queue's head, tasks in
// flight, due leases, deadlines and deferred jobs, live runs, and the runs that
// finished within the window — not the history.
func TestStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, s := b.ctx, b.s
	w := b.workflow(t, "history")
	b.history(t, w.ID, 50, 2, 48*time.Hour)
	recent, _ := startRun(t, s, []orkstate.TaskSpec{{Name: "a"}})
	finish(t, s)
	_, tasks := startRun(t, s, []orkstate.TaskSpec{{Name: "a", TimeoutSeconds: 60}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c"}, {Name: "d"}})
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 1})
	if err != nil || len(claimed) != 1 || claimed[0].ID != tasks[0].ID {
		t.Fatalf("claim = %v, %v; want task a", claimed, err)
	}
	_, err = s.CreateDeferredJobs(ctx, tasks[0].ID, []orkstate.NewDeferredJob{{ServiceType: "batch", JobID: "j"}})
	noErr(t, err)
	b.exec(t, `update {ork}.task_queue set ready_at = now() + interval '1 hour' where task_id = $1`, tasks[3].ID)
	b.exec(t, `update {ork}.tasks set retry_at = now() + interval '1 hour' where id = $1`, tasks[3].ID)
	b.exec(t, `update {ork}.task_leases set expires_at = now() - interval '1 second' where task_ids @> $1::bigint`, tasks[0].ID)
	b.exec(t, `update {ork}.task_deadlines set timeout_at = now() - interval '1 second'`)
	b.exec(t, `update {ork}.tasks set created_at = now() - interval '10 minutes' where id = $1`, tasks[2].ID)
	_, _ = s.CreateRun(ctx, w.ID, "waiting")

	// Lease rows due: the history's 50, never swept here, and task a's.
	st, err := s.Stats(ctx, 0)
	noErr(t, err)
	age := st.OldestReadyAge
	st.OldestReadyAge = 0
	want := pgstore.Stats{ReadyTasks: 1, DelayedTasks: 1, TasksInFlight: 1, TasksUnfinished: 4, LeasesDue: 50 + 1, DeadlinesDue: 1,
		RunsPending: 1, RunsRunning: 1, RunsSucceeded: 1, Window: time.Hour, RunsEstimate: st.RunsEstimate,
		DeferredJobsActive: 1, DeferredJobsDue: 1}
	if *st != want {
		t.Fatalf("stats = %+v\nwant    %+v", *st, want)
	}
	if age < 10*time.Minute || age > 11*time.Minute {
		t.Fatalf("oldest ready age %v; want the 10 minutes of task c", age)
	}
	if r, err := s.GetRun(ctx, recent.ID); err != nil || r.Status != orkstate.RunSuccess {
		t.Fatalf("recent run = %+v, %v", r, err)
	}
	st, err = s.Stats(ctx, 72*time.Hour)
	noErr(t, err)
	if got := st.RunsSucceeded + st.RunsFailed + st.RunsCancelled; got != 51 {
		t.Fatalf("runs finished in 72 h = %d; want 51", got)
	}
	_, err = s.Stats(ctx, -time.Second)
	wantValidation(t, err, "window")
}

// The plan of every statement inside stats(), read with auto_explain on an install
// with 100,000 finished tasks of history: no sequential scan of a table that holds
// history, so the call never reads it.
func TestStatsPlanReadsNoHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, s := b.ctx, b.s
	w := b.workflow(t, "history")
	for range 2 {
		b.history(t, w.ID, 5000, 10, 48*time.Hour)
	}
	startRun(t, s, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}})
	b.exec(t, `analyze {ork}.runs, {ork}.tasks, {ork}.task_queue, {ork}.deferred_jobs, {ork}.task_leases, {ork}.task_deadlines`)

	var mu sync.Mutex
	var plans []string
	cfg, err := pgx.ParseConfig(testdb.URL())
	noErr(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		plans = append(plans, n.Message)
		mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	noErr(t, err)
	defer conn.Close(context.Background())
	for _, q := range []string{`load 'auto_explain'`, `set auto_explain.log_min_duration = 0`,
		`set auto_explain.log_nested_statements = on`, `set client_min_messages = log`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err = conn.Exec(ctx, b.sqlOf(`select * from {api}.stats()`))
	noErr(t, err)
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(plans, "\n")
	// task_queue holds only ready tasks (live by definition); every other table holds history.
	if seq := regexp.MustCompile(`Seq Scan on (runs|tasks|task_logs|task_log_sizes|deferred_jobs|task_leases|task_deadlines) `).FindAllString(all, -1); len(seq) > 0 {
		t.Fatalf("stats() scans %v:\n%s", seq, all)
	}
	if !strings.Contains(all, "runs_finished_idx") || !strings.Contains(all, "deferred_jobs_due_idx") {
		t.Fatalf("no plan of stats() read (auto_explain said %d things):\n%s", len(plans), all)
	}
	t.Log(all)
}
