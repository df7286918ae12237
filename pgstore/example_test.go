package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// Example installs orkstate, runs a two-task DAG and reports a claimed task's
// success. The README's Go section is an excerpt of it (TestDocExamples checks).
func Example() {
	ctx := context.Background()
	if os.Getenv("DATABASE_URL") == "" {
		_ = os.Setenv("DATABASE_URL", testdb.DefaultURL)
	}
	schema := fmt.Sprintf("example_%d", os.Getpid()) // "ork" in an application
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}

	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	check(err)
	defer pool.Close()
	defer func() { check(pgstore.MigrateTo(ctx, pool, schema, 0)) }()
	check(pgstore.Migrate(ctx, pool, schema)) // on every start: a no-op when nothing changed
	store, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	check(err)

	wf, err := store.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "nightly"})
	check(err)
	_, err = store.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{
		{Name: "extract"}, {Name: "load", DependsOn: []string{"extract"}},
	})
	check(err)

	// Inside the application's own transaction: both commit or neither does.
	tx, err := pool.Begin(ctx)
	check(err)
	run, err := store.WithTx(tx).CreateRun(ctx, wf.ID, "api")
	check(err)
	check(tx.Commit(ctx))

	_, err = store.StartPendingRuns(ctx, 10) // creates the run's tasks from its DAG
	check(err)
	claimed, err := store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "scheduler-1", Limit: 500})
	check(err)
	outcomes, err := store.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: claimed[0].ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt},
	})
	check(err)
	fmt.Println(run.Status, claimed[0].TaskName, outcomes[0].Outcome)
	// Output: pending extract applied
}
