package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// runningTaskWithJobs is a DAG a → next with a running and n deferred jobs on a.
func (b *bundle) runningTaskWithJobs(n int, retries int) (*orkstate.Run, tasks, []orkstate.DeferredJob) {
	b.t.Helper()
	r, ts := b.dagRun(withRetries(nt("a"), retries), nt("next", "a"))
	b.drive(ts.id("a"), orkstate.TaskRunning)
	var in []orkstate.NewDeferredJob
	for i := 0; i < n; i++ {
		in = append(in, orkstate.NewDeferredJob{ServiceType: "bigquery", JobID: fmt.Sprintf("job-%d", i), JobData: raw(fmt.Sprintf(`{"i":%d}`, i))})
	}
	js, err := b.store.CreateDeferredJobs(b.ctx, ts.id("a"), in)
	noErr(b.t, "fixture CreateDeferredJobs", err)
	equal(b.t, "fixture jobs", len(js), n)
	return r, ts, js
}

func (b *bundle) claimJobs(limit int) []orkstate.DeferredJob {
	b.t.Helper()
	js, err := b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: "poller", Limit: limit})
	noErr(b.t, "ClaimDeferredJobs", err)
	return js
}

func (b *bundle) poll(reports ...orkstate.DeferredPollReport) []orkstate.DeferredOutcome {
	b.t.Helper()
	out, err := b.store.ReportDeferredPolls(b.ctx, reports)
	noErr(b.t, "ReportDeferredPolls", err)
	equal(b.t, "outcome count", len(out), len(reports))
	return out
}

func (s *suite) testDeferred(t *testing.T) {
	s.test(t, "CreateGetList", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"))
		before := time.Now()
		js, err := b.store.CreateDeferredJobs(b.ctx, ts.id("a"), []orkstate.NewDeferredJob{
			{ServiceType: "bigquery", JobID: "bq-1", JobData: raw(`{"location":"EU"}`)},
			{ServiceType: "cloudrun", JobID: "it's-\"2\""},
		})
		noErr(t, "CreateDeferredJobs", err)
		equal(t, "count", len(js), 2)
		jb := b.job(ts.id("b"))
		for i, j := range js {
			got := b.getJob(j.ID)
			equal(t, "task", got.TaskID, ts.id("a"))
			equal(t, "status", got.Status, orkstate.DeferredPending)
			equal(t, "attempts", got.Attempts, 0)
			equal(t, "claimed by", got.ClaimedBy, "")
			isNil(t, "started at", got.StartedAt)
			isNil(t, "finished at", got.FinishedAt)
			between(t, "due at once", got.NextPollAt, before.Add(-time.Second), time.Now(), time.Second)
			if i == 0 {
				equal(t, "service", got.ServiceType, "bigquery")
				equal(t, "job id", got.JobID, "bq-1")
				jsonEqual(t, "data", got.JobData, raw(`{"location":"EU"}`))
			} else {
				equal(t, "quoted job id", got.JobID, `it's-"2"`)
			}
		}
		forTask, err := b.store.DeferredJobsForTask(b.ctx, ts.id("a"))
		noErr(t, "DeferredJobsForTask", err)
		deepEqual(t, "jobs of a", jobIDs(forTask), jobIDs(js))
		pend, err := b.store.PendingDeferredJobs(b.ctx, 10)
		noErr(t, "PendingDeferredJobs", err)
		deepEqual(t, "pending oldest first", jobIDs(pend), []int64{js[0].ID, js[1].ID, jb.ID})
		pend, err = b.store.PendingDeferredJobs(b.ctx, 2)
		noErr(t, "PendingDeferredJobs(2)", err)
		deepEqual(t, "limit 2", jobIDs(pend), []int64{js[0].ID, js[1].ID})
		for _, lim := range []int{0, -1} {
			_, err = b.store.PendingDeferredJobs(b.ctx, lim)
			isValidation(t, fmt.Sprintf("PendingDeferredJobs(%d)", lim), err)
		}
		empty, err := b.store.CreateDeferredJobs(b.ctx, ts.id("a"), nil)
		noErr(t, "CreateDeferredJobs(nil)", err)
		equal(t, "no jobs", len(empty), 0)
		_, err = b.store.GetDeferredJob(b.ctx, unknownID)
		errIs(t, "GetDeferredJob unknown", err, orkstate.ErrNotFound)
	})

	s.test(t, "CreateBadInput", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("done"))
		b.drive(ts.id("done"), orkstate.TaskSuccess)
		cases := map[string][]orkstate.NewDeferredJob{
			"empty service type": {{ServiceType: "s", JobID: "ok"}, {ServiceType: "", JobID: "j"}},
			"empty job id":       {{ServiceType: "s", JobID: "ok"}, {ServiceType: "s", JobID: ""}},
			"invalid JSON":       {{ServiceType: "s", JobID: "ok"}, {ServiceType: "s", JobID: "j", JobData: raw(`{"a"`)}},
		}
		for what, in := range cases {
			_, err := b.store.CreateDeferredJobs(b.ctx, ts.id("a"), in)
			isValidation(t, "CreateDeferredJobs with "+what, err)
		}
		_, err := b.store.CreateDeferredJobs(b.ctx, ts.id("done"), []orkstate.NewDeferredJob{{ServiceType: "s", JobID: "j"}})
		errIs(t, "jobs on a finished task", err, orkstate.ErrInvalidTransition)
		pend, err := b.store.PendingDeferredJobs(b.ctx, 10)
		noErr(t, "PendingDeferredJobs", err)
		equal(t, "nothing created", len(pend), 0)
	})

	s.test(t, "ClaimAndLease", func(t *testing.T, b *bundle) {
		_, _, js := b.runningTaskWithJobs(3, 0)
		for _, p := range []orkstate.DeferredClaimParams{{Claimer: "", Limit: 1}, {Claimer: "p", Limit: 0}, {Claimer: "p", Limit: -1}} {
			_, err := b.store.ClaimDeferredJobs(b.ctx, p)
			isValidation(t, fmt.Sprintf("ClaimDeferredJobs(%+v)", p), err)
		}
		equal(t, "bad input claimed nothing", b.getJob(js[0].ID).Status, orkstate.DeferredPending)

		before := time.Now()
		got, err := b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: "p1", Limit: 2})
		noErr(t, "ClaimDeferredJobs", err)
		after := time.Now()
		deepEqual(t, "oldest due first", jobIDs(got), []int64{js[0].ID, js[1].ID})
		for _, j := range []orkstate.DeferredJob{got[0], *b.getJob(js[0].ID)} {
			equal(t, "status", j.Status, orkstate.DeferredPolling)
			equal(t, "attempts", j.Attempts, 1)
			equal(t, "claimed by", j.ClaimedBy, "p1")
			between(t, "default lease 1 min", j.LeaseExpiresAt, before.Add(time.Minute), after.Add(time.Minute), time.Second)
			sameTime(t, "next poll = lease end", j.NextPollAt, *j.LeaseExpiresAt)
			between(t, "started at", j.StartedAt, before, after, time.Second)
		}
		got, err = b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: "p2", Limit: 10, Lease: 30 * time.Second})
		noErr(t, "ClaimDeferredJobs again", err)
		deepEqual(t, "only the unclaimed one", jobIDs(got), []int64{js[2].ID})
		startedAt := *got[0].StartedAt
		equal(t, "nothing due within the leases", len(b.claimJobs(10)), 0)

		// The poller died: once the lease runs out, the job is claimed again (the first
		// two, leased for a minute, are not due yet).
		b.clock.advance(31 * time.Second)
		again, err := b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: "p3", Limit: 10})
		noErr(t, "ClaimDeferredJobs after the lease", err)
		deepEqual(t, "reclaimed", jobIDs(again), []int64{js[2].ID})
		equal(t, "attempts", again[0].Attempts, 2)
		equal(t, "new claimer", again[0].ClaimedBy, "p3")
		sameTime(t, "started at set once", again[0].StartedAt, startedAt)

		out := b.poll(orkstate.DeferredPollReport{JobID: js[2].ID, Result: orkstate.PollCompleted, Attempt: 1})
		equal(t, "dead poller's late report", out[0].Outcome, orkstate.OutcomeStale)
		equal(t, "job still polling", b.getJob(js[2].ID).Status, orkstate.DeferredPolling)
	})

	s.test(t, "PollRunning", func(t *testing.T, b *bundle) {
		_, _, js := b.runningTaskWithJobs(1, 0)
		c := b.claimJobs(10)
		equal(t, "claimed", len(c), 1)
		before := time.Now()
		out := b.poll(orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollRunning, Attempt: c[0].Attempts, NextPollAfter: 30 * time.Second})
		after := time.Now()
		equal(t, "outcome", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "status", out[0].Status, orkstate.DeferredPolling)
		got := b.getJob(js[0].ID)
		equal(t, "still polling", got.Status, orkstate.DeferredPolling)
		between(t, "last polled", got.LastPolledAt, before, after, time.Second)
		between(t, "next poll", got.NextPollAt, before.Add(30*time.Second), after.Add(30*time.Second), time.Second)
		isNil(t, "lease cleared", got.LeaseExpiresAt)
		equal(t, "not due", len(b.claimJobs(10)), 0)

		// Due once the clock passes the next poll; the report is stamped with the clock.
		b.clock.advance(31 * time.Second)
		c = b.claimJobs(10)
		deepEqual(t, "due after 30 s", jobIDs(c), []int64{js[0].ID})

		// Default poll interval: 10 s.
		before = b.clock.now()
		b.poll(orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollRunning})
		between(t, "last polled at the clock's time", b.getJob(js[0].ID).LastPolledAt, before, b.clock.now(), time.Second)
		between(t, "default next poll", b.getJob(js[0].ID).NextPollAt, before.Add(10*time.Second), b.clock.now().Add(10*time.Second), time.Second)
		equal(t, "not due within 10 s", len(b.claimJobs(10)), 0)
		b.clock.advance(11 * time.Second)
		deepEqual(t, "due after 10 s", jobIDs(b.claimJobs(10)), []int64{js[0].ID})
	})

	s.test(t, "AllCompletedTaskSucceeds", func(t *testing.T, b *bundle) {
		r, ts, js := b.runningTaskWithJobs(2, 0)
		c := b.claimJobs(10)
		equal(t, "claimed", len(c), 2)
		out := b.poll(orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollCompleted, Attempt: 1})
		equal(t, "first outcome", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "first status", out[0].Status, orkstate.DeferredCompleted)
		equal(t, "task not finished by the first", out[0].TaskStatus, orkstate.TaskStatus(""))
		equal(t, "task still running", b.taskStatus(ts.id("a")), orkstate.TaskRunning)
		notNil(t, "job finished at", b.getJob(js[0].ID).FinishedAt)

		out = b.poll(orkstate.DeferredPollReport{JobID: js[1].ID, Result: orkstate.PollCompleted, Attempt: 1})
		equal(t, "second outcome", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "task finished by the second", out[0].TaskStatus, orkstate.TaskSuccess)
		equal(t, "task", b.taskStatus(ts.id("a")), orkstate.TaskSuccess)
		deepEqual(t, "dependent dispatchable", b.dispatchable(), []int64{ts.id("next")})
		b.succeed(ts.id("next"))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunSuccess)

		out = b.poll(orkstate.DeferredPollReport{JobID: js[1].ID, Result: orkstate.PollFailed, Error: "late"})
		equal(t, "report on a terminal job", out[0].Outcome, orkstate.OutcomeInvalid)
		equal(t, "job unchanged", b.getJob(js[1].ID).Status, orkstate.DeferredCompleted)
	})

	s.test(t, "FailedFailsTask", func(t *testing.T, b *bundle) {
		r, ts, js := b.runningTaskWithJobs(2, 0)
		b.claimJobs(10)
		out := b.poll(orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollFailed, Error: "query failed", Attempt: 1})
		equal(t, "outcome", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "job status", out[0].Status, orkstate.DeferredFailed)
		equal(t, "task status", out[0].TaskStatus, orkstate.TaskFailed)
		j := b.getJob(js[0].ID)
		equal(t, "job error", j.Error, "query failed")
		notNil(t, "job finished at", j.FinishedAt)
		equal(t, "other job cancelled", b.getJob(js[1].ID).Status, orkstate.DeferredCancelled)
		equal(t, "task", b.taskStatus(ts.id("a")), orkstate.TaskFailed)
		dep := b.getTask(ts.id("next"))
		equal(t, "dependent", dep.Status, orkstate.TaskFailed)
		equal(t, "dependent error", dep.Error, "dependency failed")
		equal(t, "run", b.runStatus(r.ID), orkstate.RunFailed)
	})

	s.test(t, "FailedRetriesTask", func(t *testing.T, b *bundle) {
		r, ts, js := b.runningTaskWithJobs(2, 1)
		b.claimJobs(10)
		before := time.Now()
		out := b.poll(orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollFailed, Error: "quota", Attempt: 1})
		equal(t, "outcome", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "job status", out[0].Status, orkstate.DeferredFailed)
		got := b.getTask(ts.id("a"))
		equal(t, "task retrying", got.Status, orkstate.TaskPending)
		between(t, "task retry at", got.RetryAt, before.Add(orkstate.RetryBackoff(1)), time.Now().Add(orkstate.RetryBackoff(1)), 250*time.Millisecond)
		equal(t, "other job cancelled", b.getJob(js[1].ID).Status, orkstate.DeferredCancelled)
		equal(t, "dependent untouched", b.taskStatus(ts.id("next")), orkstate.TaskPending)
		equal(t, "run", b.runStatus(r.ID), orkstate.RunRunning)
	})

	s.test(t, "ReportBatchMixed", func(t *testing.T, b *bundle) {
		_, _, js := b.runningTaskWithJobs(3, 0)
		b.claimJobs(10)
		out := b.poll(
			orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollRunning, Attempt: 1},
			orkstate.DeferredPollReport{JobID: unknownID, Result: orkstate.PollCompleted},
			orkstate.DeferredPollReport{JobID: js[1].ID, Result: orkstate.PollCompleted, Attempt: 5},
			orkstate.DeferredPollReport{JobID: js[2].ID, Result: orkstate.PollCompleted, Attempt: 1},
		)
		want := []orkstate.Outcome{orkstate.OutcomeApplied, orkstate.OutcomeNotFound, orkstate.OutcomeStale, orkstate.OutcomeApplied}
		for i, o := range out {
			equal(t, fmt.Sprintf("row %d job id", i), o.JobID, []int64{js[0].ID, unknownID, js[1].ID, js[2].ID}[i])
			equal(t, fmt.Sprintf("row %d outcome", i), o.Outcome, want[i])
		}
		equal(t, "job 0", b.getJob(js[0].ID).Status, orkstate.DeferredPolling)
		equal(t, "job 1 (stale)", b.getJob(js[1].ID).Status, orkstate.DeferredPolling)
		equal(t, "job 2", b.getJob(js[2].ID).Status, orkstate.DeferredCompleted)

		empty, err := b.store.ReportDeferredPolls(b.ctx, nil)
		noErr(t, "ReportDeferredPolls(nil)", err)
		equal(t, "no outcomes", len(empty), 0)
	})

	s.test(t, "ReportBadInputChangesNothing", func(t *testing.T, b *bundle) {
		_, ts, js := b.runningTaskWithJobs(2, 0)
		b.claimJobs(10)
		for _, bad := range []orkstate.PollResult{"bogus", "", "COMPLETE"} {
			_, err := b.store.ReportDeferredPolls(b.ctx, []orkstate.DeferredPollReport{
				{JobID: js[0].ID, Result: orkstate.PollCompleted, Attempt: 1},
				{JobID: js[1].ID, Result: bad, Attempt: 1},
			})
			isValidation(t, fmt.Sprintf("result %q", bad), err)
			equal(t, "job 0 unchanged", b.getJob(js[0].ID).Status, orkstate.DeferredPolling)
			equal(t, "task unchanged", b.taskStatus(ts.id("a")), orkstate.TaskRunning)
		}
	})

	s.test(t, "SingleRowForms", func(t *testing.T, b *bundle) {
		_, ts, js := b.runningTaskWithJobs(3, 0)
		errIs(t, "unknown job", b.store.UpdateDeferredJobStatus(b.ctx, unknownID, orkstate.DeferredPolling, ""), orkstate.ErrNotFound)
		errIs(t, "MarkDeferredJobPolled unknown", b.store.MarkDeferredJobPolled(b.ctx, unknownID), orkstate.ErrNotFound)
		errIs(t, "CompleteDeferredJob unknown", b.store.CompleteDeferredJob(b.ctx, unknownID), orkstate.ErrNotFound)
		errIs(t, "FailDeferredJob unknown", b.store.FailDeferredJob(b.ctx, unknownID, "x"), orkstate.ErrNotFound)
		isValidation(t, "bogus status", b.store.UpdateDeferredJobStatus(b.ctx, js[0].ID, orkstate.DeferredJobStatus("bogus"), ""))
		isValidation(t, "empty status", b.store.UpdateDeferredJobStatus(b.ctx, js[0].ID, orkstate.DeferredJobStatus(""), ""))
		// The same status again: semantics.md does not say whether this is a no-op
		// (like an ignored task report) or a refusal; either way nothing changes.
		if err := b.store.UpdateDeferredJobStatus(b.ctx, js[0].ID, orkstate.DeferredPending, ""); err != nil {
			errIs(t, "pending → pending", err, orkstate.ErrInvalidTransition)
		}
		equal(t, "still pending", b.getJob(js[0].ID).Status, orkstate.DeferredPending)

		noErr(t, "pending → polling", b.store.UpdateDeferredJobStatus(b.ctx, js[0].ID, orkstate.DeferredPolling, ""))
		equal(t, "polling", b.getJob(js[0].ID).Status, orkstate.DeferredPolling)
		errIs(t, "polling → pending", b.store.UpdateDeferredJobStatus(b.ctx, js[0].ID, orkstate.DeferredPending, ""), orkstate.ErrInvalidTransition)
		before := time.Now()
		noErr(t, "MarkDeferredJobPolled", b.store.MarkDeferredJobPolled(b.ctx, js[0].ID))
		between(t, "last polled", b.getJob(js[0].ID).LastPolledAt, before, time.Now(), time.Second)

		noErr(t, "CompleteDeferredJob", b.store.CompleteDeferredJob(b.ctx, js[0].ID))
		equal(t, "completed", b.getJob(js[0].ID).Status, orkstate.DeferredCompleted)
		equal(t, "task waits for its other jobs", b.taskStatus(ts.id("a")), orkstate.TaskRunning)
		noErr(t, "UpdateDeferredJobStatus completed", b.store.UpdateDeferredJobStatus(b.ctx, js[1].ID, orkstate.DeferredCompleted, ""))
		equal(t, "task waits for the third job", b.taskStatus(ts.id("a")), orkstate.TaskRunning)
		noErr(t, "CompleteDeferredJob third", b.store.CompleteDeferredJob(b.ctx, js[2].ID))
		equal(t, "task succeeds with all its jobs", b.taskStatus(ts.id("a")), orkstate.TaskSuccess)

		errIs(t, "complete → failed", b.store.FailDeferredJob(b.ctx, js[0].ID, "late"), orkstate.ErrInvalidTransition)
		if err := b.store.CompleteDeferredJob(b.ctx, js[0].ID); err != nil { // same status: no-op or refusal
			errIs(t, "complete again", err, orkstate.ErrInvalidTransition)
		}
		errIs(t, "poll a completed job", b.store.MarkDeferredJobPolled(b.ctx, js[0].ID), orkstate.ErrInvalidTransition)
		errIs(t, "cancel a completed job", b.store.UpdateDeferredJobStatus(b.ctx, js[0].ID, orkstate.DeferredCancelled, ""), orkstate.ErrInvalidTransition)
		j := b.getJob(js[0].ID)
		equal(t, "still completed", j.Status, orkstate.DeferredCompleted)
		equal(t, "no late error", j.Error, "")
	})

	s.test(t, "FailDeferredJobSingle", func(t *testing.T, b *bundle) {
		r, ts, js := b.runningTaskWithJobs(2, 0)
		noErr(t, "FailDeferredJob", b.store.FailDeferredJob(b.ctx, js[0].ID, "exploded"))
		j := b.getJob(js[0].ID)
		equal(t, "job", j.Status, orkstate.DeferredFailed)
		equal(t, "job error", j.Error, "exploded")
		notNil(t, "job finished at", j.FinishedAt)
		equal(t, "task", b.taskStatus(ts.id("a")), orkstate.TaskFailed)
		equal(t, "other job", b.getJob(js[1].ID).Status, orkstate.DeferredCancelled)
		equal(t, "run", b.runStatus(r.ID), orkstate.RunFailed)
	})

	s.test(t, "CancelForTask", func(t *testing.T, b *bundle) {
		_, ts, js := b.runningTaskWithJobs(3, 0)
		noErr(t, "CompleteDeferredJob", b.store.CompleteDeferredJob(b.ctx, js[0].ID))
		n, err := b.store.CancelDeferredJobsForTask(b.ctx, ts.id("a"))
		noErr(t, "CancelDeferredJobsForTask", err)
		equal(t, "cancelled", n, 2)
		equal(t, "completed kept", b.getJob(js[0].ID).Status, orkstate.DeferredCompleted)
		for _, j := range js[1:] {
			got := b.getJob(j.ID)
			equal(t, "cancelled job", got.Status, orkstate.DeferredCancelled)
			notNil(t, "cancelled finished at", got.FinishedAt)
		}
		n, err = b.store.CancelDeferredJobsForTask(b.ctx, ts.id("a"))
		noErr(t, "CancelDeferredJobsForTask again", err)
		equal(t, "nothing left", n, 0)
		equal(t, "task untouched", b.taskStatus(ts.id("a")), orkstate.TaskRunning)
		equal(t, "cancelled jobs are not claimed", len(b.claimJobs(10)), 0)
	})

	s.test(t, "CancelledRun", func(t *testing.T, b *bundle) {
		r, _, js := b.runningTaskWithJobs(2, 0)
		c := b.claimJobs(1)
		equal(t, "claimed", len(c), 1)
		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, r.ID))
		for _, j := range js {
			equal(t, "job of a cancelled run", b.getJob(j.ID).Status, orkstate.DeferredCancelled)
		}
		out := b.poll(orkstate.DeferredPollReport{JobID: js[0].ID, Result: orkstate.PollCompleted, Attempt: 1})
		equal(t, "a late completion", out[0].Outcome, orkstate.OutcomeInvalid)
		errIs(t, "CompleteDeferredJob after cancel", b.store.CompleteDeferredJob(b.ctx, js[1].ID), orkstate.ErrInvalidTransition)
		equal(t, "run stays cancelled", b.runStatus(r.ID), orkstate.RunCancelled)
		equal(t, "nothing to claim", len(b.claimJobs(10)), 0)
	})
}
