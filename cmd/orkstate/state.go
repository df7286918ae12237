package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/statefile"
)

func (a *app) exportCommand() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "export [--out state.json]",
		Short: "Write the store's whole state to one versioned JSON document",
		Long: `Write every workflow, run, task, log and deferred job — statuses, attempts,
leases and timestamps included — to one JSON document (docs/statefile.md).
The file is written whole or not at all. Without --out (or with --out -) the
document goes to stdout. Export from a quiet store: runs are read one by one.`,
		Example: "  orkstate export --out state.json\n  orkstate --db ork.db export | jq '.workflows[].name'",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			be, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer be.close()
			doc, err := statefile.Export(ctx, be.store, a.progress("export"))
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				return doc.Encode(a.stdout)
			}
			if err := writeFileAtomic(out, doc.Encode); err != nil {
				return err
			}
			return a.printCounts("exported", "to "+out, doc.Counts())
		}),
	}
	c.Flags().StringVar(&out, "out", "", "the file to write (default stdout)")
	return c
}

// writeFileAtomic writes through a temporary file in the same directory and
// renames it into place, so a failed write leaves no truncated file behind.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (a *app) printCounts(verb, where string, c statefile.Counts) error {
	if a.json {
		return a.printJSON(map[string]any{"workflows": c.Workflows, "runs": c.Runs, "tasks": c.Tasks, "deferred_jobs": c.DeferredJobs})
	}
	fmt.Fprintf(a.stdout, "%s %d workflows, %d runs, %d tasks, %d deferred jobs %s\n", verb, c.Workflows, c.Runs, c.Tasks, c.DeferredJobs, where)
	return nil
}

func (a *app) importCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import STATE_FILE",
		Short: "Load a state document into an empty store",
		Long: `Load a document written by export into the store of --db (a SQLite file is
created if missing; a PostgreSQL install must be migrated). Every status,
attempt, lease and timestamp is kept; ids are the store's own.

The whole document is checked before anything is written: a truncated or
edited file that is not a valid state document is refused with what is wrong
and where, and nothing is imported. Its workflow names must be free in the
store. On PostgreSQL the import is one transaction. STATE_FILE - reads stdin.`,
		Example: "  orkstate --db ork.db import state.json\n  orkstate --db postgres://admin@db.example/app import state.json",
		Args:    args("STATE_FILE"),
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			doc, err := readDocument(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			be, err := a.open(ctx, a.dbFlag(), true)
			if err != nil {
				return err
			}
			defer be.close()
			if err := a.load(ctx, be, doc, "import"); err != nil {
				return err
			}
			return a.printCounts("imported", "into "+be.desc, doc.Counts())
		}),
	}
}

func readDocument(path string, stdin io.Reader) (*statefile.Document, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			return nil, errorf(orkstate.ErrNotFound, "state file %s not found", path)
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	doc, err := statefile.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (nothing imported)", path, err)
	}
	return doc, nil
}

// load imports doc into be: in one transaction on PostgreSQL, with statefile's
// clean-up on SQLite.
func (a *app) load(ctx context.Context, be *backend, doc *statefile.Document, what string) error {
	if be.pg == nil {
		_, err := statefile.Import(ctx, doc, be.store, a.progress(what))
		return err
	}
	tx, err := be.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := statefile.Import(ctx, doc, be.pg.WithTx(tx), a.progress(what)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (a *app) copyCommand() *cobra.Command {
	var from, to string
	c := &cobra.Command{
		Use:   "copy --from STORE --to STORE",
		Short: "Copy a whole store into another, empty one (a local SQLite setup into PostgreSQL)",
		Long: `Copy everything of --from into --to, as export followed by import would, without
the file: statuses, attempts, leases and timestamps are kept. --to's workflow
names must be free; a SQLite --to is created if missing. Both take what --db
takes; --schema applies to both PostgreSQL ends.`,
		Example: "  orkstate copy --from ork.db --to postgres://admin@db.example/app\n  orkstate copy --from postgres://localhost/dev --to backup.db",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			src, err := a.open(ctx, from, false)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer src.close()
			doc, err := statefile.Export(ctx, src.store, a.progress("read"))
			if err != nil {
				return err
			}
			// The same checks as a file import, before the destination is touched.
			if err := doc.Validate(); err != nil {
				return fmt.Errorf("--from holds state that cannot be imported: %w", err)
			}
			dst, err := a.open(ctx, to, true)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer dst.close()
			if err := a.load(ctx, dst, doc, "write"); err != nil {
				return err
			}
			return a.printCounts("copied", fmt.Sprintf("from %s into %s", src.desc, dst.desc), doc.Counts())
		}),
	}
	c.Flags().StringVar(&from, "from", "", "the store to read (postgres://… or a SQLite file)")
	c.Flags().StringVar(&to, "to", "", "the empty store to write (postgres://… or a SQLite file)")
	_ = c.MarkFlagRequired("from")
	_ = c.MarkFlagRequired("to")
	return c
}
