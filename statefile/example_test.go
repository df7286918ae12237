package statefile_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/sqlitecompat"
	"github.com/orkstate/orkstate/statefile"
)

// Export a store to a document, read it back, and import it into another store.
func Example() {
	ctx := context.Background()
	src, _ := sqlitecompat.Open(ctx, ":memory:", nil)
	defer src.Close()
	wf, _ := src.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "etl"})
	run, _ := src.CreateRun(ctx, wf.ID, "api")
	_, _ = src.CreateTasks(ctx, run.ID, 3, "shell", nil)

	doc, err := statefile.Export(ctx, src, nil)
	if err != nil {
		panic(err)
	}
	var file bytes.Buffer
	_ = doc.Encode(&file) // a state.json

	read, err := statefile.Decode(&file) // checked whole: format, version, DAGs, statuses…
	if err != nil {
		panic(err)
	}
	dst, _ := sqlitecompat.Open(ctx, ":memory:", nil)
	defer dst.Close()
	if _, err := statefile.Import(ctx, read, dst, nil); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", read.Counts())
	// Output: {Workflows:1 Runs:1 Tasks:3 DeferredJobs:0}
}
