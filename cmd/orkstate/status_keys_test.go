package main

import (
	"context"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
)

// TestStatusShowsKeySlots: status lists each concurrency key with its tasks in
// flight against its slots (issue 13).
func TestStatusShowsKeySlots(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		st := tg.store
		if err := st.SetConcurrencyKey(ctx, "gpu", 2); err != nil {
			t.Fatal(err)
		}
		w, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "keyed"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.CreateRun(ctx, w.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateDAGTasks(ctx, r.ID, []orkstate.NewTask{
			{TaskIndex: 0, TaskName: "a", ConcurrencyKey: "gpu"}, {TaskIndex: 1, TaskName: "b", ConcurrencyKey: "gpu"},
			{TaskIndex: 2, TaskName: "c", ConcurrencyKey: "gpu"},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if out := cli(t, tg, "status"); !strings.Contains(out, "key gpu               1  in flight of 2 slots") {
			t.Errorf("status said %q", out)
		}
	})
}
