package pgstore_test

import (
	"context"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// The Purger call of txStore (storetest_test.go): every batch in one transaction of
// its own, committed when the purge succeeds.
func (s *txStore) PurgeRuns(ctx context.Context, p orkstate.PurgeParams) (orkstate.PurgeResult, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (orkstate.PurgeResult, error) { return st.PurgeRuns(ctx, p) })
}
