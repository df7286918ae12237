package storecopy_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/sqlitecompat"
	"github.com/orkstate/orkstate/storecopy"
)

func open(t *testing.T) *sqlitecompat.Store {
	t.Helper()
	s, err := sqlitecompat.Open(context.Background(), filepath.Join(t.TempDir(), "ork.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestCopy copies a SQLite store into another SQLite file and into PostgreSQL (the
// way a local setup grows into a production one).
func TestCopy(t *testing.T) {
	t.Parallel()
	for name, newDst := range map[string]func(*testing.T) orkstate.Store{
		"sqlite":   func(t *testing.T) orkstate.Store { return open(t) },
		"postgres": func(t *testing.T) orkstate.Store { return testdb.Store(t) },
		// Hides the RunImporter: the replay fallback.
		"sqlite-replay": func(t *testing.T) orkstate.Store { return struct{ orkstate.Store }{open(t)} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testCopy(t, open(t), newDst(t))
		})
	}
}

func testCopy(t *testing.T, src *sqlitecompat.Store, dst orkstate.Store) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wf, err := src.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "etl", JobName: "j", Schedule: "*/5 * * * *"})
	must(err)
	_, err = src.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}})
	must(err)
	// One finished run, one still going.
	r1, err := src.CreateRun(ctx, wf.ID, "manual")
	must(err)
	ts, err := src.CreateDAGTasks(ctx, r1.ID, []orkstate.NewTask{{TaskIndex: 0, TaskName: "a"}, {TaskIndex: 1, TaskName: "b", DependsOn: []string{"a"}}})
	must(err)
	must(src.AppendTaskLog(ctx, ts[0].ID, "hello\n"))
	// Two calls: in one batch, b would fail in the same round as a succeeds, before
	// a's success decrements it, and keep unmet_deps 1 (a finished task's counter is
	// not maintained; ImportRun recomputes it, so the copy would say 0).
	_, err = src.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: ts[0].ID, Status: orkstate.TaskSuccess, Output: json.RawMessage(`{"rows":3}`)},
	})
	must(err)
	_, err = src.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: ts[1].ID, Status: orkstate.TaskFailed, Error: "boom"}})
	must(err)
	r2, err := src.CreateRun(ctx, wf.ID, "schedule")
	must(err)
	ts2, err := src.CreateTasks(ctx, r2.ID, 2, "x", nil)
	must(err)
	_, err = src.CreateDeferredJobs(ctx, ts2[0].ID, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "1"}})
	must(err)
	// A run with a task in flight and one waiting for its retry.
	r3, err := src.CreateRun(ctx, wf.ID, "manual")
	must(err)
	ts3, err := src.CreateDAGTasks(ctx, r3.ID, []orkstate.NewTask{
		{TaskIndex: 0, TaskName: "d", ExecutorType: "claim", TimeoutSeconds: 600},
		{TaskIndex: 1, TaskName: "f", ExecutorType: "claim", MaxRetries: 2},
		{TaskIndex: 2, TaskName: "g", ExecutorType: "claim", DependsOn: []string{"d"}},
	})
	must(err)
	claimed, err := src.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "sched-1", Limit: 10, ExecutorTypes: []string{"claim"}})
	must(err)
	if len(claimed) != 2 {
		t.Fatalf("claimed %d tasks, want 2", len(claimed))
	}
	out, err := src.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: ts3[1].ID, Status: orkstate.TaskFailed, Error: "flaky", Attempt: 1})
	must(err)
	if out.Outcome != orkstate.OutcomeRetrying {
		t.Fatalf("failing f: %+v", out)
	}
	// A run half done: p succeeded, q (after p) is ready, z (after p and q: a count
	// of one left, which a PostgreSQL copy keeps apart from the row) waits.
	r4, err := src.CreateRun(ctx, wf.ID, "manual")
	must(err)
	ts4, err := src.CreateDAGTasks(ctx, r4.ID, []orkstate.NewTask{
		{TaskIndex: 0, TaskName: "p", ExecutorType: "drive"},
		{TaskIndex: 1, TaskName: "q", ExecutorType: "drive", DependsOn: []string{"p"}},
		{TaskIndex: 2, TaskName: "z", ExecutorType: "drive", DependsOn: []string{"p", "q"}},
	})
	must(err)
	claimed, err = src.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "sched-1", Limit: 10, ExecutorTypes: []string{"drive"}})
	must(err)
	if len(claimed) != 1 || claimed[0].ID != ts4[0].ID {
		t.Fatalf("claimed %+v, want p", claimed)
	}
	_, err = src.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: ts4[0].ID, Status: orkstate.TaskRunning, Attempt: 1},
		{TaskID: ts4[0].ID, Status: orkstate.TaskSuccess, Attempt: 1},
	})
	must(err)

	res, err := storecopy.Copy(ctx, src, dst)
	must(err)
	got, err := dst.GetWorkflowByName(ctx, "etl")
	must(err)
	if got.Schedule != wf.Schedule || !got.ScheduleEnabled || got.NextScheduledAt == nil || !got.NextScheduledAt.Equal(*wf.NextScheduledAt) {
		t.Errorf("schedule not copied: %+v", got)
	}
	n1 := res.Runs[r1.ID]
	run, err := dst.GetRun(ctx, n1)
	must(err)
	if run.Status != orkstate.RunFailed || run.TriggeredBy != "manual" {
		t.Errorf("run 1 = %s by %s", run.Status, run.TriggeredBy)
	}
	a, err := dst.GetTask(ctx, res.Tasks[ts[0].ID])
	must(err)
	if a.Status != orkstate.TaskSuccess || !sameJSON(a.Output, `{"rows":3}`) {
		t.Errorf("task a = %s %s", a.Status, a.Output)
	}
	b, err := dst.GetTask(ctx, res.Tasks[ts[1].ID])
	must(err)
	if b.Status != orkstate.TaskFailed || b.Error != "boom" {
		t.Errorf("task b = %s %q", b.Status, b.Error)
	}
	if log, _ := dst.TaskLog(ctx, a.ID); log != "hello\n" {
		t.Errorf("log = %q", log)
	}
	run2, err := dst.GetRun(ctx, res.Runs[r2.ID])
	must(err)
	if run2.Status != orkstate.RunRunning {
		t.Errorf("run 2 = %s", run2.Status)
	}
	jobs, err := dst.DeferredJobsForTask(ctx, res.Tasks[ts2[0].ID])
	must(err)
	if len(jobs) != 1 || jobs[0].Status != orkstate.DeferredPending || jobs[0].ServiceType != "http" {
		t.Errorf("jobs = %+v", jobs)
	}
	wts, err := dst.ListWorkflowTasks(ctx, got.ID)
	must(err)
	if len(wts) != 2 {
		t.Errorf("compiled tasks = %d", len(wts))
	}
	if _, ok := dst.(orkstate.RunImporter); !ok {
		return
	}
	checkLossless(t, src, dst, res)

	// The dispatched task stays dispatched to its claimer, under its lease.
	d, err := dst.GetTask(ctx, res.Tasks[ts3[0].ID])
	must(err)
	if d.Status != orkstate.TaskDispatched || d.ClaimedBy != "sched-1" || d.Attempts != 1 || d.LeaseExpiresAt == nil {
		t.Errorf("task d = %s by %q attempt %d lease %v", d.Status, d.ClaimedBy, d.Attempts, d.LeaseExpiresAt)
	}
	// The failed task waits for its retry.
	f, err := dst.GetTask(ctx, res.Tasks[ts3[1].ID])
	must(err)
	if f.Status != orkstate.TaskPending || f.RetryAt == nil || f.Attempts != 1 || f.Error != "flaky" {
		t.Errorf("task f = %s retry %v attempt %d %q", f.Status, f.RetryAt, f.Attempts, f.Error)
	}
	// The copy can be driven: q is ready (p succeeded), z becomes ready after q, and
	// the run completes.
	for _, want := range []int64{ts4[1].ID, ts4[2].ID} {
		c, err := dst.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "sched-2", Limit: 10, ExecutorTypes: []string{"drive"}})
		must(err)
		if len(c) != 1 || c[0].ID != res.Tasks[want] {
			t.Fatalf("claimed %+v, want task %d", c, res.Tasks[want])
		}
		o, err := dst.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: c[0].ID, Status: orkstate.TaskSuccess, Attempt: c[0].Attempt})
		must(err)
		if o.Outcome != orkstate.OutcomeApplied {
			t.Fatalf("success of %d: %+v", c[0].ID, o)
		}
	}
	run4, err := dst.GetRun(ctx, res.Runs[r4.ID])
	must(err)
	if run4.Status != orkstate.RunSuccess || run4.FinishedAt == nil {
		t.Errorf("run 4 = %s finished %v", run4.Status, run4.FinishedAt)
	}
	// Nothing else of the copy was claimable: the dispatched task stays claimed, g
	// waits for d, and f only once its retry is due (its backoff is 1 s, which a
	// loaded machine can spend before this claim).
	c, err := dst.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "sched-2", Limit: 10, ExecutorTypes: []string{"claim"}})
	must(err)
	for _, k := range c {
		if k.ID == f.ID && !time.Now().Before(*f.RetryAt) {
			continue
		}
		t.Errorf("claimed task %s of run 3 (at %s, f's retry at %s), want none", k.TaskName, time.Now().UTC(), f.RetryAt)
	}
}

// checkLossless compares every copied run and task with its source, field by field.
func checkLossless(t *testing.T, src, dst orkstate.Store, res *storecopy.Result) {
	t.Helper()
	ctx := context.Background()
	for o, n := range res.Runs {
		a, err := src.GetRun(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.GetRun(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != b.Status || a.Error != b.Error || a.TriggeredBy != b.TriggeredBy || !a.CreatedAt.Equal(b.CreatedAt) ||
			!sameTime(a.StartedAt, b.StartedAt) || !sameTime(a.FinishedAt, b.FinishedAt) {
			t.Errorf("run %d → %d:\n src %+v\n dst %+v", o, n, a, b)
		}
	}
	for o, n := range res.Tasks {
		a, err := src.GetTask(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.GetTask(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != b.Status || a.Attempts != b.Attempts || a.ClaimedBy != b.ClaimedBy || a.Error != b.Error ||
			a.UnmetDeps != b.UnmetDeps || a.TaskName != b.TaskName || a.TaskIndex != b.TaskIndex ||
			!a.CreatedAt.Equal(b.CreatedAt) || !sameTime(a.DispatchedAt, b.DispatchedAt) ||
			!sameTime(a.StartedAt, b.StartedAt) || !sameTime(a.FinishedAt, b.FinishedAt) ||
			!sameTime(a.RetryAt, b.RetryAt) || !sameTime(a.LeaseExpiresAt, b.LeaseExpiresAt) {
			t.Errorf("task %d → %d:\n src %+v\n dst %+v", o, n, a, b)
		}
	}
	for o, n := range res.Jobs {
		a, err := src.GetDeferredJob(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.GetDeferredJob(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != b.Status || a.Attempts != b.Attempts || res.Tasks[a.TaskID] != b.TaskID ||
			!a.CreatedAt.Equal(b.CreatedAt) || !sameTime(a.NextPollAt, b.NextPollAt) {
			t.Errorf("job %d → %d:\n src %+v\n dst %+v", o, n, a, b)
		}
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// sameJSON compares JSON by value: jsonb re-spaces what it stores.
func sameJSON(got json.RawMessage, want string) bool {
	var g, w any
	return json.Unmarshal(got, &g) == nil && json.Unmarshal([]byte(want), &w) == nil && reflect.DeepEqual(g, w)
}

// TestImportRunValidation: bad input to ImportRun is refused and changes nothing.
func TestImportRunValidation(t *testing.T) {
	t.Parallel()
	for name, newDst := range map[string]func(*testing.T) orkstate.Store{
		"sqlite":   func(t *testing.T) orkstate.Store { return open(t) },
		"postgres": func(t *testing.T) orkstate.Store { return testdb.Store(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dst := newDst(t)
			imp := dst.(orkstate.RunImporter)
			wf, err := dst.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w"})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			run := orkstate.Run{WorkflowID: wf.ID, Status: orkstate.RunRunning, CreatedAt: now, StartedAt: &now}
			tasks := []orkstate.Task{{ID: 1, TaskName: "a", Status: orkstate.TaskPending, CreatedAt: now}}
			bad := run
			bad.WorkflowID = wf.ID + 1000
			if _, err := imp.ImportRun(ctx, orkstate.RunImport{Run: bad, Tasks: tasks}); !errors.Is(err, orkstate.ErrNotFound) {
				t.Errorf("unknown workflow: %v", err)
			}
			badTasks := append(tasks, orkstate.Task{ID: 2, TaskIndex: 1, TaskName: "b", DependsOn: []string{"nope"},
				Status: orkstate.TaskPending, CreatedAt: now})
			if _, err := imp.ImportRun(ctx, orkstate.RunImport{Run: run, Tasks: badTasks}); !orkstate.IsValidation(err) {
				t.Errorf("unknown dependency: %v", err)
			}
			if runs, err := dst.ListRuns(ctx, wf.ID); err != nil || len(runs) != 0 {
				t.Errorf("runs after refused imports = %d, %v", len(runs), err)
			}
			got, err := imp.ImportRun(ctx, orkstate.RunImport{Run: run, Tasks: tasks, Logs: map[int64]string{1: "hi"}})
			if err != nil {
				t.Fatal(err)
			}
			if log, err := dst.TaskLog(ctx, got.Tasks[1]); err != nil || log != "hi" {
				t.Errorf("log = %q, %v", log, err)
			}
			// The log cap counts the imported log.
			if err := dst.AppendTaskLog(ctx, got.Tasks[1], " there"); err != nil {
				t.Fatal(err)
			}
			if log, _ := dst.TaskLog(ctx, got.Tasks[1]); log != "hi there" {
				t.Errorf("log = %q", log)
			}
			st, err := dst.RunTaskStats(ctx, got.RunID)
			if err != nil || st.Total != 1 || st.Pending != 1 {
				t.Errorf("stats = %+v, %v", st, err)
			}
		})
	}
}
