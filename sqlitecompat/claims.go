// Claims: ClaimTasks and the upstream outputs handed out with a claim.

package sqlitecompat

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/orkstate/orkstate"
)

// ClaimTasks moves up to p.Limit dispatchable tasks to dispatched: highest priority
// first, in id order within a priority, within the concurrency limits (pickClaim).
// They come back in that order.
func (s *Store) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	var types any
	if len(p.ExecutorTypes) > 0 {
		b, _ := json.Marshal(p.ExecutorTypes)
		types = string(b)
	}
	out := []orkstate.ClaimedTask{}
	err = s.write(ctx, func(t *txState) error {
		out = out[:0]
		now := ts(t.now)
		picked, err := pickClaim(t, p.Limit, types)
		if err != nil || len(picked) == 0 {
			return err
		}
		claimed, err := t.ids(`UPDATE tasks SET status = 'dispatched', attempts = attempts + 1, claimed_by = ?,
				lease_expires_at = ?, dispatched_at = ?, started_at = NULL, finished_at = NULL, retry_at = NULL,
				timeout_at = CASE WHEN timeout_seconds > 0 THEN ? + timeout_seconds * ? END
			WHERE id IN (SELECT value FROM json_each(?)) RETURNING id`,
			p.Claimer, ts(t.now.Add(p.Lease)), now, now, usec, idsJSON(picked))
		if err != nil || len(claimed) == 0 {
			return err
		}
		rows, err := t.query(`SELECT `+taskCols+`, w.id, w.name, w.job_name, w.project, w.region
			FROM tasks t JOIN runs r ON r.id = t.run_id JOIN workflows w ON w.id = r.workflow_id
			WHERE t.id IN (SELECT value FROM json_each(?)) ORDER BY t.priority DESC, t.id`, idsJSON(claimed))
		if err != nil {
			return err
		}
		byID := map[int64]int{}
		for rows.Next() {
			var c orkstate.ClaimedTask
			k, err := scanTaskExtra(rows, &c.WorkflowID, &c.WorkflowName, &c.JobName, &c.Project, &c.Region)
			if err != nil {
				rows.Close()
				return err
			}
			c.Task, c.Attempt = *k, k.Attempts
			c.UpstreamOutputs = map[string]json.RawMessage{}
			byID[k.ID] = len(out)
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		ids := make([]int64, len(out))
		for i := range out {
			ids[i] = out[i].ID
		}
		return upstreamOutputs(t.ctx, t.tx, ids, func(id int64, name string, v json.RawMessage) {
			out[byID[id]].UpstreamOutputs[name] = v
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// upstreamOutputs calls fn with each dependency name and output of the tasks ids.
func upstreamOutputs(ctx context.Context, q queryer, ids []int64, fn func(id int64, name string, out json.RawMessage)) error {
	rows, err := q.QueryContext(ctx, `SELECT t.id, j.value, u.output
		FROM tasks t JOIN json_each(t.depends_on) j LEFT JOIN tasks u ON u.run_id = t.run_id AND u.task_name = j.value
		WHERE t.id IN (SELECT value FROM json_each(?))`, idsJSON(ids))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var name string
		var out sql.NullString
		if err := rows.Scan(&id, &name, &out); err != nil {
			return err
		}
		fn(id, name, fromNullJSON(out))
	}
	return rows.Err()
}
