package statefile_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/sqlitecompat"
	"github.com/orkstate/orkstate/statefile"
)

func openSQLite(t *testing.T) *sqlitecompat.Store {
	t.Helper()
	s, err := sqlitecompat.Open(context.Background(), filepath.Join(t.TempDir(), "ork.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// seed makes two workflows with a run each.
func seed(t *testing.T, s orkstate.Store) {
	t.Helper()
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.CreateRun(ctx, wf.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateTasks(ctx, r.ID, 2, "x", nil); err != nil {
			t.Fatal(err)
		}
	}
}

// failingImporter fails the nth ImportRun.
type failingImporter struct {
	orkstate.Store
	imp   orkstate.RunImporter
	n     int
	calls int
}

func (f *failingImporter) ImportRun(ctx context.Context, in orkstate.RunImport) (*orkstate.ImportedRun, error) {
	if f.calls++; f.calls == f.n {
		return nil, errors.New("disk full")
	}
	return f.imp.ImportRun(ctx, in)
}

// TestImportFailureLeavesNothing: when a write fails halfway, the workflows the
// import created are removed again, on both stores.
func TestImportFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) orkstate.Store{
		"sqlite":   func(t *testing.T) orkstate.Store { return openSQLite(t) },
		"postgres": func(t *testing.T) orkstate.Store { return testdb.Store(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := openSQLite(t)
			seed(t, src)
			doc, err := statefile.Export(ctx, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			dst := open(t)
			_, err = statefile.Import(ctx, doc, &failingImporter{Store: dst, imp: dst.(orkstate.RunImporter), n: 2}, nil)
			if err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Fatalf("import: %v, want the write's error", err)
			}
			wfs, err := dst.ListWorkflows(ctx)
			if err != nil || len(wfs) != 0 {
				t.Fatalf("after a failed import: %d workflows (%v), want none", len(wfs), err)
			}
			// And the same document then imports whole.
			if _, err := statefile.Import(ctx, doc, dst, nil); err != nil {
				t.Fatal(err)
			}
			again, err := statefile.Export(ctx, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			var a, b bytes.Buffer
			if err := doc.Encode(&a); err != nil {
				t.Fatal(err)
			}
			if err := again.Encode(&b); err != nil {
				t.Fatal(err)
			}
			if a.String() != b.String() {
				t.Errorf("re-export differs:\n%s\n---\n%s", a.String(), b.String())
			}
		})
	}
}

// TestImportNeedsRunImporter: a destination that would replay (and lose
// attempts and timestamps) is refused before anything is written.
func TestImportNeedsRunImporter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := openSQLite(t)
	seed(t, src)
	doc, err := statefile.Export(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := openSQLite(t)
	_, err = statefile.Import(ctx, doc, struct{ orkstate.Store }{dst}, nil)
	if !errors.Is(err, orkstate.ErrUnsupported) {
		t.Fatalf("import into a store without RunImporter: %v", err)
	}
	if wfs, _ := dst.ListWorkflows(ctx); len(wfs) != 0 {
		t.Errorf("%d workflows written", len(wfs))
	}
}

// TestDecodeNamesTheProblem: Decode's errors are validation errors that say where.
func TestDecodeNamesTheProblem(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"format":"orkstate-state","version":1,"workflows":[{"name":"a","tasks":[],"snapshots":[],"runs":[{"status":"running","created_at":"2025-01-01T00:00:00Z","tasks":[{"index":0,"name":"x","status":"pending","created_at":"2025-01-01T00:00:00Z","depends_on":["y"]}]}]}]}`: `workflows[0] "a": runs[0]: orkstate: invalid depends_on "y": task "x" depends on unknown task`,
		`{"format":"orkstate-state","version":1,"workflows":[{"name":"a","runs":[{"status":"running","tasks":[]}]}]}`:                                                                                                                                                               `workflows[0] "a": runs[0]: orkstate: invalid created_at: missing`,
		`{"format":"orkstate-state","version":1,"workflows":[{"name":"a","schedule_enabled":true}]}`:                                                                                                                                                                                `invalid schedule_enabled "true": no schedule to enable`,
		`{"format":"orkstate-state","version":1,"workflows":[{"name":"a","current_snapshot":"abc"}]}`:                                                                                                                                                                               `invalid current_snapshot "abc": no snapshot of the workflow has this hash`,
		`{"format":"orkstate-state","version":1,"workflows":[{"name":" "}]}`:                                                                                                                                                                                                        `invalid name " ": must not be empty`,
		`{"format":"orkstate-state","version":1,"workflows":[{"name":"a","task_params":{"x":1}}]`:                                                                                                                                                                                   `truncated`,
	} {
		_, err := statefile.Decode(strings.NewReader(in))
		if !orkstate.IsValidation(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want a validation error containing %q", in, err, want)
		}
	}
}

// TestExportIsStoreIndependent: the same state exports to the same bytes from
// either store, though jsonb reorders keys and respaces what SQLite keeps as text.
func TestExportIsStoreIndependent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var docs []string
	for _, s := range []orkstate.Store{openSQLite(t), testdb.Store(t)} {
		wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w", TaskParams: []byte(`{"zeta": [1.50, {"b": 2, "a": 1}], "a": "<&>"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{{Name: "t", Params: []byte(`{"y": 1,   "x": 2}`)}}); err != nil {
			t.Fatal(err)
		}
		doc, err := statefile.Export(ctx, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := doc.Encode(&b); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b.String())
	}
	if docs[0] != docs[1] {
		t.Errorf("SQLite and PostgreSQL export the same state differently:\n%s\n---\n%s", docs[0], docs[1])
	}
	if !strings.Contains(docs[0], `"a": "<&>"`) || !strings.Contains(docs[0], `1.50`) {
		t.Errorf("values not kept as written:\n%s", docs[0])
	}
}
