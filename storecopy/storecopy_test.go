package storecopy_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

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
	_, err = src.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: ts[0].ID, Status: orkstate.TaskSuccess, Output: json.RawMessage(`{"rows":3}`)},
		{TaskID: ts[1].ID, Status: orkstate.TaskFailed, Error: "boom"},
	})
	must(err)
	r2, err := src.CreateRun(ctx, wf.ID, "schedule")
	must(err)
	ts2, err := src.CreateTasks(ctx, r2.ID, 2, "x", nil)
	must(err)
	_, err = src.CreateDeferredJobs(ctx, ts2[0].ID, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "1"}})
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
}

// sameJSON compares JSON by value: jsonb re-spaces what it stores.
func sameJSON(got json.RawMessage, want string) bool {
	var g, w any
	return json.Unmarshal(got, &g) == nil && json.Unmarshal([]byte(want), &w) == nil && reflect.DeepEqual(g, w)
}
