// Claims: ClaimTasks, ReportAndClaim and the upstream outputs handed out with a claim.

package sqlitecompat

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/orkstate/orkstate"
)

var _ orkstate.ReportClaimer = (*Store)(nil)

// ClaimTasks moves up to p.Limit dispatchable tasks to dispatched: highest priority
// first, in id order within a priority, within the concurrency limits (pickClaim).
// They come back in that order.
func (s *Store) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	out := []orkstate.ClaimedTask{}
	err = s.write(ctx, func(t *txState) (err error) {
		out, err = t.claim(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReportAndClaim applies updates as SetTaskStates does, then claims as ClaimTasks
// does, in one write transaction: the claim sees the reports' effects, and an error
// on either side leaves nothing changed.
func (s *Store) ReportAndClaim(ctx context.Context, updates []orkstate.TaskUpdate, p orkstate.ClaimParams) ([]orkstate.TaskOutcome, []orkstate.ClaimedTask, error) {
	updates, err := orkstate.NormalizeTaskUpdates(updates)
	if err != nil {
		return nil, nil, err
	}
	p, err = p.Normalize()
	if err != nil {
		return nil, nil, err
	}
	outcomes, claimed := []orkstate.TaskOutcome{}, []orkstate.ClaimedTask{}
	err = s.write(ctx, func(t *txState) (err error) {
		outcomes, claimed = []orkstate.TaskOutcome{}, []orkstate.ClaimedTask{}
		if len(updates) > 0 {
			if outcomes, err = t.applyReports(updates); err != nil {
				return err
			}
		}
		claimed, err = t.claim(p)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return outcomes, claimed, nil
}

// claim is ClaimTasks inside t, for normalized p.
func (t *txState) claim(p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	var types any
	if len(p.ExecutorTypes) > 0 {
		b, _ := json.Marshal(p.ExecutorTypes)
		types = string(b)
	}
	out := []orkstate.ClaimedTask{}
	now := ts(t.now)
	picked, err := pickClaim(t, p.Limit, types)
	if err != nil || len(picked) == 0 {
		return out, err
	}
	claimed, err := t.ids(`UPDATE tasks SET status = 'dispatched', attempts = attempts + 1, claimed_by = ?,
			lease_expires_at = ?, dispatched_at = ?, started_at = NULL, finished_at = NULL, retry_at = NULL,
			timeout_at = CASE WHEN timeout_seconds > 0 THEN ? + timeout_seconds * ? END
		WHERE id IN (SELECT value FROM json_each(?)) RETURNING id`,
		p.Claimer, ts(t.now.Add(p.Lease)), now, now, usec, idsJSON(picked))
	if err != nil || len(claimed) == 0 {
		return out, err
	}
	rows, err := t.query(`SELECT `+taskCols+`, w.id, w.name, w.job_name, w.project, w.region
		FROM tasks t JOIN runs r ON r.id = t.run_id JOIN workflows w ON w.id = r.workflow_id
		WHERE t.id IN (SELECT value FROM json_each(?)) ORDER BY t.priority DESC, t.id`, idsJSON(claimed))
	if err != nil {
		return out, err
	}
	byID := map[int64]int{}
	for rows.Next() {
		var c orkstate.ClaimedTask
		k, err := scanTaskExtra(rows, &c.WorkflowID, &c.WorkflowName, &c.JobName, &c.Project, &c.Region)
		if err != nil {
			rows.Close()
			return out, err
		}
		c.Task, c.Attempt = *k, k.Attempts
		c.UpstreamOutputs = map[string]json.RawMessage{}
		byID[k.ID] = len(out)
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	ids := make([]int64, len(out))
	for i := range out {
		ids[i] = out[i].ID
	}
	return out, upstreamOutputs(t.ctx, t.tx, ids, func(id int64, name string, v json.RawMessage) {
		out[byID[id]].UpstreamOutputs[name] = v
	})
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
