// Package limitsfixture seeds a store with everything priorities and limits leave
// in it, for the tests that move a store's contents (storecopy, statefile) and
// check that nothing of it is lost.
package limitsfixture

import (
	"context"
	"testing"

	"github.com/orkstate/orkstate"
)

func ptr(n int) *int { return &n }

// Seed gives s two concurrency keys, a workflow with a priority, limits and
// fairness whose snapshot's and compiled tasks' specs set priorities and keys, a run
// of it with a task in flight on a key and tasks of several priorities (its ready
// task kept the workflow's old priority), and a workflow without limits.
func Seed(t testing.TB, s orkstate.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetConcurrencyKey(ctx, "gpu", 1))
	must(s.SetConcurrencyKey(ctx, "warehouse-7", 5))
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "etl"})
	must(err)
	must(s.SetWorkflowLimits(ctx, wf.ID, orkstate.WorkflowLimits{Priority: 7, MaxActiveRuns: ptr(3), MaxTasksInFlight: ptr(4), Fair: true}))
	dag := []orkstate.TaskSpec{
		{Name: "train", ExecutorType: "gpu", Priority: ptr(9), ConcurrencyKey: "gpu"},
		{Name: "train2", ExecutorType: "gpu", ConcurrencyKey: "gpu"},
		{Name: "load", ExecutorType: "io", ConcurrencyKey: "warehouse-7"},
		{Name: "report", ExecutorType: "io", DependsOn: []string{"load"}, Priority: ptr(-5)},
		{Name: "mail", ExecutorType: "io", DependsOn: []string{"load"}},
	}
	_, err = s.ReplaceWorkflowTasks(ctx, wf.ID, dag)
	must(err)
	sn, err := s.CreateSnapshot(ctx, wf.ID, dag)
	must(err)
	must(s.SetCurrentSnapshot(ctx, wf.ID, sn.ID))
	_, err = s.CreateRun(ctx, wf.ID, "test")
	must(err)
	_, err = s.StartPendingRuns(ctx, 10)
	must(err)
	c, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "s1", Limit: 1, ExecutorTypes: []string{"gpu"}})
	must(err)
	if len(c) != 1 || c[0].TaskName != "train" {
		t.Fatalf("claimed %+v, want train (priority 9)", c)
	}
	// A new priority reaches mail (waiting for load), not load or train2 (ready).
	must(s.SetWorkflowLimits(ctx, wf.ID, orkstate.WorkflowLimits{Priority: 2, MaxActiveRuns: ptr(3), MaxTasksInFlight: ptr(4), Fair: true}))
	_, err = s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "plain"})
	must(err)
}
