package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// RetryTask is an operator's retry of a finished task (retry_task); a deadlock with a
// concurrent report is retried as for the run-wide calls (see runOp).
func (s *Store) RetryTask(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "retry_task", id), "pgstore: retry task %d", id)
}

// FailDependentTasks fails the unfinished transitive dependents of a task.
func (s *Store) FailDependentTasks(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, s.sql(`select {api}.fail_dependent_tasks($1)`), taskID).Scan(&n)
	if err != nil {
		return 0, wrap(err, "pgstore: fail dependents of task %d", taskID)
	}
	return n, nil
}

// StartPendingRuns starts up to limit pending runs (start_pending_runs).
func (s *Store) StartPendingRuns(ctx context.Context, limit int) ([]orkstate.StartedRun, error) {
	if err := orkstate.CheckBatchLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`select run_id, status, tasks_created, coalesce(error, '') from {api}.start_pending_runs($1)`), limit)
	if err != nil {
		return nil, wrap(err, "pgstore: start pending runs")
	}
	started, err := pgx.CollectRows(rows, pgx.RowToStructByPos[orkstate.StartedRun])
	if err != nil {
		return nil, wrap(err, "pgstore: start pending runs")
	}
	return started, nil
}

// CancelRun cancels a run with its unfinished tasks and their deferred jobs.
func (s *Store) CancelRun(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "cancel_run", id), "pgstore: cancel run %d", id)
}

// PauseRun stops dispatch of a run's tasks.
func (s *Store) PauseRun(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "pause_run", id), "pgstore: pause run %d", id)
}

// ResumeRun undoes PauseRun.
func (s *Store) ResumeRun(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "resume_run", id), "pgstore: resume run %d", id)
}

// runOp calls a run-wide function (a constant name) on one id. Those lock the run's
// tasks and then the run, the order reporters use; a reporter can still hold a task it
// merely re-checked (READ COMMITTED keeps that lock) while waiting for one the
// operation holds, so a deadlock is rare but possible, and retried like a report's.
func (s *Store) runOp(ctx context.Context, fn string, id int64) error {
	return s.retryDeadlock(ctx, func() error {
		_, err := s.db.Exec(ctx, s.sql(`select {api}.`+fn+`($1)`), id)
		return err
	})
}
