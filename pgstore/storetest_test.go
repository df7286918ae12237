package pgstore_test

import (
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/storetest"
)

// TestStore runs the conformance suite against PostgreSQL, each subtest in a
// fresh install schema.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orkstate.Store { return testdb.Store(t) })
}
