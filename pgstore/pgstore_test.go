package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

type testBundle struct {
	ctx context.Context
	s   *pgstore.Store
}

// setup gives t an empty install of its own (a reused one: see testdb.Store).
func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{ctx: context.Background(), s: testdb.Store(t)}
}

// setupFresh gives t a newly installed schema, for tests that change the install
// itself (migrations, grants, function versions): a reused one must stay as installed.
func setupFresh(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{ctx: context.Background(), s: testdb.FreshStore(t)}
}

// exec runs raw SQL against the bundle's install ({ork} is its schema).
func (b *testBundle) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	q = strings.NewReplacer("{ork}", b.s.Schema(), "{api}", b.s.Schema()+"_api").Replace(q)
	if _, err := b.s.Pool().Exec(b.ctx, q, args...); err != nil {
		t.Fatalf("exec %s: %v", q, err)
	}
}

// count returns the int result of a raw SQL query ({ork} is the install schema).
func (b *testBundle) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	q = strings.ReplaceAll(q, "{ork}", b.s.Schema())
	var n int
	if err := b.s.Pool().QueryRow(b.ctx, q, args...).Scan(&n); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	return n
}

func (b *testBundle) workflow(t *testing.T, name string) *orkstate.Workflow {
	t.Helper()
	w, err := b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: name, ExecutorType: "cloudrun"})
	if err != nil {
		t.Fatalf("CreateWorkflow(%q): %v", name, err)
	}
	return w
}

func (b *testBundle) run(t *testing.T, workflowID int64) *orkstate.Run {
	t.Helper()
	r, err := b.s.CreateRun(b.ctx, workflowID, "test")
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return r
}

// task inserts a task row directly (task creation belongs to tasks_create.go), returning its id.
func (b *testBundle) task(t *testing.T, runID int64, index int, name, status string, deps []string, unmet int) int64 {
	t.Helper()
	if deps == nil {
		deps = []string{}
	}
	q := strings.ReplaceAll(`insert into {ork}.tasks (run_id, task_index, task_name, status, depends_on, unmet_deps)
		values ($1, $2, $3, $4, $5, $6) returning id`, "{ork}", b.s.Schema())
	var id int64
	if err := b.s.Pool().QueryRow(b.ctx, q, runID, index, name, status, deps, unmet).Scan(&id); err != nil {
		t.Fatalf("insert task: %v", err)
	}
	return id
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func wantValidation(t *testing.T, err error, field string) {
	t.Helper()
	var v *orkstate.ValidationError
	if !errors.As(err, &v) {
		t.Fatalf("error = %v, want a *ValidationError", err)
	}
	if field != "" && v.Field != field {
		t.Fatalf("validation error names field %q, want %q (%v)", v.Field, field, err)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// installObjects counts the namespaces of an install and the relations in them.
func installObjects(t *testing.T, b *testBundle, schema string) (namespaces, relations int) {
	t.Helper()
	names := []string{schema, schema + "_api"}
	namespaces = b.count(t, `select count(*) from pg_namespace where nspname = any($1)`, names)
	relations = b.count(t, `select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname = any($1)`, names)
	return namespaces, relations
}

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	schema, pool := b.s.Schema(), b.s.Pool()

	if ns, rels := installObjects(t, b, schema); ns != 2 || rels == 0 {
		t.Fatalf("after Migrate: %d namespaces, %d relations; want 2 and some", ns, rels)
	}
	b.workflow(t, "before-down")

	noErr(t, pgstore.MigrateTo(b.ctx, pool, schema, 0))
	if ns, rels := installObjects(t, b, schema); ns != 0 || rels != 0 {
		t.Fatalf("after MigrateTo 0: %d namespaces, %d relations left; want none", ns, rels)
	}
	// Nothing of the install is left anywhere: no function, type or table named after
	// it, not even tern's version table.
	if n := b.count(t, `select count(*) from pg_class where relname like $1`, schema+"%"); n != 0 {
		t.Fatalf("%d relations named %s* left after MigrateTo 0, want none", n, schema)
	}

	noErr(t, pgstore.Migrate(b.ctx, pool, schema))
	if ns, _ := installObjects(t, b, schema); ns != 2 {
		t.Fatalf("after second Migrate: %d namespaces, want 2", ns)
	}
	wfs, err := b.s.ListWorkflows(b.ctx)
	noErr(t, err)
	if len(wfs) != 0 {
		t.Fatalf("rows survived a down/up migration: %v", wfs)
	}
	b.workflow(t, "after-up")
	noErr(t, b.s.Migrate(b.ctx)) // idempotent on a current install
}

func TestInstallsAreIsolated(t *testing.T) {
	t.Parallel()
	a, c := setup(t), setup(t)
	wa := a.workflow(t, "same-name")
	a.workflow(t, "only-in-a")
	wc := c.workflow(t, "same-name") // no conflict across installs
	a.run(t, wa.ID)

	wfs, err := c.s.ListWorkflows(c.ctx)
	noErr(t, err)
	if len(wfs) != 1 || wfs[0].ID != wc.ID {
		t.Fatalf("install c sees %v, want only its own workflow", wfs)
	}
	runs, err := c.s.ListRuns(c.ctx, 0)
	noErr(t, err)
	if len(runs) != 0 {
		t.Fatalf("install c sees runs of a: %v", runs)
	}
	_, err = c.s.GetWorkflowByName(c.ctx, "only-in-a")
	wantErr(t, err, orkstate.ErrNotFound)
}

func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t)
	schema := testdb.SchemaName(t)
	t.Cleanup(func() { testdb.Drop(t, pool, schema) })

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = pgstore.Migrate(context.Background(), pool, schema) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Migrate %d: %v", i, err)
		}
	}
	s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	noErr(t, err)
	_, err = s.CreateWorkflow(context.Background(), orkstate.NewWorkflow{Name: "w"})
	noErr(t, err)
}

func TestDeleteWorkflowCascades(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "doomed")
	keep := b.workflow(t, "kept")
	_, err := b.s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}})
	noErr(t, err)
	snap, err := b.s.CreateSnapshot(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}})
	noErr(t, err)
	noErr(t, b.s.SetCurrentSnapshot(b.ctx, w.ID, snap.ID))
	r := b.run(t, w.ID)
	tid := b.task(t, r.ID, 0, "a", "running", nil, 0)
	noErr(t, b.s.AppendTaskLog(b.ctx, tid, "hello"))
	_, err = b.s.CreateDeferredJobs(b.ctx, tid, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "j1"}})
	noErr(t, err)
	kr := b.run(t, keep.ID)
	b.task(t, kr.ID, 0, "k", "pending", nil, 0)
	b.exec(t, `update {ork}.tasks set timeout_seconds = 30, timeout_at = now() + interval '30 seconds' where id = $1`, tid)
	b.exec(t, `select {api}._queue_sync(array(select id from {ork}.tasks))`)
	if n := b.count(t, `select (select count(*) from {ork}.task_queue) + (select count(*) from {ork}.task_deadlines)`); n != 2 {
		t.Fatalf("task_queue and task_deadlines have %d rows before the delete, want 2 (k ready, a's deadline)", n)
	}

	noErr(t, b.s.DeleteWorkflow(b.ctx, w.ID))
	for _, table := range []string{"workflow_tasks", "workflow_snapshots", "runs", "tasks", "task_logs", "task_log_sizes", "deferred_jobs", "task_queue", "task_deadlines"} {
		want := map[string]int{"runs": 1, "tasks": 1, "task_queue": 1}[table]
		if n := b.count(t, `select count(*) from {ork}.`+table); n != want {
			t.Errorf("%s: %d rows after delete, want %d", table, n, want)
		}
	}
	_, err = b.s.GetWorkflow(b.ctx, w.ID)
	wantErr(t, err, orkstate.ErrNotFound)
	wantErr(t, b.s.DeleteWorkflow(b.ctx, w.ID), orkstate.ErrNotFound)
}

func TestWorkflows(t *testing.T) {
	t.Parallel()
	b := setup(t)

	w, err := b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{
		Name: `it's "quoted"`, Description: "d", JobName: "job", Region: "eu", Project: "p",
		ExecutorType: "cloudrun", TaskParams: json.RawMessage(`{"task_count": 2}`), Schedule: "*/5 * * * *",
	})
	noErr(t, err)
	if !w.ScheduleEnabled || w.NextScheduledAt == nil || !w.NextScheduledAt.After(time.Now()) {
		t.Fatalf("schedule not enabled with a future next fire time: %+v", w)
	}
	if string(w.TaskParams) != `{"task_count": 2}` || w.JobName != "job" || w.CreatedAt.IsZero() {
		t.Fatalf("stored workflow = %+v", w)
	}
	got, err := b.s.GetWorkflowByName(b.ctx, `it's "quoted"`)
	noErr(t, err)
	if got.ID != w.ID {
		t.Fatalf("GetWorkflowByName id = %d, want %d", got.ID, w.ID)
	}

	_, err = b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: `it's "quoted"`})
	wantErr(t, err, orkstate.ErrConflict)
	_, err = b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: " "})
	wantValidation(t, err, "name")
	_, err = b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "x", TaskParams: json.RawMessage(`{`)})
	wantValidation(t, err, "task_params")
	_, err = b.s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "x", Schedule: "every tuesday"})
	wantValidation(t, err, "schedule")
	_, err = b.s.GetWorkflowByName(b.ctx, "x")
	wantErr(t, err, orkstate.ErrNotFound) // nothing was created by the refused calls
	_, err = b.s.GetWorkflowByName(b.ctx, "")
	wantValidation(t, err, "name")
	_, err = b.s.GetWorkflow(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)

	plain := b.workflow(t, "a-plain")
	if plain.TaskParams != nil || plain.ScheduleEnabled || plain.NextScheduledAt != nil || plain.CurrentSnapshotID != nil {
		t.Fatalf("plain workflow = %+v", plain)
	}
	byIDs, err := b.s.GetWorkflowsByIDs(b.ctx, []int64{plain.ID, 424242, w.ID})
	noErr(t, err)
	if len(byIDs) != 2 || byIDs[0].ID != w.ID || byIDs[1].ID != plain.ID {
		t.Fatalf("GetWorkflowsByIDs = %v", byIDs)
	}
	empty, err := b.s.GetWorkflowsByIDs(b.ctx, nil)
	noErr(t, err)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("GetWorkflowsByIDs(nil) = %#v, want empty", empty)
	}
	all, err := b.s.ListWorkflows(b.ctx)
	noErr(t, err)
	if len(all) != 2 || all[0].Name != "a-plain" {
		t.Fatalf("ListWorkflows not ordered by name: %v", all)
	}
}

func TestListWorkflowsPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []string{"100% done", "100x done", "a_b", "axb", `back\slash`, `backxslash`, "Alpha", "beta"} {
		b.workflow(t, n)
	}
	names := func(p *orkstate.WorkflowPage) string {
		var ns []string
		for _, w := range p.Workflows {
			ns = append(ns, w.Name)
		}
		return fmt.Sprintf("%d:%s", p.Total, strings.Join(ns, ","))
	}
	// Page order is the database's name order, whatever its collation: ListWorkflows' order.
	all, err := b.s.ListWorkflows(b.ctx)
	noErr(t, err)
	var withA []string
	for _, w := range all {
		if strings.Contains(strings.ToLower(w.Name), "a") {
			withA = append(withA, w.Name)
		}
	}
	for _, c := range []struct {
		q    orkstate.WorkflowListQuery
		want string
	}{
		{orkstate.WorkflowListQuery{Search: "%"}, "1:100% done"},
		{orkstate.WorkflowListQuery{Search: "_"}, "1:a_b"},
		{orkstate.WorkflowListQuery{Search: `\`}, `1:back\slash`},
		{orkstate.WorkflowListQuery{Search: "ALPHA"}, "1:Alpha"},
		{orkstate.WorkflowListQuery{Search: "a", Limit: 2}, "6:" + strings.Join(withA[:2], ",")},
		{orkstate.WorkflowListQuery{Search: "a", Limit: 2, Offset: 5}, "6:" + withA[5]},
		{orkstate.WorkflowListQuery{Offset: 100}, "8:"},
		{orkstate.WorkflowListQuery{Limit: 5000}, fmt.Sprintf("8:%s", names(&orkstate.WorkflowPage{Workflows: all})[2:])},
	} {
		p, err := b.s.ListWorkflowsPage(b.ctx, c.q)
		noErr(t, err)
		if got := names(p); got != c.want {
			t.Errorf("ListWorkflowsPage(%+v) = %s, want %s", c.q, got, c.want)
		}
	}
	_, err = b.s.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: -1})
	wantValidation(t, err, "limit")
	_, err = b.s.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Offset: -1})
	wantValidation(t, err, "offset")
}

func TestWorkflowTasksAndSnapshots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "dag")
	other := b.workflow(t, "other")
	dag := []orkstate.TaskSpec{
		{Name: "extract", ExecutorType: "cloudrun", Params: json.RawMessage(`{"a":1}`), MaxRetries: 2},
		{Name: "load", DependsOn: []string{"extract"}, Signature: json.RawMessage(`"sig"`), TimeoutSeconds: 30},
	}
	got, err := b.s.ReplaceWorkflowTasks(b.ctx, w.ID, dag)
	noErr(t, err)
	if len(got) != 2 || got[0].Name != "extract" || got[0].TaskIndex != 0 || got[1].Name != "load" ||
		got[1].DependsOn[0] != "extract" || got[0].MaxRetries != 2 || got[1].TimeoutSeconds != 30 ||
		string(got[1].Signature) != `"sig"` || string(got[0].Params) != `{"a": 1}` || got[0].DependsOn == nil {
		t.Fatalf("ReplaceWorkflowTasks = %+v", got)
	}

	_, err = b.s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a", DependsOn: []string{"b"}}, {Name: "b", DependsOn: []string{"a"}}})
	wantValidation(t, err, "depends_on")
	_, err = b.s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a", Params: json.RawMessage("nope")}})
	wantValidation(t, err, "params")
	_, err = b.s.ReplaceWorkflowTasks(b.ctx, 999999, dag)
	wantErr(t, err, orkstate.ErrNotFound)
	listed, err := b.s.ListWorkflowTasks(b.ctx, w.ID)
	noErr(t, err)
	if len(listed) != 2 {
		t.Fatalf("a refused replacement changed the DAG: %+v", listed)
	}
	replaced, err := b.s.ReplaceWorkflowTasks(b.ctx, w.ID, dag[:1])
	noErr(t, err)
	if len(replaced) != 1 {
		t.Fatalf("replacement kept old tasks: %+v", replaced)
	}
	_, err = b.s.ListWorkflowTasks(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
	none, err := b.s.ListWorkflowTasks(b.ctx, other.ID)
	noErr(t, err)
	if len(none) != 0 {
		t.Fatalf("ListWorkflowTasks(other) = %v", none)
	}

	s1, err := b.s.CreateSnapshot(b.ctx, w.ID, dag)
	noErr(t, err)
	s2, err := b.s.CreateSnapshot(b.ctx, w.ID, dag)
	noErr(t, err)
	if s1.ID != s2.ID || s1.ContentHash == "" || len(s1.Tasks) != 2 || s1.Tasks[1].DependsOn[0] != "extract" {
		t.Fatalf("snapshots of one DAG: %+v / %+v", s1, s2)
	}
	s3, err := b.s.CreateSnapshot(b.ctx, w.ID, dag[:1])
	noErr(t, err)
	if s3.ID == s1.ID {
		t.Fatal("a different DAG got the same snapshot")
	}
	got1, err := b.s.GetSnapshot(b.ctx, s1.ID)
	noErr(t, err)
	if got1.ContentHash != s1.ContentHash || string(got1.Tasks[0].Params) != `{"a": 1}` {
		t.Fatalf("GetSnapshot = %+v", got1)
	}
	_, err = b.s.GetSnapshot(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
	_, err = b.s.CreateSnapshot(b.ctx, 999999, dag)
	wantErr(t, err, orkstate.ErrNotFound)
	_, err = b.s.CreateSnapshot(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a", DependsOn: []string{"ghost"}}})
	wantValidation(t, err, "depends_on")

	wantErr(t, b.s.SetCurrentSnapshot(b.ctx, other.ID, s1.ID), orkstate.ErrNotFound)
	wantErr(t, b.s.SetCurrentSnapshot(b.ctx, w.ID, 999999), orkstate.ErrNotFound)
	r0 := b.run(t, w.ID)
	noErr(t, b.s.SetCurrentSnapshot(b.ctx, w.ID, s1.ID))
	r1 := b.run(t, w.ID)
	if r0.SnapshotID != nil || r1.SnapshotID == nil || *r1.SnapshotID != s1.ID {
		t.Fatalf("runs captured snapshots %v and %v, want nil and %d", r0.SnapshotID, r1.SnapshotID, s1.ID)
	}
}

func TestRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w1 := b.workflow(t, "etl_daily")
	w2 := b.workflow(t, "etlxdaily")
	_, err := b.s.CreateRun(b.ctx, 999999, "x")
	wantErr(t, err, orkstate.ErrNotFound)

	r1 := b.run(t, w1.ID)
	r2 := b.run(t, w2.ID)
	r3 := b.run(t, w1.ID)
	if r1.Status != orkstate.RunPending || r1.TriggeredBy != "test" || r1.StartedAt != nil {
		t.Fatalf("new run = %+v", r1)
	}
	b.task(t, r3.ID, 0, "a", "success", nil, 0)
	b.task(t, r3.ID, 1, "b", "running", []string{"a"}, 0)
	b.task(t, r3.ID, 2, "c", "pending", []string{"b"}, 1)
	noErr(t, b.s.UpdateRunStatus(b.ctx, r3.ID, orkstate.RunRunning, ""))

	runs, err := b.s.ListRuns(b.ctx, w1.ID)
	noErr(t, err)
	if len(runs) != 2 || runs[0].ID != r3.ID || runs[1].ID != r1.ID {
		t.Fatalf("ListRuns(w1) = %v, want newest first", runs)
	}
	_, err = b.s.ListRuns(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
	all, err := b.s.ListRuns(b.ctx, 0)
	noErr(t, err)
	if len(all) != 3 {
		t.Fatalf("ListRuns(0) = %v", all)
	}
	pending, err := b.s.PendingRuns(b.ctx, 10)
	noErr(t, err)
	if len(pending) != 2 || pending[0].ID != r1.ID || pending[1].ID != r2.ID {
		t.Fatalf("PendingRuns = %v, want oldest first", pending)
	}
	_, err = b.s.PendingRuns(b.ctx, 0)
	wantValidation(t, err, "limit")

	page, err := b.s.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: "ETL_"})
	noErr(t, err)
	if page.Total != 2 || len(page.Runs) != 2 || page.Runs[0].ID != r3.ID || page.Runs[0].WorkflowName != "etl_daily" {
		t.Fatalf("ListRunsPage(etl_) = %+v", page)
	}
	want := orkstate.TaskStats{Total: 3, Pending: 1, Running: 1, Success: 1}
	if page.Runs[0].Stats != want || page.Runs[1].Stats != (orkstate.TaskStats{}) {
		t.Fatalf("stats = %+v / %+v, want %+v", page.Runs[0].Stats, page.Runs[1].Stats, want)
	}
	page, err = b.s.ListRunsPage(b.ctx, orkstate.RunListQuery{Status: orkstate.RunPending, Limit: 1, Offset: 1})
	noErr(t, err)
	if page.Total != 2 || len(page.Runs) != 1 || page.Runs[0].ID != r1.ID {
		t.Fatalf("ListRunsPage(pending, 1, 1) = %+v", page)
	}
	_, err = b.s.ListRunsPage(b.ctx, orkstate.RunListQuery{Status: "bogus"})
	wantValidation(t, err, "run status")
	_, err = b.s.ListRunsPage(b.ctx, orkstate.RunListQuery{Limit: -5})
	wantValidation(t, err, "limit")

	stats, err := b.s.RunTaskStats(b.ctx, r3.ID)
	noErr(t, err)
	if *stats != want {
		t.Fatalf("RunTaskStats = %+v, want %+v", stats, want)
	}
	_, err = b.s.RunTaskStats(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
}

func TestUpdateRunStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "w")
	r := b.run(t, w.ID)

	wantValidation(t, b.s.UpdateRunStatus(b.ctx, r.ID, "bogus", ""), "run status")
	wantErr(t, b.s.UpdateRunStatus(b.ctx, 999999, orkstate.RunRunning, ""), orkstate.ErrNotFound)

	noErr(t, b.s.UpdateRunStatus(b.ctx, r.ID, orkstate.RunRunning, ""))
	got, err := b.s.GetRun(b.ctx, r.ID)
	noErr(t, err)
	if got.Status != orkstate.RunRunning || got.StartedAt == nil {
		t.Fatalf("after pending → running: %+v", got)
	}
	wantErr(t, b.s.UpdateRunStatus(b.ctx, r.ID, orkstate.RunPending, ""), orkstate.ErrInvalidTransition)
	noErr(t, b.s.UpdateRunStatus(b.ctx, r.ID, orkstate.RunPaused, ""))
	noErr(t, b.s.UpdateRunStatus(b.ctx, r.ID, orkstate.RunRunning, ""))
	conn := listen(t, b.s, "_runs")
	noErr(t, b.s.UpdateRunStatus(b.ctx, r.ID, orkstate.RunFailed, "operator says no"))
	waitCtx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(waitCtx)
	noErr(t, err)
	var payload struct {
		Runs []struct {
			ID     int64
			Status string
		}
		More bool
	}
	noErr(t, json.Unmarshal([]byte(n.Payload), &payload))
	if len(payload.Runs) != 1 || payload.Runs[0].ID != r.ID || payload.Runs[0].Status != "failed" || payload.More {
		t.Fatalf("runs notification payload = %s, want run %d failed", n.Payload, r.ID)
	}
	got, err = b.s.GetRun(b.ctx, r.ID)
	noErr(t, err)
	if got.Status != orkstate.RunFailed || got.FinishedAt == nil || got.Error != "operator says no" {
		t.Fatalf("after running → failed: %+v", got)
	}
	for _, st := range orkstate.RunStatuses {
		wantErr(t, b.s.UpdateRunStatus(b.ctx, r.ID, st, ""), orkstate.ErrInvalidTransition)
	}

	c := b.run(t, w.ID)
	noErr(t, b.s.UpdateRunStatus(b.ctx, c.ID, orkstate.RunCancelled, "stop"))
	got, err = b.s.GetRun(b.ctx, c.ID)
	noErr(t, err)
	if got.Status != orkstate.RunCancelled || got.Error != "stop" {
		t.Fatalf("after cancel: %+v", got)
	}

	// Inside a caller's transaction a rollback undoes the change.
	d := b.run(t, w.ID)
	tx, err := b.s.Pool().Begin(b.ctx)
	noErr(t, err)
	noErr(t, b.s.WithTx(tx).UpdateRunStatus(b.ctx, d.ID, orkstate.RunSuccess, ""))
	noErr(t, tx.Rollback(b.ctx))
	got, err = b.s.GetRun(b.ctx, d.ID)
	noErr(t, err)
	if got.Status != orkstate.RunPending {
		t.Fatalf("rolled-back update left status %s", got.Status)
	}
}

func TestTaskQueries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "tasks")
	r := b.run(t, w.ID)
	up := b.task(t, r.ID, 0, "up", "success", nil, 0)
	up2 := b.task(t, r.ID, 1, "up2", "success", nil, 0)
	ready := b.task(t, r.ID, 2, "ready", "pending", []string{"up", "up2"}, 0)
	blocked := b.task(t, r.ID, 3, "blocked", "pending", []string{"ready"}, 1)
	later := b.task(t, r.ID, 4, "later", "pending", nil, 0)
	b.exec(t, `update {ork}.tasks set retry_at = now() + interval '1 hour' where id = $1`, later)
	due := b.task(t, r.ID, 5, "due", "pending", nil, 0)
	b.exec(t, `update {ork}.tasks set retry_at = now() - interval '1 second' where id = $1`, due)
	disp := b.task(t, r.ID, 6, "disp", "dispatched", nil, 0)
	runn := b.task(t, r.ID, 7, "runn", "running", nil, 0)
	// These rows were written directly, not through the functions: index them in
	// task_queue as the functions would have.
	b.exec(t, `select {api}._queue_sync(array(select id from {ork}.tasks where run_id = $1))`, r.ID)

	ids := func(ts []orkstate.Task) []int64 {
		var out []int64
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	check := func(name string, got []orkstate.Task, err error, want ...int64) {
		t.Helper()
		noErr(t, err)
		if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
			t.Fatalf("%s = %v, want %v", name, ids(got), want)
		}
	}
	ts, err := b.s.DispatchableTasks(b.ctx, 10)
	check("DispatchableTasks", ts, err, ready, due)
	ts, err = b.s.PendingTasks(b.ctx, 10)
	check("PendingTasks", ts, err, ready, blocked, later, due)
	ts, err = b.s.PendingTasks(b.ctx, 2)
	check("PendingTasks(2)", ts, err, ready, blocked)
	ts, err = b.s.RunningTasks(b.ctx, 10)
	check("RunningTasks", ts, err, disp, runn)
	ts, err = b.s.ListTasks(b.ctx, r.ID)
	check("ListTasks", ts, err, up, up2, ready, blocked, later, due, disp, runn)
	for _, f := range []func(context.Context, int) ([]orkstate.Task, error){b.s.DispatchableTasks, b.s.PendingTasks, b.s.RunningTasks} {
		_, err = f(b.ctx, 0)
		wantValidation(t, err, "limit")
		_, err = f(b.ctx, -1)
		wantValidation(t, err, "limit")
	}
	_, err = b.s.ListTasks(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)

	task, err := b.s.GetTask(b.ctx, blocked)
	noErr(t, err)
	if task.TaskName != "blocked" || task.Status != orkstate.TaskPending || task.UnmetDeps != 1 || task.DependsOn[0] != "ready" || task.RunID != r.ID {
		t.Fatalf("GetTask = %+v", task)
	}
	_, err = b.s.GetTask(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)

	noErr(t, b.s.SetTaskOutput(b.ctx, up, json.RawMessage(`{"rows": 3}`)))
	wantValidation(t, b.s.SetTaskOutput(b.ctx, up, json.RawMessage(`{rows}`)), "output")
	wantErr(t, b.s.SetTaskOutput(b.ctx, 999999, json.RawMessage(`1`)), orkstate.ErrNotFound)
	outs, err := b.s.UpstreamOutputs(b.ctx, ready)
	noErr(t, err)
	if len(outs) != 2 || string(outs["up"]) != `{"rows": 3}` || outs["up2"] != nil {
		t.Fatalf("UpstreamOutputs = %v", outs)
	}
	outs, err = b.s.UpstreamOutputs(b.ctx, up)
	noErr(t, err)
	if len(outs) != 0 {
		t.Fatalf("UpstreamOutputs of a root = %v", outs)
	}
	_, err = b.s.UpstreamOutputs(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)

	b.exec(t, `update {ork}.tasks set attempts = 2, max_retries = 3, timeout_seconds = 60 where id = $1`, later)
	info, err := b.s.TaskRetryInfo(b.ctx, later)
	noErr(t, err)
	if info.Attempts != 2 || info.MaxRetries != 3 || info.TimeoutSeconds != 60 || info.RetryAt == nil {
		t.Fatalf("TaskRetryInfo = %+v", info)
	}
	_, err = b.s.TaskRetryInfo(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
	ident, err := b.s.TaskIdentity(b.ctx, ready)
	noErr(t, err)
	if *ident != (orkstate.TaskIdentity{TaskID: ready, RunID: r.ID, TaskIndex: 2, TaskName: "ready", WorkflowID: w.ID, WorkflowName: "tasks"}) {
		t.Fatalf("TaskIdentity = %+v", ident)
	}
	_, err = b.s.TaskIdentity(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
}

func TestTaskLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.run(t, b.workflow(t, "logs").ID)
	id := b.task(t, r.ID, 0, "a", "running", nil, 0)

	log, err := b.s.TaskLog(b.ctx, id)
	noErr(t, err)
	if log != "" {
		t.Fatalf("empty log = %q", log)
	}
	noErr(t, b.s.AppendTaskLog(b.ctx, id, "one\n"))
	noErr(t, b.s.AppendTaskLog(b.ctx, id, "twø\n"))
	log, err = b.s.TaskLog(b.ctx, id)
	noErr(t, err)
	if log != "one\ntwø\n" {
		t.Fatalf("TaskLog = %q", log)
	}
	wantErr(t, b.s.AppendTaskLog(b.ctx, 999999, "x"), orkstate.ErrNotFound)
	_, err = b.s.TaskLog(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
	wantValidation(t, b.s.AppendTaskLog(b.ctx, id, "nul\x00"), "chunk")

	used := len("one\ntwø\n")
	noErr(t, b.s.AppendTaskLog(b.ctx, id, strings.Repeat("x", orkstate.MaxTaskLogBytes-used-1)))
	wantValidation(t, b.s.AppendTaskLog(b.ctx, id, "yy"), "chunk")
	noErr(t, b.s.AppendTaskLog(b.ctx, id, "z"))
	wantValidation(t, b.s.AppendTaskLog(b.ctx, id, "z"), "chunk")
	log, err = b.s.TaskLog(b.ctx, id)
	noErr(t, err)
	if len(log) != orkstate.MaxTaskLogBytes || !strings.HasSuffix(log, "xz") {
		t.Fatalf("log of %d bytes ending %q, want exactly the cap ending xz", len(log), log[len(log)-2:])
	}

	other := b.task(t, r.ID, 1, "b", "running", nil, 0)
	wantValidation(t, b.s.AppendTaskLog(b.ctx, other, strings.Repeat("x", orkstate.MaxTaskLogBytes+1)), "chunk")
	if n := b.count(t, `select count(*) from {ork}.task_logs where task_id = $1`, other); n != 0 {
		t.Fatalf("a refused append left %d rows", n)
	}
}

func TestSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "sched")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	noErr(t, b.s.SetSchedule(b.ctx, w.ID, "30 * * * *", true, now))
	got, err := b.s.GetWorkflow(b.ctx, w.ID)
	noErr(t, err)
	if got.Schedule != "30 * * * *" || !got.ScheduleEnabled || got.NextScheduledAt == nil ||
		!got.NextScheduledAt.Equal(time.Date(2030, 1, 2, 3, 30, 0, 0, time.UTC)) {
		t.Fatalf("after SetSchedule(5 fields): %+v", got)
	}
	noErr(t, b.s.SetSchedule(b.ctx, w.ID, "15 0 * * * *", true, now)) // seconds first
	got, err = b.s.GetWorkflow(b.ctx, w.ID)
	noErr(t, err)
	if !got.NextScheduledAt.Equal(time.Date(2030, 1, 2, 4, 0, 15, 0, time.UTC)) {
		t.Fatalf("next after SetSchedule(6 fields) = %v", got.NextScheduledAt)
	}
	wantValidation(t, b.s.SetSchedule(b.ctx, w.ID, "61 * * * *", true, now), "schedule")
	wantValidation(t, b.s.SetSchedule(b.ctx, w.ID, "nope", false, now), "schedule")
	wantErr(t, b.s.SetSchedule(b.ctx, 999999, "@hourly", true, now), orkstate.ErrNotFound)
	got, err = b.s.GetWorkflow(b.ctx, w.ID)
	noErr(t, err)
	if got.Schedule != "15 0 * * * *" {
		t.Fatalf("a refused SetSchedule changed the schedule to %q", got.Schedule)
	}

	due, err := b.s.DueWorkflows(b.ctx, now.Add(time.Hour), 10)
	noErr(t, err)
	if len(due) != 1 || due[0].ID != w.ID {
		t.Fatalf("DueWorkflows = %v", due)
	}
	due, err = b.s.DueWorkflows(b.ctx, now, 10)
	noErr(t, err)
	if len(due) != 0 {
		t.Fatalf("DueWorkflows before the fire time = %v", due)
	}
	_, err = b.s.DueWorkflows(b.ctx, now, 0)
	wantValidation(t, err, "limit")

	last, next := now, now.Add(time.Minute)
	noErr(t, b.s.SetScheduleTimes(b.ctx, w.ID, &last, &next))
	got, err = b.s.GetWorkflow(b.ctx, w.ID)
	noErr(t, err)
	if !got.LastScheduledAt.Equal(last) || !got.NextScheduledAt.Equal(next) {
		t.Fatalf("after SetScheduleTimes: %v %v", got.LastScheduledAt, got.NextScheduledAt)
	}
	wantErr(t, b.s.SetScheduleTimes(b.ctx, 999999, nil, nil), orkstate.ErrNotFound)

	noErr(t, b.s.SetSchedule(b.ctx, w.ID, "@hourly", false, now))
	got, err = b.s.GetWorkflow(b.ctx, w.ID)
	noErr(t, err)
	if got.ScheduleEnabled || got.NextScheduledAt != nil || got.Schedule != "@hourly" {
		t.Fatalf("after disabling: %+v", got)
	}
	due, err = b.s.DueWorkflows(b.ctx, now.Add(24*time.Hour), 10)
	noErr(t, err)
	if len(due) != 0 {
		t.Fatalf("a disabled schedule is due: %v", due)
	}
	noErr(t, b.s.SetSchedule(b.ctx, w.ID, "", true, now))
	got, err = b.s.GetWorkflow(b.ctx, w.ID)
	noErr(t, err)
	if got.ScheduleEnabled || got.NextScheduledAt != nil || got.Schedule != "" {
		t.Fatalf("after clearing: %+v", got)
	}
}

func TestDeferredJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.run(t, b.workflow(t, "deferred").ID)
	id := b.task(t, r.ID, 0, "a", "running", nil, 0)
	done := b.task(t, r.ID, 1, "b", "success", nil, 0)

	conn := listen(t, b.s, "_deferred_jobs")

	jobs, err := b.s.CreateDeferredJobs(b.ctx, id, []orkstate.NewDeferredJob{
		{ServiceType: "bigquery", JobID: "job-1", JobData: json.RawMessage(`{"location":"EU"}`)},
		{ServiceType: "http", JobID: "job-2"},
	})
	noErr(t, err)
	if len(jobs) != 2 || jobs[0].JobID != "job-1" || jobs[1].JobID != "job-2" || jobs[0].ID >= jobs[1].ID ||
		jobs[0].Status != orkstate.DeferredPending || string(jobs[0].JobData) != `{"location": "EU"}` ||
		jobs[1].JobData != nil || jobs[0].NextPollAt == nil || jobs[0].TaskID != id {
		t.Fatalf("CreateDeferredJobs = %+v", jobs)
	}
	waitCtx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if _, err := conn.Conn().WaitForNotification(waitCtx); err != nil {
		t.Fatalf("no %s_deferred_jobs notification: %v", b.s.Schema(), err)
	}

	_, err = b.s.CreateDeferredJobs(b.ctx, done, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "x"}})
	wantErr(t, err, orkstate.ErrInvalidTransition)
	_, err = b.s.CreateDeferredJobs(b.ctx, 999999, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "x"}})
	wantErr(t, err, orkstate.ErrNotFound)
	_, err = b.s.CreateDeferredJobs(b.ctx, id, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "ok"}, {ServiceType: "", JobID: "x"}})
	wantValidation(t, err, "service_type")
	_, err = b.s.CreateDeferredJobs(b.ctx, id, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "x", JobData: json.RawMessage(`{`)}})
	wantValidation(t, err, "job_data")

	forTask, err := b.s.DeferredJobsForTask(b.ctx, id)
	noErr(t, err)
	if len(forTask) != 2 {
		t.Fatalf("refused creates added jobs: %+v", forTask)
	}
	none, err := b.s.DeferredJobsForTask(b.ctx, done)
	noErr(t, err)
	if len(none) != 0 {
		t.Fatalf("DeferredJobsForTask(done) = %v", none)
	}
	_, err = b.s.DeferredJobsForTask(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)

	noErr(t, b.s.MarkDeferredJobPolled(b.ctx, jobs[0].ID))
	j, err := b.s.GetDeferredJob(b.ctx, jobs[0].ID)
	noErr(t, err)
	if j.LastPolledAt == nil {
		t.Fatalf("MarkDeferredJobPolled did not set last_polled_at: %+v", j)
	}
	_, err = b.s.GetDeferredJob(b.ctx, 999999)
	wantErr(t, err, orkstate.ErrNotFound)
	wantErr(t, b.s.MarkDeferredJobPolled(b.ctx, 999999), orkstate.ErrNotFound)

	b.exec(t, `update {ork}.deferred_jobs set status = 'completed', finished_at = now() where id = $1`, jobs[0].ID)
	wantErr(t, b.s.MarkDeferredJobPolled(b.ctx, jobs[0].ID), orkstate.ErrInvalidTransition)
	pending, err := b.s.PendingDeferredJobs(b.ctx, 10)
	noErr(t, err)
	if len(pending) != 1 || pending[0].ID != jobs[1].ID {
		t.Fatalf("PendingDeferredJobs = %+v", pending)
	}
	_, err = b.s.PendingDeferredJobs(b.ctx, -1)
	wantValidation(t, err, "limit")
}

// TestSimpleProtocol runs the plain statements through the simple query protocol,
// as behind PgBouncer in transaction pooling mode.
func TestSimpleProtocol(t *testing.T) {
	t.Parallel()
	_, schema := testdb.Schema(t)
	cfg, err := pgxpool.ParseConfig(testdb.URL())
	noErr(t, err)
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	noErr(t, err)
	t.Cleanup(pool.Close)
	s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	noErr(t, err)
	b := &testBundle{ctx: context.Background(), s: s}

	w, err := s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "simple", TaskParams: json.RawMessage(`{"x":1}`), Schedule: "@daily"})
	noErr(t, err)
	snap, err := s.CreateSnapshot(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}})
	noErr(t, err)
	noErr(t, s.SetCurrentSnapshot(b.ctx, w.ID, snap.ID))
	_, err = s.ReplaceWorkflowTasks(b.ctx, w.ID, snap.Tasks)
	noErr(t, err)
	r := b.run(t, w.ID)
	id := b.task(t, r.ID, 0, "a", "running", nil, 0)
	noErr(t, s.AppendTaskLog(b.ctx, id, "log"))
	_, err = s.CreateDeferredJobs(b.ctx, id, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "1", JobData: json.RawMessage(`{}`)}})
	noErr(t, err)
	page, err := s.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: "simp"})
	noErr(t, err)
	if page.Total != 1 || page.Runs[0].Stats.Running != 1 {
		t.Fatalf("ListRunsPage = %+v", page)
	}
	byIDs, err := s.GetWorkflowsByIDs(b.ctx, []int64{w.ID})
	noErr(t, err)
	if len(byIDs) != 1 || string(byIDs[0].TaskParams) != `{"x": 1}` {
		t.Fatalf("GetWorkflowsByIDs = %+v", byIDs)
	}
	noErr(t, s.UpdateRunStatus(b.ctx, r.ID, orkstate.RunSuccess, ""))
}

// Migrations 002 and 003 roll back and forward again without losing a task's place:
// the queue, the leases and the deadlines are rebuilt from the tasks on the way up.
func TestTaskQueueMigrationKeepsWork(t *testing.T) {
	for _, to := range []int32{2, 1} {
		t.Run(fmt.Sprintf("down to %d", to), func(t *testing.T) {
			t.Parallel()
			b := setupFresh(t)
			schema, pool := b.s.Schema(), b.s.Pool()
			w := b.workflow(t, "queue")
			_, err := b.s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{
				{Name: "a", TimeoutSeconds: 60}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c"}})
			noErr(t, err)
			r := b.run(t, w.ID)
			_, err = b.s.StartPendingRuns(b.ctx, 1)
			noErr(t, err)
			claimed, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "m", Limit: 1})
			noErr(t, err)
			if len(claimed) != 1 || claimed[0].TaskName != "a" {
				t.Fatalf("claimed %v, want a", claimed)
			}

			noErr(t, pgstore.MigrateTo(b.ctx, pool, schema, to))
			if n := b.count(t, `select count(*) from pg_class where relname = 'task_leases' and relnamespace = $1::regnamespace`, schema); n != 0 {
				t.Fatalf("task_leases survived the rollback to version %d", to)
			}
			noErr(t, pgstore.Migrate(b.ctx, pool, schema))

			// a is still dispatched to m (leased, with its deadline), c is ready, b waits for a.
			if bad := queueMismatches(t, b.s); len(bad) > 0 {
				t.Fatalf("after the round trip: %v", bad)
			}
			if n := b.count(t, `select count(*) from {ork}.task_queue`); n != 1 {
				t.Fatalf("task_queue has %d rows after the round trip, want 1 (c ready)", n)
			}
			next, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "m", Limit: 10})
			noErr(t, err)
			if len(next) != 1 || next[0].TaskName != "c" {
				t.Fatalf("claimed %v after the round trip, want c", next)
			}
			_, err = b.s.UpdateTaskStatus(b.ctx, orkstate.TaskUpdate{TaskID: claimed[0].ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt})
			noErr(t, err)
			last, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "m", Limit: 10})
			noErr(t, err)
			if len(last) != 1 || last[0].TaskName != "b" || last[0].RunID != r.ID {
				t.Fatalf("claimed %v after a succeeded, want b", last)
			}
		})
	}
}

// The README's least-privilege grants are enough to run a whole DAG through the
// functions and the Store as that role.
func TestLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	role := b.s.Schema() + "_app"
	b.exec(t, "create role "+role)
	t.Cleanup(func() { dropRole(b, role) })
	for _, q := range readmeGrants(t, b.s.Schema(), role) {
		b.exec(t, q)
	}
	runDAGAs(t, b, role)
}

// Migration 008 rolls back and forward again without losing a join's count: down, the
// count kept apart goes back to the task row (what version 7's package reads); up
// again, that row is counted where it is until the join is ready.
func TestFanInMigrationKeepsCounts(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	schema, pool := b.s.Schema(), b.s.Pool()
	w := b.workflow(t, "fanin")
	_, err := b.s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{
		{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "join", DependsOn: []string{"a", "b", "c"}}})
	noErr(t, err)
	r := b.run(t, w.ID)
	_, err = b.s.StartPendingRuns(b.ctx, 1)
	noErr(t, err)
	claimed, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "m", Limit: 10})
	noErr(t, err)
	if len(claimed) != 3 {
		t.Fatalf("claimed %v, want a, b, c", claimed)
	}
	id := map[string]int64{}
	tasks, err := b.s.ListTasks(b.ctx, r.ID)
	noErr(t, err)
	for _, k := range tasks {
		id[k.TaskName] = k.ID
	}
	success := func(name string) {
		t.Helper()
		out, err := b.s.SetTaskStates(b.ctx, []orkstate.TaskUpdate{{TaskID: id[name], Status: orkstate.TaskSuccess}})
		noErr(t, err)
		if out[0].Outcome != orkstate.OutcomeApplied {
			t.Fatalf("%s success: %+v", name, out[0])
		}
	}
	unmet := func(step string, want int) {
		t.Helper()
		k, err := b.s.GetTask(b.ctx, id["join"])
		noErr(t, err)
		if k.UnmetDeps != want {
			t.Fatalf("after %s: join UnmetDeps = %d, want %d", step, k.UnmetDeps, want)
		}
		if bad := queueMismatches(t, b.s); len(bad) > 0 {
			t.Fatalf("after %s: %v", step, bad)
		}
	}
	success("a")
	unmet("a success", 2)

	noErr(t, pgstore.MigrateTo(b.ctx, pool, schema, 7))
	if n := b.count(t, `select unmet_deps from {ork}.tasks where id = $1`, id["join"]); n != 2 {
		t.Fatalf("after the rollback the join's row counts %d, want 2", n)
	}
	noErr(t, pgstore.Migrate(b.ctx, pool, schema))
	unmet("the round trip", 2)
	success("b")
	unmet("b success", 1)
	success("c")
	unmet("c success", 0)
	next, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "m", Limit: 10})
	noErr(t, err)
	if len(next) != 1 || next[0].TaskName != "join" {
		t.Fatalf("claimed %v, want the join", next)
	}
}
