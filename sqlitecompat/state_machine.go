// The task state machine: applying reports (SetTaskStates, UpdateTaskStatus) and their effects on dependents.

package sqlitecompat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/orkstate/orkstate"
)

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
