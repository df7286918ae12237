package pgstore

import (
	"context"

	"github.com/orkstate/orkstate"
)

// ExpireTaskLeases returns up to limit dispatched tasks whose lease ran out to
// pending, one outcome per task. Fewer than limit outcomes means no other expired lease is due (tasks a
// concurrent sweeper or reporter holds locked aside): sweep again while the batch
// was full to drain a backlog.
func (s *Store) ExpireTaskLeases(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	return s.sweep(ctx, "expire_task_leases", limit)
}

// FailTimedOutTasks fails tasks past their timeout under the retry rule.
//
// Both sweeps run at Config.Now's time when a clock is set, else at the database's.
func (s *Store) FailTimedOutTasks(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	return s.sweep(ctx, "fail_timed_out_tasks", limit)
}

func (s *Store) sweep(ctx context.Context, fn string, limit int) ([]orkstate.TaskOutcome, error) {
	if err := orkstate.CheckBatchLimit(limit); err != nil {
		return nil, err
	}
	var out []orkstate.TaskOutcome
	err := s.retryDeadlock(ctx, func() error {
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.`+fn+`($1, $2)`), limit, s.now())
		if err != nil {
			return err
		}
		out, err = collectOutcomes(rows)
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: %s", fn)
	}
	return out, nil
}
