package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
)

// The task state machine is one function in sql (_apply_task_changes); each method
// here is one call of a function in sql/functions, so psql users get the same behaviour.

// outcomeRow is a row of set_task_states and the functions shaped like it.
type outcomeRow struct {
	Ord     int
	TaskID  int64
	Outcome string
	Status  *string
}

func collectOutcomes(rows pgx.Rows) ([]orkstate.TaskOutcome, error) {
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outcomeRow])
	if err != nil {
		return nil, err
	}
	return sortedOutcomes(got), nil
}

// sortedOutcomes turns outcome rows into outcomes in input order (repeated ids come
// back round by round).
func sortedOutcomes(got []outcomeRow) []orkstate.TaskOutcome {
	sort.Slice(got, func(i, j int) bool { return got[i].Ord < got[j].Ord })
	out := make([]orkstate.TaskOutcome, len(got))
	for i, r := range got {
		out[i] = orkstate.TaskOutcome{TaskID: r.TaskID, Outcome: orkstate.Outcome(r.Outcome)}
		if r.Status != nil {
			out[i].Status = orkstate.TaskStatus(*r.Status)
		}
	}
	return out
}

// SetTaskStates applies N reports in one statement (set_task_states). A deadlock
// with a concurrent batch is retried when the Store is not bound to a caller's tx.
func (s *Store) SetTaskStates(ctx context.Context, updates []orkstate.TaskUpdate) ([]orkstate.TaskOutcome, error) {
	updates, err := orkstate.NormalizeTaskUpdates(updates)
	if err != nil {
		return nil, err
	}
	if len(updates) == 0 {
		return []orkstate.TaskOutcome{}, nil
	}
	args := append(newReportArgs(updates), s.now())
	var out []orkstate.TaskOutcome
	err = s.retryDeadlock(ctx, func() error {
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.set_task_states($1, $2, $3, $4, $5, $6, $7)`), args...)
		if err != nil {
			return err
		}
		out, err = collectOutcomes(rows)
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: set task states")
	}
	return out, nil
}

// newReportArgs are set_task_states' six arguments for normalized updates. An
// optional field no update sets goes as NULL, not as an array of NULLs or zeros:
// the function treats both alike, and a batch of bare successes (a scheduler's
// usual report) then sends, decodes and unnests two arrays instead of six.
func newReportArgs(updates []orkstate.TaskUpdate) []any {
	n := len(updates)
	ids := make([]int64, n)
	statuses := make([]string, n)
	var names, errs, outputs []*string // JSON as text: the simple protocol sends []byte as bytea
	var attempts []int32
	for i, u := range updates {
		ids[i], statuses[i] = u.TaskID, string(u.Status)
		if u.Attempt != 0 {
			if attempts == nil {
				attempts = make([]int32, n)
			}
			attempts[i] = int32(u.Attempt)
		}
		if u.ExecutionName != "" {
			if names == nil {
				names = make([]*string, n)
			}
			names[i] = &updates[i].ExecutionName
		}
		if u.Error != "" {
			if errs == nil {
				errs = make([]*string, n)
			}
			errs[i] = &updates[i].Error
		}
		if len(u.Output) > 0 {
			if outputs == nil {
				outputs = make([]*string, n)
			}
			o := string(u.Output)
			outputs[i] = &o
		}
	}
	return []any{ids, statuses, names, errs, outputs, attempts}
}

// UpdateTaskStatus applies one report; invalid, stale and not_found come back as errors.
func (s *Store) UpdateTaskStatus(ctx context.Context, u orkstate.TaskUpdate) (*orkstate.TaskOutcome, error) {
	out, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{u})
	if err != nil {
		return nil, err
	}
	if err := out[0].Outcome.Err(); err != nil {
		return &out[0], fmt.Errorf("pgstore: task %d to %s: %w", u.TaskID, u.Status, err)
	}
	return &out[0], nil
}

// retryDeadlock runs fn, again after a deadlock or serialization failure, when the
// Store owns its transactions; inside a caller's tx the error is the caller's to handle.
func (s *Store) retryDeadlock(ctx context.Context, fn func() error) error {
	_, pooled := s.db.(*pgxpool.Pool)
	for attempt := 1; ; attempt++ {
		err := fn()
		var pgErr *pgconn.PgError
		if !pooled || attempt == 5 || !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}
