package sqlitecompat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/orkstate/orkstate"
)

const deferredCols = `j.id, j.task_id, j.service_type, j.job_id, j.job_data, j.status, j.error, j.attempts,
	j.claimed_by, j.lease_expires_at, j.next_poll_at, j.created_at, j.started_at, j.last_polled_at, j.finished_at`

func scanDeferred(r scanner) (*orkstate.DeferredJob, error) {
	var j orkstate.DeferredJob
	var data sql.NullString
	var lease, started, polled, finished sql.NullInt64
	var next, created int64
	if err := r.Scan(&j.ID, &j.TaskID, &j.ServiceType, &j.JobID, &data, &j.Status, &j.Error, &j.Attempts,
		&j.ClaimedBy, &lease, &next, &created, &started, &polled, &finished); err != nil {
		return nil, err
	}
	j.JobData = fromNullJSON(data)
	j.LeaseExpiresAt = fromNullTS(lease)
	n := fromTS(next)
	j.NextPollAt = &n
	j.CreatedAt = fromTS(created)
	j.StartedAt, j.LastPolledAt, j.FinishedAt = fromNullTS(started), fromNullTS(polled), fromNullTS(finished)
	return &j, nil
}

// DefaultNextPollAfter is the delay before the next poll of a job reported running.
const DefaultNextPollAfter = orkstate.DefaultNextPollAfter

// CreateDeferredJobs adds deferred jobs, due at once, to an unfinished task.
func (s *Store) CreateDeferredJobs(ctx context.Context, taskID int64, jobs []orkstate.NewDeferredJob) ([]orkstate.DeferredJob, error) {
	if err := orkstate.ValidateNewDeferredJobs(jobs); err != nil {
		return nil, err
	}
	var out []orkstate.DeferredJob
	err := s.write(ctx, func(t *txState) error {
		k, err := loadTaskState(t, taskID)
		if err != nil {
			return err
		}
		if k == nil {
			return notFound("task", taskID)
		}
		if k.status.IsTerminal() {
			return invalidTransition("task %d is %s", taskID, k.status)
		}
		ids := make([]int64, 0, len(jobs))
		for _, j := range jobs {
			var id int64
			if err := t.queryRow(`INSERT INTO deferred_jobs (task_id, service_type, job_id, job_data, next_poll_at, created_at)
				VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, taskID, j.ServiceType, j.JobID, jsonArg(j.JobData), ts(t.now), ts(t.now)).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if len(ids) > 0 {
			t.signals |= kindDeferred
		}
		rows, err := t.query(`SELECT `+deferredCols+` FROM deferred_jobs j WHERE j.id IN (SELECT value FROM json_each(?)) ORDER BY j.id`, idsJSON(ids))
		out, err = collect(rows, err, scanDeferred)
		return err
	})
	return out, err
}

func (s *Store) GetDeferredJob(ctx context.Context, id int64) (*orkstate.DeferredJob, error) {
	return one(s.rdb.QueryRowContext(ctx, `SELECT `+deferredCols+` FROM deferred_jobs j WHERE j.id = ?`, id), scanDeferred, "deferred job", id)
}

// PendingDeferredJobs lists pending or polling jobs, oldest first.
func (s *Store) PendingDeferredJobs(ctx context.Context, limit int) ([]orkstate.DeferredJob, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+deferredCols+` FROM deferred_jobs j WHERE j.status IN ('pending', 'polling') ORDER BY j.id LIMIT ?`, limit)
	return collect(rows, err, scanDeferred)
}

// DeferredJobsForTask lists a task's jobs in id order; an unknown task is ErrNotFound.
func (s *Store) DeferredJobsForTask(ctx context.Context, taskID int64) ([]orkstate.DeferredJob, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+deferredCols+` FROM deferred_jobs j WHERE j.task_id = ? ORDER BY j.id`, taskID)
	out, err := collect(rows, err, scanDeferred)
	if err == nil && len(out) == 0 {
		if _, err := s.GetTask(ctx, taskID); err != nil {
			return nil, err
		}
	}
	return out, err
}

// CancelDeferredJobsForTask cancels a task's unfinished jobs and returns how many.
func (s *Store) CancelDeferredJobsForTask(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := s.write(ctx, func(t *txState) error {
		k, err := loadTaskState(t, taskID)
		if err != nil {
			return err
		}
		if k == nil {
			return notFound("task", taskID)
		}
		n, err = t.cancelJobs(taskID)
		return err
	})
	return n, err
}

// ClaimDeferredJobs leases up to p.Limit due jobs, oldest due first: polling,
// attempts+1, lease_expires_at = next_poll_at = now + lease, started_at once.
func (s *Store) ClaimDeferredJobs(ctx context.Context, p orkstate.DeferredClaimParams) ([]orkstate.DeferredJob, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	out := []orkstate.DeferredJob{}
	err = s.write(ctx, func(t *txState) error {
		out = out[:0]
		ids, err := t.ids(`SELECT id FROM deferred_jobs WHERE status IN ('pending', 'polling') AND next_poll_at <= ?
			ORDER BY next_poll_at, id LIMIT ?`, ts(t.now), p.Limit)
		if err != nil || len(ids) == 0 {
			return err
		}
		until := ts(t.now.Add(p.Lease))
		if _, err := t.exec(`UPDATE deferred_jobs SET status = 'polling', attempts = attempts + 1, claimed_by = ?,
				lease_expires_at = ?, next_poll_at = ?, started_at = coalesce(started_at, ?)
			WHERE id IN (SELECT value FROM json_each(?))`, p.Claimer, until, until, ts(t.now), idsJSON(ids)); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+deferredCols+` FROM deferred_jobs j WHERE j.id IN (SELECT value FROM json_each(?))`, idsJSON(ids))
		got, err := collect(rows, err, scanDeferred)
		if err != nil {
			return err
		}
		pos := map[int64]int{}
		for i, id := range ids {
			pos[id] = i
		}
		out = make([]orkstate.DeferredJob, len(got))
		for _, j := range got {
			out[pos[j.ID]] = j
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// reportPolls applies poll results as report_deferred_polls does: first every
// job row in input order (a job named again in the batch is ignored), then one
// task change per task whose jobs the batch finished, in task id order — failed
// when any of its reported jobs failed, success when all its jobs are completed —
// through the task state machine.
func (t *txState) reportPolls(reports []orkstate.DeferredPollReport) ([]orkstate.DeferredOutcome, error) {
	type row struct {
		taskID            int64
		service, external string
	}
	out := make([]orkstate.DeferredOutcome, len(reports))
	rows := make([]row, len(reports))
	seen := map[int64]bool{}
	now := ts(t.now)
	for i, r := range reports {
		o := orkstate.DeferredOutcome{JobID: r.JobID}
		var attempts int
		err := t.queryRow(`SELECT task_id, status, attempts, service_type, job_id FROM deferred_jobs WHERE id = ?`, r.JobID).
			Scan(&rows[i].taskID, &o.Status, &attempts, &rows[i].service, &rows[i].external)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			o.Outcome = orkstate.OutcomeNotFound
		case err != nil:
			return nil, err
		case seen[r.JobID]:
			o.Outcome = orkstate.OutcomeIgnored
		case r.Attempt != 0 && r.Attempt != attempts:
			o.Outcome = orkstate.OutcomeStale
		case o.Status.IsTerminal():
			o.Outcome = orkstate.OutcomeInvalid
		default:
			o.Outcome = orkstate.OutcomeApplied
		}
		seen[r.JobID] = true
		out[i] = o
		if o.Outcome != orkstate.OutcomeApplied {
			continue
		}
		switch r.Result {
		case orkstate.PollRunning:
			after := r.NextPollAfter
			if after == 0 { // a report from UpdateDeferredJobStatus, not normalized
				after = orkstate.DefaultNextPollAfter
			}
			_, err = t.exec(`UPDATE deferred_jobs SET status = 'polling', last_polled_at = ?, next_poll_at = ?,
				lease_expires_at = NULL, claimed_by = '', started_at = coalesce(started_at, ?), finished_at = NULL
				WHERE id = ?`, now, ts(t.now.Add(after)), now, r.JobID)
			out[i].Status = orkstate.DeferredPolling
			t.signals |= kindDeferred
		case orkstate.PollCompleted:
			_, err = t.exec(`UPDATE deferred_jobs SET status = 'completed', last_polled_at = ?, lease_expires_at = NULL,
				claimed_by = '', started_at = coalesce(started_at, ?), finished_at = ? WHERE id = ?`, now, now, now, r.JobID)
			out[i].Status = orkstate.DeferredCompleted
		case orkstate.PollFailed:
			msg := r.Error
			if msg == "" {
				msg = "deferred job failed"
			}
			_, err = t.exec(`UPDATE deferred_jobs SET status = 'failed', error = ?, last_polled_at = ?, lease_expires_at = NULL,
				claimed_by = '', started_at = coalesce(started_at, ?), finished_at = ? WHERE id = ?`, msg, now, now, now, r.JobID)
			out[i].Status = orkstate.DeferredFailed
		default:
			return nil, orkstate.Invalid("result", string(r.Result), "unknown poll result")
		}
		if err != nil {
			return nil, err
		}
	}

	// One task change per task the batch finished jobs of.
	type change struct {
		failed bool
		err    string
	}
	changes := map[int64]*change{}
	var taskIDs []int64
	for i, r := range reports {
		if out[i].Outcome != orkstate.OutcomeApplied || r.Result == orkstate.PollRunning {
			continue
		}
		c := changes[rows[i].taskID]
		if c == nil {
			c = &change{}
			changes[rows[i].taskID] = c
			taskIDs = append(taskIDs, rows[i].taskID)
		}
		if r.Result == orkstate.PollFailed {
			msg := r.Error
			if msg == "" {
				msg = "no error given"
			}
			e := fmt.Sprintf("deferred job %s (%s) failed: %s", rows[i].external, rows[i].service, msg)
			if !c.failed || e < c.err {
				c.err = e
			}
			c.failed = true
		}
	}
	sort.Slice(taskIDs, func(i, j int) bool { return taskIDs[i] < taskIDs[j] })
	taskStatus := map[int64]orkstate.TaskStatus{}
	var us []orkstate.TaskUpdate
	for _, id := range taskIDs {
		c := changes[id]
		u := orkstate.TaskUpdate{TaskID: id, Status: orkstate.TaskSuccess}
		if c.failed {
			u.Status, u.Error = orkstate.TaskFailed, c.err
		} else {
			var left int
			if err := t.queryRow(`SELECT count(*) FROM deferred_jobs WHERE task_id = ? AND status <> 'completed'`, id).Scan(&left); err != nil {
				return nil, err
			}
			if left > 0 {
				continue
			}
		}
		us = append(us, u)
	}
	// One round, as report_deferred_polls changes the tasks in one statement.
	outs, err := t.applyReports(us)
	if err != nil {
		return nil, err
	}
	for _, o := range outs {
		if o.Outcome == orkstate.OutcomeApplied || o.Outcome == orkstate.OutcomeRetrying {
			taskStatus[o.TaskID] = o.Status
		}
	}
	for i, r := range reports {
		if out[i].Outcome == orkstate.OutcomeApplied && r.Result != orkstate.PollRunning {
			out[i].TaskStatus = taskStatus[rows[i].taskID]
		}
	}
	return out, nil
}

// ReportDeferredPolls applies poll results in one transaction, one outcome per
// input in order.
func (s *Store) ReportDeferredPolls(ctx context.Context, reports []orkstate.DeferredPollReport) ([]orkstate.DeferredOutcome, error) {
	reports, err := orkstate.NormalizePollReports(reports)
	if err != nil {
		return nil, err
	}
	out := make([]orkstate.DeferredOutcome, 0, len(reports))
	if len(reports) == 0 {
		return out, nil
	}
	err = s.write(ctx, func(t *txState) (err error) {
		out, err = t.reportPolls(reports)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateDeferredJobStatus moves a job as update_deferred_job_status does: the
// current status again is a no-op, pending → polling / completed / failed /
// cancelled and polling → completed / failed / cancelled are allowed, anything
// else is ErrInvalidTransition; completed and failed finish its task by the rules
// of ReportDeferredPolls.
func (s *Store) UpdateDeferredJobStatus(ctx context.Context, id int64, status orkstate.DeferredJobStatus, errMsg string) error {
	status, err := orkstate.ParseDeferredJobStatus(string(status))
	if err != nil {
		return err
	}
	if err := orkstate.ValidText("error", errMsg); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		var st orkstate.DeferredJobStatus
		err := t.queryRow(`SELECT status FROM deferred_jobs WHERE id = ?`, id).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("deferred job", id)
		}
		if err != nil {
			return err
		}
		if st == status {
			return nil
		}
		if !orkstate.CanTransitionDeferredJob(st, status) {
			return invalidTransition("deferred job %d: %s → %s", id, st, status)
		}
		now := ts(t.now)
		switch status {
		case orkstate.DeferredPolling:
			_, err = t.exec(`UPDATE deferred_jobs SET status = 'polling', started_at = coalesce(started_at, ?),
				error = CASE WHEN ? <> '' THEN ? ELSE error END WHERE id = ?`, now, errMsg, errMsg, id)
			return err
		case orkstate.DeferredCancelled:
			_, err = t.exec(`UPDATE deferred_jobs SET status = 'cancelled', started_at = coalesce(started_at, ?), finished_at = ?,
				lease_expires_at = NULL, claimed_by = '', error = CASE WHEN ? <> '' THEN ? ELSE error END WHERE id = ?`,
				now, now, errMsg, errMsg, id)
			return err
		}
		result := orkstate.PollCompleted
		if status == orkstate.DeferredFailed {
			result = orkstate.PollFailed
		}
		outs, err := t.reportPolls([]orkstate.DeferredPollReport{{JobID: id, Result: result, Error: errMsg}})
		if err != nil {
			return err
		}
		if err := outs[0].Outcome.Err(); err != nil {
			return fmt.Errorf("%w: deferred job %d is %s", err, id, outs[0].Status)
		}
		return nil
	})
}

// MarkDeferredJobPolled records a poll that found the job still running: it sets
// last_polled_at and leaves status, lease and next poll time alone. A finished job
// is ErrInvalidTransition.
func (s *Store) MarkDeferredJobPolled(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error {
		var st orkstate.DeferredJobStatus
		err := t.queryRow(`SELECT status FROM deferred_jobs WHERE id = ?`, id).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("deferred job", id)
		}
		if err != nil {
			return err
		}
		if st.IsTerminal() {
			return invalidTransition("deferred job %d is %s", id, st)
		}
		_, err = t.exec(`UPDATE deferred_jobs SET last_polled_at = ? WHERE id = ?`, ts(t.now), id)
		return err
	})
}

// CompleteDeferredJob completes a job; its task succeeds once all its jobs completed.
func (s *Store) CompleteDeferredJob(ctx context.Context, id int64) error {
	return s.UpdateDeferredJobStatus(ctx, id, orkstate.DeferredCompleted, "")
}

// FailDeferredJob fails a job and its task (retry rule applies).
func (s *Store) FailDeferredJob(ctx context.Context, id int64, errMsg string) error {
	return s.UpdateDeferredJobStatus(ctx, id, orkstate.DeferredFailed, errMsg)
}
