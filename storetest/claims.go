package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func (s *suite) testClaims(t *testing.T) {
	s.test(t, "DispatchInfo", func(t *testing.T, b *bundle) {
		wf := b.workflow(named("claim-wf"), func(n *orkstate.NewWorkflow) {
			n.JobName, n.Project, n.Region = "the-job", "the-project", "the-region"
		})
		r := b.run(wf)
		ts := b.addTasks(r.ID, nt("a"), nt("b"), orkstate.NewTask{TaskIndex: 2, TaskName: "c", DependsOn: []string{"a", "b"}, ExecutorType: "exec-c", Params: raw(`{"q":1}`)})
		ca := b.claimTask(ts.id("a"))
		b.reportOK(orkstate.TaskUpdate{TaskID: ts.id("a"), Status: orkstate.TaskSuccess, Attempt: ca.Attempt, Output: raw(`{"rows":3}`)}, orkstate.OutcomeApplied)
		b.succeed(ts.id("b"))

		before := time.Now()
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "sched-7", Limit: 10})
		noErr(t, "ClaimTasks", err)
		after := time.Now()
		equal(t, "claimed", len(got), 1)
		c := got[0]
		equal(t, "id", c.ID, ts.id("c"))
		equal(t, "attempt", c.Attempt, 1)
		equal(t, "attempts", c.Attempts, 1)
		equal(t, "status", c.Status, orkstate.TaskDispatched)
		equal(t, "claimed by", c.ClaimedBy, "sched-7")
		equal(t, "executor type", c.ExecutorType, "exec-c")
		jsonEqual(t, "params", c.Params, raw(`{"q":1}`))
		between(t, "dispatched at", c.DispatchedAt, before, after, time.Second)
		between(t, "default lease 5 min", c.LeaseExpiresAt, before.Add(5*time.Minute), after.Add(5*time.Minute), time.Second)
		equal(t, "workflow id", c.WorkflowID, wf.ID)
		equal(t, "workflow name", c.WorkflowName, "claim-wf")
		equal(t, "job name", c.JobName, "the-job")
		equal(t, "project", c.Project, "the-project")
		equal(t, "region", c.Region, "the-region")
		equal(t, "upstream outputs", len(c.UpstreamOutputs), 2)
		jsonEqual(t, "a's output", c.UpstreamOutputs["a"], raw(`{"rows":3}`))
		_, hasB := c.UpstreamOutputs["b"]
		isTrue(t, "b named without output", hasB)
		jsonEqual(t, "b's output", c.UpstreamOutputs["b"], nil)

		stored := b.getTask(c.ID)
		equal(t, "stored status", stored.Status, orkstate.TaskDispatched)
		equal(t, "stored claimer", stored.ClaimedBy, "sched-7")
		equal(t, "stored attempts", stored.Attempts, 1)
	})

	s.test(t, "OrderLimitLease", func(t *testing.T, b *bundle) {
		_, ts := b.legacyRun(5)
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 2})
		noErr(t, "ClaimTasks(2)", err)
		deepEqual(t, "first two by id", claimedIDs(got), tasksIDs(ts[:2]))
		before := time.Now()
		got, err = b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 10, Lease: 90 * time.Second})
		noErr(t, "ClaimTasks(10)", err)
		deepEqual(t, "the rest by id", claimedIDs(got), tasksIDs(ts[2:]))
		between(t, "custom lease", got[0].LeaseExpiresAt, before.Add(90*time.Second), time.Now().Add(90*time.Second), time.Second)
		got, err = b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 10})
		noErr(t, "ClaimTasks again", err)
		equal(t, "nothing left", len(got), 0)
	})

	s.test(t, "ExecutorTypes", func(t *testing.T, b *bundle) {
		r := b.run()
		ts := b.addTasks(r.ID,
			orkstate.NewTask{TaskIndex: 0, TaskName: "x1", ExecutorType: "x"},
			orkstate.NewTask{TaskIndex: 1, TaskName: "y1", ExecutorType: "y"},
			orkstate.NewTask{TaskIndex: 2, TaskName: "z1", ExecutorType: "z"},
			orkstate.NewTask{TaskIndex: 3, TaskName: "y2", ExecutorType: "y"},
		)
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 10, ExecutorTypes: []string{"y", "z"}})
		noErr(t, "ClaimTasks(y, z)", err)
		deepEqual(t, "only y and z", claimedIDs(got), []int64{ts.id("y1"), ts.id("z1"), ts.id("y2")})
		got, err = b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 10, ExecutorTypes: []string{"nope"}})
		noErr(t, "ClaimTasks(nope)", err)
		equal(t, "unknown type claims nothing", len(got), 0)
		equal(t, "x untouched", b.taskStatus(ts.id("x1")), orkstate.TaskPending)
	})

	s.test(t, "OnlyReady", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c", "b"), nt("p"))
		b.drive(ts.id("p"), orkstate.TaskPaused)
		b.run() // a pending run has no tasks to claim
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 100})
		noErr(t, "ClaimTasks", err)
		deepEqual(t, "only the root", claimedIDs(got), []int64{ts.id("a")})
		b.reportOK(upd(ts.id("a"), orkstate.TaskSuccess, got[0].Attempt), orkstate.OutcomeApplied)
		equal(t, "b unmet after a", b.getTask(ts.id("b")).UnmetDeps, 0)
		equal(t, "c unmet", b.getTask(ts.id("c")).UnmetDeps, 1)
		got, err = b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 100})
		noErr(t, "ClaimTasks", err)
		deepEqual(t, "then b", claimedIDs(got), []int64{ts.id("b")})
	})

	s.test(t, "BadInput", func(t *testing.T, b *bundle) {
		_, ts := b.legacyRun(2)
		cases := map[string]orkstate.ClaimParams{
			"empty claimer":     {Claimer: "", Limit: 1},
			"zero limit":        {Claimer: claimer, Limit: 0},
			"negative limit":    {Claimer: claimer, Limit: -1},
			"limit above 10000": {Claimer: claimer, Limit: orkstate.MaxClaimLimit + 1},
		}
		for what, p := range cases {
			_, err := b.store.ClaimTasks(b.ctx, p)
			isValidation(t, "ClaimTasks with "+what, err)
		}
		deepEqual(t, "nothing claimed", b.dispatchable(), tasksIDs(ts))
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: orkstate.MaxClaimLimit})
		noErr(t, "ClaimTasks at the max limit", err)
		equal(t, "claimed", len(got), 2)
	})
}

func (s *suite) testLeases(t *testing.T) {
	s.test(t, "ExpiredLeaseAndStaleReport", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("short"), nt("long"), nt("started"), nt("after", "short"))
		short, long, started := ts.id("short"), ts.id("long"), ts.id("started")
		typeOf := func(id int64) []string { return []string{b.getTask(id).ExecutorType} }
		c1, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "old", Limit: 1, ExecutorTypes: typeOf(short), Lease: time.Minute})
		noErr(t, "claim short", err)
		equal(t, "claimed short", len(c1), 1)
		b.claimTask(long) // default lease: 5 minutes
		cs, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "old", Limit: 1, ExecutorTypes: typeOf(started), Lease: time.Minute})
		noErr(t, "claim started", err)
		b.reportOK(upd(started, orkstate.TaskRunning, cs[0].Attempt), orkstate.OutcomeApplied)

		outs, err := b.store.ExpireTaskLeases(b.ctx, 100)
		noErr(t, "ExpireTaskLeases", err)
		equal(t, "nothing expired before the lease ends", len(outs), 0)
		b.clock.advance(2 * time.Minute)
		outs, err = b.store.ExpireTaskLeases(b.ctx, 100)
		noErr(t, "ExpireTaskLeases", err)
		deepEqual(t, "expired", outs, []orkstate.TaskOutcome{{TaskID: short, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskPending}})
		got := b.getTask(short)
		equal(t, "status", got.Status, orkstate.TaskPending)
		equal(t, "attempts kept", got.Attempts, 1)
		equal(t, "claimer cleared", got.ClaimedBy, "")
		isNil(t, "lease cleared", got.LeaseExpiresAt)
		isNil(t, "dispatched at cleared", got.DispatchedAt)
		equal(t, "long lease kept", b.taskStatus(long), orkstate.TaskDispatched)
		equal(t, "running task not expired", b.taskStatus(started), orkstate.TaskRunning)

		c2, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "new", Limit: 1, ExecutorTypes: typeOf(short)})
		noErr(t, "reclaim", err)
		equal(t, "reclaimed", len(c2), 1)
		equal(t, "new attempt", c2[0].Attempt, 2)
		equal(t, "new claimer", c2[0].ClaimedBy, "new")

		out := b.report(orkstate.TaskUpdate{TaskID: short, Status: orkstate.TaskSuccess, Attempt: c1[0].Attempt, Output: raw(`{"late":true}`)})
		deepEqual(t, "old claimer's late report", out[0], orkstate.TaskOutcome{TaskID: short, Outcome: orkstate.OutcomeStale, Status: orkstate.TaskDispatched})
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(short, orkstate.TaskFailed, c1[0].Attempt))
		errIs(t, "old claimer's late single report", err, orkstate.ErrStale)
		got = b.getTask(short)
		equal(t, "still dispatched", got.Status, orkstate.TaskDispatched)
		jsonEqual(t, "no late output", got.Output, nil)
		equal(t, "dependent still blocked", b.getTask(ts.id("after")).UnmetDeps, 1)

		b.reportOK(upd(short, orkstate.TaskSuccess, c2[0].Attempt), orkstate.OutcomeApplied)
		equal(t, "dependent unblocked", b.getTask(ts.id("after")).UnmetDeps, 0)

		for _, lim := range []int{0, -1} {
			_, err = b.store.ExpireTaskLeases(b.ctx, lim)
			isValidation(t, fmt.Sprintf("ExpireTaskLeases(%d)", lim), err)
		}
	})

	// A task requeued and claimed again is named by both claims' leases; when both
	// have ended, the sweep returns it once. pgstore read the task once per lease
	// row and returned a second, 'ignored' row for it, which SQLite did not.
	s.test(t, "ExpireReturnsEachTaskOnce", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"))
		a := ts.id("a")
		typeOf := []string{b.getTask(a).ExecutorType}
		claim := func() orkstate.ClaimedTask {
			c, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1, ExecutorTypes: typeOf, Lease: time.Minute})
			noErr(t, "ClaimTasks", err)
			equal(t, "claimed", len(c), 1)
			return c[0]
		}
		c1 := claim()
		b.reportOK(upd(a, orkstate.TaskPending, c1.Attempt), orkstate.OutcomeApplied) // a requeue
		c2 := claim()
		equal(t, "second attempt", c2.Attempt, 2)
		b.claimTask(ts.id("b")) // default lease: 5 minutes
		b.clock.advance(6 * time.Minute)
		out, err := b.store.ExpireTaskLeases(b.ctx, 100)
		noErr(t, "ExpireTaskLeases", err)
		deepEqual(t, "one outcome per task", out, []orkstate.TaskOutcome{
			{TaskID: a, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskPending},
			{TaskID: ts.id("b"), Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskPending},
		})
		out, err = b.store.ExpireTaskLeases(b.ctx, 100)
		noErr(t, "ExpireTaskLeases again", err)
		equal(t, "nothing left", len(out), 0)
	})

	s.test(t, "Timeouts", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(
			withTimeout(nt("once"), 60),
			withTimeout(withRetries(nt("again"), 1), 60),
			withTimeout(nt("dispatched"), 60),
			nt("forever"),
			nt("after", "once"),
		)
		for _, n := range []string{"once", "again", "forever"} {
			b.drive(ts.id(n), orkstate.TaskRunning)
		}
		b.drive(ts.id("dispatched"), orkstate.TaskDispatched)
		j := b.job(ts.id("once"))

		o, err := b.store.FailTimedOutTasks(b.ctx, 100)
		noErr(t, "FailTimedOutTasks", err)
		equal(t, "nothing timed out within the minute", len(o), 0)
		b.clock.advance(2 * time.Minute)
		o, err = b.store.FailTimedOutTasks(b.ctx, 100)
		noErr(t, "FailTimedOutTasks", err)
		got := map[int64]orkstate.TaskOutcome{}
		for _, x := range o {
			if _, dup := got[x.TaskID]; dup {
				t.Fatalf("task %d timed out twice", x.TaskID)
			}
			got[x.TaskID] = x
		}
		equal(t, "timed out", len(got), 3)
		o, err = b.store.FailTimedOutTasks(b.ctx, 100)
		noErr(t, "FailTimedOutTasks again", err)
		equal(t, "nothing times out twice", len(o), 0)
		deepEqual(t, "once", got[ts.id("once")], orkstate.TaskOutcome{TaskID: ts.id("once"), Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskFailed})
		deepEqual(t, "again", got[ts.id("again")], orkstate.TaskOutcome{TaskID: ts.id("again"), Outcome: orkstate.OutcomeRetrying, Status: orkstate.TaskPending})
		deepEqual(t, "dispatched", got[ts.id("dispatched")], orkstate.TaskOutcome{TaskID: ts.id("dispatched"), Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskFailed})

		for _, n := range []string{"once", "again", "dispatched"} {
			equal(t, n+" error", b.getTask(ts.id(n)).Error, "timeout after 60s")
		}
		notNil(t, "retry at of again", b.getTask(ts.id("again")).RetryAt)
		equal(t, "deferred job cancelled", b.getJob(j.ID).Status, orkstate.DeferredCancelled)
		after := b.getTask(ts.id("after"))
		equal(t, "dependent failed", after.Status, orkstate.TaskFailed)
		equal(t, "dependent error", after.Error, "dependency failed")
		equal(t, "no timeout, still running", b.taskStatus(ts.id("forever")), orkstate.TaskRunning)
		equal(t, "run still running", b.runStatus(r.ID), orkstate.RunRunning)

		for _, lim := range []int{0, -1} {
			_, err := b.store.FailTimedOutTasks(b.ctx, lim)
			isValidation(t, fmt.Sprintf("FailTimedOutTasks(%d)", lim), err)
		}
	})
}

func (s *suite) testRetries(t *testing.T) {
	s.test(t, "FailBeforeClaim", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(withRetries(nt("retry"), 1), nt("final"))
		before := b.clock.now()
		out := b.report(
			orkstate.TaskUpdate{TaskID: ts.id("retry"), Status: orkstate.TaskFailed, Error: "e1"},
			orkstate.TaskUpdate{TaskID: ts.id("final"), Status: orkstate.TaskFailed, Error: "e2"},
		)
		deepEqual(t, "outcomes", out, []orkstate.TaskOutcome{
			{TaskID: ts.id("retry"), Outcome: orkstate.OutcomeRetrying, Status: orkstate.TaskPending},
			{TaskID: ts.id("final"), Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskFailed},
		})
		got := b.getTask(ts.id("retry"))
		between(t, "retry at (attempt taken as 1)", got.RetryAt, before.Add(orkstate.RetryBackoff(1)), b.clock.now().Add(orkstate.RetryBackoff(1)), 250*time.Millisecond)
		equal(t, "error kept", got.Error, "e1")
		equal(t, "final error", b.getTask(ts.id("final")).Error, "e2")
	})

	s.test(t, "BackoffGrows", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(withRetries(nt("a"), 2))
		a := ts.id("a")
		before := b.clock.now()
		c1 := b.fail(a, "first", orkstate.OutcomeRetrying)
		after := b.clock.now()
		got := b.getTask(a)
		equal(t, "status", got.Status, orkstate.TaskPending)
		equal(t, "attempts", got.Attempts, 1)
		equal(t, "error kept", got.Error, "first")
		between(t, "retry at = now + 1s", got.RetryAt, before.Add(orkstate.RetryBackoff(1)), after.Add(orkstate.RetryBackoff(1)), 250*time.Millisecond)
		isNil(t, "finished at", got.FinishedAt)
		isNil(t, "dispatched at", got.DispatchedAt)
		isNil(t, "started at", got.StartedAt)
		isNil(t, "lease", got.LeaseExpiresAt)
		equal(t, "claimed by", got.ClaimedBy, "")
		// The clock runs with real time (plus what the test moved it by): a machine
		// that stalls for the whole backoff between the report and this read makes
		// the retry due, and that is no error.
		early := containsID(b.dispatchable(), a) && b.clock.now().Add(250*time.Millisecond).Before(*got.RetryAt)
		isTrue(t, "not dispatchable before retry at", !early)

		b.retryDue(a, 1)
		start := time.Now()
		c2 := b.claimTask(a)
		equal(t, "second attempt", c2.Attempt, 2)
		out := b.report(upd(a, orkstate.TaskFailed, c1.Attempt))
		equal(t, "first attempt's late failure", out[0].Outcome, orkstate.OutcomeStale)
		u := upd(a, orkstate.TaskFailed, c2.Attempt)
		u.Error = "second"
		b.reportOK(u, orkstate.OutcomeRetrying)
		got = b.getTask(a)
		// The clock was moved: the claim's dispatched_at is the clock's time of it,
		// and the report came after it.
		between(t, "retry at = now + 2s", got.RetryAt, c2.DispatchedAt.Add(orkstate.RetryBackoff(2)),
			c2.DispatchedAt.Add(orkstate.RetryBackoff(2)+time.Since(start)), 250*time.Millisecond)
		equal(t, "error replaced", got.Error, "second")
	})

	s.test(t, "Exhausted", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(withRetries(nt("a"), 1), nt("b", "a"))
		a := ts.id("a")
		b.fail(a, "first", orkstate.OutcomeRetrying)
		equal(t, "dependent untouched by a retry", b.taskStatus(ts.id("b")), orkstate.TaskPending)
		equal(t, "dependent error", b.getTask(ts.id("b")).Error, "")
		b.retryDue(a, 1)
		b.fail(a, "second", orkstate.OutcomeApplied)
		got := b.getTask(a)
		equal(t, "status", got.Status, orkstate.TaskFailed)
		equal(t, "attempts", got.Attempts, 2)
		equal(t, "error", got.Error, "second")
		notNil(t, "finished at", got.FinishedAt)
		dep := b.getTask(ts.id("b"))
		equal(t, "dependent", dep.Status, orkstate.TaskFailed)
		equal(t, "dependent error", dep.Error, "dependency failed")
		equal(t, "run", b.runStatus(r.ID), orkstate.RunFailed)
	})

	s.test(t, "RetryTaskFailed", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c", "b"), nt("keep"))
		b.drive(ts.id("keep"), orkstate.TaskRunning)
		b.fail(ts.id("a"), "boom", orkstate.OutcomeApplied)
		for _, n := range []string{"b", "c"} {
			got := b.getTask(ts.id(n))
			equal(t, n+" failed", got.Status, orkstate.TaskFailed)
			equal(t, n+" error", got.Error, "dependency failed")
		}
		noErr(t, "RetryTask", b.store.RetryTask(b.ctx, ts.id("a")))
		a := b.getTask(ts.id("a"))
		equal(t, "a status", a.Status, orkstate.TaskPending)
		equal(t, "a attempts reset", a.Attempts, 0)
		equal(t, "a error cleared", a.Error, "")
		isNil(t, "a finished at cleared", a.FinishedAt)
		isNil(t, "a dispatched at cleared", a.DispatchedAt)
		isNil(t, "a retry at", a.RetryAt)
		equal(t, "a unmet", a.UnmetDeps, 0)
		for _, n := range []string{"b", "c"} {
			got := b.getTask(ts.id(n))
			equal(t, n+" back to pending", got.Status, orkstate.TaskPending)
			equal(t, n+" error cleared", got.Error, "")
			equal(t, n+" unmet", got.UnmetDeps, 1)
			isNil(t, n+" finished at", got.FinishedAt)
		}
		deepEqual(t, "dispatchable", b.dispatchable(), []int64{ts.id("a")})
		c := b.claimTask(ts.id("a"))
		equal(t, "attempt after operator retry", c.Attempt, 1)
		b.reportOK(upd(ts.id("a"), orkstate.TaskSuccess, 1), orkstate.OutcomeApplied)
		b.succeed(ts.id("b"))
		b.succeed(ts.id("c"))
		b.reportOK(upd(ts.id("keep"), orkstate.TaskSuccess, 0), orkstate.OutcomeApplied)
		equal(t, "run", b.runStatus(r.ID), orkstate.RunSuccess)
	})

	s.test(t, "RetryTaskSucceeded", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("own", "a"), nt("keep"))
		b.drive(ts.id("keep"), orkstate.TaskRunning)
		b.succeed(ts.id("a"))
		b.fail(ts.id("own"), "own failure", orkstate.OutcomeApplied)
		equal(t, "b ready", b.getTask(ts.id("b")).UnmetDeps, 0)
		noErr(t, "RetryTask", b.store.RetryTask(b.ctx, ts.id("a")))
		equal(t, "a", b.taskStatus(ts.id("a")), orkstate.TaskPending)
		jsonEqual(t, "a output cleared", b.getTask(ts.id("a")).Output, nil)
		bt := b.getTask(ts.id("b"))
		equal(t, "b still pending", bt.Status, orkstate.TaskPending)
		equal(t, "b counter incremented back", bt.UnmetDeps, 1)
		own := b.getTask(ts.id("own"))
		equal(t, "own failure is not reset", own.Status, orkstate.TaskFailed)
		equal(t, "own error kept", own.Error, "own failure")
		deepEqual(t, "dispatchable", b.dispatchable(), []int64{ts.id("a")})
	})

	s.test(t, "RetryTaskCancelled", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("keep"))
		b.drive(ts.id("keep"), orkstate.TaskRunning)
		b.reportOK(upd(ts.id("a"), orkstate.TaskCancelled, 0), orkstate.OutcomeApplied)
		bt := b.getTask(ts.id("b"))
		equal(t, "b cancelled", bt.Status, orkstate.TaskCancelled)
		equal(t, "b error", bt.Error, "dependency cancelled")
		noErr(t, "RetryTask", b.store.RetryTask(b.ctx, ts.id("a")))
		equal(t, "a", b.taskStatus(ts.id("a")), orkstate.TaskPending)
		bt = b.getTask(ts.id("b"))
		equal(t, "b back to pending", bt.Status, orkstate.TaskPending)
		equal(t, "b unmet", bt.UnmetDeps, 1)
	})

	s.test(t, "RetryTaskRefusals", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"), nt("c"))
		b.drive(ts.id("b"), orkstate.TaskRunning)
		b.drive(ts.id("c"), orkstate.TaskDispatched)
		for _, n := range []string{"a", "b", "c"} {
			errIs(t, "RetryTask of unfinished "+n, b.store.RetryTask(b.ctx, ts.id(n)), orkstate.ErrInvalidTransition)
		}
		equal(t, "b still running", b.taskStatus(ts.id("b")), orkstate.TaskRunning)

		done, dts := b.dagRun(nt("x"))
		b.fail(dts.id("x"), "boom", orkstate.OutcomeApplied)
		equal(t, "run failed", b.runStatus(done.ID), orkstate.RunFailed)
		errIs(t, "RetryTask in a terminal run", b.store.RetryTask(b.ctx, dts.id("x")), orkstate.ErrInvalidTransition)
		equal(t, "x still failed", b.taskStatus(dts.id("x")), orkstate.TaskFailed)
		equal(t, "run still failed", b.runStatus(done.ID), orkstate.RunFailed)
	})

	s.test(t, "FailDependentTasks", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("keep"))
		b.drive(ts.id("keep"), orkstate.TaskRunning)
		b.fail(ts.id("a"), "boom", orkstate.OutcomeApplied)
		n, err := b.store.FailDependentTasks(b.ctx, ts.id("a"))
		noErr(t, "FailDependentTasks with nothing to fail", err)
		equal(t, "failed", n, 0)

		// Tasks added later that depend on the failed task.
		more := b.addTasks(r.ID, orkstate.NewTask{TaskIndex: 2, TaskName: "b", DependsOn: []string{"a"}},
			orkstate.NewTask{TaskIndex: 3, TaskName: "c", DependsOn: []string{"b"}})
		already := 0
		for _, x := range []string{"b", "c"} {
			if b.taskStatus(more.id(x)) == orkstate.TaskFailed {
				already++
			}
		}
		n, err = b.store.FailDependentTasks(b.ctx, ts.id("a"))
		noErr(t, "FailDependentTasks", err)
		equal(t, "failed transitively (with those failed at creation)", n+already, 2)
		for _, x := range []string{"b", "c"} {
			got := b.getTask(more.id(x))
			equal(t, x+" status", got.Status, orkstate.TaskFailed)
			equal(t, x+" error", got.Error, "dependency failed")
		}
		equal(t, "keep untouched", b.taskStatus(ts.id("keep")), orkstate.TaskRunning)
		n, err = b.store.FailDependentTasks(b.ctx, ts.id("a"))
		noErr(t, "FailDependentTasks again", err)
		equal(t, "nothing left to fail", n, 0)
	})
}
