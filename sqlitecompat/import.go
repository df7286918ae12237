package sqlitecompat

import (
	"context"
	"database/sql"
	"errors"
	"sort"

	"github.com/orkstate/orkstate"
)

var _ orkstate.RunImporter = (*Store)(nil)

// ImportRun implements orkstate.RunImporter: one write transaction inserts the run
// with its status, error and timestamps, the tasks in source id order (so dispatch
// order is kept) with unmet_deps recomputed and timeout_at derived like a claim or
// a running report would, their task_deps edges from depends_on, each log as one
// chunk with its running total, and the deferred jobs with all their columns.
// Priorities and concurrency keys are the tasks'; the workflow's pool and fairness
// apply as they do to a run started now (an unknown key is a validation error).
// Run completion is not re-checked: the run keeps the status it came with.
func (s *Store) ImportRun(ctx context.Context, in orkstate.RunImport) (*orkstate.ImportedRun, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	r := in.Run
	out := &orkstate.ImportedRun{}
	err := s.write(ctx, func(t *txState) error {
		out.Tasks, out.Jobs = map[int64]int64{}, map[int64]int64{}
		var snap any
		if r.SnapshotID != nil {
			var ok int
			err := t.queryRow(`SELECT 1 FROM workflow_snapshots WHERE id = ? AND workflow_id = ?`, *r.SnapshotID, r.WorkflowID).Scan(&ok)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("snapshot", *r.SnapshotID)
			}
			if err != nil {
				return err
			}
			snap = *r.SnapshotID
		}
		err := t.queryRow(`INSERT INTO runs (workflow_id, snapshot_id, status, triggered_by, error, created_at, started_at, finished_at)
			SELECT id, ?, ?, ?, ?, ?, ?, ? FROM workflows WHERE id = ? RETURNING id`,
			snap, r.Status, r.TriggeredBy, r.Error, ts(r.CreatedAt), tsPtr(r.StartedAt), tsPtr(r.FinishedAt), r.WorkflowID).Scan(&out.RunID)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("workflow", r.WorkflowID)
		}
		if err != nil {
			return err
		}

		// The workflow's pool and fairness as a run start takes them (tasks_create.go);
		// a key must exist.
		var wfPool, fairRun int64
		if err := t.queryRow(`SELECT task_pool, CASE WHEN fair <> 0 THEN ? ELSE 0 END FROM workflows WHERE id = ?`,
			out.RunID, r.WorkflowID).Scan(&wfPool, &fairRun); err != nil {
			return err
		}
		keys := map[string]bool{}
		for _, k := range in.Tasks {
			if k.ConcurrencyKey == "" || keys[k.ConcurrencyKey] {
				continue
			}
			var n int
			if err := t.queryRow(`SELECT count(*) FROM concurrency_keys WHERE key = ?`, k.ConcurrencyKey).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return orkstate.Invalid("concurrency_key", k.ConcurrencyKey, "unknown concurrency key: set its slots first")
			}
			keys[k.ConcurrencyKey] = true
		}

		tasks := append([]orkstate.Task(nil), in.Tasks...)
		sort.Slice(tasks, func(i, j int) bool { return tasks[i].ID < tasks[j].ID })
		unmet := in.UnmetDeps()
		byName := make(map[string]int64, len(tasks))
		for _, k := range tasks {
			var timeoutAt any
			if (k.Status == orkstate.TaskDispatched || k.Status == orkstate.TaskRunning) && k.TimeoutSeconds > 0 {
				from := k.StartedAt
				if from == nil {
					from = k.DispatchedAt
				}
				if from != nil {
					timeoutAt = ts(*from) + int64(k.TimeoutSeconds)*usec
				}
			}
			var id int64
			err := t.queryRow(`INSERT INTO tasks (run_id, task_index, task_name, executor_type, depends_on, status,
					execution_name, params, output, error, attempts, max_retries, timeout_seconds, retry_at, unmet_deps,
					claimed_by, lease_expires_at, timeout_at, created_at, dispatched_at, started_at, finished_at,
					priority, priority_override, concurrency_key, workflow_pool, fair_run)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				out.RunID, k.TaskIndex, k.TaskName, k.ExecutorType, depsJSON(dedupe(k.DependsOn)), k.Status,
				k.ExecutionName, jsonArg(k.Params), jsonArg(k.Output), k.Error, k.Attempts, k.MaxRetries,
				k.TimeoutSeconds, tsPtr(k.RetryAt), unmet[k.ID], k.ClaimedBy, tsPtr(k.LeaseExpiresAt), timeoutAt,
				ts(k.CreatedAt), tsPtr(k.DispatchedAt), tsPtr(k.StartedAt), tsPtr(k.FinishedAt),
				k.Priority, k.PriorityOverride, k.ConcurrencyKey, wfPool, fairRun).Scan(&id)
			if err != nil {
				return err
			}
			out.Tasks[k.ID] = id
			byName[k.TaskName] = id
			if k.Status == orkstate.TaskPending && unmet[k.ID] == 0 {
				t.signals |= kindTasksReady
			}
		}
		for _, k := range tasks {
			for _, d := range dedupe(k.DependsOn) {
				if _, err := t.exec(`INSERT INTO task_deps (upstream_id, downstream_id) VALUES (?, ?)`, byName[d], out.Tasks[k.ID]); err != nil {
					return err
				}
			}
		}
		for _, k := range tasks {
			l := in.Logs[k.ID]
			if l == "" {
				continue
			}
			id := out.Tasks[k.ID]
			if _, err := t.exec(`INSERT INTO task_logs (task_id, chunk, created_at) VALUES (?, ?, ?)`, id, l, ts(t.now)); err != nil {
				return err
			}
			if _, err := t.exec(`INSERT INTO task_log_sizes (task_id, bytes) VALUES (?, ?)`, id, len(l)); err != nil {
				return err
			}
		}

		jobs := append([]orkstate.DeferredJob(nil), in.Jobs...)
		sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].ID < jobs[j].ID })
		for _, j := range jobs {
			next := ts(t.now)
			if j.NextPollAt != nil {
				next = ts(*j.NextPollAt)
			}
			var id int64
			err := t.queryRow(`INSERT INTO deferred_jobs (task_id, service_type, job_id, job_data, status, error, attempts,
					claimed_by, lease_expires_at, next_poll_at, created_at, started_at, last_polled_at, finished_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				out.Tasks[j.TaskID], j.ServiceType, j.JobID, jsonArg(j.JobData), j.Status, j.Error, j.Attempts,
				j.ClaimedBy, tsPtr(j.LeaseExpiresAt), next, ts(j.CreatedAt), tsPtr(j.StartedAt), tsPtr(j.LastPolledAt),
				tsPtr(j.FinishedAt)).Scan(&id)
			if err != nil {
				return err
			}
			out.Jobs[j.ID] = id
			if !j.Status.IsTerminal() {
				t.signals |= kindDeferred
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
