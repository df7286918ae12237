package sqlitecompat

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"

	"github.com/orkstate/orkstate"
)

type scanner interface{ Scan(dest ...any) error }

// queryer is what *sql.DB and *sql.Tx both offer for reads.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const workflowCols = `w.id, w.name, w.description, w.job_name, w.region, w.project, w.executor_type,
	w.task_params, w.schedule, w.schedule_enabled, w.last_scheduled_at, w.next_scheduled_at,
	w.current_snapshot_id, w.created_at, w.updated_at`

func scanWorkflow(r scanner) (*orkstate.Workflow, error) {
	var w orkstate.Workflow
	var params sql.NullString
	var last, next, snap sql.NullInt64
	var created, updated int64
	if err := r.Scan(&w.ID, &w.Name, &w.Description, &w.JobName, &w.Region, &w.Project, &w.ExecutorType,
		&params, &w.Schedule, &w.ScheduleEnabled, &last, &next, &snap, &created, &updated); err != nil {
		return nil, err
	}
	w.TaskParams = fromNullJSON(params)
	w.LastScheduledAt = fromNullTS(last)
	w.NextScheduledAt = fromNullTS(next)
	if snap.Valid {
		id := snap.Int64
		w.CurrentSnapshotID = &id
	}
	w.CreatedAt, w.UpdatedAt = fromTS(created), fromTS(updated)
	return &w, nil
}

func collect[T any](rows *sql.Rows, err error, scan func(scanner) (*T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

func one[T any](row *sql.Row, scan func(scanner) (*T, error), what string, id any) (*T, error) {
	v, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(what, id)
	}
	return v, err
}

// CreateWorkflow inserts a workflow; a taken name is ErrConflict. A non-empty
// schedule is validated, enabled, and its next fire time computed from now.
func (s *Store) CreateWorkflow(ctx context.Context, nw orkstate.NewWorkflow) (*orkstate.Workflow, error) {
	if err := nw.Validate(); err != nil {
		return nil, err
	}
	var w *orkstate.Workflow
	err := s.write(ctx, func(t *txState) error {
		var next any
		enabled := false
		if strings.TrimSpace(nw.Schedule) != "" {
			n, err := orkstate.NextFireTime(nw.Schedule, t.now)
			if err != nil {
				return err
			}
			next, enabled = ts(n), true
		}
		var id int64
		err := t.queryRow(`INSERT INTO workflows (name, description, job_name, region, project, executor_type,
				task_params, schedule, schedule_enabled, next_scheduled_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			nw.Name, nw.Description, nw.JobName, nw.Region, nw.Project, nw.ExecutorType,
			jsonArg(nw.TaskParams), strings.TrimSpace(nw.Schedule), enabled, next, ts(t.now), ts(t.now)).Scan(&id)
		if err != nil {
			err = translate(err)
			if errors.Is(err, orkstate.ErrConflict) {
				return fmt.Errorf("%w: workflow name %q is taken", orkstate.ErrConflict, nw.Name)
			}
			return err
		}
		w, err = getWorkflow(t.ctx, t.tx, id)
		return err
	})
	return w, err
}

func getWorkflow(ctx context.Context, q queryer, id int64) (*orkstate.Workflow, error) {
	return one(q.QueryRowContext(ctx, `SELECT `+workflowCols+` FROM workflows w WHERE w.id = ?`, id), scanWorkflow, "workflow", id)
}

func (s *Store) GetWorkflow(ctx context.Context, id int64) (*orkstate.Workflow, error) {
	return getWorkflow(ctx, s.rdb, id)
}

func (s *Store) GetWorkflowByName(ctx context.Context, name string) (*orkstate.Workflow, error) {
	if name == "" {
		return nil, orkstate.Invalid("name", name, "must not be empty")
	}
	if err := orkstate.ValidText("name", name); err != nil {
		return nil, err
	}
	return one(s.rdb.QueryRowContext(ctx, `SELECT `+workflowCols+` FROM workflows w WHERE w.name = ?`, name), scanWorkflow, "workflow", name)
}

// GetWorkflowsByIDs returns the workflows that exist among ids, ordered by id.
func (s *Store) GetWorkflowsByIDs(ctx context.Context, ids []int64) ([]orkstate.Workflow, error) {
	b, _ := json.Marshal(ids)
	if len(ids) == 0 {
		b = []byte("[]")
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+workflowCols+` FROM workflows w
		WHERE w.id IN (SELECT value FROM json_each(?)) ORDER BY w.id`, string(b))
	return collect(rows, err, scanWorkflow)
}

func (s *Store) ListWorkflows(ctx context.Context) ([]orkstate.Workflow, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+workflowCols+` FROM workflows w ORDER BY w.name, w.id`)
	return collect(rows, err, scanWorkflow)
}

// pageBounds is the shared paging rule (limits above MaxPageLimit are clamped).
func pageBounds(limit, offset int) (int, error) {
	limit, _, err := orkstate.PageBounds(limit, offset)
	return limit, err
}

// lowerFunc is a SQL function lower-casing text by Unicode rules: SQLite's LIKE and
// lower() fold ASCII only, PostgreSQL's ILIKE folds "Ä" to "ä" too. Searches match
// a name when instr(orkstate_lower(name), the lower-cased search) > 0, a literal
// substring test, so %, _ and \ need no escaping.
const lowerFunc = "orkstate_lower"

func init() {
	sqlite.MustRegisterDeterministicScalarFunction(lowerFunc, 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		}
		return args[0], nil
	})
}

// nameContains is the search predicate on the column col; its argument is searchArg.
func nameContains(col string) string { return `instr(` + lowerFunc + `(` + col + `), ?) > 0` }

func searchArg(search string) string { return strings.ToLower(search) }

// ListWorkflowsPage returns a page of workflows ordered by name with the total.
func (s *Store) ListWorkflowsPage(ctx context.Context, q orkstate.WorkflowListQuery) (*orkstate.WorkflowPage, error) {
	limit, err := pageBounds(q.Limit, q.Offset)
	if err != nil {
		return nil, err
	}
	if err := orkstate.ValidText("search", q.Search); err != nil {
		return nil, err
	}
	pat := searchArg(q.Search)
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	page := &orkstate.WorkflowPage{}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM workflows w WHERE `+nameContains("w.name"), pat).Scan(&page.Total); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+workflowCols+` FROM workflows w WHERE `+nameContains("w.name")+`
		ORDER BY w.name, w.id LIMIT ? OFFSET ?`, pat, limit, q.Offset)
	page.Workflows, err = collect(rows, err, scanWorkflow)
	if err != nil {
		return nil, err
	}
	return page, nil
}

// DeleteWorkflow removes a workflow with its runs, tasks, logs, deferred jobs,
// compiled tasks and snapshots.
func (s *Store) DeleteWorkflow(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error {
		res, err := t.exec(`DELETE FROM workflows WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("workflow", id)
		}
		return nil
	})
}

func workflowExists(t *txState, id int64) error {
	var one int
	err := t.queryRow(`SELECT 1 FROM workflows WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("workflow", id)
	}
	return err
}

func depsJSON(deps []string) string {
	if len(deps) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(deps)
	return string(b)
}

func parseDeps(s string) ([]string, error) {
	var d []string
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, fmt.Errorf("sqlitecompat: bad depends_on %q: %w", s, err)
	}
	if d == nil {
		d = []string{}
	}
	return d, nil
}

const workflowTaskCols = `id, workflow_id, task_index, task_name, executor_type, depends_on, params, signature,
	max_retries, timeout_seconds, priority, concurrency_key, created_at`

func scanWorkflowTask(r scanner) (*orkstate.WorkflowTask, error) {
	var w orkstate.WorkflowTask
	var deps string
	var params, sig sql.NullString
	var created int64
	var prio sql.NullInt64
	if err := r.Scan(&w.ID, &w.WorkflowID, &w.TaskIndex, &w.Name, &w.ExecutorType, &deps, &params, &sig,
		&w.MaxRetries, &w.TimeoutSeconds, &prio, &w.ConcurrencyKey, &created); err != nil {
		return nil, err
	}
	w.Priority = intPtr(prio)
	var err error
	if w.DependsOn, err = parseDeps(deps); err != nil {
		return nil, err
	}
	w.Params, w.Signature = fromNullJSON(params), fromNullJSON(sig)
	w.CreatedAt = fromTS(created)
	return &w, nil
}

// ReplaceWorkflowTasks validates the DAG and replaces the workflow's compiled tasks.
func (s *Store) ReplaceWorkflowTasks(ctx context.Context, workflowID int64, tasks []orkstate.TaskSpec) ([]orkstate.WorkflowTask, error) {
	if err := orkstate.ValidateDAG(tasks); err != nil {
		return nil, err
	}
	var out []orkstate.WorkflowTask
	err := s.write(ctx, func(t *txState) error {
		if err := workflowExists(t, workflowID); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM workflow_tasks WHERE workflow_id = ?`, workflowID); err != nil {
			return err
		}
		for i, sp := range tasks {
			if _, err := t.exec(`INSERT INTO workflow_tasks (workflow_id, task_index, task_name, executor_type,
					depends_on, params, signature, max_retries, timeout_seconds, created_at, priority, concurrency_key)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, workflowID, i, sp.Name, sp.ExecutorType, depsJSON(sp.DependsOn),
				jsonArg(sp.Params), jsonArg(sp.Signature), sp.MaxRetries, sp.TimeoutSeconds, ts(t.now),
				sp.Priority, sp.ConcurrencyKey); err != nil {
				return err
			}
		}
		if _, err := t.exec(`UPDATE workflows SET updated_at = ? WHERE id = ?`, ts(t.now), workflowID); err != nil {
			return err
		}
		var err error
		out, err = listWorkflowTasks(t.ctx, t.tx, workflowID)
		return err
	})
	return out, err
}

func listWorkflowTasks(ctx context.Context, q queryer, workflowID int64) ([]orkstate.WorkflowTask, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+workflowTaskCols+` FROM workflow_tasks WHERE workflow_id = ? ORDER BY task_index`, workflowID)
	return collect(rows, err, scanWorkflowTask)
}

// ListWorkflowTasks returns the workflow's compiled tasks in index order; an
// unknown workflow is ErrNotFound.
func (s *Store) ListWorkflowTasks(ctx context.Context, workflowID int64) ([]orkstate.WorkflowTask, error) {
	out, err := listWorkflowTasks(ctx, s.rdb, workflowID)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		if _, err := s.GetWorkflow(ctx, workflowID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const snapshotCols = `id, workflow_id, content_hash, tasks_json, created_at`

func scanSnapshot(r scanner) (*orkstate.Snapshot, error) {
	var sn orkstate.Snapshot
	var body string
	var created int64
	if err := r.Scan(&sn.ID, &sn.WorkflowID, &sn.ContentHash, &body, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(body), &sn.Tasks); err != nil {
		return nil, fmt.Errorf("sqlitecompat: snapshot %d: %w", sn.ID, err)
	}
	if sn.Tasks == nil {
		sn.Tasks = []orkstate.TaskSpec{}
	}
	for i := range sn.Tasks {
		if sn.Tasks[i].DependsOn == nil {
			sn.Tasks[i].DependsOn = []string{}
		}
	}
	sn.CreatedAt = fromTS(created)
	return &sn, nil
}

// CreateSnapshot stores the DAG under its content hash or returns the existing
// snapshot with that hash. It does not make it current.
func (s *Store) CreateSnapshot(ctx context.Context, workflowID int64, tasks []orkstate.TaskSpec) (*orkstate.Snapshot, error) {
	if err := orkstate.ValidateDAG(tasks); err != nil {
		return nil, err
	}
	hash, err := orkstate.ContentHash(tasks)
	if err != nil {
		return nil, err
	}
	norm := make([]orkstate.TaskSpec, len(tasks))
	for i, t := range tasks {
		t.DependsOn = append([]string{}, t.DependsOn...)
		norm[i] = t
	}
	body, err := json.Marshal(norm)
	if err != nil {
		return nil, err
	}
	var sn *orkstate.Snapshot
	err = s.write(ctx, func(t *txState) error {
		if err := workflowExists(t, workflowID); err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO workflow_snapshots (workflow_id, content_hash, tasks_json, created_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (workflow_id, content_hash) DO NOTHING`,
			workflowID, hash, string(body), ts(t.now)); err != nil {
			return err
		}
		var err error
		sn, err = one(t.queryRow(`SELECT `+snapshotCols+` FROM workflow_snapshots WHERE workflow_id = ? AND content_hash = ?`,
			workflowID, hash), scanSnapshot, "snapshot", hash)
		return err
	})
	return sn, err
}

func (s *Store) GetSnapshot(ctx context.Context, id int64) (*orkstate.Snapshot, error) {
	return one(s.rdb.QueryRowContext(ctx, `SELECT `+snapshotCols+` FROM workflow_snapshots WHERE id = ?`, id), scanSnapshot, "snapshot", id)
}

// SetCurrentSnapshot makes a snapshot of the workflow the one new runs capture. A
// snapshot of another workflow is ErrNotFound for this one.
func (s *Store) SetCurrentSnapshot(ctx context.Context, workflowID, snapshotID int64) error {
	return s.write(ctx, func(t *txState) error {
		if err := workflowExists(t, workflowID); err != nil {
			return err
		}
		var owner int64
		err := t.queryRow(`SELECT workflow_id FROM workflow_snapshots WHERE id = ?`, snapshotID).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != workflowID) {
			return notFound(fmt.Sprintf("snapshot of workflow %d", workflowID), snapshotID)
		}
		if err != nil {
			return err
		}
		_, err = t.exec(`UPDATE workflows SET current_snapshot_id = ?, updated_at = ? WHERE id = ?`, snapshotID, ts(t.now), workflowID)
		return err
	})
}
