package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// deferredJobColumns are the columns of orkstate.DeferredJob, unqualified, in field order.
const deferredJobColumns = `id, task_id, service_type, job_id, job_data, status, error, attempts, claimed_by,
	lease_expires_at, next_poll_at, created_at, started_at, last_polled_at, finished_at`

// scanDeferredJobs collects rows selected with deferredJobColumns.
func scanDeferredJobs(rows pgx.Rows) ([]orkstate.DeferredJob, error) {
	return pgx.CollectRows(rows, pgx.RowToStructByName[orkstate.DeferredJob])
}

// scanDeferredJob collects exactly one row selected with deferredJobColumns; none is ErrNotFound after translate.
func scanDeferredJob(rows pgx.Rows) (*orkstate.DeferredJob, error) {
	return pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.DeferredJob])
}

// CreateDeferredJobs inserts the jobs in input order (ascending ids), due at once,
// and notifies <schema>_deferred_jobs once. The task row is share-locked until the
// end of the transaction, so it cannot finish between the check and the insert
// (a task that finishes afterwards cancels these jobs as usual).
func (s *Store) CreateDeferredJobs(ctx context.Context, taskID int64, jobs []orkstate.NewDeferredJob) ([]orkstate.DeferredJob, error) {
	services := make([]string, len(jobs))
	jobIDs := make([]string, len(jobs))
	data := make([]*string, len(jobs))
	if err := orkstate.ValidateNewDeferredJobs(jobs); err != nil {
		return nil, err
	}
	for i, j := range jobs {
		services[i], jobIDs[i] = j.ServiceType, j.JobID
		if len(j.JobData) > 0 {
			d := string(j.JobData)
			data[i] = &d
		}
	}
	var out []orkstate.DeferredJob
	err := s.inTx(ctx, func(tx *Store) error {
		var status orkstate.TaskStatus
		err := tx.db.QueryRow(ctx, s.sql(`select status from {ork}.tasks where id = $1 for share`), taskID).Scan(&status)
		if err != nil {
			return translate(err)
		}
		if status.IsTerminal() {
			return fmt.Errorf("%w: task is %s", orkstate.ErrInvalidTransition, status)
		}
		rows, err := tx.db.Query(ctx, s.sql(`
			with ins as (
				insert into {ork}.deferred_jobs (task_id, service_type, job_id, job_data)
				select $1, j.service_type, j.job_id, j.job_data::jsonb
				from unnest($2::text[], $3::text[], $4::text[]) with ordinality as j(service_type, job_id, job_data, ord)
				order by j.ord
				returning `+deferredJobColumns+`)
			select `+deferredJobColumns+` from ins order by id`), taskID, services, jobIDs, data)
		if err != nil {
			return err
		}
		if out, err = scanDeferredJobs(rows); err != nil || len(out) == 0 {
			return err
		}
		_, err = tx.db.Exec(ctx, s.sql(`select {api}.notify_deferred_jobs()`))
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: create deferred jobs of task %d", taskID)
	}
	return out, nil
}

func (s *Store) GetDeferredJob(ctx context.Context, id int64) (*orkstate.DeferredJob, error) {
	rows, err := s.db.Query(ctx, s.sql(`select `+deferredJobColumns+` from {ork}.deferred_jobs where id = $1`), id)
	if err != nil {
		return nil, wrap(err, "pgstore: get deferred job %d", id)
	}
	j, err := scanDeferredJob(rows)
	return j, wrap(err, "pgstore: get deferred job %d", id)
}

func (s *Store) PendingDeferredJobs(ctx context.Context, limit int) ([]orkstate.DeferredJob, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`
		select `+deferredJobColumns+` from {ork}.deferred_jobs
		where status in ('pending', 'polling') order by id limit $1`), limit)
	if err != nil {
		return nil, wrap(err, "pgstore: pending deferred jobs")
	}
	jobs, err := scanDeferredJobs(rows)
	return jobs, wrap(err, "pgstore: pending deferred jobs")
}

// DeferredJobsForTask returns the task's jobs in id order; ErrNotFound for an unknown task.
func (s *Store) DeferredJobsForTask(ctx context.Context, taskID int64) ([]orkstate.DeferredJob, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select `+deferredJobColumns+` from {ork}.deferred_jobs where task_id = $1 order by id`), taskID)
	if err != nil {
		return nil, wrap(err, "pgstore: deferred jobs of task %d", taskID)
	}
	jobs, err := scanDeferredJobs(rows)
	if err == nil && len(jobs) == 0 {
		err = s.mustExist(ctx, `select from {ork}.tasks where id = $1`, taskID)
	}
	return jobs, wrap(err, "pgstore: deferred jobs of task %d", taskID)
}

// MarkDeferredJobPolled sets last_polled_at on a pending or polling job; a terminal
// job is ErrInvalidTransition. It leaves the status, lease and next poll time alone.
func (s *Store) MarkDeferredJobPolled(ctx context.Context, id int64) error {
	var status orkstate.DeferredJobStatus
	var updated bool
	err := s.db.QueryRow(ctx, s.sql(`
		with upd as (
			update {ork}.deferred_jobs set last_polled_at = coalesce($2, now())
			where id = $1 and status in ('pending', 'polling')
			returning id)
		select j.status, exists (select from upd)
		from {ork}.deferred_jobs j where j.id = $1`), id, s.now()).Scan(&status, &updated)
	if err == nil && !updated {
		err = fmt.Errorf("%w: deferred job is %s", orkstate.ErrInvalidTransition, status)
	}
	return wrap(err, "pgstore: mark deferred job %d polled", id)
}

// ClaimDeferredJobs leases up to p.Limit due deferred jobs (claim_deferred_jobs), at
// Config.Now's time when a clock is set.
func (s *Store) ClaimDeferredJobs(ctx context.Context, p orkstate.DeferredClaimParams) ([]orkstate.DeferredJob, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+deferredJobColumns+` from {api}.claim_deferred_jobs($1, $2, $3, $4)`), p.Claimer, p.Limit, p.Lease, s.now())
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

// ReportDeferredPolls applies poll results in one statement (report_deferred_polls),
// at Config.Now's time when a clock is set.
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
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.report_deferred_polls($1, $2, $3, $4, $5, $6)`),
			ids, results, errs, after, attempts, s.now())
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
