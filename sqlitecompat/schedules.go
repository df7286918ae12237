package sqlitecompat

import (
	"context"
	"sort"
	"time"

	"github.com/orkstate/orkstate"
)

// SetSchedule validates expr and sets it; when enabled the next fire time is the
// first after now (the store's clock when now is zero), when disabled it is
// cleared. An empty expr clears and disables.
func (s *Store) SetSchedule(ctx context.Context, workflowID int64, expr string, enabled bool, now time.Time) error {
	if now.IsZero() {
		now = s.clock()
	}
	if err := orkstate.ValidTime("now", &now); err != nil {
		return err
	}
	c, err := orkstate.PlanSchedule(expr, enabled, now)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		res, err := t.exec(`UPDATE workflows SET schedule = ?, schedule_enabled = ?, next_scheduled_at = ?, updated_at = ?
			WHERE id = ?`, c.Expr, c.Enabled, tsPtr(c.Next), ts(t.now), workflowID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("workflow", workflowID)
		}
		return nil
	})
}

// SetScheduleTimes overwrites the last and next fire times.
func (s *Store) SetScheduleTimes(ctx context.Context, workflowID int64, last, next *time.Time) error {
	if err := orkstate.ValidTime("last", last); err != nil {
		return err
	}
	if err := orkstate.ValidTime("next", next); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		res, err := t.exec(`UPDATE workflows SET last_scheduled_at = ?, next_scheduled_at = ?, updated_at = ? WHERE id = ?`,
			tsPtr(last), tsPtr(next), ts(t.now), workflowID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("workflow", workflowID)
		}
		return nil
	})
}

const dueWhere = `w.schedule_enabled AND w.schedule <> '' AND w.next_scheduled_at IS NOT NULL AND w.next_scheduled_at <= ?`

// DueWorkflows lists enabled schedules whose next fire time is at or before now,
// earliest first.
func (s *Store) DueWorkflows(ctx context.Context, now time.Time, limit int) ([]orkstate.Workflow, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = s.clock()
	}
	if err := orkstate.ValidTime("now", &now); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+workflowCols+` FROM workflows w WHERE `+dueWhere+`
		ORDER BY w.next_scheduled_at, w.id LIMIT ?`, ts(now), limit)
	return collect(rows, err, scanWorkflow)
}

// FireDueSchedules creates one pending run (triggered_by "schedule") per due
// workflow and, in the same transaction, sets last_scheduled_at to the fire time
// and next_scheduled_at to the first fire time after now (missed fires are not
// replayed). The advance is a compare-and-set on next_scheduled_at inside a
// BEGIN IMMEDIATE transaction, so racing schedulers, in this process or others,
// yield one run per fire time.
func (s *Store) FireDueSchedules(ctx context.Context, now time.Time, limit int) ([]orkstate.Run, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = s.clock()
	}
	if err := orkstate.ValidTime("now", &now); err != nil {
		return nil, err
	}
	out := []orkstate.Run{}
	err := s.write(ctx, func(t *txState) error {
		out = out[:0]
		rows, err := t.query(`SELECT w.id, w.schedule, w.next_scheduled_at FROM workflows w WHERE `+dueWhere+`
			ORDER BY w.next_scheduled_at, w.id LIMIT ?`, ts(now), limit)
		if err != nil {
			return err
		}
		type due struct {
			id   int64
			expr string
			at   int64
		}
		var ds []due
		for rows.Next() {
			var d due
			if err := rows.Scan(&d.id, &d.expr, &d.at); err != nil {
				rows.Close()
				return err
			}
			ds = append(ds, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Runs are created in workflow id order, as fire_schedules inserts them.
		sort.Slice(ds, func(i, j int) bool { return ds[i].id < ds[j].id })
		for _, d := range ds {
			var next any
			if n, err := orkstate.NextFireTime(d.expr, now); err == nil {
				next = ts(n)
			}
			// An expression that no longer parses (set by hand) is disabled rather
			// than fired forever.
			res, err := t.exec(`UPDATE workflows SET last_scheduled_at = ?, next_scheduled_at = ?,
					schedule_enabled = (? IS NOT NULL), updated_at = ?
				WHERE id = ? AND next_scheduled_at = ?`, d.at, next, next, ts(t.now), d.id, d.at)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 || next == nil {
				continue
			}
			run, err := insertRun(t, d.id, "schedule")
			if err != nil {
				return err
			}
			out = append(out, *run)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
