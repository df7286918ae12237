package pgstore_test

import (
	"context"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

var _ orkstate.ReportClaimer = (*txStore)(nil)

// The ReportClaimer call of txStore (storetest_test.go): the report and the claim in
// the caller's transaction, committed when the call succeeds.
func (s *txStore) ReportAndClaim(ctx context.Context, updates []orkstate.TaskUpdate, p orkstate.ClaimParams) ([]orkstate.TaskOutcome, []orkstate.ClaimedTask, error) {
	type both struct {
		out     []orkstate.TaskOutcome
		claimed []orkstate.ClaimedTask
	}
	r, err := txCall(ctx, s, func(st *pgstore.Store) (both, error) {
		out, claimed, err := st.ReportAndClaim(ctx, updates, p)
		return both{out, claimed}, err
	})
	return r.out, r.claimed, err
}
