package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// workflowColumns are the columns of orkstate.Workflow, unqualified, in field order.
const workflowColumns = `id, name, description, job_name, region, project, executor_type, task_params,
	schedule, schedule_enabled, last_scheduled_at, next_scheduled_at, current_snapshot_id, created_at, updated_at`

// scanWorkflows collects rows selected with workflowColumns.
func scanWorkflows(rows pgx.Rows) ([]orkstate.Workflow, error) {
	return pgx.CollectRows(rows, pgx.RowToStructByName[orkstate.Workflow])
}

// scanWorkflow collects exactly one row selected with workflowColumns; none is ErrNotFound after translate.
func scanWorkflow(rows pgx.Rows) (*orkstate.Workflow, error) {
	return pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.Workflow])
}

// workflowTaskColumns are the columns of orkstate.WorkflowTask; task_name fills the embedded TaskSpec.Name.
const workflowTaskColumns = `id, workflow_id, task_index, task_name as name, executor_type, depends_on,
	params, signature, max_retries, timeout_seconds, priority::integer, concurrency_key, created_at`

func scanWorkflowTasks(rows pgx.Rows) ([]orkstate.WorkflowTask, error) {
	return pgx.CollectRows(rows, pgx.RowToStructByName[orkstate.WorkflowTask])
}

// snapshotColumns are the columns of orkstate.Snapshot; tasks_json decodes into Tasks.
const snapshotColumns = `id, workflow_id, content_hash, tasks_json as tasks, created_at`

func scanSnapshot(rows pgx.Rows) (*orkstate.Snapshot, error) {
	return pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.Snapshot])
}

func (s *Store) CreateWorkflow(ctx context.Context, w orkstate.NewWorkflow) (*orkstate.Workflow, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	schedule := strings.TrimSpace(w.Schedule)
	var next *time.Time
	if schedule != "" {
		t, err := orkstate.NextFireTime(schedule, time.Now())
		if err != nil {
			return nil, err
		}
		next = &t
	}
	rows, err := s.db.Query(ctx, s.sql(`
		insert into {ork}.workflows
			(name, description, job_name, region, project, executor_type, task_params,
			 schedule, schedule_enabled, next_scheduled_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $8 <> '', $9)
		returning `+workflowColumns),
		w.Name, w.Description, w.JobName, w.Region, w.Project, w.ExecutorType, jsonArg(w.TaskParams),
		schedule, next)
	if err != nil {
		return nil, wrap(err, "pgstore: create workflow %q", w.Name)
	}
	wf, err := scanWorkflow(rows)
	return wf, wrap(err, "pgstore: create workflow %q", w.Name)
}

func (s *Store) GetWorkflow(ctx context.Context, id int64) (*orkstate.Workflow, error) {
	rows, err := s.db.Query(ctx, s.sql(`select `+workflowColumns+` from {ork}.workflows where id = $1`), id)
	if err != nil {
		return nil, wrap(err, "pgstore: get workflow %d", id)
	}
	wf, err := scanWorkflow(rows)
	return wf, wrap(err, "pgstore: get workflow %d", id)
}

func (s *Store) GetWorkflowByName(ctx context.Context, name string) (*orkstate.Workflow, error) {
	if name == "" {
		return nil, orkstate.Invalid("name", name, "must not be empty")
	}
	if err := orkstate.ValidText("name", name); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+workflowColumns+` from {ork}.workflows where name = $1`), name)
	if err != nil {
		return nil, wrap(err, "pgstore: get workflow %q", name)
	}
	wf, err := scanWorkflow(rows)
	return wf, wrap(err, "pgstore: get workflow %q", name)
}

func (s *Store) GetWorkflowsByIDs(ctx context.Context, ids []int64) ([]orkstate.Workflow, error) {
	if len(ids) == 0 {
		return []orkstate.Workflow{}, nil
	}
	rows, err := s.db.Query(ctx, s.sql(`
		select `+workflowColumns+` from {ork}.workflows where id = any($1::bigint[]) order by id`), ids)
	if err != nil {
		return nil, wrap(err, "pgstore: get workflows by ids")
	}
	wfs, err := scanWorkflows(rows)
	return wfs, wrap(err, "pgstore: get workflows by ids")
}

func (s *Store) ListWorkflows(ctx context.Context) ([]orkstate.Workflow, error) {
	rows, err := s.db.Query(ctx, s.sql(`select `+workflowColumns+` from {ork}.workflows order by name`))
	if err != nil {
		return nil, wrap(err, "pgstore: list workflows")
	}
	wfs, err := scanWorkflows(rows)
	return wfs, wrap(err, "pgstore: list workflows")
}

func (s *Store) ListWorkflowsPage(ctx context.Context, q orkstate.WorkflowListQuery) (*orkstate.WorkflowPage, error) {
	limit, offset, err := pageBounds(q.Limit, q.Offset)
	if err != nil {
		return nil, err
	}
	if err := orkstate.ValidText("search", q.Search); err != nil {
		return nil, err
	}
	pattern := containsPattern(q.Search)
	page := &orkstate.WorkflowPage{}
	err = s.db.QueryRow(ctx, s.sql(`
		select count(*) from {ork}.workflows where name ilike $1 escape '\'`), pattern).Scan(&page.Total)
	if err != nil {
		return nil, wrap(err, "pgstore: list workflows page")
	}
	rows, err := s.db.Query(ctx, s.sql(`
		select `+workflowColumns+` from {ork}.workflows
		where name ilike $1 escape '\'
		order by name limit $2 offset $3`), pattern, limit, offset)
	if err != nil {
		return nil, wrap(err, "pgstore: list workflows page")
	}
	page.Workflows, err = scanWorkflows(rows)
	if err != nil {
		return nil, wrap(err, "pgstore: list workflows page")
	}
	return page, nil
}

func (s *Store) DeleteWorkflow(ctx context.Context, id int64) error {
	tag, err := s.db.Exec(ctx, s.sql(`delete from {ork}.workflows where id = $1`), id)
	if err != nil {
		return wrap(err, "pgstore: delete workflow %d", id)
	}
	if tag.RowsAffected() == 0 {
		return wrap(orkstate.ErrNotFound, "pgstore: delete workflow %d", id)
	}
	return nil
}

// ReplaceWorkflowTasks replaces the compiled DAG in one transaction; the workflow
// row is locked so concurrent replacements apply one after the other.
func (s *Store) ReplaceWorkflowTasks(ctx context.Context, workflowID int64, tasks []orkstate.TaskSpec) ([]orkstate.WorkflowTask, error) {
	if err := orkstate.ValidateDAG(tasks); err != nil {
		return nil, err
	}
	doc, err := specsJSON(tasks)
	if err != nil {
		return nil, err
	}
	var out []orkstate.WorkflowTask
	err = s.inTx(ctx, func(tx *Store) error {
		if err := tx.lockWorkflow(ctx, workflowID); err != nil {
			return err
		}
		if _, err := tx.db.Exec(ctx, s.sql(`delete from {ork}.workflow_tasks where workflow_id = $1`), workflowID); err != nil {
			return err
		}
		if _, err := tx.db.Exec(ctx, s.sql(`
			insert into {ork}.workflow_tasks
				(workflow_id, task_index, task_name, executor_type, depends_on, params, signature,
				 max_retries, timeout_seconds, priority, concurrency_key)
			select $1, e.ord - 1, e.t->>'name', coalesce(e.t->>'executor_type', ''),
				array(select jsonb_array_elements_text(e.t->'depends_on')),
				e.t->'params', e.t->'signature',
				coalesce((e.t->>'max_retries')::integer, 0), coalesce((e.t->>'timeout_seconds')::integer, 0),
				(e.t->>'priority')::smallint, coalesce(e.t->>'concurrency_key', '')
			from jsonb_array_elements($2::jsonb) with ordinality as e(t, ord)
			order by e.ord`), workflowID, doc); err != nil {
			return err
		}
		rows, err := tx.db.Query(ctx, s.sql(`
			select `+workflowTaskColumns+` from {ork}.workflow_tasks where workflow_id = $1 order by task_index`), workflowID)
		if err != nil {
			return err
		}
		out, err = scanWorkflowTasks(rows)
		return err
	})
	return out, wrap(err, "pgstore: replace tasks of workflow %d", workflowID)
}

func (s *Store) ListWorkflowTasks(ctx context.Context, workflowID int64) ([]orkstate.WorkflowTask, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select `+workflowTaskColumns+` from {ork}.workflow_tasks where workflow_id = $1 order by task_index`), workflowID)
	if err != nil {
		return nil, wrap(err, "pgstore: list tasks of workflow %d", workflowID)
	}
	out, err := scanWorkflowTasks(rows)
	if err == nil && len(out) == 0 {
		err = s.mustExist(ctx, `select from {ork}.workflows where id = $1`, workflowID)
	}
	return out, wrap(err, "pgstore: list tasks of workflow %d", workflowID)
}

// CreateSnapshot inserts the snapshot unless its hash exists, then reads it back:
// the second statement sees a row that a concurrent caller committed meanwhile.
func (s *Store) CreateSnapshot(ctx context.Context, workflowID int64, tasks []orkstate.TaskSpec) (*orkstate.Snapshot, error) {
	if err := orkstate.ValidateDAG(tasks); err != nil {
		return nil, err
	}
	hash, err := orkstate.ContentHash(tasks)
	if err != nil {
		return nil, err
	}
	doc, err := specsJSON(tasks)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`
		insert into {ork}.workflow_snapshots (workflow_id, content_hash, tasks_json)
		values ($1, $2, $3::jsonb)
		on conflict (workflow_id, content_hash) do nothing
		returning `+snapshotColumns), workflowID, hash, doc)
	if err != nil {
		return nil, wrap(err, "pgstore: create snapshot of workflow %d", workflowID)
	}
	snap, err := scanSnapshot(rows)
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		return snap, wrap(err, "pgstore: create snapshot of workflow %d", workflowID)
	}
	rows, err = s.db.Query(ctx, s.sql(`
		select `+snapshotColumns+` from {ork}.workflow_snapshots
		where workflow_id = $1 and content_hash = $2`), workflowID, hash)
	if err != nil {
		return nil, wrap(err, "pgstore: create snapshot of workflow %d", workflowID)
	}
	snap, err = scanSnapshot(rows)
	return snap, wrap(err, "pgstore: create snapshot of workflow %d", workflowID)
}

func (s *Store) GetSnapshot(ctx context.Context, id int64) (*orkstate.Snapshot, error) {
	rows, err := s.db.Query(ctx, s.sql(`select `+snapshotColumns+` from {ork}.workflow_snapshots where id = $1`), id)
	if err != nil {
		return nil, wrap(err, "pgstore: get snapshot %d", id)
	}
	snap, err := scanSnapshot(rows)
	return snap, wrap(err, "pgstore: get snapshot %d", id)
}

// SetCurrentSnapshot returns ErrNotFound when the workflow or the snapshot does not
// exist, or the snapshot belongs to another workflow.
func (s *Store) SetCurrentSnapshot(ctx context.Context, workflowID, snapshotID int64) error {
	tag, err := s.db.Exec(ctx, s.sql(`
		update {ork}.workflows set current_snapshot_id = $2, updated_at = now()
		where id = $1
		  and exists (select from {ork}.workflow_snapshots where id = $2 and workflow_id = $1)`),
		workflowID, snapshotID)
	if err == nil && tag.RowsAffected() == 0 {
		err = orkstate.ErrNotFound
	}
	return wrap(err, "pgstore: set snapshot %d current for workflow %d", snapshotID, workflowID)
}

// lockWorkflow locks a workflow row for the rest of the transaction; ErrNotFound when missing.
func (s *Store) lockWorkflow(ctx context.Context, id int64) error {
	var got int64
	return s.db.QueryRow(ctx, s.sql(`select id from {ork}.workflows where id = $1 for no key update`), id).Scan(&got)
}

// mustExist runs a query that selects at most one row and returns ErrNotFound when it selects none.
func (s *Store) mustExist(ctx context.Context, query string, args ...any) error {
	rows, err := s.db.Query(ctx, s.sql(query), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	found := rows.Next()
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if !found {
		return orkstate.ErrNotFound
	}
	return nil
}

// specsJSON is the JSON array of a DAG as stored in tasks_json, dependencies never
// null. It is a string: the simple protocol would send []byte as bytea.
func specsJSON(tasks []orkstate.TaskSpec) (string, error) {
	normal := make([]orkstate.TaskSpec, len(tasks))
	for i, t := range tasks {
		if t.DependsOn == nil {
			t.DependsOn = []string{}
		}
		normal[i] = t
	}
	b, err := json.Marshal(normal)
	if err != nil {
		return "", orkstate.Invalid("tasks", nil, err.Error())
	}
	return string(b), nil
}

// jsonArg passes an empty RawMessage as SQL NULL, and JSON as a string: the simple
// protocol (PgBouncer) would send []byte as bytea.
func jsonArg(v json.RawMessage) any {
	if len(v) == 0 {
		return nil
	}
	return string(v)
}

// checkLimit refuses limit <= 0 for the lists that are not paged (the shared rule).
func checkLimit(limit int) error { return orkstate.CheckListLimit(limit) }

// pageBounds is the shared paging rule, orkstate.PageBounds.
func pageBounds(limit, offset int) (int, int, error) { return orkstate.PageBounds(limit, offset) }

// likeEscaper makes \, % and _ literal in a LIKE pattern with ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// containsPattern is the ILIKE pattern (ESCAPE '\') of a literal substring search.
func containsPattern(search string) string {
	return "%" + likeEscaper.Replace(search) + "%"
}
