package pgstore_test

import (
	"context"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// The LimitStore calls of txStore (storetest_test.go), each in a transaction of its own.

func (s *txStore) SetWorkflowLimits(ctx context.Context, workflowID int64, l orkstate.WorkflowLimits) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.SetWorkflowLimits(ctx, workflowID, l) })
}

func (s *txStore) GetWorkflowLimits(ctx context.Context, workflowID int64) (*orkstate.WorkflowLimits, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.WorkflowLimits, error) {
		return st.GetWorkflowLimits(ctx, workflowID)
	})
}

func (s *txStore) SetConcurrencyKey(ctx context.Context, key string, slots int) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.SetConcurrencyKey(ctx, key, slots) })
}

func (s *txStore) ConcurrencyKeys(ctx context.Context) ([]orkstate.ConcurrencyKey, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.ConcurrencyKey, error) { return st.ConcurrencyKeys(ctx) })
}
