package triggerer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/orkstate/orkstate"
)

// The database work of polls is grouped (see batcher): the deferred jobs of the
// polls River hands out together are read in one query, running polls are
// reported in one statement, and finished polls are committed together — one
// report_deferred_polls for all of them and the completion of their River jobs
// in one statement (finishStatement), a transaction of its own, so each deferred
// job still finishes together with its River job or not at all. Each worker waits until
// its own result is durable.
const (
	// maxGroup caps a group: a larger one holds its tasks' locks longer and
	// makes every worker in it wait for the slowest.
	maxGroup = 500
	// maxCommitsInFlight transactions commit at once, so one group's fsync
	// overlaps the next group's work.
	maxCommitsInFlight = 2
	// maxReadsInFlight caps concurrent reads and running reports.
	maxReadsInFlight = 2
	// groupLinger is how long a group waits for more before its first flush.
	groupLinger = time.Millisecond
)

// groups holds the Triggerer's batchers.
type groups struct {
	t       *Triggerer
	loads   *batcher[*loadItem]
	running *batcher[*runningItem]
	commits *batcher[*commitItem]
	// commitConns keeps the commit groups on maxCommitsInFlight backends.
	commitConns *connCache

	// onDurable, when set (by tests, before Start), is called with each deferred
	// job id whose finish committed, before its worker is released.
	onDurable func(deferredJobID int64)
	// onFinishBackend, when set (by tests, before Start), is called with the
	// backend pid of each group statement.
	onFinishBackend func(pid uint32)
}

func newGroups(t *Triggerer) *groups {
	g := &groups{t: t}
	g.loads = newBatcher(maxGroup, maxReadsInFlight, groupLinger, g.load)
	g.running = newBatcher(maxGroup, maxReadsInFlight, groupLinger, g.reportRunning)
	g.commits = newBatcher(maxGroup, maxCommitsInFlight, groupLinger, g.commit)
	g.commitConns = newConnCache(t.pool, maxCommitsInFlight)
	return g
}

// flushCtx bounds one group's database work. It does not derive from any
// worker's context: a group serves many workers, and one of them being
// cancelled must not fail the others.
func (g *groups) flushCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), workMargin)
}

type loadItem struct {
	id   int64
	job  *orkstate.DeferredJob
	err  error
	done chan struct{}
}

// getDeferredJob reads one deferred job through the load group; ErrNotFound if
// it does not exist.
func (g *groups) getDeferredJob(id int64) (*orkstate.DeferredJob, error) {
	it := &loadItem{id: id, done: make(chan struct{})}
	g.loads.add(it)
	<-it.done
	return it.job, it.err
}

func (g *groups) load(items []*loadItem) {
	ctx, cancel := g.flushCtx()
	defer cancel()
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	jobs, err := g.readPollTargets(ctx, ids)
	byID := make(map[int64]*orkstate.DeferredJob, len(jobs))
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	for _, it := range items {
		switch {
		case err != nil:
			it.err = err
		case byID[it.id] == nil:
			it.err = fmt.Errorf("deferred job %d: %w", it.id, orkstate.ErrNotFound)
		default:
			it.job = byID[it.id]
		}
		close(it.done)
	}
}

// readPollTargets reads what a poll needs of the deferred jobs with the given
// ids in one query: id, task id, service type, job id, job data and status; the
// other fields of the returned DeferredJobs are zero. Ids that do not exist are
// left out. Against Store.GetDeferredJobs (all fifteen columns, scanned by name)
// it saves server and Go CPU on every poll (about 0.2 and 2.5 µs per job,
// TestMeasurePollRead). It reads the install's deferred_jobs table directly, as
// finishStatement writes river_job; TestReadPollTargets compares it with
// Store.GetDeferredJobs, so a schema change that breaks it fails that test.
func (g *groups) readPollTargets(ctx context.Context, ids []int64) ([]orkstate.DeferredJob, error) {
	rows, err := g.t.pool.Query(ctx, `select id, task_id, service_type, job_id, job_data, status from `+
		pgx.Identifier{g.t.cfg.Schema, "deferred_jobs"}.Sanitize()+` where id = any($1)`, ids)
	if err != nil {
		return nil, err
	}
	jobs := make([]orkstate.DeferredJob, 0, len(ids))
	var status string
	for rows.Next() {
		jobs = append(jobs, orkstate.DeferredJob{})
		j := &jobs[len(jobs)-1]
		if err := rows.Scan(&j.ID, &j.TaskID, &j.ServiceType, &j.JobID, (*[]byte)(&j.JobData), &status); err != nil {
			rows.Close()
			return nil, err
		}
		j.Status = orkstate.DeferredJobStatus(status)
	}
	return jobs, rows.Err()
}

type runningItem struct {
	id   int64
	out  orkstate.DeferredOutcome
	err  error
	done chan struct{}
}

// reportRunningPoll records a poll that found the job running (last_polled_at,
// next_poll_at) through the running group.
func (g *groups) reportRunningPoll(id int64) (orkstate.DeferredOutcome, error) {
	it := &runningItem{id: id, done: make(chan struct{})}
	g.running.add(it)
	<-it.done
	return it.out, it.err
}

func (g *groups) reportRunning(items []*runningItem) {
	ctx, cancel := g.flushCtx()
	defer cancel()
	splitOnError(items, func(part []*runningItem) error {
		reports := make([]orkstate.DeferredPollReport, len(part))
		for i, it := range part {
			reports[i] = g.t.pollReport(it.id, orkstate.PollRunning, "")
		}
		outs, err := g.t.work.ReportDeferredPolls(ctx, reports)
		if err == nil && len(outs) != len(part) {
			err = fmt.Errorf("%d outcomes for %d reports", len(outs), len(part))
		}
		if err != nil {
			return err
		}
		for i, it := range part {
			it.out = outs[i]
			close(it.done)
		}
		return nil
	}, func(it *runningItem, err error) {
		it.err = fmt.Errorf("triggerer: report running poll of deferred job %d: %w", it.id, err)
		close(it.done)
	})
}

type commitItem struct {
	ctx    context.Context // the worker's, for its log lines
	job    *river.Job[PollDeferredJobArgs]
	result orkstate.PollResult
	msg    string
	out    orkstate.DeferredOutcome
	err    error
	done   chan struct{}
	// resolved is set once done is closed; only the group's flush loop reads it.
	resolved bool
}

func (it *commitItem) resolve(err error) {
	it.err, it.resolved = err, true
	close(it.done)
}

// finishPoll reports a completed or failed poll and completes its River job in a
// transaction shared with other finished polls, and returns once that
// transaction committed (or this item failed on its own).
func (g *groups) finishPoll(ctx context.Context, job *river.Job[PollDeferredJobArgs], result orkstate.PollResult, msg string) (orkstate.DeferredOutcome, error) {
	it := &commitItem{ctx: ctx, job: job, result: result, msg: msg, done: make(chan struct{})}
	g.commits.add(it)
	<-it.done
	return it.out, it.err
}

// errRiverJobGone marks an item whose River job is no longer running (rescued,
// or deleted): it leaves the group, which is committed without it.
var errRiverJobGone = errors.New("river job is no longer running; the poll result is not applied")

func (g *groups) commit(items []*commitItem) {
	ctx, cancel := g.flushCtx()
	defer cancel()
	// River job ids in order: concurrent groups lock river_job rows in one order.
	slices.SortFunc(items, func(a, b *commitItem) int { return cmp.Compare(a.job.ID, b.job.ID) })
	splitOnError(items, func(part []*commitItem) error {
		cc, err := g.commitConns.get(ctx)
		if err != nil {
			return err
		}
		defer g.commitConns.put(cc)
		// Items resolved in an earlier try of a larger part are done.
		part = slices.DeleteFunc(slices.Clone(part), func(it *commitItem) bool { return it.resolved })
		for len(part) > 0 {
			gone, err := g.finishGroup(ctx, cc.conn, part)
			if err != nil {
				return err
			}
			if len(gone) == 0 {
				g.committed(part)
				return nil
			}
			// Nothing was applied; commit the others without them.
			for _, it := range gone {
				it.resolve(fmt.Errorf("triggerer: complete river job %d of deferred job %d: %w",
					it.job.ID, it.job.Args.DeferredJobID, errRiverJobGone))
			}
			part = slices.DeleteFunc(part, func(it *commitItem) bool { return it.resolved })
		}
		return nil
	}, func(it *commitItem, err error) {
		if !it.resolved {
			it.resolve(fmt.Errorf("triggerer: finish deferred job %d (%s): %w", it.job.Args.DeferredJobID, it.result, err))
		}
	})
}

// committed logs part's failed polls and releases its workers.
func (g *groups) committed(part []*commitItem) {
	for _, it := range part {
		if it.result == orkstate.PollFailed {
			g.t.logger.InfoContext(it.ctx, "triggerer: deferred job failed",
				slog.Int64("deferred_job_id", it.job.Args.DeferredJobID), slog.String("error", it.msg),
				slog.String("outcome", string(it.out.Outcome)))
		}
		if g.onDurable != nil {
			g.onDurable(it.job.Args.DeferredJobID)
		}
		it.resolve(nil)
	}
}

// splitOnError applies a group; when that fails, it halves the group and tries
// each half, down to single items, which get the error. One item that cannot be
// applied (or a transient failure) therefore never fails the others, and a
// healthy group costs one call. apply must resolve the items of a part it
// succeeds on.
func splitOnError[T any](items []T, apply func(part []T) error, fail func(item T, err error)) {
	err := apply(items)
	if err == nil {
		return
	}
	if len(items) == 1 {
		fail(items[0], err)
		return
	}
	mid := len(items) / 2
	splitOnError(items[:mid], apply, fail)
	splitOnError(items[mid:], apply, fail)
}

// pollReport is the unfenced report of one poll. River, not the claim's attempt
// counter, guarantees that one worker at a time polls a deferred job, so it
// carries no fencing token.
func (t *Triggerer) pollReport(id int64, result orkstate.PollResult, msg string) orkstate.DeferredPollReport {
	return orkstate.DeferredPollReport{JobID: id, Result: result, Error: msg, NextPollAfter: t.cfg.PollInterval}
}
