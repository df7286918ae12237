package storetest

import (
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// testAgreement: calls on which pgstore and sqlitecompat used to disagree (issue 11
// item 19). Each case pins the rule docs/semantics.md states; the differential test
// (internal/difftest) checks the rest by running both stores side by side.
func (s *suite) testAgreement(t *testing.T) {
	s.test(t, "PageLimitAboveMaxIsClamped", func(t *testing.T, b *bundle) {
		b.workflow()
		wp, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: orkstate.MaxPageLimit + 1})
		noErr(t, "ListWorkflowsPage over the cap", err)
		equal(t, "workflows", len(wp.Workflows), 1)
		rp, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Limit: 5000})
		noErr(t, "ListRunsPage over the cap", err)
		equal(t, "runs", rp.Total, 0)
	})

	s.test(t, "SearchFoldsNonASCIICase", func(t *testing.T, b *bundle) {
		wf := b.workflow(named("ÄRGER-Über-Straße-ЖУК"))
		b.workflow(named("plain"))
		r := b.run(wf)
		for _, q := range []string{"ärger", "über", "жук", "ÄRGER-ÜBER"} {
			page, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Search: q})
			noErr(t, "ListWorkflowsPage "+q, err)
			deepEqual(t, "workflows matching "+q, workflowIDs(page.Workflows), []int64{wf.ID})
			runs, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: q})
			noErr(t, "ListRunsPage "+q, err)
			deepEqual(t, "runs matching "+q, summaryIDs(runs.Runs), []int64{r.ID})
		}
	})

	s.test(t, "ListRunsOfUnknownWorkflow", func(t *testing.T, b *bundle) {
		_, err := b.store.ListRuns(b.ctx, unknownID)
		errIs(t, "ListRuns(unknown workflow)", err, orkstate.ErrNotFound)
		wf := b.workflow()
		runs, err := b.store.ListRuns(b.ctx, wf.ID)
		noErr(t, "ListRuns(workflow without runs)", err)
		equal(t, "runs", len(runs), 0)
	})

	s.test(t, "CreateTasksCountZero", func(t *testing.T, b *bundle) {
		r := b.run()
		ts, err := b.store.CreateTasks(b.ctx, r.ID, 0, "x", nil)
		noErr(t, "CreateTasks(0)", err)
		equal(t, "tasks", len(ts), 0)
		equal(t, "run stays pending", b.runStatus(r.ID), orkstate.RunPending)
		_, err = b.store.CreateTasks(b.ctx, unknownID, 0, "x", nil)
		errIs(t, "CreateTasks(0) of an unknown run", err, orkstate.ErrNotFound)
		isValidation(t, "CreateTasks(-1)", func() error { _, err := b.store.CreateTasks(b.ctx, r.ID, -1, "x", nil); return err }())
	})

	s.test(t, "SetScheduleWithZeroNowUsesTheClock", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		before := time.Now()
		noErr(t, "SetSchedule(zero now)", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", true, time.Time{}))
		next := b.getWorkflow(wf.ID).NextScheduledAt
		notNil(t, "next fire time", next)
		between(t, "next fire time", next, before, before.Add(5*time.Minute), time.Second)
		runs, err := b.store.FireDueSchedules(b.ctx, time.Time{}, 10)
		noErr(t, "FireDueSchedules(zero now)", err)
		equal(t, "nothing is due yet", len(runs), 0)
		due, err := b.store.DueWorkflows(b.ctx, time.Time{}, 10)
		noErr(t, "DueWorkflows(zero now)", err)
		equal(t, "nothing due", len(due), 0)
	})

	s.test(t, "TimesOutsideYears1To9999", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		far := time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)
		isValidation(t, "SetScheduleTimes in year 300000", b.store.SetScheduleTimes(b.ctx, wf.ID, &far, nil))
		isValidation(t, "SetSchedule at year 300000", b.store.SetSchedule(b.ctx, wf.ID, "@hourly", true, far))
		_, err := b.store.FireDueSchedules(b.ctx, far, 10)
		isValidation(t, "FireDueSchedules at year 300000", err)
		isNil(t, "next fire time untouched", b.getWorkflow(wf.ID).NextScheduledAt)
		ok := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		noErr(t, "SetScheduleTimes in year 9999", b.store.SetScheduleTimes(b.ctx, wf.ID, nil, &ok))
		sameTime(t, "next fire time", b.getWorkflow(wf.ID).NextScheduledAt, ok)
	})

	s.test(t, "ClaimerIsStoredAsGiven", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: " node-1 ", Limit: 1, ExecutorTypes: []string{b.getTask(a).ExecutorType}})
		noErr(t, "ClaimTasks", err)
		equal(t, "claimed", len(got), 1)
		equal(t, "claimed_by", got[0].ClaimedBy, " node-1 ")
		equal(t, "stored claimed_by", b.getTask(a).ClaimedBy, " node-1 ")
	})

	s.test(t, "LeaseDefaults", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		before := time.Now()
		c := b.claimTask(a)
		between(t, "task lease", c.LeaseExpiresAt, before.Add(orkstate.DefaultTaskLease), time.Now().Add(orkstate.DefaultTaskLease), time.Second)
		b.reportOK(upd(a, orkstate.TaskRunning, c.Attempt), orkstate.OutcomeApplied)
		b.job(a)
		before = time.Now()
		js, err := b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: claimer, Limit: 1})
		noErr(t, "ClaimDeferredJobs", err)
		equal(t, "jobs", len(js), 1)
		between(t, "deferred lease", js[0].LeaseExpiresAt, before.Add(orkstate.DefaultDeferredLease), time.Now().Add(orkstate.DefaultDeferredLease), time.Second)
	})

	s.test(t, "PausedReportClearsRetryAt", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(withRetries(nt("a"), 3))
		a := ts.id("a")
		b.fail(a, "boom", orkstate.OutcomeRetrying)
		notNil(t, "retry_at after the failure", b.getTask(a).RetryAt)
		b.reportOK(upd(a, orkstate.TaskPaused, 0), orkstate.OutcomeApplied)
		k := b.getTask(a)
		equal(t, "status", k.Status, orkstate.TaskPaused)
		isNil(t, "retry_at after a paused report", k.RetryAt)
		equal(t, "error kept", k.Error, "boom")
	})

	s.test(t, "OperatorErrorOnlyWhenTheRunEnds", func(t *testing.T, b *bundle) {
		r, _ := b.dagRun(nt("a"))
		noErr(t, "pause with an error", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunPaused, "why"))
		equal(t, "error after pause", b.getRun(r.ID).Error, "")
		noErr(t, "paused again with an error", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunPaused, "again"))
		equal(t, "error after a repeated status", b.getRun(r.ID).Error, "")
		noErr(t, "resume with an error", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunRunning, "go"))
		equal(t, "error after resume", b.getRun(r.ID).Error, "")
		noErr(t, "cancel with an error", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunCancelled, "stop"))
		got := b.getRun(r.ID)
		equal(t, "status", got.Status, orkstate.RunCancelled)
		equal(t, "error after cancel", got.Error, "stop")
	})
}
