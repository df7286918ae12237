package sqlitecompat

import (
	"context"
	"database/sql"
	"errors"
	"sort"

	"github.com/orkstate/orkstate"
)

// SetWorkflowLimits sets a workflow's priority, limits and fairness; a new priority
// reaches the tasks not ready yet (as set_workflow_limits does).
func (s *Store) SetWorkflowLimits(ctx context.Context, workflowID int64, l orkstate.WorkflowLimits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		var old int
		err := t.queryRow(`SELECT priority FROM workflows WHERE id = ?`, workflowID).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("workflow", workflowID)
		}
		if err != nil {
			return err
		}
		if _, err := t.exec(`UPDATE workflows SET priority = ?, max_active_runs = ?, max_tasks_in_flight = ?,
				task_pool = CASE WHEN ? IS NOT NULL THEN 1 ELSE task_pool END, fair = ?, updated_at = ? WHERE id = ?`,
			l.Priority, l.MaxActiveRuns, l.MaxTasksInFlight, l.MaxTasksInFlight, l.Fair, ts(t.now), workflowID); err != nil {
			return err
		}
		if old == l.Priority {
			return nil
		}
		_, err = t.exec(`UPDATE tasks SET priority = ?
			WHERE run_id IN (SELECT id FROM runs WHERE workflow_id = ? AND status IN ('running', 'paused'))
			  AND status IN ('pending', 'paused') AND priority_override IS NULL
			  AND NOT (status = 'pending' AND unmet_deps = 0)`, l.Priority, workflowID)
		return err
	})
}

// GetWorkflowLimits returns what SetWorkflowLimits set.
func (s *Store) GetWorkflowLimits(ctx context.Context, workflowID int64) (*orkstate.WorkflowLimits, error) {
	var l orkstate.WorkflowLimits
	var runs, inFlight sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT priority, max_active_runs, max_tasks_in_flight, fair FROM workflows WHERE id = ?`,
		workflowID).Scan(&l.Priority, &runs, &inFlight, &l.Fair)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("workflow", workflowID)
	}
	if err != nil {
		return nil, err
	}
	l.MaxActiveRuns, l.MaxTasksInFlight = intPtr(runs), intPtr(inFlight)
	return &l, nil
}

func intPtr(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	n := int(v.Int64)
	return &n
}

// SetConcurrencyKey creates a concurrency key or changes its slots.
func (s *Store) SetConcurrencyKey(ctx context.Context, key string, slots int) error {
	if err := orkstate.ValidConcurrencyKey(key); err != nil {
		return err
	}
	if err := orkstate.ValidSlots(slots); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		_, err := t.exec(`INSERT INTO concurrency_keys (key, slots) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET slots = excluded.slots`, key, slots)
		return err
	})
}

// ConcurrencyKeys lists the keys with their slots and tasks in flight, by key.
func (s *Store) ConcurrencyKeys(ctx context.Context) ([]orkstate.ConcurrencyKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT k.key, k.slots,
			(SELECT count(*) FROM tasks t WHERE t.concurrency_key = k.key AND t.status IN ('dispatched', 'running'))
		FROM concurrency_keys k ORDER BY k.key`)
	return collect(rows, err, func(r scanner) (*orkstate.ConcurrencyKey, error) {
		var k orkstate.ConcurrencyKey
		return &k, r.Scan(&k.Key, &k.Slots, &k.InFlight)
	})
}

// candidate is a ready task as the claim orders it.
type candidate struct {
	id       int64
	priority int
	key      string
	wf       int64 // the workflow whose max tasks in flight it counts against; 0: none
	fairRun  int64
	turn     int
}

type groupKey struct {
	wf      int64
	key     string
	fairRun int64
}

// pickClaim chooses what a claim of up to limit takes, by claim_tasks' rules: the
// head of the ungrouped tasks and of each group (workflow pool, key, fair run) as far
// as its pools have room; then the order priority, turn, newer fair run, id; then each
// pool keeps what it has room for. SQLite has one writer, so the room is counted here.
func pickClaim(t *txState, limit int, types any) ([]int64, error) {
	rows, err := t.query(`SELECT t.id, t.priority, t.concurrency_key,
			CASE WHEN t.workflow_pool = 1 THEN r.workflow_id ELSE 0 END, t.fair_run
		FROM tasks t JOIN runs r ON r.id = t.run_id
		WHERE `+dispatchableWhere+` ORDER BY t.priority DESC, t.id`, ts(t.now), types, types)
	if err != nil {
		return nil, err
	}
	groups := map[groupKey][]candidate{}
	var plain []candidate
	var order []groupKey
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.id, &c.priority, &c.key, &c.wf, &c.fairRun); err != nil {
			rows.Close()
			return nil, err
		}
		g := groupKey{c.wf, c.key, c.fairRun}
		if g == (groupKey{}) {
			if len(plain) < limit {
				plain = append(plain, c)
			}
			continue
		}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		ids := make([]int64, len(plain))
		for i, c := range plain {
			ids[i] = c.id
		}
		return ids, nil
	}
	keyFree, wfFree := map[string]int{}, map[int64]int{}
	for _, g := range order {
		if g.key != "" {
			if _, ok := keyFree[g.key]; !ok {
				var free int
				if err := t.queryRow(`SELECT k.slots - (SELECT count(*) FROM tasks t
						WHERE t.concurrency_key = k.key AND t.status IN ('dispatched', 'running'))
					FROM concurrency_keys k WHERE k.key = ?`, g.key).Scan(&free); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return nil, err
				}
				keyFree[g.key] = free
			}
		}
		if g.wf != 0 {
			if _, ok := wfFree[g.wf]; !ok {
				var max sql.NullInt64
				var busy int
				if err := t.queryRow(`SELECT w.max_tasks_in_flight, (SELECT count(*) FROM tasks t JOIN runs r ON r.id = t.run_id
						WHERE r.workflow_id = w.id AND t.workflow_pool = 1 AND t.status IN ('dispatched', 'running'))
					FROM workflows w WHERE w.id = ?`, g.wf).Scan(&max, &busy); err != nil {
					return nil, err
				}
				free := limit
				if max.Valid {
					free = int(max.Int64) - busy
				}
				wfFree[g.wf] = free
			}
		}
	}
	cands := plain
	for _, g := range order {
		room := limit
		if g.key != "" {
			room = min(room, keyFree[g.key])
		}
		if g.wf != 0 {
			room = min(room, wfFree[g.wf])
		}
		if room > 0 {
			cands = append(cands, groups[g][:min(room, len(groups[g]))]...)
		}
	}
	byPrio := func(a, b candidate) bool {
		if a.priority != b.priority {
			return a.priority > b.priority
		}
		return a.id < b.id
	}
	sort.Slice(cands, func(i, j int) bool { return byPrio(cands[i], cands[j]) })
	turns := map[int64]int{}
	for i := range cands {
		turns[cands[i].fairRun]++
		cands[i].turn = turns[cands[i].fairRun]
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		switch {
		case a.priority != b.priority:
			return a.priority > b.priority
		case a.turn != b.turn:
			return a.turn < b.turn
		case a.fairRun != b.fairRun:
			return a.fairRun > b.fairRun
		}
		return a.id < b.id
	})
	var ids []int64
	for _, c := range cands {
		if len(ids) == limit {
			break
		}
		// Each pool counts the candidates in claim order, taken or not (as the
		// window ranks of _pick_grouped do).
		okKey, okWf := true, true
		if c.key != "" {
			okKey = keyFree[c.key] > 0
			keyFree[c.key]--
		}
		if c.wf != 0 {
			okWf = wfFree[c.wf] > 0
			wfFree[c.wf]--
		}
		if okKey && okWf {
			ids = append(ids, c.id)
		}
	}
	return ids, nil
}
