package sqlitecompat

import (
	"context"
	"encoding/json"
	"time"

	"github.com/orkstate/orkstate"
)

var _ orkstate.Purger = (*Store)(nil)

// PurgeRuns deletes the history older than p.OlderThan, with the semantics of
// pgstore's (orkstate.Purger): runs that finished longer ago, oldest first, with
// their tasks, dependency rows, log chunks, log sizes and deferred jobs, in batches
// of at most p.BatchSize tasks, each its own write transaction (so other writers of
// the file wait for one batch at most), until a batch deletes nothing. A run with an
// unfinished task or a pending or polling deferred job stays. A cancelled context or
// a killed process loses at most the batch in progress; calling PurgeRuns again goes
// on where it stopped. SQLite has no lease rows (leases live on the tasks), so
// PurgeResult.Leases is 0.
//
// The file does not shrink: SQLite puts the freed pages on its free list and reuses
// them for the next inserts. p.Vacuum runs `PRAGMA incremental_vacuum` afterwards,
// which returns the free pages to the file system when the file was created with
// auto_vacuum = incremental and does nothing otherwise; a full VACUUM (rewriting the
// file, blocking every writer meanwhile) is left to the operator.
func (s *Store) PurgeRuns(ctx context.Context, p orkstate.PurgeParams) (orkstate.PurgeResult, error) {
	p, err := p.Validate()
	if err != nil {
		return orkstate.PurgeResult{}, err
	}
	var total orkstate.PurgeResult
	for {
		var b orkstate.PurgeResult
		start := time.Now()
		err := s.write(ctx, func(t *txState) error {
			var err error
			b, err = purgeBatch(t, t.now.Add(-p.OlderThan), p.BatchSize)
			return err
		})
		if err != nil {
			return total, err
		}
		if b.Empty() {
			break
		}
		total.Add(b)
		if p.Progress != nil {
			p.Progress(total)
		}
		if err := p.Wait(ctx, start, b); err != nil {
			return total, err
		}
	}
	if p.Vacuum && total.Batches > 0 {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if _, err := s.wdb.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
			return total, translate(err)
		}
	}
	return total, nil
}

// purgeBatch deletes one batch, as pgstore's purge_runs does: whole runs, oldest
// finished first, while their tasks fit limit (an empty run counts 1); when the
// first run alone does not fit, limit of its tasks, its row going with the last of
// them.
func purgeBatch(t *txState, cutoff time.Time, limit int) (orkstate.PurgeResult, error) {
	b := orkstate.PurgeResult{Batches: 1}
	rows, err := t.query(`SELECT r.id, (SELECT count(*) FROM tasks t WHERE t.run_id = r.id)
		FROM runs r
		WHERE r.status IN ('success', 'failed', 'cancelled') AND r.finished_at < ?
		  AND NOT EXISTS (SELECT 1 FROM tasks t
		                  WHERE t.run_id = r.id AND t.status NOT IN ('success', 'failed', 'cancelled'))
		  AND NOT EXISTS (SELECT 1 FROM tasks t JOIN deferred_jobs j ON j.task_id = t.id
		                  WHERE t.run_id = r.id AND j.status IN ('pending', 'polling'))
		ORDER BY r.finished_at, r.id
		LIMIT ?`, ts(cutoff), limit)
	if err != nil {
		return b, err
	}
	var runIDs []int64
	budget := limit
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return b, err
		}
		if max(n, 1) <= int64(budget) {
			runIDs = append(runIDs, id)
			budget -= int(max(n, 1))
			continue
		}
		if len(runIDs) == 0 {
			runIDs = append(runIDs, id) // taken in part
		}
		break
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return b, err
	}
	if len(runIDs) == 0 {
		return orkstate.PurgeResult{}, nil
	}
	runs, err := json.Marshal(runIDs)
	if err != nil {
		return b, err
	}
	var taskIDs []int64
	rows, err = t.query(`SELECT id FROM tasks WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?`, string(runs), limit)
	if err != nil {
		return b, err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return b, err
		}
		taskIDs = append(taskIDs, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return b, err
	}
	tasks, err := json.Marshal(taskIDs)
	if err != nil {
		return b, err
	}
	// Children first, by key, counted; the foreign keys' cascades then find nothing.
	for _, d := range []struct {
		q string
		n *int64
	}{
		{`DELETE FROM task_logs WHERE task_id IN (SELECT value FROM json_each(?))`, &b.LogChunks},
		{`DELETE FROM task_log_sizes WHERE task_id IN (SELECT value FROM json_each(?))`, nil},
		{`DELETE FROM deferred_jobs WHERE task_id IN (SELECT value FROM json_each(?))`, &b.DeferredJobs},
		{`DELETE FROM task_deps WHERE upstream_id IN (SELECT value FROM json_each(?))`, nil},
		{`DELETE FROM task_deps WHERE downstream_id IN (SELECT value FROM json_each(?))`, nil},
		{`DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?))`, &b.Tasks},
	} {
		res, err := t.exec(d.q, string(tasks))
		if err != nil {
			return b, err
		}
		if d.n != nil {
			if *d.n, err = res.RowsAffected(); err != nil {
				return b, err
			}
		}
	}
	res, err := t.exec(`DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))
		AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = runs.id)`, string(runs))
	if err != nil {
		return b, err
	}
	b.Runs, err = res.RowsAffected()
	return b, err
}
