package sqlitecompat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/orkstate/orkstate"
)

const runCols = `r.id, r.workflow_id, r.snapshot_id, r.status, r.triggered_by, r.error, r.created_at, r.started_at, r.finished_at`

func scanRun(r scanner) (*orkstate.Run, error) {
	var run orkstate.Run
	var snap, started, finished sql.NullInt64
	var created int64
	if err := r.Scan(&run.ID, &run.WorkflowID, &snap, &run.Status, &run.TriggeredBy, &run.Error, &created, &started, &finished); err != nil {
		return nil, err
	}
	if snap.Valid {
		id := snap.Int64
		run.SnapshotID = &id
	}
	run.CreatedAt = fromTS(created)
	run.StartedAt, run.FinishedAt = fromNullTS(started), fromNullTS(finished)
	return &run, nil
}

func getRun(ctx context.Context, q queryer, id int64) (*orkstate.Run, error) {
	return one(q.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs r WHERE r.id = ?`, id), scanRun, "run", id)
}

// insertRun creates a pending run capturing the workflow's current snapshot.
func insertRun(t *txState, workflowID int64, triggeredBy string) (*orkstate.Run, error) {
	var id int64
	err := t.queryRow(`INSERT INTO runs (workflow_id, snapshot_id, status, triggered_by, created_at)
		SELECT id, current_snapshot_id, 'pending', ?, ? FROM workflows WHERE id = ? RETURNING id`,
		triggeredBy, ts(t.now), workflowID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("workflow", workflowID)
	}
	if err != nil {
		return nil, err
	}
	return getRun(t.ctx, t.tx, id)
}

// CreateRun inserts a pending run capturing the workflow's current snapshot.
func (s *Store) CreateRun(ctx context.Context, workflowID int64, triggeredBy string) (*orkstate.Run, error) {
	if err := orkstate.ValidName("triggered_by", triggeredBy, false); err != nil {
		return nil, err
	}
	var run *orkstate.Run
	err := s.write(ctx, func(t *txState) (err error) {
		run, err = insertRun(t, workflowID, triggeredBy)
		return err
	})
	return run, err
}

// CreateRuns inserts the runs in one write transaction, in input order; an item
// whose workflow does not exist rolls all of them back.
func (s *Store) CreateRuns(ctx context.Context, runs []orkstate.NewRun) ([]orkstate.Run, error) {
	if len(runs) == 0 {
		return []orkstate.Run{}, nil
	}
	if err := orkstate.ValidateNewRuns(runs); err != nil {
		return nil, err
	}
	out := make([]orkstate.Run, 0, len(runs))
	err := s.write(ctx, func(t *txState) error {
		for i, r := range runs {
			run, err := insertRun(t, r.WorkflowID, r.TriggeredBy)
			if err != nil {
				return fmt.Errorf("run %d: %w", i, err)
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

func (s *Store) GetRun(ctx context.Context, id int64) (*orkstate.Run, error) {
	return getRun(ctx, s.rdb, id)
}

// ListRuns returns runs newest first, of one workflow when workflowID is not 0; an
// unknown workflow is ErrNotFound.
func (s *Store) ListRuns(ctx context.Context, workflowID int64) ([]orkstate.Run, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+runCols+` FROM runs r WHERE ? = 0 OR r.workflow_id = ? ORDER BY r.id DESC`, workflowID, workflowID)
	out, err := collect(rows, err, scanRun)
	if err == nil && len(out) == 0 && workflowID != 0 {
		if _, err := s.GetWorkflow(ctx, workflowID); err != nil {
			return nil, err
		}
	}
	return out, err
}

const statsCols = `count(t.id),
	coalesce(sum(t.status = 'pending'), 0), coalesce(sum(t.status = 'paused'), 0),
	coalesce(sum(t.status = 'dispatched'), 0), coalesce(sum(t.status = 'running'), 0),
	coalesce(sum(t.status = 'success'), 0), coalesce(sum(t.status = 'failed'), 0),
	coalesce(sum(t.status = 'cancelled'), 0)`

func statsDest(st *orkstate.TaskStats) []any {
	return []any{&st.Total, &st.Pending, &st.Paused, &st.Dispatched, &st.Running, &st.Success, &st.Failed, &st.Cancelled}
}

// ListRunsPage returns a page of runs, newest first, with workflow names, task
// counts and the total.
func (s *Store) ListRunsPage(ctx context.Context, q orkstate.RunListQuery) (*orkstate.RunPage, error) {
	limit, err := pageBounds(q.Limit, q.Offset)
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
	pat := searchArg(q.WorkflowName)
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	where := ` FROM runs r JOIN workflows w ON w.id = r.workflow_id
		WHERE (? = '' OR r.status = ?) AND ` + nameContains("w.name")
	page := &orkstate.RunPage{Runs: []orkstate.RunSummary{}}
	if err := tx.QueryRowContext(ctx, `SELECT count(*)`+where, q.Status, q.Status, pat).Scan(&page.Total); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+runCols+`, w.name, `+statsCols+`
		FROM runs r JOIN workflows w ON w.id = r.workflow_id LEFT JOIN tasks t ON t.run_id = r.id
		WHERE (? = '' OR r.status = ?) AND `+nameContains("w.name")+`
		GROUP BY r.id ORDER BY r.id DESC LIMIT ? OFFSET ?`, q.Status, q.Status, pat, limit, q.Offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var sum orkstate.RunSummary
		var snap, started, finished sql.NullInt64
		var created int64
		dest := []any{&sum.ID, &sum.WorkflowID, &snap, &sum.Status, &sum.TriggeredBy, &sum.Error, &created, &started, &finished, &sum.WorkflowName}
		if err := rows.Scan(append(dest, statsDest(&sum.Stats)...)...); err != nil {
			return nil, err
		}
		if snap.Valid {
			id := snap.Int64
			sum.SnapshotID = &id
		}
		sum.CreatedAt = fromTS(created)
		sum.StartedAt, sum.FinishedAt = fromNullTS(started), fromNullTS(finished)
		page.Runs = append(page.Runs, sum)
	}
	return page, rows.Err()
}

// PendingRuns returns up to limit pending runs, oldest first.
func (s *Store) PendingRuns(ctx context.Context, limit int) ([]orkstate.Run, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+runCols+` FROM runs r WHERE r.status = 'pending' ORDER BY r.id LIMIT ?`, limit)
	return collect(rows, err, scanRun)
}

// RunTaskStats counts a run's tasks by status; an unknown run is ErrNotFound.
func (s *Store) RunTaskStats(ctx context.Context, runID int64) (*orkstate.TaskStats, error) {
	var st orkstate.TaskStats
	var exists int
	err := s.rdb.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM runs WHERE id = ?), `+statsCols+` FROM tasks t WHERE t.run_id = ?`,
		runID, runID).Scan(append([]any{&exists}, statsDest(&st)...)...)
	if err != nil {
		return nil, err
	}
	if exists == 0 {
		return nil, notFound("run", runID)
	}
	return &st, nil
}

// lockRun reads a run's status inside a write.
func lockRun(t *txState, id int64) (orkstate.RunStatus, error) {
	var st orkstate.RunStatus
	err := t.queryRow(`SELECT status FROM runs WHERE id = ?`, id).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("run", id)
	}
	return st, err
}

// finishRun makes a run terminal and records the event; terminal runs never change.
func (t *txState) finishRun(id int64, st orkstate.RunStatus, errMsg string) error {
	res, err := t.exec(`UPDATE runs SET status = ?, error = CASE WHEN ? <> '' THEN ? ELSE error END, finished_at = ?,
			started_at = coalesce(started_at, finished_at, ?)
		WHERE id = ? AND status NOT IN ('success', 'failed', 'cancelled')`, st, errMsg, errMsg, ts(t.now), ts(t.now), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		t.runs = append(t.runs, runEvent{id: id, status: st})
	}
	return nil
}

// completeRuns finishes every touched run whose tasks are all terminal: failed if
// any failed, else cancelled if any was cancelled, else success. It runs at the
// end of each write, in the same transaction as the task changes.
func (t *txState) completeRuns() error {
	if len(t.touchedRuns) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(t.touchedRuns))
	for id := range t.touchedRuns {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		var status orkstate.RunStatus
		var total, unfinished, failed, cancelled int
		err := t.queryRow(`SELECT r.status, count(t.id),
				coalesce(sum(t.status NOT IN ('success', 'failed', 'cancelled')), 0),
				coalesce(sum(t.status = 'failed'), 0), coalesce(sum(t.status = 'cancelled'), 0)
			FROM runs r LEFT JOIN tasks t ON t.run_id = r.id WHERE r.id = ? GROUP BY r.id`, id).
			Scan(&status, &total, &unfinished, &failed, &cancelled)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		if status.IsTerminal() || status == orkstate.RunPending || total == 0 || unfinished > 0 {
			continue
		}
		final := orkstate.RunSuccess
		if failed > 0 {
			final = orkstate.RunFailed
		} else if cancelled > 0 {
			final = orkstate.RunCancelled
		}
		if err := t.finishRun(id, final, ""); err != nil {
			return err
		}
	}
	t.touchedRuns = map[int64]bool{}
	return nil
}

// CancelRun cancels a run with its unfinished tasks (in every state) and their
// deferred jobs. A terminal run is ErrInvalidTransition.
func (s *Store) CancelRun(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error { return cancelRun(t, id) })
}

func cancelRun(t *txState, id int64) error {
	st, err := lockRun(t, id)
	if err != nil {
		return err
	}
	if st.IsTerminal() {
		return invalidTransition("run %d is %s", id, st)
	}
	if err := cancelUnfinishedTasks(t, id, "run cancelled"); err != nil {
		return err
	}
	return t.finishRun(id, orkstate.RunCancelled, "")
}

// cancelUnfinishedTasks cancels a run's unfinished tasks (pending, paused,
// dispatched, running) with errMsg, and their unfinished deferred jobs: what a
// run ending before its tasks do leaves behind.
func cancelUnfinishedTasks(t *txState, runID int64, errMsg string) error {
	if _, err := t.exec(`UPDATE deferred_jobs SET status = 'cancelled', finished_at = ?, claimed_by = '', lease_expires_at = NULL
		WHERE status IN ('pending', 'polling')
		AND task_id IN (SELECT id FROM tasks WHERE run_id = ? AND status IN ('pending', 'paused', 'dispatched', 'running'))`,
		ts(t.now), runID); err != nil {
		return err
	}
	_, err := t.exec(`UPDATE tasks SET status = 'cancelled', error = ?, finished_at = ?, claimed_by = '',
			lease_expires_at = NULL, timeout_at = NULL, retry_at = NULL
		WHERE run_id = ? AND status IN ('pending', 'paused', 'dispatched', 'running')`, errMsg, ts(t.now), runID)
	return err
}

// PauseRun moves a running run to paused; its pending tasks become paused, its
// dispatched and running tasks carry on.
func (s *Store) PauseRun(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error { return pauseRun(t, id) })
}

func pauseRun(t *txState, id int64) error {
	st, err := lockRun(t, id)
	if err != nil {
		return err
	}
	if st != orkstate.RunRunning {
		return invalidTransition("run %d is %s, not running", id, st)
	}
	if _, err := t.exec(`UPDATE runs SET status = 'paused' WHERE id = ?`, id); err != nil {
		return err
	}
	_, err = t.exec(`UPDATE tasks SET status = 'paused' WHERE run_id = ? AND status = 'pending'`, id)
	return err
}

// ResumeRun moves a paused run back to running (pending when it never started);
// its paused tasks become pending.
func (s *Store) ResumeRun(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error { return resumeRun(t, id) })
}

func resumeRun(t *txState, id int64) error {
	st, err := lockRun(t, id)
	if err != nil {
		return err
	}
	if st != orkstate.RunPaused {
		return invalidTransition("run %d is %s, not paused", id, st)
	}
	if _, err := t.exec(`UPDATE runs SET status = CASE WHEN started_at IS NULL THEN 'pending' ELSE 'running' END WHERE id = ?`, id); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE tasks SET status = 'pending' WHERE run_id = ? AND status = 'paused'`, id); err != nil {
		return err
	}
	t.signals |= kindTasksReady
	// Tasks that finished while the run was paused may have completed it.
	t.touchedRuns[id] = true
	return nil
}

// UpdateRunStatus moves a run: running↔paused by the pause/resume rules,
// pending→running starts the run as StartPendingRuns would (its tasks are
// created; an invalid DAG fails it), cancelled by CancelRun's rules, and
// success/failed are the operator's verdict: the run ends with that status and
// errMsg, its unfinished tasks are cancelled with error "run finished by
// operator", with their deferred jobs. A terminal run never changes
// (ErrInvalidTransition); setting the current status is a no-op. errMsg is the
// run's error only when the run ends (cancelled, success, failed), as in pgstore.
func (s *Store) UpdateRunStatus(ctx context.Context, id int64, status orkstate.RunStatus, errMsg string) error {
	status, err := orkstate.ParseRunStatus(string(status))
	if err != nil {
		return err
	}
	if err := orkstate.ValidText("error", errMsg); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		st, err := lockRun(t, id)
		if err != nil {
			return err
		}
		if st.IsTerminal() {
			return invalidTransition("run %d is %s", id, st)
		}
		if st == status {
			return nil
		}
		switch {
		case status == orkstate.RunCancelled:
			if err = cancelRun(t, id); err == nil && errMsg != "" {
				_, err = t.exec(`UPDATE runs SET error = ? WHERE id = ?`, errMsg, id)
			}
		case status == orkstate.RunSuccess || status == orkstate.RunFailed:
			if err = cancelUnfinishedTasks(t, id, operatorFinishError); err == nil {
				err = t.finishRun(id, status, errMsg)
			}
		case st == orkstate.RunRunning && status == orkstate.RunPaused:
			err = pauseRun(t, id)
		case st == orkstate.RunPaused && status == orkstate.RunRunning:
			err = resumeRun(t, id)
		case st == orkstate.RunPending && status == orkstate.RunRunning:
			var p pendingRun
			err = t.queryRow(`SELECT `+pendingRunCols+` WHERE r.id = ?`, id).Scan(p.dest()...)
			if err == nil {
				// errMsg is not stored: a run whose DAG is invalid fails with the reason.
				_, err = startRun(t, p)
			}
			return err
		default:
			return invalidTransition("run %d: %s → %s", id, st, status)
		}
		return err
	})
}

// StartPendingRuns claims up to limit pending runs, oldest first, creates their
// tasks (from the snapshot, else the compiled tasks, else task_params.task_count
// legacy tasks, default 3) and marks them running. A run whose DAG is invalid or
// empty fails with an error saying why.
func (s *Store) StartPendingRuns(ctx context.Context, limit int) ([]orkstate.StartedRun, error) {
	if err := checkBatchLimit(limit); err != nil {
		return nil, err
	}
	out := []orkstate.StartedRun{}
	err := s.write(ctx, func(t *txState) error {
		out = out[:0]
		// No LIMIT: runs of a workflow at its max_active_runs are passed over.
		rows, err := t.query(`SELECT ` + pendingRunCols + ` WHERE r.status = 'pending' ORDER BY r.id`)
		if err != nil {
			return err
		}
		var ps []pendingRun
		for rows.Next() {
			var p pendingRun
			if err := rows.Scan(p.dest()...); err != nil {
				rows.Close()
				return err
			}
			ps = append(ps, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, p := range ps {
			if len(out) == limit {
				break
			}
			var full bool
			if err := t.queryRow(`SELECT w.max_active_runs IS NOT NULL AND (SELECT count(*) FROM runs r
					WHERE r.workflow_id = w.id AND r.status IN ('running', 'paused')) >= w.max_active_runs
				FROM workflows w WHERE w.id = ?`, p.wf).Scan(&full); err != nil {
				return err
			}
			if full {
				continue
			}
			started, err := startRun(t, p)
			if err != nil {
				return err
			}
			out = append(out, started)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// operatorFinishError is the error of the tasks an operator's verdict on their
// run (UpdateRunStatus to success or failed) cancels.
const operatorFinishError = "run finished by operator"

// pendingRun is what starting a run needs to know of it and its workflow.
type pendingRun struct {
	id, wf         int64
	snap           sql.NullInt64
	name, executor string
	params         sql.NullString
}

const pendingRunCols = `r.id, r.snapshot_id, w.id, w.name, w.executor_type, w.task_params
	FROM runs r JOIN workflows w ON w.id = r.workflow_id`

func (p *pendingRun) dest() []any {
	return []any{&p.id, &p.snap, &p.wf, &p.name, &p.executor, &p.params}
}

// startRun starts a pending run: it creates the run's tasks (from its snapshot,
// else the workflow's compiled tasks, else legacy tasks), which marks it running,
// or fails the run when its DAG is invalid or empty. The error is only for a
// failure of the database; a bad DAG is the returned run's Error.
func startRun(t *txState, p pendingRun) (orkstate.StartedRun, error) {
	fail := func(cause error) (orkstate.StartedRun, error) {
		if err := t.finishRun(p.id, orkstate.RunFailed, cause.Error()); err != nil {
			return orkstate.StartedRun{}, err
		}
		return orkstate.StartedRun{RunID: p.id, Status: orkstate.RunFailed, Error: cause.Error()}, nil
	}
	specs, err := runSpecs(t, p)
	if err == nil && len(specs) == 0 {
		err = &specError{msg: "run has no tasks"}
	}
	if err == nil {
		err = orkstate.ValidateDAG(specs)
	}
	if err != nil {
		if isDBError(err) {
			return orkstate.StartedRun{}, err
		}
		return fail(err)
	}
	nts := make([]orkstate.NewTask, len(specs))
	for i, sp := range specs {
		nts[i] = orkstate.NewTask{TaskIndex: i, TaskName: sp.Name, ExecutorType: sp.ExecutorType,
			DependsOn: sp.DependsOn, Params: sp.Params, MaxRetries: sp.MaxRetries, TimeoutSeconds: sp.TimeoutSeconds,
			Priority: sp.Priority, ConcurrencyKey: sp.ConcurrencyKey}
	}
	created, err := createDAGTasks(t, p.id, nts)
	if orkstate.IsValidation(err) {
		return fail(err)
	}
	if err != nil {
		return orkstate.StartedRun{}, err
	}
	// createDAGTasks starts the run when it inserts; this covers a run whose tasks all existed.
	if _, err := t.exec(`UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?) WHERE id = ? AND status = 'pending'`,
		ts(t.now), p.id); err != nil {
		return orkstate.StartedRun{}, err
	}
	return orkstate.StartedRun{RunID: p.id, Status: orkstate.RunRunning, TasksCreated: len(created)}, nil
}

// specError is a problem with a run's stored DAG, reported on the run.
type specError struct{ msg string }

func (e *specError) Error() string { return e.msg }

func isDBError(err error) bool {
	var se *specError
	return !errors.As(err, &se) && !orkstate.IsValidation(err)
}

// runSpecs is the DAG a run starts with: its snapshot, else the workflow's
// compiled tasks, else task_params.task_count legacy tasks (default 3, each with its
// own params as in the original). A "dag" workflow has no legacy form: without a
// snapshot or compiled tasks its run fails, as does a task_count out of bounds.
func runSpecs(t *txState, p pendingRun) ([]orkstate.TaskSpec, error) {
	if p.snap.Valid {
		sn, err := one(t.queryRow(`SELECT `+snapshotCols+` FROM workflow_snapshots WHERE id = ?`, p.snap.Int64), scanSnapshot, "snapshot", p.snap.Int64)
		if err == nil {
			return sn.Tasks, nil
		}
		if !errors.Is(err, orkstate.ErrNotFound) {
			return nil, &specError{msg: err.Error()}
		}
	}
	wts, err := listWorkflowTasks(t.ctx, t.tx, p.wf)
	if err != nil {
		return nil, err
	}
	if len(wts) > 0 {
		specs := make([]orkstate.TaskSpec, len(wts))
		for i, w := range wts {
			specs[i] = w.TaskSpec
		}
		return specs, nil
	}
	if p.executor == orkstate.DAGExecutorType {
		return nil, &specError{msg: orkstate.MissingDAGError(p.name)}
	}
	var params json.RawMessage
	if p.params.Valid {
		params = json.RawMessage(p.params.String)
	}
	count, err := orkstate.LegacyTaskCount(params)
	if err != nil {
		return nil, &specError{msg: err.Error()}
	}
	specs := make([]orkstate.TaskSpec, count)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("task_%d", i), ExecutorType: p.executor, DependsOn: []string{},
			Params: orkstate.LegacyTaskParams(i, p.id, p.name)}
	}
	return specs, nil
}
