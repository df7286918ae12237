package triggerer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/orkstate/orkstate"
)

// workMargin is the time a poll job gets beyond PollTimeout for its database work.
const workMargin = 30 * time.Second

// workTimeout is River's timeout for one poll job.
func workTimeout(cfg *Config) time.Duration { return cfg.PollTimeout + workMargin }

// PollOutput is what a finished poll job records as its River output
// (river_job.metadata->'output'), so River's own view says how the deferred job ended.
type PollOutput struct {
	DeferredJobID int64                      `json:"deferred_job_id"`
	Result        orkstate.PollResult        `json:"result"`
	Error         string                     `json:"error,omitempty"`
	Outcome       orkstate.Outcome           `json:"outcome"`
	Status        orkstate.DeferredJobStatus `json:"status"`
	TaskStatus    orkstate.TaskStatus        `json:"task_status,omitempty"`
}

// pollWorker is the River worker of PollDeferredJobArgs.
type pollWorker struct {
	river.WorkerDefaults[PollDeferredJobArgs]
	t *Triggerer
}

// Timeout bounds one execution: the poll plus its database work.
func (w *pollWorker) Timeout(*river.Job[PollDeferredJobArgs]) time.Duration {
	return workTimeout(w.t.cfg)
}

// Work polls the deferred job once. What it returns tells River what to do next:
//
//   - nil: finished. Either the deferred job was already completed or failed
//     (nothing to poll), or this poll finished it: ReportDeferredPolls and the
//     River job's completion were committed in one transaction (shared with
//     other polls that finished at the same time; see groups).
//   - river.JobSnooze(PollInterval): the job still runs; the poll was recorded.
//     A snooze does not use an attempt.
//   - river.JobCancel: never poll again — the deferred job was cancelled or no
//     longer exists, or its service type has no tracker (then the deferred job
//     and its task were failed first, with an error naming the service type).
//   - another error: the tracker (or the database) failed; River retries with
//     its backoff. On the last attempt a tracker error fails the deferred job and
//     its task instead, in the transaction that completes the River job, so the
//     River job ends completed with PollOutput saying so.
//
// Reading the deferred job and reporting a running poll are grouped with other
// workers' too.
func (w *pollWorker) Work(ctx context.Context, job *river.Job[PollDeferredJobArgs]) error {
	id := job.Args.DeferredJobID
	g := w.t.groups

	dj, err := g.getDeferredJob(id)
	if errors.Is(err, orkstate.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("triggerer: deferred job %d does not exist (deleted with its workflow?)", id))
	}
	if err != nil {
		return fmt.Errorf("triggerer: get deferred job %d: %w", id, err)
	}
	if dj.Status.IsTerminal() {
		return alreadyFinished(dj)
	}

	tracker, ok := w.t.registry.Lookup(dj.ServiceType)
	if !ok {
		msg := fmt.Sprintf("no tracker registered for service type %q", dj.ServiceType)
		if _, err := w.t.work.ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{w.t.pollReport(id, orkstate.PollFailed, msg)}); err != nil {
			return fmt.Errorf("triggerer: report failed poll of deferred job %d: %w", id, err)
		}
		w.t.logger.ErrorContext(ctx, "triggerer: deferred job failed: "+msg,
			slog.Int64("deferred_job_id", id), slog.Int64("task_id", dj.TaskID))
		return river.JobCancel(fmt.Errorf("triggerer: deferred job %d: %s", id, msg))
	}

	pollCtx, cancel := context.WithTimeout(ctx, w.t.cfg.PollTimeout)
	result, msg, pollErr := poll(pollCtx, tracker, dj)
	cancel()
	if ctx.Err() != nil {
		// River is stopping, timed the job out or cancelled it remotely (the task
		// or run was cancelled): not the tracker's failure. River reschedules a
		// stopped job without using an attempt and ends a cancelled one.
		return fmt.Errorf("triggerer: poll of deferred job %d interrupted: %w", id, ctx.Err())
	}
	if pollErr != nil {
		if job.Attempt < job.MaxAttempts {
			return fmt.Errorf("triggerer: poll deferred job %d (%s %s), attempt %d of %d: %w",
				id, dj.ServiceType, dj.JobID, job.Attempt, job.MaxAttempts, pollErr)
		}
		result = orkstate.PollFailed
		msg = fmt.Sprintf("polling failed %d times; last error: %v", job.Attempt, pollErr)
	}

	if result == orkstate.PollRunning {
		out, err := g.reportRunningPoll(id)
		if err != nil {
			return err
		}
		if out.Outcome != orkstate.OutcomeApplied {
			// Cancelled (or finished by someone else) while we polled.
			return river.JobCancel(fmt.Errorf("triggerer: deferred job %d is %s (report %s); not polling it again",
				id, out.Status, out.Outcome))
		}
		return river.JobSnooze(w.t.cfg.PollInterval)
	}
	// Completed or failed: reported and the River job completed in a transaction
	// shared with other finished polls; returns once it committed.
	_, err = g.finishPoll(ctx, job, result, msg)
	return err
}

// alreadyFinished ends the River job of a deferred job that reached a terminal
// status without it: cancelled → River job cancelled; completed or failed (by an
// operator, or by an earlier execution whose River completion was lost) → completed.
func alreadyFinished(dj *orkstate.DeferredJob) error {
	if dj.Status == orkstate.DeferredCancelled {
		return river.JobCancel(fmt.Errorf("triggerer: deferred job %d was cancelled; not polling it", dj.ID))
	}
	return nil
}

// poll calls the tracker, turning a panic or an unknown status into an error.
func poll(ctx context.Context, tracker Tracker, dj *orkstate.DeferredJob) (result orkstate.PollResult, msg string, err error) {
	defer func() {
		if p := recover(); p != nil {
			result, msg, err = "", "", fmt.Errorf("tracker %q panicked: %v", dj.ServiceType, p)
		}
	}()
	result, msg, err = tracker.Poll(ctx, dj.JobID, dj.JobData)
	if err != nil {
		return "", "", err
	}
	switch result {
	case orkstate.PollRunning, orkstate.PollCompleted, orkstate.PollFailed:
		if result == orkstate.PollFailed && msg == "" {
			msg = fmt.Sprintf("%s job %s failed", dj.ServiceType, dj.JobID)
		}
		return result, msg, nil
	}
	return "", "", fmt.Errorf("tracker %q returned unknown status %q", dj.ServiceType, result)
}

var _ river.Worker[PollDeferredJobArgs] = (*pollWorker)(nil)
