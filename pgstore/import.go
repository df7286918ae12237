package pgstore

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/orkstate/orkstate"
)

// importTask is one task row of ImportRun, as an element of the JSON array the
// insert reads with jsonb_to_recordset (field names are the columns).
type importTask struct {
	ID             int64           `json:"id"`
	TaskIndex      int             `json:"task_index"`
	TaskName       string          `json:"task_name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Status         string          `json:"status"`
	ExecutionName  string          `json:"execution_name"`
	Params         json.RawMessage `json:"params,omitempty"`
	Output         json.RawMessage `json:"output,omitempty"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	MaxRetries     int             `json:"max_retries"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	RetryAt        *time.Time      `json:"retry_at"`
	UnmetDeps      int             `json:"unmet_deps"`
	Downstream     []int64         `json:"downstream"`
	ClaimedBy      string          `json:"claimed_by"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
	CreatedAt      time.Time       `json:"created_at"`
	DispatchedAt   *time.Time      `json:"dispatched_at"`
	StartedAt      *time.Time      `json:"started_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	Priority       int             `json:"priority"`
	PriorityOver   *int            `json:"priority_override"`
	ConcurrencyKey string          `json:"concurrency_key"`
}

// importJob is one deferred job row of ImportRun.
type importJob struct {
	ID             int64           `json:"id"`
	TaskID         int64           `json:"task_id"`
	ServiceType    string          `json:"service_type"`
	JobID          string          `json:"job_id"`
	JobData        json.RawMessage `json:"job_data,omitempty"`
	Status         string          `json:"status"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	ClaimedBy      string          `json:"claimed_by"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
	NextPollAt     *time.Time      `json:"next_poll_at"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at"`
	LastPolledAt   *time.Time      `json:"last_polled_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
}

// usec truncates to the stored precision (Postgres would round).
func usec(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func usecPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := usec(*t)
	return &u
}

// ImportRun implements orkstate.RunImporter: one transaction inserts the run with
// its status, error, timestamps and counters (computed from the task statuses), the
// tasks under ids drawn first (so each downstream array is written with its task)
// with unmet_deps recomputed and timeout_at derived like a claim or a running
// report would, then _queue_sync files them for the claim and the sweeps: ready ones
// in task_queue (with a tasks_ready notification), dispatched ones in a lease row, and
// in-flight ones with a timeout in task_deadlines; priorities and concurrency keys
// are the tasks', placed in slot groups as a run started now would be (an unknown key
// is a validation error), and the tasks in flight hold their slots;
// logs go in as one chunk per task, deferred jobs with all their columns.
func (s *Store) ImportRun(ctx context.Context, in orkstate.RunImport) (*orkstate.ImportedRun, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	r := in.Run
	total, finished, failed, cancelled := len(in.Tasks), 0, 0, 0
	for _, k := range in.Tasks {
		if k.Status.IsTerminal() {
			finished++
		}
		switch k.Status {
		case orkstate.TaskFailed:
			failed++
		case orkstate.TaskCancelled:
			cancelled++
		}
	}
	out := &orkstate.ImportedRun{Tasks: map[int64]int64{}, Jobs: map[int64]int64{}}
	err := s.inTx(ctx, func(tx *Store) error {
		if err := tx.mustExist(ctx, `select from {ork}.workflows where id = $1`, r.WorkflowID); err != nil {
			return err
		}
		if r.SnapshotID != nil {
			if err := tx.mustExist(ctx, `select from {ork}.workflow_snapshots where id = $1 and workflow_id = $2`,
				*r.SnapshotID, r.WorkflowID); err != nil {
				return err
			}
		}
		err := tx.db.QueryRow(ctx, s.sql(`
			insert into {ork}.runs (workflow_id, snapshot_id, status, triggered_by, error,
				tasks_total, tasks_finished, tasks_failed, tasks_cancelled, created_at, started_at, finished_at)
			values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			returning id`),
			r.WorkflowID, r.SnapshotID, string(r.Status), r.TriggeredBy, r.Error,
			total, finished, failed, cancelled, usec(r.CreatedAt), usecPtr(r.StartedAt), usecPtr(r.FinishedAt)).Scan(&out.RunID)
		if err != nil {
			return err
		}
		if len(in.Tasks) == 0 {
			return nil
		}

		// Ids first, in source id order, so dispatch order (id) is kept.
		tasks := append([]orkstate.Task(nil), in.Tasks...)
		sort.Slice(tasks, func(i, j int) bool { return tasks[i].ID < tasks[j].ID })
		ids, err := tx.drawIDs(ctx, "tasks", len(tasks))
		if err != nil {
			return err
		}
		byName := make(map[string]int64, len(tasks))
		for i, k := range tasks {
			out.Tasks[k.ID] = ids[i]
			byName[k.TaskName] = ids[i]
		}
		downstream := make(map[int64][]int64, len(tasks))
		for _, k := range tasks {
			seen := map[string]bool{}
			for _, d := range k.DependsOn {
				if !seen[d] {
					seen[d] = true
					downstream[byName[d]] = append(downstream[byName[d]], out.Tasks[k.ID])
				}
			}
		}
		unmet := in.UnmetDeps()
		var apartIDs []int64
		var apartUnmet []int
		rows := make([]importTask, len(tasks))
		for i, k := range tasks {
			deps := k.DependsOn
			if deps == nil {
				deps = []string{}
			}
			down := downstream[ids[i]]
			if down == nil {
				down = []int64{}
			}
			// The row keeps 0 for a task with dependencies: one is derived from that
			// task's status, several are counted apart (readiness.sql).
			rowUnmet := unmet[k.ID]
			if len(deps) >= 1 {
				rowUnmet = 0
			}
			if len(deps) >= 2 && unmet[k.ID] > 0 {
				apartIDs, apartUnmet = append(apartIDs, ids[i]), append(apartUnmet, unmet[k.ID])
			}
			rows[i] = importTask{ID: ids[i], TaskIndex: k.TaskIndex, TaskName: k.TaskName, ExecutorType: k.ExecutorType,
				DependsOn: deps, Status: string(k.Status), ExecutionName: k.ExecutionName, Params: k.Params,
				Output: k.Output, Error: k.Error, Attempts: k.Attempts, MaxRetries: k.MaxRetries,
				TimeoutSeconds: k.TimeoutSeconds, RetryAt: usecPtr(k.RetryAt), UnmetDeps: rowUnmet,
				Downstream: down, ClaimedBy: k.ClaimedBy, LeaseExpiresAt: usecPtr(k.LeaseExpiresAt),
				CreatedAt: usec(k.CreatedAt), DispatchedAt: usecPtr(k.DispatchedAt), StartedAt: usecPtr(k.StartedAt),
				FinishedAt: usecPtr(k.FinishedAt), Priority: k.Priority, PriorityOver: k.PriorityOverride,
				ConcurrencyKey: k.ConcurrencyKey}
		}
		doc, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		_, err = tx.db.Exec(ctx, s.sql(`
			insert into {ork}.tasks (id, run_id, task_index, task_name, executor_type, depends_on, status,
				execution_name, params, output, error, attempts, max_retries, timeout_seconds, retry_at, unmet_deps,
				downstream, claimed_by, lease_expires_at, timeout_at, created_at, dispatched_at, started_at, finished_at,
				priority, priority_override, concurrency_key)
			overriding system value
			select x.id, $1, x.task_index, x.task_name, x.executor_type, x.depends_on, x.status,
				x.execution_name, x.params, x.output, x.error, x.attempts, x.max_retries, x.timeout_seconds,
				x.retry_at, x.unmet_deps, x.downstream, x.claimed_by, x.lease_expires_at,
				case when x.status in ('dispatched', 'running') and x.timeout_seconds > 0
					then coalesce(x.started_at, x.dispatched_at) + make_interval(secs => x.timeout_seconds) end,
				x.created_at, x.dispatched_at, x.started_at, x.finished_at,
				x.priority, x.priority_override, x.concurrency_key
			from jsonb_to_recordset($2::jsonb) as x(id bigint, task_index integer, task_name text,
				executor_type text, depends_on text[], status text, execution_name text, params jsonb, output jsonb,
				error text, attempts integer, max_retries integer, timeout_seconds integer, retry_at timestamptz,
				unmet_deps integer, downstream bigint[], claimed_by text, lease_expires_at timestamptz,
				created_at timestamptz, dispatched_at timestamptz, started_at timestamptz, finished_at timestamptz,
				priority smallint, priority_override smallint, concurrency_key text)
			order by x.id`), out.RunID, string(doc))
		if err != nil {
			return err
		}
		// Slot groups before the queue rows (which copy them): the workflow's pool, the
		// tasks' keys (an unknown one is OK422) and its fairness, as a run start places
		// them; then the tasks in flight take their slots, so the pools count them.
		if _, err := tx.db.Exec(ctx, s.sql(`select {api}._place_run_tasks($1)`), out.RunID); err != nil {
			return err
		}
		if len(apartIDs) > 0 {
			if _, err := tx.db.Exec(ctx, s.sql(`select {api}._set_deps_unmet($1, $2)`), apartIDs, apartUnmet); err != nil {
				return err
			}
		}
		if _, err := tx.db.Exec(ctx, s.sql(`select {api}._queue_sync($1)`), ids); err != nil {
			return err
		}
		var inFlight []int64
		for i, k := range tasks {
			if k.Status == orkstate.TaskDispatched || k.Status == orkstate.TaskRunning {
				inFlight = append(inFlight, ids[i])
			}
		}
		if len(inFlight) > 0 {
			if _, err := tx.db.Exec(ctx, s.sql(`select {api}._take_slots($1)`), inFlight); err != nil {
				return err
			}
		}
		for _, k := range tasks {
			if k.Status == orkstate.TaskPending && unmet[k.ID] == 0 {
				if _, err := tx.db.Exec(ctx, s.sql(`select {api}._notify('tasks_ready')`)); err != nil {
					return err
				}
				break
			}
		}

		// Logs: one chunk per task, with its running total.
		var logIDs, logBytes []int64
		var logs []string
		for _, k := range tasks {
			if l := in.Logs[k.ID]; l != "" {
				logIDs, logBytes, logs = append(logIDs, out.Tasks[k.ID]), append(logBytes, int64(len(l))), append(logs, l)
			}
		}
		if len(logIDs) > 0 {
			_, err = tx.db.Exec(ctx, s.sql(`
				with sizes as (
					insert into {ork}.task_log_sizes (task_id, bytes)
					select * from unnest($1::bigint[], $2::bigint[]))
				insert into {ork}.task_logs (task_id, chunk)
				select l.task_id, l.chunk from unnest($1::bigint[], $3::text[]) with ordinality as l(task_id, chunk, ord)
				order by l.ord`), logIDs, logBytes, logs)
			if err != nil {
				return err
			}
		}

		if len(in.Jobs) == 0 {
			return nil
		}
		jobs := append([]orkstate.DeferredJob(nil), in.Jobs...)
		sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].ID < jobs[j].ID })
		jids, err := tx.drawIDs(ctx, "deferred_jobs", len(jobs))
		if err != nil {
			return err
		}
		live := false
		jrows := make([]importJob, len(jobs))
		for i, j := range jobs {
			out.Jobs[j.ID] = jids[i]
			live = live || !j.Status.IsTerminal()
			jrows[i] = importJob{ID: jids[i], TaskID: out.Tasks[j.TaskID], ServiceType: j.ServiceType, JobID: j.JobID,
				JobData: j.JobData, Status: string(j.Status), Error: j.Error, Attempts: j.Attempts,
				ClaimedBy: j.ClaimedBy, LeaseExpiresAt: usecPtr(j.LeaseExpiresAt), NextPollAt: usecPtr(j.NextPollAt),
				CreatedAt: usec(j.CreatedAt), StartedAt: usecPtr(j.StartedAt), LastPolledAt: usecPtr(j.LastPolledAt),
				FinishedAt: usecPtr(j.FinishedAt)}
		}
		if doc, err = json.Marshal(jrows); err != nil {
			return err
		}
		_, err = tx.db.Exec(ctx, s.sql(`
			insert into {ork}.deferred_jobs (id, task_id, service_type, job_id, job_data, status, error, attempts,
				claimed_by, lease_expires_at, next_poll_at, created_at, started_at, last_polled_at, finished_at)
			overriding system value
			select x.id, x.task_id, x.service_type, x.job_id, x.job_data, x.status, x.error, x.attempts,
				x.claimed_by, x.lease_expires_at, coalesce(x.next_poll_at, now()), x.created_at, x.started_at,
				x.last_polled_at, x.finished_at
			from jsonb_to_recordset($1::jsonb) as x(id bigint, task_id bigint, service_type text, job_id text,
				job_data jsonb, status text, error text, attempts integer, claimed_by text,
				lease_expires_at timestamptz, next_poll_at timestamptz, created_at timestamptz,
				started_at timestamptz, last_polled_at timestamptz, finished_at timestamptz)
			order by x.id`), string(doc))
		if err != nil || !live {
			return err
		}
		_, err = tx.db.Exec(ctx, s.sql(`select {api}.notify_deferred_jobs()`))
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: import run of workflow %d", r.WorkflowID)
	}
	return out, nil
}

// drawIDs takes n ids from the identity sequence of {ork}.<table> (a constant name).
func (s *Store) drawIDs(ctx context.Context, table string, n int) ([]int64, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select nextval(q.seq)
		from (select pg_get_serial_sequence('{ork}.`+table+`', 'id')::regclass as seq) q, generate_series(1, $1)`), n)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, n)
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}
