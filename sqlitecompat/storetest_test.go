package sqlitecompat_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/sqlitecompat"
	"github.com/orkstate/orkstate/storetest"
)

// newStore opens a fresh, migrated store on a temporary file for one test.
func newStore(t *testing.T) *sqlitecompat.Store {
	t.Helper()
	s, err := sqlitecompat.Open(context.Background(), filepath.Join(t.TempDir(), "ork.db"), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestStoretest(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) orkstate.Store {
		s, err := sqlitecompat.Open(context.Background(), filepath.Join(t.TempDir(), "ork.db"), &sqlitecompat.Config{Now: now})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	}, storetest.ConcurrencyTasks(concurrencyTasks))
}
