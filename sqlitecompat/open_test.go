package sqlitecompat_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// "file::memory:" is the URI form of ":memory:". It used to be opened as a file:
// writes went to the write connection's database, and every read connection saw
// an empty one of its own (issue 11 item 19).
func TestOpenFileMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, path := range []string{":memory:", "file::memory:"} {
		s, err := sqlitecompat.Open(ctx, path, nil)
		if err != nil {
			t.Fatalf("Open(%q): %v", path, err)
		}
		defer s.Close()
		wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "m"})
		if err != nil {
			t.Fatalf("%s: CreateWorkflow: %v", path, err)
		}
		if _, err := s.GetWorkflow(ctx, wf.ID); err != nil {
			t.Errorf("%s: GetWorkflow after a write: %v", path, err)
		}
		if ws, err := s.ListWorkflows(ctx); err != nil || len(ws) != 1 {
			t.Errorf("%s: ListWorkflows = %d, %v, want the one workflow", path, len(ws), err)
		}
	}
}

// A database in a folder that does not exist is a validation error naming the
// folder; SQLite's own error ("unable to open database file") names nothing.
func TestOpenMissingFolder(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := sqlitecompat.Open(context.Background(), filepath.Join(dir, "ork.db"), nil)
	if !orkstate.IsValidation(err) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open in a missing folder: %v, want a validation error naming %s", err, dir)
	}
}
