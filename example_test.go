package orkstate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// Example runs a two-task DAG through a Store: a scheduler claims the ready task,
// reports its success with the attempt it was given, and the dependent becomes
// claimable with the upstream output. An in-memory SQLite store needs no server;
// pgstore.Store behaves the same (storetest checks both).
func Example() {
	ctx := context.Background()
	store, err := sqlitecompat.Open(ctx, ":memory:", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	wf, err := store.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "nightly"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{
		{Name: "extract"}, {Name: "load", DependsOn: []string{"extract"}},
	}); err != nil {
		log.Fatal(err)
	}
	if _, err := store.CreateRun(ctx, wf.ID, "example"); err != nil {
		log.Fatal(err)
	}
	started, err := store.StartPendingRuns(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("started:", started[0].Status, started[0].TasksCreated, "tasks")

	claimed, err := store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "scheduler-1", Limit: 10})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("claimed:", claimed[0].TaskName, "attempt", claimed[0].Attempt)

	outcomes, err := store.SetTaskStates(ctx, []orkstate.TaskUpdate{{
		TaskID: claimed[0].ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt,
		Output: json.RawMessage(`{"rows":42}`),
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("report:", outcomes[0].Outcome)

	next, err := store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "scheduler-1", Limit: 10})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("claimed:", next[0].TaskName, "with", string(next[0].UpstreamOutputs["extract"]))
	// Output:
	// started: running 2 tasks
	// claimed: extract attempt 1
	// report: applied
	// claimed: load with {"rows":42}
}

// ValidateDAG refuses a cycle and names the field that was wrong.
func ExampleValidateDAG() {
	err := orkstate.ValidateDAG([]orkstate.TaskSpec{
		{Name: "a", DependsOn: []string{"b"}},
		{Name: "b", DependsOn: []string{"a"}},
	})
	var verr *orkstate.ValidationError
	fmt.Println(errors.As(err, &verr), verr.Field)
	// Output: true depends_on
}

// Schedules are cron expressions with 5 fields, 6 with seconds, or descriptors.
func ExampleNextFireTime() {
	after := time.Date(2026, 11, 30, 6, 20, 0, 0, time.UTC)
	for _, expr := range []string{"*/15 * * * *", "30 0 7 * * *", "@daily"} {
		next, err := orkstate.NextFireTime(expr, after)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(expr, "→", next.Format(time.DateTime))
	}
	// Output:
	// */15 * * * * → 2026-11-30 06:30:00
	// 30 0 7 * * * → 2026-11-30 07:00:30
	// @daily → 2026-12-01 00:00:00
}

// A report may move a running task to success; a finished task only comes back
// through an operator's RetryTask, never through a report.
func ExampleCanTransitionTask() {
	fmt.Println(orkstate.CanTransitionTask(orkstate.TaskRunning, orkstate.TaskSuccess))
	fmt.Println(orkstate.CanTransitionTask(orkstate.TaskSuccess, orkstate.TaskPending))
	// Output:
	// true
	// false
}

// RetryBackoff is Ork's delay before the next attempt: doubling from 1 s, capped at 60 s.
func ExampleRetryBackoff() {
	for _, attempt := range []int{1, 2, 3, 7, 8} {
		fmt.Print(orkstate.RetryBackoff(attempt), " ")
	}
	fmt.Println()
	// Output: 1s 2s 4s 1m0s 1m0s
}
