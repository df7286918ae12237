package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
)

// The hot paths: each method is one call of a function in sql/functions, so the
// state machine lives in one place and psql users get the same behaviour.

// Defaults of the leases when a caller leaves them zero.
const (
	DefaultTaskLease     = orkstate.DefaultTaskLease
	DefaultDeferredLease = orkstate.DefaultDeferredLease
)

// taskSpec is one element of create_tasks' JSON argument.
type taskSpec struct {
	TaskIndex      int             `json:"task_index"`
	TaskName       string          `json:"task_name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Params         json.RawMessage `json:"params,omitempty"`
	MaxRetries     int             `json:"max_retries"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	Priority       *int            `json:"priority,omitempty"`
	ConcurrencyKey string          `json:"concurrency_key,omitempty"`
}

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
	specs := make([]taskSpec, count)
	for i := range specs {
		specs[i] = taskSpec{TaskIndex: i, TaskName: "task_" + strconv.Itoa(i), ExecutorType: executorType, DependsOn: []string{}, Params: params}
	}
	return s.createTasks(ctx, runID, specs)
}

// CreateDAGTasks creates a run's tasks with their dependencies (see the interface).
func (s *Store) CreateDAGTasks(ctx context.Context, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	if err := orkstate.ValidateNewTasks(tasks); err != nil {
		return nil, err
	}
	specs := make([]taskSpec, len(tasks))
	for i, t := range tasks {
		deps := t.DependsOn
		if deps == nil {
			deps = []string{}
		}
		specs[i] = taskSpec{TaskIndex: t.TaskIndex, TaskName: t.TaskName, ExecutorType: t.ExecutorType,
			DependsOn: deps, Params: t.Params, MaxRetries: t.MaxRetries, TimeoutSeconds: t.TimeoutSeconds,
			Priority: t.Priority, ConcurrencyKey: t.ConcurrencyKey}
	}
	return s.createTasks(ctx, runID, specs)
}

func (s *Store) createTasks(ctx context.Context, runID int64, specs []taskSpec) ([]orkstate.Task, error) {
	body, err := json.Marshal(specs)
	if err != nil {
		return nil, fmt.Errorf("pgstore: encode tasks: %w", err)
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+taskColumns+` from {api}.create_tasks($1, $2)`), runID, string(body))
	if err != nil {
		return nil, wrap(err, "pgstore: create tasks of run %d", runID)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, wrap(err, "pgstore: create tasks of run %d", runID)
	}
	return tasks, nil
}

// outcomeRow is a row of set_task_states and the functions shaped like it.
type outcomeRow struct {
	Ord     int
	TaskID  int64
	Outcome string
	Status  *string
}

func collectOutcomes(rows pgx.Rows) ([]orkstate.TaskOutcome, error) {
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outcomeRow])
	if err != nil {
		return nil, err
	}
	// Repeated ids come back round by round; the contract is input order.
	sort.Slice(got, func(i, j int) bool { return got[i].Ord < got[j].Ord })
	out := make([]orkstate.TaskOutcome, len(got))
	for i, r := range got {
		out[i] = orkstate.TaskOutcome{TaskID: r.TaskID, Outcome: orkstate.Outcome(r.Outcome)}
		if r.Status != nil {
			out[i].Status = orkstate.TaskStatus(*r.Status)
		}
	}
	return out, nil
}

// SetTaskStates applies N reports in one statement (set_task_states). A deadlock
// with a concurrent batch is retried when the Store is not bound to a caller's tx.
func (s *Store) SetTaskStates(ctx context.Context, updates []orkstate.TaskUpdate) ([]orkstate.TaskOutcome, error) {
	updates, err := orkstate.NormalizeTaskUpdates(updates)
	if err != nil {
		return nil, err
	}
	n := len(updates)
	ids := make([]int64, n)
	statuses := make([]string, n)
	names := make([]*string, n)
	errs := make([]*string, n)
	outputs := make([]*string, n) // JSON as text: the simple protocol sends []byte as bytea
	attempts := make([]int32, n)
	for i, u := range updates {
		ids[i], statuses[i], attempts[i] = u.TaskID, string(u.Status), int32(u.Attempt)
		if u.ExecutionName != "" {
			names[i] = &updates[i].ExecutionName
		}
		if u.Error != "" {
			errs[i] = &updates[i].Error
		}
		if len(u.Output) > 0 {
			o := string(u.Output)
			outputs[i] = &o
		}
	}
	if n == 0 {
		return []orkstate.TaskOutcome{}, nil
	}
	var out []orkstate.TaskOutcome
	err = s.retryDeadlock(ctx, func() error {
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.set_task_states($1, $2, $3, $4, $5, $6)`),
			ids, statuses, names, errs, outputs, attempts)
		if err != nil {
			return err
		}
		out, err = collectOutcomes(rows)
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: set task states")
	}
	return out, nil
}

// UpdateTaskStatus applies one report; invalid, stale and not_found come back as errors.
func (s *Store) UpdateTaskStatus(ctx context.Context, u orkstate.TaskUpdate) (*orkstate.TaskOutcome, error) {
	out, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{u})
	if err != nil {
		return nil, err
	}
	if err := out[0].Outcome.Err(); err != nil {
		return &out[0], fmt.Errorf("pgstore: task %d to %s: %w", u.TaskID, u.Status, err)
	}
	return &out[0], nil
}

// retryDeadlock runs fn, again after a deadlock or serialization failure, when the
// Store owns its transactions; inside a caller's tx the error is the caller's to handle.
func (s *Store) retryDeadlock(ctx context.Context, fn func() error) error {
	_, pooled := s.db.(*pgxpool.Pool)
	for attempt := 1; ; attempt++ {
		err := fn()
		var pgErr *pgconn.PgError
		if !pooled || attempt == 5 || !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// ClaimTasks moves up to p.Limit dispatchable tasks to dispatched for p.Claimer.
func (s *Store) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	var types []string
	if len(p.ExecutorTypes) > 0 {
		types = p.ExecutorTypes
	}
	rows, err := s.db.Query(ctx, s.sql(`select * from {api}.claim_tasks($1, $2, $3, $4)`), p.Claimer, p.Limit, types, p.Lease)
	if err != nil {
		return nil, wrap(err, "pgstore: claim tasks")
	}
	claimed := make([]orkstate.ClaimedTask, 0, min(p.Limit, 256))
	var c orkstate.ClaimedTask
	var lease, dispatched time.Time
	var upstream []byte
	// Scanned by position: claim_tasks' row, which leaves out what every claimed task
	// has in common (filled in below).
	_, err = pgx.ForEachRow(rows, []any{&c.ID, &c.RunID, &c.TaskIndex, &c.TaskName, &c.ExecutorType, &c.DependsOn,
		&c.ExecutionName, &c.Params, &c.Output, &c.Error, &c.Attempt, &c.MaxRetries, &c.TimeoutSeconds,
		&lease, &c.CreatedAt, &dispatched, &c.WorkflowID, &c.WorkflowName, &c.JobName, &c.Project, &c.Region,
		&upstream}, func() error {
		k, l, d := c, lease, dispatched
		k.Status, k.ClaimedBy, k.Attempts = orkstate.TaskDispatched, p.Claimer, c.Attempt
		k.LeaseExpiresAt, k.DispatchedAt = &l, &d
		if string(upstream) == "{}" { // no dependencies: spare the decoder
			k.UpstreamOutputs = map[string]json.RawMessage{}
		} else if err := json.Unmarshal(upstream, &k.UpstreamOutputs); err != nil {
			return fmt.Errorf("upstream outputs of task %d: %w", c.ID, err)
		} else {
			for name, o := range k.UpstreamOutputs {
				if string(o) == "null" { // no output: nil, as UpstreamOutputs and sqlitecompat give it
					k.UpstreamOutputs[name] = nil
				}
			}
		}
		claimed = append(claimed, k)
		// Empty slices and maps for the next row, so no two tasks share one.
		c = orkstate.ClaimedTask{}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "pgstore: claim tasks")
	}
	return claimed, nil
}

// ExpireTaskLeases returns up to limit dispatched tasks whose lease ran out to
// pending. Fewer than limit outcomes means no other expired lease is due (tasks a
// concurrent sweeper or reporter holds locked aside): sweep again while the batch
// was full to drain a backlog.
func (s *Store) ExpireTaskLeases(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	return s.sweep(ctx, "expire_task_leases", limit)
}

// FailTimedOutTasks fails tasks past their timeout under the retry rule.
func (s *Store) FailTimedOutTasks(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	return s.sweep(ctx, "fail_timed_out_tasks", limit)
}

func (s *Store) sweep(ctx context.Context, fn string, limit int) ([]orkstate.TaskOutcome, error) {
	if err := orkstate.CheckBatchLimit(limit); err != nil {
		return nil, err
	}
	var out []orkstate.TaskOutcome
	err := s.retryDeadlock(ctx, func() error {
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.`+fn+`($1)`), limit)
		if err != nil {
			return err
		}
		out, err = collectOutcomes(rows)
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: %s", fn)
	}
	return out, nil
}

// RetryTask is an operator's retry of a finished task (retry_task); a deadlock with a
// concurrent report is retried as for the run-wide calls (see runOp).
func (s *Store) RetryTask(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "retry_task", id), "pgstore: retry task %d", id)
}

// FailDependentTasks fails the unfinished transitive dependents of a task.
func (s *Store) FailDependentTasks(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, s.sql(`select {api}.fail_dependent_tasks($1)`), taskID).Scan(&n)
	if err != nil {
		return 0, wrap(err, "pgstore: fail dependents of task %d", taskID)
	}
	return n, nil
}

// StartPendingRuns starts up to limit pending runs (start_pending_runs).
func (s *Store) StartPendingRuns(ctx context.Context, limit int) ([]orkstate.StartedRun, error) {
	if err := orkstate.CheckBatchLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`select run_id, status, tasks_created, coalesce(error, '') from {api}.start_pending_runs($1)`), limit)
	if err != nil {
		return nil, wrap(err, "pgstore: start pending runs")
	}
	started, err := pgx.CollectRows(rows, pgx.RowToStructByPos[orkstate.StartedRun])
	if err != nil {
		return nil, wrap(err, "pgstore: start pending runs")
	}
	return started, nil
}

// CancelRun cancels a run with its unfinished tasks and their deferred jobs.
func (s *Store) CancelRun(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "cancel_run", id), "pgstore: cancel run %d", id)
}

// PauseRun stops dispatch of a run's tasks.
func (s *Store) PauseRun(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "pause_run", id), "pgstore: pause run %d", id)
}

// ResumeRun undoes PauseRun.
func (s *Store) ResumeRun(ctx context.Context, id int64) error {
	return wrap(s.runOp(ctx, "resume_run", id), "pgstore: resume run %d", id)
}

// runOp calls a run-wide function (a constant name) on one id. Those lock the run's
// tasks and then the run, the order reporters use; a reporter can still hold a task it
// merely re-checked (READ COMMITTED keeps that lock) while waiting for one the
// operation holds, so a deadlock is rare but possible, and retried like a report's.
func (s *Store) runOp(ctx context.Context, fn string, id int64) error {
	return s.retryDeadlock(ctx, func() error {
		_, err := s.db.Exec(ctx, s.sql(`select {api}.`+fn+`($1)`), id)
		return err
	})
}

// FireDueSchedules fires every due schedule once (fire_schedules' compare-and-set).
// A stored expression that no longer parses is skipped and reported in the error,
// after the others fired.
func (s *Store) FireDueSchedules(ctx context.Context, now time.Time, limit int) ([]orkstate.Run, error) {
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

// ClaimDeferredJobs leases up to p.Limit due deferred jobs (claim_deferred_jobs).
func (s *Store) ClaimDeferredJobs(ctx context.Context, p orkstate.DeferredClaimParams) ([]orkstate.DeferredJob, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+deferredJobColumns+` from {api}.claim_deferred_jobs($1, $2, $3)`), p.Claimer, p.Limit, p.Lease)
	if err != nil {
		return nil, wrap(err, "pgstore: claim deferred jobs")
	}
	jobs, err := scanDeferredJobs(rows)
	if err != nil {
		return nil, wrap(err, "pgstore: claim deferred jobs")
	}
	return jobs, nil
}

type pollOutcomeRow struct {
	Ord        int
	JobID      int64
	Outcome    string
	Status     *string
	TaskStatus *string
}

// ReportDeferredPolls applies poll results in one statement (report_deferred_polls).
func (s *Store) ReportDeferredPolls(ctx context.Context, reports []orkstate.DeferredPollReport) ([]orkstate.DeferredOutcome, error) {
	reports, err := orkstate.NormalizePollReports(reports)
	if err != nil {
		return nil, err
	}
	n := len(reports)
	ids := make([]int64, n)
	results := make([]string, n)
	errs := make([]string, n)
	after := make([]*time.Duration, n)
	attempts := make([]int32, n)
	for i, r := range reports {
		ids[i], results[i], errs[i], attempts[i] = r.JobID, string(r.Result), r.Error, int32(r.Attempt)
		if r.NextPollAfter > 0 {
			after[i] = &reports[i].NextPollAfter
		}
	}
	if n == 0 {
		return []orkstate.DeferredOutcome{}, nil
	}
	var got []pollOutcomeRow
	err = s.retryDeadlock(ctx, func() error {
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.report_deferred_polls($1, $2, $3, $4, $5)`),
			ids, results, errs, after, attempts)
		if err != nil {
			return err
		}
		got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[pollOutcomeRow])
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: report deferred polls")
	}
	out := make([]orkstate.DeferredOutcome, len(got))
	for i, r := range got {
		out[i] = orkstate.DeferredOutcome{JobID: r.JobID, Outcome: orkstate.Outcome(r.Outcome)}
		if r.Status != nil {
			out[i].Status = orkstate.DeferredJobStatus(*r.Status)
		}
		if r.TaskStatus != nil {
			out[i].TaskStatus = orkstate.TaskStatus(*r.TaskStatus)
		}
	}
	return out, nil
}

// UpdateDeferredJobStatus moves one job (update_deferred_job_status).
func (s *Store) UpdateDeferredJobStatus(ctx context.Context, id int64, status orkstate.DeferredJobStatus, errMsg string) error {
	status, err := orkstate.ParseDeferredJobStatus(string(status))
	if err != nil {
		return err
	}
	if err := orkstate.ValidText("error", errMsg); err != nil {
		return err
	}
	var outcome string
	err = s.db.QueryRow(ctx, s.sql(`select {api}.update_deferred_job_status($1, $2, $3)`), id, string(status), errMsg).Scan(&outcome)
	if err != nil {
		return wrap(err, "pgstore: deferred job %d to %s", id, status)
	}
	if err := orkstate.Outcome(outcome).Err(); err != nil {
		return fmt.Errorf("pgstore: deferred job %d to %s: %w", id, status, err)
	}
	return nil
}

// CompleteDeferredJob completes a job; its task succeeds once all its jobs completed.
func (s *Store) CompleteDeferredJob(ctx context.Context, id int64) error {
	return s.UpdateDeferredJobStatus(ctx, id, orkstate.DeferredCompleted, "")
}

// FailDeferredJob fails a job and, through the retry rule, its task.
func (s *Store) FailDeferredJob(ctx context.Context, id int64, errMsg string) error {
	return s.UpdateDeferredJobStatus(ctx, id, orkstate.DeferredFailed, errMsg)
}

// CancelDeferredJobsForTask cancels a task's unfinished jobs.
func (s *Store) CancelDeferredJobsForTask(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, s.sql(`select {api}.cancel_deferred_jobs_for_task($1)`), taskID).Scan(&n)
	if err != nil {
		return 0, wrap(err, "pgstore: cancel deferred jobs of task %d", taskID)
	}
	return n, nil
}
