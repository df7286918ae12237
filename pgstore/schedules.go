package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orkstate/orkstate"
)

// SetSchedule stores expr (trimmed). Enabled: next_scheduled_at is the first fire
// time after now (Config.Now's, else time.Now(), when now is zero); disabled: it is cleared. An empty
// expr clears the schedule and disables it.
func (s *Store) SetSchedule(ctx context.Context, workflowID int64, expr string, enabled bool, now time.Time) error {
	if now.IsZero() {
		now = s.goNow()
	}
	if err := orkstate.ValidTime("now", &now); err != nil {
		return err
	}
	c, err := orkstate.PlanSchedule(expr, enabled, now)
	if err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, s.sql(`
		update {ork}.workflows
		set schedule = $2, schedule_enabled = $3, next_scheduled_at = $4, updated_at = now()
		where id = $1`), workflowID, c.Expr, c.Enabled, c.Next)
	if err == nil && tag.RowsAffected() == 0 {
		err = orkstate.ErrNotFound
	}
	return wrap(err, "pgstore: set schedule of workflow %d", workflowID)
}

func (s *Store) SetScheduleTimes(ctx context.Context, workflowID int64, last, next *time.Time) error {
	if err := orkstate.ValidTime("last", last); err != nil {
		return err
	}
	if err := orkstate.ValidTime("next", next); err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, s.sql(`
		update {ork}.workflows
		set last_scheduled_at = $2, next_scheduled_at = $3, updated_at = now()
		where id = $1`), workflowID, last, next)
	if err == nil && tag.RowsAffected() == 0 {
		err = orkstate.ErrNotFound
	}
	return wrap(err, "pgstore: set schedule times of workflow %d", workflowID)
}

// DueWorkflows orders by next fire time, then id; a zero now means Config.Now's time,
// else time.Now().
func (s *Store) DueWorkflows(ctx context.Context, now time.Time, limit int) ([]orkstate.Workflow, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = s.goNow()
	}
	if err := orkstate.ValidTime("now", &now); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`
		select `+workflowColumns+` from {ork}.workflows
		where schedule_enabled and next_scheduled_at <= $1
		order by next_scheduled_at, id limit $2`), now, limit)
	if err != nil {
		return nil, wrap(err, "pgstore: due workflows")
	}
	wfs, err := scanWorkflows(rows)
	return wfs, wrap(err, "pgstore: due workflows")
}

// FireDueSchedules fires every due schedule once (fire_schedules' compare-and-set).
// A stored expression that no longer parses is skipped and reported in the error,
// after the others fired.
func (s *Store) FireDueSchedules(ctx context.Context, now time.Time, limit int) ([]orkstate.Run, error) {
	if now.IsZero() {
		now = s.goNow()
	}
	due, err := s.DueWorkflows(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	var (
		ids         []int64
		fires, next []time.Time
		bad         []error
	)
	for _, w := range due {
		n, err := orkstate.NextFireTime(w.Schedule, now)
		if err != nil {
			bad = append(bad, fmt.Errorf("workflow %q: %w", w.Name, err))
			continue
		}
		ids, fires, next = append(ids, w.ID), append(fires, *w.NextScheduledAt), append(next, n)
	}
	runs := []orkstate.Run{}
	if len(ids) > 0 {
		rows, err := s.db.Query(ctx, s.sql(`select `+runColumns+` from {api}.fire_schedules($1, $2, $3)`), ids, fires, next)
		if err != nil {
			return nil, wrap(err, "pgstore: fire schedules")
		}
		if runs, err = scanRuns(rows); err != nil {
			return nil, wrap(err, "pgstore: fire schedules")
		}
	}
	return runs, errors.Join(bad...)
}
