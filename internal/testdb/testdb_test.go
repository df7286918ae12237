package testdb_test

import (
	"context"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// A reused install comes back empty (ids restart, the settings row is there again),
// and two tests at once never get the same one.
func TestReusedInstallIsEmptyAndPrivate(t *testing.T) {
	ctx := context.Background()
	var first string
	var firstID int64
	t.Run("dirty", func(t *testing.T) {
		s := testdb.Store(t)
		first = s.Schema()
		w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "left-behind"})
		if err != nil {
			t.Fatal(err)
		}
		firstID = w.ID
		if _, err := s.Pool().Exec(ctx, "update "+s.Schema()+".settings set notify_enabled = false"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("again", func(t *testing.T) {
		s := testdb.Store(t)
		if s.Schema() != first {
			t.Fatalf("got install %s, want %s again (it was given back)", s.Schema(), first)
		}
		if wfs, err := s.ListWorkflows(ctx); err != nil || len(wfs) != 0 {
			t.Fatalf("ListWorkflows = %v, %v; want an empty install", wfs, err)
		}
		w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "left-behind"})
		if err != nil {
			t.Fatal(err)
		}
		if w.ID != firstID {
			t.Fatalf("workflow id %d, want %d: identities restart", w.ID, firstID)
		}
		var notify bool
		if err := s.Pool().QueryRow(ctx, "select notify_enabled from "+s.Schema()+".settings").Scan(&notify); err != nil || !notify {
			t.Fatalf("settings.notify_enabled = %v, %v; want the migration's default row", notify, err)
		}
		if other := testdb.Store(t); other.Schema() == s.Schema() {
			t.Fatalf("two stores of one test share install %s", s.Schema())
		}
	})
}
