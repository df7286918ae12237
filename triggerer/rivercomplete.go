package triggerer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
)

// finishStatement reports a group of finished polls (report_deferred_polls) and
// completes their River jobs in one statement, so one round trip, run as a
// transaction of its own, applies the group and commits it. Its parameters are
// the deferred job ids, results and errors ($1–$3) and the River job ids ($4), in
// the same order; it returns, in that order, each report's outcome, the deferred
// job's status and the task's status when the report finished the task.
//
// The reports come first (they lock the tasks, then the run, in id order: the
// order Store.CancelRun and CancelTaskJobsTx lock them in before they cancel River
// jobs), then the River jobs are completed — what River's JobCompleteTx does for
// one job (its JobSetStateIfRunningMany with state completed): state and
// finalized_at set only while the job is running, the output (PollOutput, built
// here from the report's outcome) merged into the metadata under
// rivertype.MetadataKeyOutput ("output"); attempt, errors and scheduled_at
// untouched. A River job that is no longer running (rescued, cancelled and
// finalised, or deleted) makes the last select fail the statement
// (_river_job_not_running raises OK409 naming the table river_job), so nothing
// of the group is applied; the caller then finds which jobs they were
// (riverJobsNotRunning) and commits the others without them.
//
// Why not JobCompleteTx once per job: one round trip per job while the group
// holds the run's and tasks' locks. Why not River's JobSetStateIfRunningMany
// through Client.Pilot: that API is marked unstable, and its statement — eleven
// unnested arrays, every row returned whole — cost about 90 µs of server CPU per
// job against 65 µs for this UPDATE. Why one statement rather than BEGIN, the
// report, the UPDATE and COMMIT: four round trips, with the run's lock held across
// the last three; a group's latency at half the maximum rate was mostly waiting
// for that lock (groups of one run serialise on it).
//
// The statement depends on River's river_job table, which River changes only in
// a migration; MigrateRiver installs the version go.mod pins, and TestEndToEnd,
// TestTrackerSaysFailed and TestKilledTriggerer check the River job's state,
// finalized_at and output, so a River upgrade that changes the table fails the
// tests. On a River upgrade compare with River's JobSetStateIfRunningMany
// (riverdriver/riverpgxv5, river_job.sql).
func (t *Triggerer) finishStatement() string {
	return `with r as materialized (
		select * from ` + pgx.Identifier{t.cfg.Schema + "_api", "report_deferred_polls"}.Sanitize() + `($1::bigint[], $2::text[], $3::text[])
	), m as (
		select r.ord, r.outcome, r.status, r.task_status, x.river_id,
			jsonb_build_object('output', jsonb_build_object(
				'deferred_job_id', r.job_id, 'result', x.result, 'outcome', r.outcome, 'status', coalesce(r.status, ''))
				|| case when x.error <> '' then jsonb_build_object('error', x.error) else '{}' end
				|| case when r.task_status is not null then jsonb_build_object('task_status', r.task_status) else '{}' end
			) as meta
		from r join unnest($4::bigint[], $2::text[], $3::text[]) with ordinality as x(river_id, result, error, ord)
			on x.ord = r.ord
	), done as (
		update ` + pgx.Identifier{t.cfg.Schema, "river_job"}.Sanitize() + ` j
		set state = 'completed', finalized_at = now(), metadata = j.metadata || m.meta
		from m
		where j.id = m.river_id and j.state = 'running'
		returning j.id
	)
	select m.outcome, m.status, m.task_status,
		-- fails the statement, and so the group, when a River job was not running
		case when done.id is null then ` + pgx.Identifier{t.cfg.Schema + "_api", "_river_job_not_running"}.Sanitize() + `(m.river_id) end
	from m left join done on done.id = m.river_id
	order by m.ord`
}

// finishRow is one row of finishStatement.
type finishRow struct {
	Outcome    string
	Status     *string
	TaskStatus *string
	NotRunning *int64
}

// finishGroup applies finishStatement to part. It returns the items whose River
// job is no longer running when that failed the statement (nothing was applied),
// or an error when the statement failed otherwise.
func (g *groups) finishGroup(ctx context.Context, conn *pgxpool.Conn, part []*commitItem) (gone []*commitItem, err error) {
	reports := make([]orkstate.DeferredPollReport, len(part))
	for i, it := range part {
		reports[i] = g.t.pollReport(it.job.Args.DeferredJobID, it.result, it.msg)
	}
	if _, err := orkstate.NormalizePollReports(reports); err != nil {
		return nil, err
	}
	ids := make([]int64, len(part))
	results := make([]string, len(part))
	msgs := make([]string, len(part))
	riverIDs := make([]int64, len(part))
	for i, it := range part {
		ids[i], results[i], msgs[i], riverIDs[i] = it.job.Args.DeferredJobID, string(it.result), it.msg, it.job.ID
	}
	// One round trip. It runs with a generic plan, as everything on the pool
	// does (pinnedPool): planning the statement afresh for each group (PostgreSQL's
	// custom plans for array arguments) cost about 1 ms of server CPU per group,
	// 5 µs per job in groups of 190, more in the small groups of a light load.
	if g.onFinishBackend != nil {
		g.onFinishBackend(conn.Conn().PgConn().PID())
	}
	rows, err := conn.Query(ctx, g.t.finishStatement(), ids, results, msgs, riverIDs)
	var got []finishRow
	if err == nil {
		got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[finishRow])
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && isRiverJobNotRunning(pgErr) {
			// A River job that is no longer running (maybe more); find which.
			gone, gerr := g.riverJobsNotRunning(ctx, conn, part)
			if gerr != nil || len(gone) > 0 {
				return gone, gerr
			}
		}
		return nil, err
	}
	if len(got) != len(part) {
		return nil, fmt.Errorf("%d outcomes for %d reports", len(got), len(part))
	}
	for i, it := range part {
		r := got[i]
		it.out = orkstate.DeferredOutcome{JobID: it.job.Args.DeferredJobID, Outcome: orkstate.Outcome(r.Outcome)}
		if r.Status != nil {
			it.out.Status = orkstate.DeferredJobStatus(*r.Status)
		}
		if r.TaskStatus != nil {
			it.out.TaskStatus = orkstate.TaskStatus(*r.TaskStatus)
		}
	}
	return nil, nil
}

// isRiverJobNotRunning tells the error of _river_job_not_running from others.
func isRiverJobNotRunning(e *pgconn.PgError) bool {
	return e.Code == "OK409" && e.TableName == "river_job"
}

// riverJobsNotRunning returns the items of part whose River job is not running.
func (g *groups) riverJobsNotRunning(ctx context.Context, conn *pgxpool.Conn, part []*commitItem) ([]*commitItem, error) {
	ids := make([]int64, len(part))
	for i, it := range part {
		ids[i] = it.job.ID
	}
	rows, err := conn.Query(ctx, `select i.id from unnest($1::bigint[]) as i(id)
		where not exists (select from `+pgx.Identifier{g.t.cfg.Schema, "river_job"}.Sanitize()+` j
			where j.id = i.id and j.state = 'running')`, ids)
	if err != nil {
		return nil, err
	}
	stopped, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	var gone []*commitItem
	for _, it := range part {
		for _, id := range stopped {
			if it.job.ID == id {
				gone = append(gone, it)
			}
		}
	}
	return gone, nil
}
