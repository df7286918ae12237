package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// SetWorkflowLimits sets a workflow's priority, limits and fairness
// (set_workflow_limits).
func (s *Store) SetWorkflowLimits(ctx context.Context, workflowID int64, l orkstate.WorkflowLimits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	return wrap(s.retryDeadlock(ctx, func() error {
		_, err := s.db.Exec(ctx, s.sql(`select {api}.set_workflow_limits($1, $2, $3, $4, $5)`),
			workflowID, l.Priority, l.MaxActiveRuns, l.MaxTasksInFlight, l.Fair)
		return err
	}), "pgstore: set limits of workflow %d", workflowID)
}

// GetWorkflowLimits returns what SetWorkflowLimits set (workflow_limits).
func (s *Store) GetWorkflowLimits(ctx context.Context, workflowID int64) (*orkstate.WorkflowLimits, error) {
	var l orkstate.WorkflowLimits
	err := s.db.QueryRow(ctx, s.sql(`select * from {api}.workflow_limits($1)`), workflowID).
		Scan(&l.Priority, &l.MaxActiveRuns, &l.MaxTasksInFlight, &l.Fair)
	if err != nil {
		return nil, wrap(err, "pgstore: limits of workflow %d", workflowID)
	}
	return &l, nil
}

// SetConcurrencyKey creates a concurrency key or changes its slots (set_concurrency_key).
func (s *Store) SetConcurrencyKey(ctx context.Context, key string, slots int) error {
	if err := orkstate.ValidConcurrencyKey(key); err != nil {
		return err
	}
	if err := orkstate.ValidSlots(slots); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, s.sql(`select {api}.set_concurrency_key($1, $2)`), key, slots)
	return wrap(err, "pgstore: set concurrency key %q", key)
}

// ConcurrencyKeys lists the keys with their slots and tasks in flight (concurrency_slots).
func (s *Store) ConcurrencyKeys(ctx context.Context) ([]orkstate.ConcurrencyKey, error) {
	rows, err := s.db.Query(ctx, s.sql(`select key, coalesce(slots, 0), in_flight from {api}.concurrency_slots()`))
	if err != nil {
		return nil, wrap(err, "pgstore: concurrency keys")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[orkstate.ConcurrencyKey])
	if err != nil {
		return nil, wrap(err, "pgstore: concurrency keys")
	}
	return out, nil
}
