package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// runColumns are the columns of orkstate.Run, unqualified, in field order.
const runColumns = `id, workflow_id, snapshot_id, status, triggered_by, error, created_at, started_at, finished_at`

// scanRuns collects rows selected with runColumns.
func scanRuns(rows pgx.Rows) ([]orkstate.Run, error) {
	return pgx.CollectRows(rows, pgx.RowToStructByName[orkstate.Run])
}

// scanRun collects exactly one row selected with runColumns; none is ErrNotFound after translate.
func scanRun(rows pgx.Rows) (*orkstate.Run, error) {
	return pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.Run])
}

// runStatsOfR is a JSON object of orkstate.TaskStats for the run aliased r; it decodes
// into a TaskStats field (JSON keys match field names case-insensitively).
const runStatsOfR = `(select json_build_object(
		'total', count(*),
		'pending', count(*) filter (where t.status = 'pending'),
		'paused', count(*) filter (where t.status = 'paused'),
		'dispatched', count(*) filter (where t.status = 'dispatched'),
		'running', count(*) filter (where t.status = 'running'),
		'success', count(*) filter (where t.status = 'success'),
		'failed', count(*) filter (where t.status = 'failed'),
		'cancelled', count(*) filter (where t.status = 'cancelled'))
	from {ork}.tasks t where t.run_id = r.id)`

func (s *Store) CreateRun(ctx context.Context, workflowID int64, triggeredBy string) (*orkstate.Run, error) {
	if err := orkstate.ValidName("triggered_by", triggeredBy, false); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`
		insert into {ork}.runs (workflow_id, snapshot_id, triggered_by)
		select id, current_snapshot_id, $2 from {ork}.workflows where id = $1
		returning `+runColumns), workflowID, triggeredBy)
	if err != nil {
		return nil, wrap(err, "pgstore: create run of workflow %d", workflowID)
	}
	run, err := scanRun(rows)
	return run, wrap(err, "pgstore: create run of workflow %d", workflowID)
}

// CreateRuns inserts the runs in one statement, so in one round trip and one
// commit (or none, inside a caller's transaction): a workflow that does not exist
// makes the statement insert nothing, and a second query, on that error path only,
// finds the first item naming it. The ids follow input order (the insert reads the
// items in order). All the runs get the same created_at (the transaction's now()).
func (s *Store) CreateRuns(ctx context.Context, runs []orkstate.NewRun) ([]orkstate.Run, error) {
	if len(runs) == 0 {
		return []orkstate.Run{}, nil
	}
	if err := orkstate.ValidateNewRuns(runs); err != nil {
		return nil, err
	}
	wfs := make([]int64, len(runs))
	by := make([]string, len(runs))
	for i, r := range runs {
		wfs[i], by[i] = r.WorkflowID, r.TriggeredBy
	}
	rows, err := s.db.Query(ctx, s.sql(`
		with i as (
			select i.ord, w.id as workflow_id, w.current_snapshot_id, i.triggered_by
			from unnest($1::bigint[], $2::text[]) with ordinality as i(workflow_id, triggered_by, ord)
			left join {ork}.workflows w on w.id = i.workflow_id),
		ins as (
			insert into {ork}.runs (workflow_id, snapshot_id, triggered_by)
			select workflow_id, current_snapshot_id, triggered_by from i
			where not exists (select from i where workflow_id is null)
			order by ord
			returning `+runColumns+`)
		select `+runColumns+` from ins order by id`), wfs, by)
	if err != nil {
		return nil, wrap(err, "pgstore: create %d runs", len(runs))
	}
	out, err := scanRuns(rows)
	if err != nil {
		return nil, wrap(err, "pgstore: create %d runs", len(runs))
	}
	if len(out) == len(runs) {
		return out, nil
	}
	var ord *int64
	err = s.db.QueryRow(ctx, s.sql(`
		select min(i.ord) from unnest($1::bigint[]) with ordinality as i(workflow_id, ord)
		where not exists (select from {ork}.workflows w where w.id = i.workflow_id)`), wfs).Scan(&ord)
	if err != nil {
		return nil, wrap(err, "pgstore: create %d runs", len(runs))
	}
	if ord == nil { // cannot happen: the insert found a workflow missing, none is deleted and back
		return nil, fmt.Errorf("pgstore: create %d runs: %w: a workflow", len(runs), orkstate.ErrNotFound)
	}
	i := *ord - 1
	return nil, fmt.Errorf("pgstore: create %d runs: run %d: workflow %d: %w", len(runs), i, wfs[i], orkstate.ErrNotFound)
}

func (s *Store) GetRun(ctx context.Context, id int64) (*orkstate.Run, error) {
	rows, err := s.db.Query(ctx, s.sql(`select `+runColumns+` from {ork}.runs where id = $1`), id)
	if err != nil {
		return nil, wrap(err, "pgstore: get run %d", id)
	}
	run, err := scanRun(rows)
	return run, wrap(err, "pgstore: get run %d", id)
}

// ListRuns returns ErrNotFound for a workflowID that names no workflow.
func (s *Store) ListRuns(ctx context.Context, workflowID int64) ([]orkstate.Run, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select `+runColumns+` from {ork}.runs
		where $1::bigint = 0 or workflow_id = $1
		order by id desc`), workflowID)
	if err != nil {
		return nil, wrap(err, "pgstore: list runs")
	}
	runs, err := scanRuns(rows)
	if err == nil && len(runs) == 0 && workflowID != 0 {
		err = s.mustExist(ctx, `select from {ork}.workflows where id = $1`, workflowID)
	}
	return runs, wrap(err, "pgstore: list runs of workflow %d", workflowID)
}

func (s *Store) ListRunsPage(ctx context.Context, q orkstate.RunListQuery) (*orkstate.RunPage, error) {
	limit, offset, err := pageBounds(q.Limit, q.Offset)
	if err != nil {
		return nil, err
	}
	if q.Status != "" {
		if q.Status, err = orkstate.ParseRunStatus(string(q.Status)); err != nil {
			return nil, err
		}
	}
	if err := orkstate.ValidText("workflow_name", q.WorkflowName); err != nil {
		return nil, err
	}
	// $1 status ('' = any), $2 workflow name search ('' = any), $3 its ILIKE pattern.
	const filter = `($1::text = '' or status = $1)
		and ($2::text = '' or workflow_id in (select id from {ork}.workflows where name ilike $3 escape '\'))`
	args := []any{string(q.Status), q.WorkflowName, containsPattern(q.WorkflowName)}
	page := &orkstate.RunPage{}
	err = s.db.QueryRow(ctx, s.sql(`select count(*) from {ork}.runs where `+filter), args...).Scan(&page.Total)
	if err != nil {
		return nil, wrap(err, "pgstore: list runs page")
	}
	rows, err := s.db.Query(ctx, s.sql(`
		with r as (
			select `+runColumns+` from {ork}.runs where `+filter+`
			order by id desc limit $4 offset $5)
		select r.*, w.name as workflow_name, `+runStatsOfR+` as stats
		from r join {ork}.workflows w on w.id = r.workflow_id
		order by r.id desc`), append(args, limit, offset)...)
	if err != nil {
		return nil, wrap(err, "pgstore: list runs page")
	}
	page.Runs, err = pgx.CollectRows(rows, pgx.RowToStructByName[orkstate.RunSummary])
	if err != nil {
		return nil, wrap(err, "pgstore: list runs page")
	}
	return page, nil
}

func (s *Store) PendingRuns(ctx context.Context, limit int) ([]orkstate.Run, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`
		select `+runColumns+` from {ork}.runs where status = 'pending' order by id limit $1`), limit)
	if err != nil {
		return nil, wrap(err, "pgstore: pending runs")
	}
	runs, err := scanRuns(rows)
	return runs, wrap(err, "pgstore: pending runs")
}

// UpdateRunStatus: cancelled goes through CancelRun, paused through PauseRun,
// paused → running through ResumeRun, pending → running starts the run as
// StartPendingRuns would (creating its tasks; an invalid DAG fails it), and
// success/failed are the operator's verdict (finish_run: unfinished tasks are
// cancelled). A repeated non-terminal status is a no-op; anything else, and every
// change of a terminal run, is ErrInvalidTransition.
func (s *Store) UpdateRunStatus(ctx context.Context, id int64, status orkstate.RunStatus, errMsg string) error {
	status, err := orkstate.ParseRunStatus(string(status))
	if err != nil {
		return err
	}
	if err := orkstate.ValidText("error", errMsg); err != nil {
		return err
	}
	err = s.inTx(ctx, func(tx *Store) error {
		var cur orkstate.RunStatus
		err := tx.db.QueryRow(ctx, s.sql(`select status from {ork}.runs where id = $1 for no key update`), id).Scan(&cur)
		if err != nil {
			return translate(err)
		}
		if cur.IsTerminal() {
			return fmt.Errorf("%w: run is %s", orkstate.ErrInvalidTransition, cur)
		}
		switch {
		case status == orkstate.RunCancelled:
			if err := tx.CancelRun(ctx, id); err != nil {
				return err
			}
			if errMsg == "" {
				return nil
			}
			_, err = tx.db.Exec(ctx, s.sql(`update {ork}.runs set error = $2 where id = $1`), id, errMsg)
			return err
		case status == cur:
			return nil
		case status == orkstate.RunPaused:
			return tx.PauseRun(ctx, id)
		case status == orkstate.RunRunning && cur == orkstate.RunPaused:
			return tx.ResumeRun(ctx, id)
		case status == orkstate.RunRunning && cur == orkstate.RunPending:
			// Starting a run creates its tasks, exactly as StartPendingRuns would.
			_, err = tx.db.Exec(ctx, s.sql(`select {api}.start_run($1)`), id)
			return err
		case status.IsTerminal():
			// The operator's verdict; unfinished tasks are cancelled so nothing of a
			// finished run is dispatched.
			_, err = tx.db.Exec(ctx, s.sql(`select {api}.finish_run($1, $2, $3)`), id, string(status), errMsg)
			return err
		}
		return fmt.Errorf("%w: run %s → %s", orkstate.ErrInvalidTransition, cur, status)
	})
	return wrap(err, "pgstore: update run %d to %s", id, status)
}

func (s *Store) RunTaskStats(ctx context.Context, runID int64) (*orkstate.TaskStats, error) {
	var st orkstate.TaskStats
	err := s.db.QueryRow(ctx, s.sql(`select `+runStatsOfR+` from {ork}.runs r where r.id = $1`), runID).Scan(&st)
	if err != nil {
		return nil, wrap(err, "pgstore: task stats of run %d", runID)
	}
	return &st, nil
}
