package sqlitecompat_test

import (
	"context"
	"fmt"
	"log"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// Open with ":memory:" gives a private store that lives as long as the Store (tests,
// demos); a file path gives one that several processes may share. Capabilities
// says what it does without PostgreSQL: claims from several processes are safe (the
// file lock serialises them), but there are no SQL functions and no LISTEN/NOTIFY.
func ExampleOpen() {
	ctx := context.Background()
	store, err := sqlitecompat.Open(ctx, ":memory:", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	fmt.Printf("%+v\n", store.Capabilities())
	// Output: {ConcurrentClaimers:true SQLFunctions:false ListenNotify:false}
}

// A failed attempt of a task with retries left goes back to pending (outcome
// "retrying") and waits out its backoff (orkstate.RetryBackoff) before a claim
// takes it again.
func Example_retry() {
	ctx := context.Background()
	store, err := sqlitecompat.Open(ctx, ":memory:", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	wf, err := store.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "flaky"})
	if err != nil {
		log.Fatal(err)
	}
	run, err := store.CreateRun(ctx, wf.ID, "example")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.CreateDAGTasks(ctx, run.ID, []orkstate.NewTask{{TaskName: "fetch", MaxRetries: 2}}); err != nil {
		log.Fatal(err)
	}
	claimed, err := store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "s1", Limit: 1})
	if err != nil {
		log.Fatal(err)
	}
	task := claimed[0]
	out, err := store.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: task.ID, Status: orkstate.TaskFailed, Attempt: task.Attempt, Error: "timeout"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("failed →", out[0].Outcome, out[0].Status)
	info, err := store.TaskRetryInfo(ctx, task.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("attempts", info.Attempts, "of", info.MaxRetries+1, "retry scheduled:", info.RetryAt != nil)
	// Output:
	// failed → retrying pending
	// attempts 1 of 3 retry scheduled: true
}
