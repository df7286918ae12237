package sqlitecompat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/orkstate/orkstate"
)

const taskCols = `t.id, t.run_id, t.task_index, t.task_name, t.executor_type, t.depends_on, t.status,
	t.execution_name, t.params, t.output, t.error, t.attempts, t.max_retries, t.timeout_seconds, t.retry_at,
	t.unmet_deps, t.claimed_by, t.lease_expires_at, t.created_at, t.dispatched_at, t.started_at, t.finished_at`

func taskDest(k *orkstate.Task, deps *string, params, output *sql.NullString, retry, lease *sql.NullInt64, created *int64, disp, started, finished *sql.NullInt64) []any {
	return []any{&k.ID, &k.RunID, &k.TaskIndex, &k.TaskName, &k.ExecutorType, deps, &k.Status,
		&k.ExecutionName, params, output, &k.Error, &k.Attempts, &k.MaxRetries, &k.TimeoutSeconds, retry,
		&k.UnmetDeps, &k.ClaimedBy, lease, created, disp, started, finished}
}

// scanTaskExtra scans taskCols followed by extra destinations.
func scanTaskExtra(r scanner, extra ...any) (*orkstate.Task, error) {
	var k orkstate.Task
	var deps string
	var params, output sql.NullString
	var retry, lease, disp, started, finished sql.NullInt64
	var created int64
	dest := taskDest(&k, &deps, &params, &output, &retry, &lease, &created, &disp, &started, &finished)
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	var err error
	if k.DependsOn, err = parseDeps(deps); err != nil {
		return nil, err
	}
	k.Params, k.Output = fromNullJSON(params), fromNullJSON(output)
	k.RetryAt, k.LeaseExpiresAt = fromNullTS(retry), fromNullTS(lease)
	k.CreatedAt = fromTS(created)
	k.DispatchedAt, k.StartedAt, k.FinishedAt = fromNullTS(disp), fromNullTS(started), fromNullTS(finished)
	return &k, nil
}

func scanTask(r scanner) (*orkstate.Task, error) { return scanTaskExtra(r) }

func getTask(ctx context.Context, q queryer, id int64) (*orkstate.Task, error) {
	return one(q.QueryRowContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.id = ?`, id), scanTask, "task", id)
}

func (s *Store) GetTask(ctx context.Context, id int64) (*orkstate.Task, error) {
	return getTask(ctx, s.rdb, id)
}

// ListTasks returns a run's tasks in index order; an unknown run is ErrNotFound.
func (s *Store) ListTasks(ctx context.Context, runID int64) ([]orkstate.Task, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.run_id = ? ORDER BY t.task_index`, runID)
	out, err := collect(rows, err, scanTask)
	if err == nil && len(out) == 0 {
		if _, err := getRun(ctx, s.rdb, runID); err != nil {
			return nil, err
		}
	}
	return out, err
}

// PendingTasks returns up to limit pending tasks in dispatch order (id).
func (s *Store) PendingTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.status = 'pending' ORDER BY t.id LIMIT ?`, limit)
	return collect(rows, err, scanTask)
}

// RunningTasks returns up to limit dispatched or running tasks in id order.
func (s *Store) RunningTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.status IN ('dispatched', 'running') ORDER BY t.id LIMIT ?`, limit)
	return collect(rows, err, scanTask)
}

// dispatchableWhere is the readiness predicate; its arguments are now, the
// executor-type filter as JSON (or NULL) twice.
const dispatchableWhere = `t.status = 'pending' AND t.unmet_deps = 0 AND (t.retry_at IS NULL OR t.retry_at <= ?)
	AND (? IS NULL OR t.executor_type IN (SELECT value FROM json_each(?)))`

// DispatchableTasks lists, without claiming, what ClaimTasks would claim.
func (s *Store) DispatchableTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE `+dispatchableWhere+` ORDER BY t.id LIMIT ?`,
		ts(s.clock()), nil, nil, limit)
	return collect(rows, err, scanTask)
}

// ---- creating tasks

// CreateTasks creates count legacy tasks task_0 … task_{count-1} without dependencies.
func (s *Store) CreateTasks(ctx context.Context, runID int64, count int, executorType string, params json.RawMessage) ([]orkstate.Task, error) {
	if err := orkstate.ValidateTaskCount(count); err != nil {
		return nil, err
	}
	if err := orkstate.ValidName("executor_type", executorType, false); err != nil {
		return nil, err
	}
	if err := orkstate.ValidJSON("params", params); err != nil {
		return nil, err
	}
	nts := make([]orkstate.NewTask, count)
	for i := range nts {
		nts[i] = orkstate.NewTask{TaskIndex: i, TaskName: fmt.Sprintf("task_%d", i), ExecutorType: executorType, Params: params}
	}
	return s.CreateDAGTasks(ctx, runID, nts)
}

// CreateDAGTasks creates a run's tasks with their dependencies; see docs/semantics.md.
func (s *Store) CreateDAGTasks(ctx context.Context, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	if err := orkstate.ValidateNewTasks(tasks); err != nil {
		return nil, err
	}
	var out []orkstate.Task
	err := s.write(ctx, func(t *txState) (err error) {
		out, err = createDAGTasks(t, runID, tasks)
		return err
	})
	return out, err
}

// dedupe returns the distinct dependency names, sorted (as create_tasks stores them).
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, d := range in {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func createDAGTasks(t *txState, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	st, err := lockRun(t, runID)
	if err != nil {
		return nil, err
	}
	if st.IsTerminal() {
		return nil, invalidTransition("run %d is %s", runID, st)
	}
	rows, err := t.query(`SELECT `+taskCols+` FROM tasks t WHERE t.run_id = ? ORDER BY t.task_index`, runID)
	existing, err := collect(rows, err, scanTask)
	if err != nil {
		return nil, err
	}
	byIndex := map[int]*orkstate.Task{}
	byName := map[string]*orkstate.Task{}
	for i := range existing {
		byIndex[existing[i].TaskIndex] = &existing[i]
		byName[existing[i].TaskName] = &existing[i]
	}
	wanted := map[int64]bool{}
	var fresh []orkstate.NewTask
	for _, k := range tasks {
		// As in pgstore, a spec names every existing task with its index or its name.
		e1, e2 := byIndex[k.TaskIndex], byName[k.TaskName]
		if e1 != nil {
			wanted[e1.ID] = true
		}
		if e2 != nil {
			wanted[e2.ID] = true
		}
		if e1 != nil || e2 != nil {
			continue
		}
		k.DependsOn = dedupe(k.DependsOn)
		fresh = append(fresh, k)
	}
	if err := checkKnownSpecs(tasks, fresh, byName); err != nil {
		return nil, err
	}
	if len(fresh) > 0 {
		specs := make([]orkstate.TaskSpec, 0, len(existing)+len(fresh))
		for _, e := range existing {
			specs = append(specs, orkstate.TaskSpec{Name: e.TaskName, DependsOn: e.DependsOn})
		}
		for _, k := range fresh {
			specs = append(specs, orkstate.TaskSpec{Name: k.TaskName, DependsOn: k.DependsOn})
		}
		if err := orkstate.ValidateDAG(specs); err != nil {
			return nil, err
		}
		status := orkstate.TaskPending
		if st == orkstate.RunPaused {
			status = orkstate.TaskPaused
		}
		// The workflow's priority, pool and fairness as they are now (slots.sql's
		// _place_run_tasks); a key must exist.
		var wfPriority, wfPool, fairRun int64
		if err := t.queryRow(`SELECT w.priority, w.task_pool, CASE WHEN w.fair <> 0 THEN r.id ELSE 0 END
				FROM runs r JOIN workflows w ON w.id = r.workflow_id WHERE r.id = ?`, runID).Scan(&wfPriority, &wfPool, &fairRun); err != nil {
			return nil, err
		}
		for _, k := range fresh {
			if k.ConcurrencyKey == "" {
				continue
			}
			var n int
			if err := t.queryRow(`SELECT count(*) FROM concurrency_keys WHERE key = ?`, k.ConcurrencyKey).Scan(&n); err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, orkstate.Invalid("concurrency_key", k.ConcurrencyKey, "unknown concurrency key: set its slots first")
			}
		}
		ready := false
		ids := make(map[string]int64, len(existing)+len(fresh))
		for _, e := range existing {
			ids[e.TaskName] = e.ID
		}
		for _, k := range fresh {
			unmet := 0
			for _, d := range k.DependsOn {
				if e := byName[d]; e == nil || e.Status != orkstate.TaskSuccess {
					unmet++
				}
			}
			var id int64
			prio := wfPriority
			if k.Priority != nil {
				prio = int64(*k.Priority)
			}
			if err := t.queryRow(`INSERT INTO tasks (run_id, task_index, task_name, executor_type, depends_on, status,
					params, max_retries, timeout_seconds, unmet_deps, created_at,
					priority, priority_override, concurrency_key, workflow_pool, fair_run)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, runID, k.TaskIndex, k.TaskName, k.ExecutorType,
				depsJSON(k.DependsOn), status, jsonArg(k.Params), k.MaxRetries, k.TimeoutSeconds, unmet, ts(t.now),
				prio, k.Priority, k.ConcurrencyKey, wfPool, fairRun).Scan(&id); err != nil {
				return nil, err
			}
			wanted[id] = true
			ids[k.TaskName] = id
			ready = ready || (unmet == 0 && status == orkstate.TaskPending)
		}
		for _, k := range fresh {
			for _, d := range k.DependsOn {
				if _, err := t.exec(`INSERT INTO task_deps (upstream_id, downstream_id) VALUES (?, ?)`, ids[d], ids[k.TaskName]); err != nil {
					return nil, err
				}
			}
		}
		// A new task whose dependency already failed or was cancelled finishes at once
		// (create_tasks does the same): it would never become ready.
		for _, want := range []orkstate.TaskStatus{orkstate.TaskFailed, orkstate.TaskCancelled} {
			done := map[int64]bool{}
			for _, k := range fresh {
				for _, d := range k.DependsOn {
					e := byName[d]
					if e == nil || e.Status != want || done[e.ID] {
						continue
					}
					done[e.ID] = true
					msg := "dependency failed"
					if want == orkstate.TaskCancelled {
						msg = "dependency cancelled"
					}
					if _, err := t.propagate(runID, e.ID, want, msg); err != nil {
						return nil, err
					}
				}
			}
		}
		if st == orkstate.RunPending {
			if _, err := t.exec(`UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?) WHERE id = ?`, ts(t.now), runID); err != nil {
				return nil, err
			}
		}
		if ready {
			t.signals |= kindTasksReady
		}
	}
	want := make([]int64, 0, len(wanted))
	for id := range wanted {
		want = append(want, id)
	}
	rows, err = t.query(`SELECT `+taskCols+` FROM tasks t WHERE t.id IN (SELECT value FROM json_each(?)) ORDER BY t.task_index`, idsJSON(want))
	return collect(rows, err, scanTask)
}

// checkKnownSpecs gives the specs the run already has (skipped by idempotency) the
// checks the new ones get: each dependency names a new task or one the run has, and
// the input as declared has no cycle.
func checkKnownSpecs(all, fresh []orkstate.NewTask, existing map[string]*orkstate.Task) error {
	if len(fresh) == len(all) {
		return nil // nothing skipped: the whole-DAG check covers the input
	}
	isFresh := make(map[string]bool, len(fresh))
	for _, k := range fresh {
		isFresh[k.TaskName] = true
	}
	inInput := make(map[string]bool, len(all))
	for _, k := range all {
		inInput[k.TaskName] = true
	}
	specs := make([]orkstate.TaskSpec, 0, len(all))
	for _, k := range all {
		var deps []string
		for _, d := range k.DependsOn {
			if !isFresh[d] && existing[d] == nil {
				return orkstate.Invalid("depends_on", d, fmt.Sprintf("task %q depends on unknown task %q", k.TaskName, d))
			}
			if inInput[d] {
				deps = append(deps, d)
			}
		}
		specs = append(specs, orkstate.TaskSpec{Name: k.TaskName, DependsOn: deps})
	}
	return orkstate.ValidateDAG(specs)
}

func idsJSON(ids []int64) string {
	if len(ids) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(ids)
	return string(b)
}

// ---- the state machine

// taskState is what the state machine reads of a task.
type taskState struct {
	id, runID            int64
	name                 string
	status               orkstate.TaskStatus
	attempts, maxRetries int
}

func loadTaskState(t *txState, id int64) (*taskState, error) {
	var k taskState
	err := t.queryRow(`SELECT id, run_id, task_name, status, attempts, max_retries FROM tasks WHERE id = ?`, id).
		Scan(&k.id, &k.runID, &k.name, &k.status, &k.attempts, &k.maxRetries)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &k, err
}

const usec = int64(time.Second / time.Microsecond)

// effects are what a round of reports does beyond the reported tasks, applied after
// every row of the round, in pgstore's order: successes' dependents first, then the
// dependents of failures, then those of cancellations.
type effects struct{ success, failed, cancelled []*taskState }

// applyReports applies reports as set_task_states does: in rounds (the k-th report
// of each task), each decided against the tasks as they were before it, its effects
// on other tasks applied after the whole round. A row the round refused reports the
// task's status after the round.
func (t *txState) applyReports(us []orkstate.TaskUpdate) ([]orkstate.TaskOutcome, error) {
	out := make([]orkstate.TaskOutcome, len(us))
	var rounds [][]int
	seen := make(map[int64]int, len(us))
	for i, u := range us {
		r := seen[u.TaskID]
		seen[u.TaskID]++
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}
	for _, round := range rounds {
		var fx effects
		var refused []int
		for _, i := range round {
			o, err := t.applyReport(us[i], &fx)
			if err != nil {
				return nil, err
			}
			out[i] = o
			switch o.Outcome {
			case orkstate.OutcomeInvalid, orkstate.OutcomeStale, orkstate.OutcomeIgnored:
				refused = append(refused, i)
			}
		}
		if err := t.applyEffects(&fx); err != nil {
			return nil, err
		}
		for _, i := range refused {
			if err := t.queryRow(`SELECT status FROM tasks WHERE id = ?`, out[i].TaskID).Scan(&out[i].Status); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (t *txState) applyEffects(fx *effects) error {
	for _, k := range fx.success {
		if err := t.afterSuccess(k); err != nil {
			return err
		}
	}
	for _, k := range fx.failed {
		if err := t.afterFinish(k, orkstate.TaskFailed, "dependency failed"); err != nil {
			return err
		}
	}
	for _, k := range fx.cancelled {
		if err := t.afterFinish(k, orkstate.TaskCancelled, "dependency cancelled"); err != nil {
			return err
		}
	}
	return nil
}

// applyReport applies one status report by the rules of docs/semantics.md to the
// task itself, and adds what it does to other tasks to fx (see applyReports).
func (t *txState) applyReport(u orkstate.TaskUpdate, fx *effects) (orkstate.TaskOutcome, error) {
	out := orkstate.TaskOutcome{TaskID: u.TaskID}
	k, err := loadTaskState(t, u.TaskID)
	if err != nil {
		return out, err
	}
	if k == nil {
		out.Outcome = orkstate.OutcomeNotFound
		return out, nil
	}
	out.Status = k.status
	switch {
	case u.Attempt != 0 && u.Attempt != k.attempts:
		out.Outcome = orkstate.OutcomeStale
		return out, nil
	case k.status == u.Status:
		out.Outcome = orkstate.OutcomeIgnored
		return out, nil
	case !orkstate.CanTransitionTask(k.status, u.Status):
		out.Outcome = orkstate.OutcomeInvalid
		return out, nil
	}
	now := ts(t.now)
	// The report's own fields, set on every applied row.
	const fields = `execution_name = CASE WHEN ? <> '' THEN ? ELSE execution_name END,
		error = CASE WHEN ? <> '' THEN ? ELSE error END,
		output = coalesce(?, output)`
	fargs := []any{u.ExecutionName, u.ExecutionName, u.Error, u.Error, jsonArg(u.Output)}
	upd := func(set string, args ...any) error {
		_, err := t.exec(`UPDATE tasks SET `+set+`, `+fields+` WHERE id = ?`, append(append(args, fargs...), k.id)...)
		return err
	}
	// Back to pending is a new attempt: the ended one's execution and output go, the
	// error stays as the reason (as in _apply_task_changes).
	renew := func(set string, args ...any) error {
		_, err := t.exec(`UPDATE tasks SET `+set+`, execution_name = '', output = NULL,
			error = CASE WHEN ? <> '' THEN ? ELSE error END WHERE id = ?`, append(args, u.Error, u.Error, k.id)...)
		return err
	}
	out.Outcome, out.Status = orkstate.OutcomeApplied, u.Status
	switch u.Status {
	case orkstate.TaskRunning:
		err = upd(`status = 'running', started_at = coalesce(started_at, ?), retry_at = NULL, lease_expires_at = NULL,
			timeout_at = CASE WHEN timeout_seconds > 0 THEN coalesce(started_at, ?) + timeout_seconds * ? END`, now, now, usec)
	case orkstate.TaskPaused:
		// As in pgstore, only a failure's retry keeps retry_at: a paused report
		// clears it (the resumed task is due at once).
		err = upd(`status = 'paused', retry_at = NULL`)
	case orkstate.TaskPending:
		err = renew(`status = 'pending', claimed_by = '', lease_expires_at = NULL, dispatched_at = NULL,
			started_at = NULL, finished_at = NULL, timeout_at = NULL, retry_at = NULL`)
		if err == nil {
			_, err = t.cancelJobs(k.id)
		}
		t.signals |= kindTasksReady
	case orkstate.TaskSuccess:
		err = upd(`status = 'success', finished_at = ?, claimed_by = '', lease_expires_at = NULL, timeout_at = NULL, retry_at = NULL`, now)
		fx.success = append(fx.success, k)
	case orkstate.TaskFailed:
		n := max(k.attempts, 1)
		if n <= k.maxRetries {
			retryAt := ts(t.now.Add(orkstate.RetryBackoff(n)))
			err = renew(`status = 'pending', retry_at = ?, finished_at = NULL, dispatched_at = NULL, started_at = NULL,
				claimed_by = '', lease_expires_at = NULL, timeout_at = NULL`, retryAt)
			if err == nil {
				_, err = t.cancelJobs(k.id)
			}
			t.signals |= kindTasksReady
			out.Outcome, out.Status = orkstate.OutcomeRetrying, orkstate.TaskPending
			break
		}
		err = upd(`status = 'failed', finished_at = ?, claimed_by = '', lease_expires_at = NULL, timeout_at = NULL, retry_at = NULL`, now)
		fx.failed = append(fx.failed, k)
	case orkstate.TaskCancelled:
		err = upd(`status = 'cancelled', finished_at = ?, claimed_by = '', lease_expires_at = NULL, timeout_at = NULL, retry_at = NULL`, now)
		fx.cancelled = append(fx.cancelled, k)
	default:
		return out, orkstate.Invalid("task status", string(u.Status), "unknown task status")
	}
	return out, err
}

// afterSuccess decrements the direct dependents' counters and cancels the task's
// unfinished deferred jobs.
func (t *txState) afterSuccess(k *taskState) error {
	res, err := t.exec(`UPDATE tasks SET unmet_deps = max(unmet_deps - 1, 0)
		WHERE id IN (SELECT downstream_id FROM task_deps WHERE upstream_id = ?) AND status IN ('pending', 'paused')`, k.id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		t.signals |= kindTasksReady
	}
	if _, err := t.cancelJobs(k.id); err != nil {
		return err
	}
	t.touchedRuns[k.runID] = true
	return nil
}

// afterFinish ends a failed or cancelled task's deferred jobs and its transitive dependents.
func (t *txState) afterFinish(k *taskState, st orkstate.TaskStatus, msg string) error {
	if _, err := t.cancelJobs(k.id); err != nil {
		return err
	}
	_, err := t.propagate(k.runID, k.id, st, msg)
	t.touchedRuns[k.runID] = true
	return err
}

// dependents lists the direct dependents of a task by name.
func (t *txState) dependents(id int64) ([]taskState, error) {
	rows, err := t.query(`SELECT d.id, d.run_id, d.task_name, d.status, d.attempts, d.max_retries
		FROM task_deps e JOIN tasks d ON d.id = e.downstream_id WHERE e.upstream_id = ? ORDER BY d.id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []taskState
	for rows.Next() {
		var k taskState
		if err := rows.Scan(&k.id, &k.runID, &k.name, &k.status, &k.attempts, &k.maxRetries); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// propagate moves every unfinished transitive dependent of the named task to st
// with error msg, cancelling their deferred jobs, and returns how many it moved.
func (t *txState) propagate(runID, id int64, st orkstate.TaskStatus, msg string) (int, error) {
	queue := []int64{id}
	seen := map[int64]bool{id: true}
	n := 0
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		deps, err := t.dependents(cur)
		if err != nil {
			return n, err
		}
		for _, d := range deps {
			if seen[d.id] {
				continue
			}
			seen[d.id] = true
			queue = append(queue, d.id)
			if d.status.IsTerminal() {
				continue
			}
			if _, err := t.exec(`UPDATE tasks SET status = ?, error = ?, finished_at = ?, claimed_by = '', lease_expires_at = NULL,
				timeout_at = NULL, retry_at = NULL WHERE id = ?`, st, msg, ts(t.now), d.id); err != nil {
				return n, err
			}
			if _, err := t.cancelJobs(d.id); err != nil {
				return n, err
			}
			n++
		}
	}
	t.touchedRuns[runID] = true
	return n, nil
}

// cancelJobs cancels a task's unfinished deferred jobs.
func (t *txState) cancelJobs(taskID int64) (int, error) {
	res, err := t.exec(`UPDATE deferred_jobs SET status = 'cancelled', finished_at = ?, claimed_by = '', lease_expires_at = NULL
		WHERE task_id = ? AND status IN ('pending', 'polling')`, ts(t.now), taskID)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// SetTaskStates applies N reports in one transaction, one outcome per input in
// input order; a task named several times takes its rows in order.
func (s *Store) SetTaskStates(ctx context.Context, updates []orkstate.TaskUpdate) ([]orkstate.TaskOutcome, error) {
	updates, err := orkstate.NormalizeTaskUpdates(updates)
	if err != nil {
		return nil, err
	}
	out := make([]orkstate.TaskOutcome, 0, len(updates))
	if len(updates) == 0 {
		return out, nil
	}
	err = s.write(ctx, func(t *txState) (err error) {
		out, err = t.applyReports(updates)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateTaskStatus applies one report; invalid, stale and not_found come back as
// errors (ErrInvalidTransition, ErrStale, ErrNotFound) together with the outcome.
func (s *Store) UpdateTaskStatus(ctx context.Context, u orkstate.TaskUpdate) (*orkstate.TaskOutcome, error) {
	outs, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{u})
	if err != nil {
		return nil, err
	}
	o := outs[0]
	if err := o.Outcome.Err(); err != nil {
		return &o, fmt.Errorf("%w: task %d (%s → %s)", err, u.TaskID, o.Status, u.Status)
	}
	return &o, nil
}

// ---- claims, leases, timeouts

// ClaimTasks moves up to p.Limit dispatchable tasks to dispatched: highest priority
// first, in id order within a priority, within the concurrency limits (pickClaim).
// They come back in that order.
func (s *Store) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	var types any
	if len(p.ExecutorTypes) > 0 {
		b, _ := json.Marshal(p.ExecutorTypes)
		types = string(b)
	}
	out := []orkstate.ClaimedTask{}
	err = s.write(ctx, func(t *txState) error {
		out = out[:0]
		now := ts(t.now)
		picked, err := pickClaim(t, p.Limit, types)
		if err != nil || len(picked) == 0 {
			return err
		}
		claimed, err := t.ids(`UPDATE tasks SET status = 'dispatched', attempts = attempts + 1, claimed_by = ?,
				lease_expires_at = ?, dispatched_at = ?, started_at = NULL, finished_at = NULL, retry_at = NULL,
				timeout_at = CASE WHEN timeout_seconds > 0 THEN ? + timeout_seconds * ? END
			WHERE id IN (SELECT value FROM json_each(?)) RETURNING id`,
			p.Claimer, ts(t.now.Add(p.Lease)), now, now, usec, idsJSON(picked))
		if err != nil || len(claimed) == 0 {
			return err
		}
		rows, err := t.query(`SELECT `+taskCols+`, w.id, w.name, w.job_name, w.project, w.region
			FROM tasks t JOIN runs r ON r.id = t.run_id JOIN workflows w ON w.id = r.workflow_id
			WHERE t.id IN (SELECT value FROM json_each(?)) ORDER BY t.priority DESC, t.id`, idsJSON(claimed))
		if err != nil {
			return err
		}
		byID := map[int64]int{}
		for rows.Next() {
			var c orkstate.ClaimedTask
			k, err := scanTaskExtra(rows, &c.WorkflowID, &c.WorkflowName, &c.JobName, &c.Project, &c.Region)
			if err != nil {
				rows.Close()
				return err
			}
			c.Task, c.Attempt = *k, k.Attempts
			c.UpstreamOutputs = map[string]json.RawMessage{}
			byID[k.ID] = len(out)
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		ids := make([]int64, len(out))
		for i := range out {
			ids[i] = out[i].ID
		}
		return upstreamOutputs(t.ctx, t.tx, ids, func(id int64, name string, v json.RawMessage) {
			out[byID[id]].UpstreamOutputs[name] = v
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
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

// ExpireTaskLeases returns dispatched tasks whose lease ran out to pending; the
// attempt is not counted as a failure, and the old claimer's report becomes stale.
func (s *Store) ExpireTaskLeases(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	if err := checkBatchLimit(limit); err != nil {
		return nil, err
	}
	out := []orkstate.TaskOutcome{}
	err := s.write(ctx, func(t *txState) error {
		out = out[:0]
		rows, err := t.query(`SELECT id, attempts FROM tasks WHERE status = 'dispatched' AND lease_expires_at <= ?
			ORDER BY lease_expires_at, id LIMIT ?`, ts(t.now), limit)
		if err != nil {
			return err
		}
		var us []orkstate.TaskUpdate
		for rows.Next() {
			u := orkstate.TaskUpdate{Status: orkstate.TaskPending, Error: "lease expired"}
			if err := rows.Scan(&u.TaskID, &u.Attempt); err != nil {
				rows.Close()
				return err
			}
			us = append(us, u)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(us, func(i, j int) bool { return us[i].TaskID < us[j].TaskID })
		if len(us) > 0 {
			t.signals |= kindTasksReady
		}
		out, err = t.applyReports(us)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (t *txState) ids(q string, args ...any) ([]int64, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// FailTimedOutTasks fails dispatched or running tasks past their timeout with
// "timeout after Ns", under the retry rule; their deferred jobs are cancelled.
func (s *Store) FailTimedOutTasks(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	if err := checkBatchLimit(limit); err != nil {
		return nil, err
	}
	out := []orkstate.TaskOutcome{}
	err := s.write(ctx, func(t *txState) error {
		out = out[:0]
		rows, err := t.query(`SELECT id, timeout_seconds, attempts FROM tasks WHERE status IN ('dispatched', 'running')
			AND timeout_at <= ? ORDER BY timeout_at, id LIMIT ?`, ts(t.now), limit)
		if err != nil {
			return err
		}
		type to struct {
			id            int64
			sec, attempts int
		}
		var tos []to
		for rows.Next() {
			var x to
			if err := rows.Scan(&x.id, &x.sec, &x.attempts); err != nil {
				rows.Close()
				return err
			}
			tos = append(tos, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(tos, func(i, j int) bool { return tos[i].id < tos[j].id })
		us := make([]orkstate.TaskUpdate, len(tos))
		for i, x := range tos {
			us[i] = orkstate.TaskUpdate{TaskID: x.id, Status: orkstate.TaskFailed,
				Error: fmt.Sprintf("timeout after %ds", x.sec), Attempt: x.attempts}
		}
		out, err = t.applyReports(us)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ---- operator actions

// RetryTask is an operator's retry: a finished task of an unfinished run goes back
// to pending with attempts reset, together with its transitive dependents that
// failed or were cancelled because of it.
func (s *Store) RetryTask(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error {
		k, err := loadTaskState(t, id)
		if err != nil {
			return err
		}
		if k == nil {
			return notFound("task", id)
		}
		if !k.status.IsTerminal() {
			return invalidTransition("task %d is %s, not finished", id, k.status)
		}
		rst, err := lockRun(t, k.runID)
		if err != nil {
			return err
		}
		if rst.IsTerminal() {
			return invalidTransition("run %d of task %d is %s", k.runID, id, rst)
		}
		reset := []int64{k.id}
		queue := []int64{k.id}
		seen := map[int64]bool{k.id: true}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			rows, err := t.query(`SELECT d.id FROM task_deps e JOIN tasks d ON d.id = e.downstream_id
				WHERE e.upstream_id = ? AND ((d.status = 'failed' AND d.error = 'dependency failed')
				OR (d.status = 'cancelled' AND d.error = 'dependency cancelled')) ORDER BY d.id`, cur)
			if err != nil {
				return err
			}
			for rows.Next() {
				var did int64
				if err := rows.Scan(&did); err != nil {
					rows.Close()
					return err
				}
				if !seen[did] {
					seen[did] = true
					reset = append(reset, did)
					queue = append(queue, did)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		status := orkstate.TaskPending
		if rst == orkstate.RunPaused {
			status = orkstate.TaskPaused
		}
		if _, err := t.exec(`UPDATE tasks SET status = ?, attempts = 0, error = '', output = NULL, execution_name = '', claimed_by = '',
				lease_expires_at = NULL, timeout_at = NULL, retry_at = NULL, dispatched_at = NULL, started_at = NULL,
				finished_at = NULL
			WHERE id IN (SELECT value FROM json_each(?))`, status, idsJSON(reset)); err != nil {
			return err
		}
		if err := t.recomputeUnmet(k.runID); err != nil {
			return err
		}
		t.signals |= kindTasksReady
		return nil
	})
}

// recomputeUnmet sets unmet_deps of a run's pending and paused tasks from their
// dependencies' statuses.
func (t *txState) recomputeUnmet(runID int64) error {
	_, err := t.exec(`UPDATE tasks SET unmet_deps = (
			SELECT count(*) FROM task_deps e JOIN tasks u ON u.id = e.upstream_id
			WHERE e.downstream_id = tasks.id AND u.status <> 'success')
		WHERE run_id = ? AND status IN ('pending', 'paused')`, runID)
	return err
}

// FailDependentTasks fails, transitively, the unfinished dependents of a task with
// "dependency failed" and returns how many it failed.
func (s *Store) FailDependentTasks(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := s.write(ctx, func(t *txState) error {
		k, err := loadTaskState(t, taskID)
		if err != nil {
			return err
		}
		if k == nil {
			return notFound("task", taskID)
		}
		if k.status != orkstate.TaskFailed {
			return invalidTransition("task %d is %s; only a failed task's dependents can be failed", taskID, k.status)
		}
		n, err = t.propagate(k.runID, k.id, orkstate.TaskFailed, "dependency failed")
		return err
	})
	return n, err
}

// ---- logs, outputs, metadata

// AppendTaskLog appends a chunk in O(chunk); a log that would pass
// orkstate.MaxTaskLogBytes is refused with a validation error and nothing appended.
func (s *Store) AppendTaskLog(ctx context.Context, taskID int64, chunk string) error {
	if len(chunk) > orkstate.MaxTaskLogBytes {
		return orkstate.Invalid("chunk", fmt.Sprintf("%d bytes", len(chunk)), fmt.Sprintf("log would exceed %d bytes", orkstate.MaxTaskLogBytes))
	}
	if err := orkstate.ValidText("chunk", chunk); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		var size sql.NullInt64
		err := t.queryRow(`SELECT s.bytes FROM tasks t LEFT JOIN task_log_sizes s ON s.task_id = t.id WHERE t.id = ?`, taskID).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("task", taskID)
		}
		if err != nil {
			return err
		}
		if chunk == "" {
			return nil
		}
		if size.Int64+int64(len(chunk)) > orkstate.MaxTaskLogBytes {
			return orkstate.Invalid("chunk", fmt.Sprintf("%d bytes", len(chunk)),
				fmt.Sprintf("log of task %d would exceed %d bytes (has %d)", taskID, orkstate.MaxTaskLogBytes, size.Int64))
		}
		if _, err := t.exec(`INSERT INTO task_logs (task_id, chunk, created_at) VALUES (?, ?, ?)`, taskID, chunk, ts(t.now)); err != nil {
			return err
		}
		_, err = t.exec(`INSERT INTO task_log_sizes (task_id, bytes) VALUES (?, ?)
			ON CONFLICT (task_id) DO UPDATE SET bytes = bytes + excluded.bytes`, taskID, len(chunk))
		return err
	})
}

// TaskLog returns a task's log chunks concatenated in order.
func (s *Store) TaskLog(ctx context.Context, taskID int64) (string, error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := getTask(ctx, tx, taskID); err != nil {
		return "", err
	}
	rows, err := tx.QueryContext(ctx, `SELECT chunk FROM task_logs WHERE task_id = ? ORDER BY id`, taskID)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return "", err
		}
		b.WriteString(c)
	}
	return b.String(), rows.Err()
}

// SetTaskOutput replaces a task's output (nil clears it).
func (s *Store) SetTaskOutput(ctx context.Context, taskID int64, output json.RawMessage) error {
	if err := orkstate.ValidJSON("output", output); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		res, err := t.exec(`UPDATE tasks SET output = ? WHERE id = ?`, jsonArg(output), taskID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("task", taskID)
		}
		return nil
	})
}

// UpstreamOutputs maps each dependency name of the task to its output (nil when
// it stored none).
func (s *Store) UpstreamOutputs(ctx context.Context, taskID int64) (map[string]json.RawMessage, error) {
	if _, err := s.GetTask(ctx, taskID); err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	err := upstreamOutputs(ctx, s.rdb, []int64{taskID}, func(_ int64, name string, v json.RawMessage) { m[name] = v })
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (s *Store) TaskRetryInfo(ctx context.Context, taskID int64) (*orkstate.RetryInfo, error) {
	k, err := s.GetTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	return &orkstate.RetryInfo{Attempts: k.Attempts, MaxRetries: k.MaxRetries, TimeoutSeconds: k.TimeoutSeconds, RetryAt: k.RetryAt}, nil
}

func (s *Store) TaskIdentity(ctx context.Context, taskID int64) (*orkstate.TaskIdentity, error) {
	var id orkstate.TaskIdentity
	err := s.rdb.QueryRowContext(ctx, `SELECT t.id, t.run_id, t.task_index, t.task_name, w.id, w.name
		FROM tasks t JOIN runs r ON r.id = t.run_id JOIN workflows w ON w.id = r.workflow_id WHERE t.id = ?`, taskID).
		Scan(&id.TaskID, &id.RunID, &id.TaskIndex, &id.TaskName, &id.WorkflowID, &id.WorkflowName)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("task", taskID)
	}
	if err != nil {
		return nil, err
	}
	return &id, nil
}
