// Sweeps: ExpireTaskLeases and FailTimedOutTasks, as sql/functions/leases_and_timeouts.sql does.

package sqlitecompat

import (
	"context"
	"fmt"
	"sort"

	"github.com/orkstate/orkstate"
)

// ExpireTaskLeases returns dispatched tasks whose lease ran out to pending; the
// attempt is not counted as a failure, and the old claimer's report becomes stale.
func (s *Store) ExpireTaskLeases(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	if err := checkBatchLimit(limit); err != nil {
		return nil, err
	}
	out := []orkstate.TaskOutcome{}
	err := s.write(ctx, func(t *txState) error {
		out = out[:0]
		rows, err := t.query(`SELECT id, attempts FROM tasks WHERE status = 'dispatched' AND lease_expires_at <= ?
			ORDER BY lease_expires_at, id LIMIT ?`, ts(t.now), limit)
		if err != nil {
			return err
		}
		var us []orkstate.TaskUpdate
		for rows.Next() {
			u := orkstate.TaskUpdate{Status: orkstate.TaskPending, Error: "lease expired"}
			if err := rows.Scan(&u.TaskID, &u.Attempt); err != nil {
				rows.Close()
				return err
			}
			us = append(us, u)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(us, func(i, j int) bool { return us[i].TaskID < us[j].TaskID })
		if len(us) > 0 {
			t.signals |= kindTasksReady
		}
		out, err = t.applyReports(us)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (t *txState) ids(q string, args ...any) ([]int64, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// FailTimedOutTasks fails dispatched or running tasks past their timeout with
// "timeout after Ns", under the retry rule; their deferred jobs are cancelled.
func (s *Store) FailTimedOutTasks(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	if err := checkBatchLimit(limit); err != nil {
		return nil, err
	}
	out := []orkstate.TaskOutcome{}
	err := s.write(ctx, func(t *txState) error {
		out = out[:0]
		rows, err := t.query(`SELECT id, timeout_seconds, attempts FROM tasks WHERE status IN ('dispatched', 'running')
			AND timeout_at <= ? ORDER BY timeout_at, id LIMIT ?`, ts(t.now), limit)
		if err != nil {
			return err
		}
		type to struct {
			id            int64
			sec, attempts int
		}
		var tos []to
		for rows.Next() {
			var x to
			if err := rows.Scan(&x.id, &x.sec, &x.attempts); err != nil {
				rows.Close()
				return err
			}
			tos = append(tos, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(tos, func(i, j int) bool { return tos[i].id < tos[j].id })
		us := make([]orkstate.TaskUpdate, len(tos))
		for i, x := range tos {
			us[i] = orkstate.TaskUpdate{TaskID: x.id, Status: orkstate.TaskFailed,
				Error: fmt.Sprintf("timeout after %ds", x.sec), Attempt: x.attempts}
		}
		out, err = t.applyReports(us)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
