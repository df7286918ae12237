package pgstore_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
)

// sqlErr runs raw SQL ({ork}, {api} replaced) and returns its error.
func (b *testBundle) sqlErr(q string, args ...any) error {
	q = strings.NewReplacer("{ork}", b.s.Schema(), "{api}", b.s.Schema()+"_api").Replace(q)
	_, err := b.s.Pool().Exec(b.ctx, q, args...)
	return err
}

// wantSQLState fails t unless err is a PostgreSQL error with code.
func wantSQLState(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Errorf("%s: got %v, want SQLSTATE %s", what, err, code)
	}
}

// A run whose stored snapshot has a name too long for the tasks index, or whose
// workflow asks for 1e10 legacy tasks, used to fail start_pending_runs whole on
// every call (issue 11 item 6). Now that run fails with its reason and the runs
// behind it start, from Go and from SQL.
func TestStartPendingRunsSkipsABadRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("x", 6000)
	snapWF := b.workflow(t, "long-name")
	// Planted as an old install or a hand edit would have left it: the Go API refuses it now.
	b.exec(t, `insert into {ork}.workflow_snapshots (workflow_id, content_hash, tasks_json)
		values ($1, 'h', jsonb_build_array(jsonb_build_object('name', $2::text, 'depends_on', '[]'::jsonb)))`, snapWF.ID, long)
	b.exec(t, `update {ork}.workflows set current_snapshot_id = (select id from {ork}.workflow_snapshots where workflow_id = $1) where id = $1`, snapWF.ID)
	bad1 := b.run(t, snapWF.ID)

	countWF, err := b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "huge-count", TaskParams: []byte(`{"task_count": 1e10}`)})
	if err != nil {
		t.Fatal(err)
	}
	bad2 := b.run(t, countWF.ID)
	good := b.run(t, b.workflow(t, "good").ID)

	started, err := b.s.StartPendingRuns(b.ctx, 10)
	if err != nil {
		t.Fatalf("StartPendingRuns: %v", err)
	}
	if len(started) != 3 {
		t.Fatalf("started %d runs, want 3: %+v", len(started), started)
	}
	for _, r := range []struct {
		id   int64
		want string
	}{{bad1.ID, "512"}, {bad2.ID, "task_count"}} {
		got, err := b.s.GetRun(b.ctx, r.id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != orkstate.RunFailed || !strings.Contains(got.Error, r.want) {
			t.Errorf("bad run %d: %s %q, want failed with an error naming %s", r.id, got.Status, got.Error, r.want)
		}
	}
	if got, _ := b.s.GetRun(b.ctx, good.ID); got.Status != orkstate.RunRunning {
		t.Errorf("good run: %s, want running", got.Status)
	}

	// The same from SQL: the bad run fails, the good one starts.
	bad3 := b.run(t, countWF.ID)
	good2 := b.run(t, b.workflow(t, "good-2").ID)
	if err := b.sqlErr(`select * from {api}.start_pending_runs(10)`); err != nil {
		t.Fatalf("start_pending_runs: %v", err)
	}
	if n := b.count(t, `select count(*) from {ork}.runs where id = $1 and status = 'failed'`, bad3.ID); n != 1 {
		t.Error("bad run started from SQL did not fail")
	}
	if n := b.count(t, `select count(*) from {ork}.runs where id = $1 and status = 'running'`, good2.ID); n != 1 {
		t.Error("good run behind a bad one did not start from SQL")
	}
}

// The SQL API checks what the Go API checks (issue 11 items 14-16): JSON field types
// and name lengths in create_tasks, lease and poll bounds, fire times, and statuses
// in any case.
func TestSQLBounds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wf := b.workflow(t, "sql-bounds")
	run := b.run(t, wf.ID)
	long := strings.Repeat("n", 600)
	for what, specs := range map[string]string{
		"object task_name":     `[{"task_name": {"x": 1}}]`,
		"number task_name":     `[{"task_name": 5}]`,
		"long task_name":       `[{"task_name": "` + long + `"}]`,
		"string task_index":    `[{"task_name": "a", "task_index": "0"}]`,
		"fractional index":     `[{"task_name": "a", "task_index": 1.5}]`,
		"huge task_index":      `[{"task_name": "a", "task_index": 1e10}]`,
		"object executor_type": `[{"task_name": "a", "executor_type": {}}]`,
		"depends_on of number": `[{"task_name": "a", "depends_on": [1]}]`,
		"max_retries too big":  `[{"task_name": "a", "max_retries": 5000}]`,
		"string timeout":       `[{"task_name": "a", "timeout_seconds": "60"}]`,
		"array element":        `[5]`,
	} {
		wantSQLState(t, "create_tasks with "+what, b.sqlErr(`select * from {api}.create_tasks($1, $2::jsonb)`, run.ID, specs), "OK422")
	}
	if n := b.count(t, `select count(*) from {ork}.tasks`); n != 0 {
		t.Fatalf("%d tasks created by refused calls", n)
	}

	wantSQLState(t, "claim_tasks with a lease of 200,000 years",
		b.sqlErr(`select * from {api}.claim_tasks('c', 10, null, interval '200000 years')`), "OK422")
	wantSQLState(t, "claim_tasks with a blank claimer", b.sqlErr(`select * from {api}.claim_tasks('  ', 10)`), "OK422")
	wantSQLState(t, "claim_tasks with a long claimer", b.sqlErr(`select * from {api}.claim_tasks($1, 10)`, long), "OK422")
	wantSQLState(t, "claim_deferred_jobs with a lease of 2 days",
		b.sqlErr(`select * from {api}.claim_deferred_jobs('c', 10, interval '2 days')`), "OK422")
	wantSQLState(t, "report_deferred_polls with next_poll_after of a year",
		b.sqlErr(`select * from {api}.report_deferred_polls(array[1::bigint], array['running'], null, array[interval '1 year'])`), "OK422")

	now := time.Now().Truncate(time.Second)
	b.exec(t, `update {ork}.workflows set schedule = '*/5 * * * *', schedule_enabled = true, next_scheduled_at = $2 where id = $1`, wf.ID, now)
	wantSQLState(t, "fire_schedules with next before fire",
		b.sqlErr(`select * from {api}.fire_schedules(array[$1::bigint], array[$2::timestamptz], array[$3::timestamptz])`,
			wf.ID, now, now.Add(-time.Minute)), "OK422")
	wantSQLState(t, "fire_schedules with next equal to fire",
		b.sqlErr(`select * from {api}.fire_schedules(array[$1::bigint], array[$2::timestamptz], array[$2::timestamptz])`, wf.ID, now), "OK422")
	if n := b.count(t, `select count(*) from {ork}.runs where triggered_by = 'schedule'`); n != 0 {
		t.Errorf("%d runs fired by refused calls", n)
	}

	// Statuses in any case, as the original accepts them.
	if err := b.sqlErr(`select * from {api}.create_tasks($1, '[{"task_name": "a"}]'::jsonb)`, run.ID); err != nil {
		t.Fatal(err)
	}
	var outcome, status string
	q := strings.ReplaceAll(`select outcome, status from {api}.set_task_states(
		array[(select id from {ork}.tasks where run_id = $1)], array['RUNNING'])`, "{api}", b.s.Schema()+"_api")
	q = strings.ReplaceAll(q, "{ork}", b.s.Schema())
	if err := b.s.Pool().QueryRow(b.ctx, q, run.ID).Scan(&outcome, &status); err != nil {
		t.Fatalf("set_task_states RUNNING: %v", err)
	}
	if outcome != "applied" || status != "running" {
		t.Errorf("set_task_states RUNNING: %s %s, want applied running", outcome, status)
	}
	if err := b.sqlErr(`select {api}.finish_run($1, 'FAILED', 'stop')`, run.ID); err != nil {
		t.Errorf("finish_run FAILED: %v", err)
	}
}

// A time PostgreSQL cannot store, or sqlitecompat could not, is a *ValidationError
// (it was a raw pgconn error).
func TestTimeOutOfRangeIsValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wf := b.workflow(t, "times")
	far := time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)
	err := b.s.SetScheduleTimes(b.ctx, wf.ID, &far, &far)
	if !orkstate.IsValidation(err) {
		t.Errorf("SetScheduleTimes in year 300000: got %v, want a *ValidationError", err)
	}
}
