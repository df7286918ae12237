package pgstore_test

import (
	"context"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

func TestGetDeferredJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "wf", ExecutorType: "x"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := s.CreateRun(ctx, wf.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := s.CreateDAGTasks(ctx, run.ID, []orkstate.NewTask{{TaskIndex: 0, TaskName: "a", ExecutorType: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	created, err := s.CreateDeferredJobs(ctx, tasks[0].ID, []orkstate.NewDeferredJob{
		{ServiceType: "svc", JobID: "one"}, {ServiceType: "svc", JobID: "two"}, {ServiceType: "svc", JobID: "three"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetDeferredJobs(ctx, []int64{created[2].ID, -1, created[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != created[0].ID || got[1].ID != created[2].ID || got[1].JobID != "three" {
		t.Fatalf("GetDeferredJobs = %+v, want jobs one and three in id order, the unknown id left out", got)
	}
	if none, err := s.GetDeferredJobs(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("GetDeferredJobs(nil) = %v, %v; want none, nil", none, err)
	}
}
