package storetest

import (
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// testHardening covers the state machine and fencing defects of issue 11: each case
// failed on a store that had the defect.
func (s *suite) testHardening(t *testing.T) {
	// A fencing token wider than the functions' integer used to be narrowed: 7<<32
	// became 0 ("unfenced") and 1<<32 + 1 became 1, and the stale report was applied.
	s.test(t, "AttemptOutOfRange", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		c := b.claimTask(a)
		for _, attempt := range []int{7 << 32, 1<<32 + c.Attempt, -1} {
			_, err := b.store.SetTaskStates(b.ctx, []orkstate.TaskUpdate{{TaskID: a, Status: orkstate.TaskSuccess, Attempt: attempt}})
			isValidation(t, "SetTaskStates with attempt out of range", err)
			_, err = b.store.UpdateTaskStatus(b.ctx, orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskSuccess, Attempt: attempt})
			isValidation(t, "UpdateTaskStatus with attempt out of range", err)
		}
		equal(t, "task still dispatched", b.taskStatus(a), orkstate.TaskDispatched)

		_, _, js := b.runningTaskWithJobs(1, 0)
		claimed := b.claimJobs(10)
		equal(t, "claimed job", len(claimed), 1)
		for _, attempt := range []int{7 << 32, 1<<32 + claimed[0].Attempts} {
			_, err := b.store.ReportDeferredPolls(b.ctx, []orkstate.DeferredPollReport{
				{JobID: js[0].ID, Result: orkstate.PollCompleted, Attempt: attempt}})
			isValidation(t, "ReportDeferredPolls with attempt out of range", err)
		}
		equal(t, "job still polling", b.getJob(js[0].ID).Status, orkstate.DeferredPolling)
	})

	// A retry, a requeue and an operator's retry start a new attempt: what the ended
	// attempt left (execution name, output) must not reach the next one's
	// dependents.
	s.test(t, "RetryDropsTheAttemptsOutput", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(withRetries(nt("a"), 1), nt("b", "a"))
		a := ts.id("a")
		c1 := b.claimTask(a)
		b.reportOK(orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskRunning, Attempt: c1.Attempt, ExecutionName: "exec-1"}, orkstate.OutcomeApplied)
		b.reportOK(orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskFailed, Attempt: c1.Attempt, Error: "boom",
			Output: raw(`{"partial":true}`)}, orkstate.OutcomeRetrying)
		got := b.getTask(a)
		equal(t, "execution name dropped", got.ExecutionName, "")
		jsonEqual(t, "output dropped", got.Output, nil)
		equal(t, "error kept", got.Error, "boom")

		b.retryDue(a, 1)
		c2 := b.claimTask(a)
		equal(t, "claim's execution name", c2.ExecutionName, "")
		jsonEqual(t, "claim's output", c2.Output, nil)
		b.reportOK(upd(a, orkstate.TaskSuccess, c2.Attempt), orkstate.OutcomeApplied)
		cb := b.claimTask(ts.id("b"))
		jsonEqual(t, "dependent's upstream output of a", cb.UpstreamOutputs["a"], nil)

		// A requeue (running → pending) and an operator's retry drop them too.
		_, rs := b.dagRun(nt("r"), nt("k"))
		r := rs.id("r")
		b.drive(rs.id("k"), orkstate.TaskRunning) // keeps the run open for RetryTask
		c := b.claimTask(r)
		b.reportOK(orkstate.TaskUpdate{TaskID: r, Status: orkstate.TaskRunning, Attempt: c.Attempt, ExecutionName: "exec-r",
			Output: raw(`{"half":1}`)}, orkstate.OutcomeApplied)
		b.reportOK(upd(r, orkstate.TaskPending, c.Attempt), orkstate.OutcomeApplied)
		got = b.getTask(r)
		equal(t, "requeue drops execution name", got.ExecutionName, "")
		jsonEqual(t, "requeue drops output", got.Output, nil)
		c = b.claimTask(r)
		b.reportOK(orkstate.TaskUpdate{TaskID: r, Status: orkstate.TaskSuccess, Attempt: c.Attempt, ExecutionName: "exec-r2",
			Output: raw(`{"done":1}`)}, orkstate.OutcomeApplied)
		noErr(t, "RetryTask", b.store.RetryTask(b.ctx, r))
		got = b.getTask(r)
		equal(t, "operator retry drops execution name", got.ExecutionName, "")
		jsonEqual(t, "operator retry drops output", got.Output, nil)
	})

	// Specs the run already has used to skip the dependency and cycle checks.
	s.test(t, "CreateChecksKnownSpecs", func(t *testing.T, b *bundle) {
		r := b.run()
		b.addTasks(r.ID, nt("a"), nt("b", "a"))
		cases := map[string][]orkstate.NewTask{
			"a known spec with an unknown dependency": {
				{TaskIndex: 0, TaskName: "a", ExecutorType: "e", DependsOn: []string{"ghost"}},
				{TaskIndex: 2, TaskName: "c", ExecutorType: "e", DependsOn: []string{"a"}}},
			"a cycle through a known spec": {
				{TaskIndex: 0, TaskName: "a", ExecutorType: "e", DependsOn: []string{"c"}},
				{TaskIndex: 2, TaskName: "c", ExecutorType: "e", DependsOn: []string{"a"}}},
			"a dependency on a spec skipped under another name": {
				{TaskIndex: 1, TaskName: "renamed", ExecutorType: "e"},
				{TaskIndex: 2, TaskName: "c", ExecutorType: "e", DependsOn: []string{"renamed"}}},
		}
		for what, in := range cases {
			_, err := b.store.CreateDAGTasks(b.ctx, r.ID, in)
			isValidation(t, "CreateDAGTasks with "+what, err)
			equal(t, "tasks after "+what, len(b.listTasks(r.ID)), 2)
		}
	})

	// A task created depending on a task that already failed (or was cancelled)
	// used to stay pending forever, and its run never finished.
	s.test(t, "CreateAfterDependencyFailed", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("gone"), nt("keep"))
		b.drive(ts.id("keep"), orkstate.TaskRunning)
		b.fail(ts.id("a"), "boom", orkstate.OutcomeApplied)
		b.reportOK(upd(ts.id("gone"), orkstate.TaskCancelled, 0), orkstate.OutcomeApplied)
		more := b.addTasks(r.ID,
			orkstate.NewTask{TaskIndex: 3, TaskName: "late", DependsOn: []string{"a"}},
			orkstate.NewTask{TaskIndex: 4, TaskName: "later", DependsOn: []string{"late"}},
			orkstate.NewTask{TaskIndex: 5, TaskName: "orphan", DependsOn: []string{"gone"}},
			orkstate.NewTask{TaskIndex: 6, TaskName: "free"})
		for _, n := range []string{"late", "later"} {
			got := b.getTask(more.id(n))
			equal(t, n+" status", got.Status, orkstate.TaskFailed)
			equal(t, n+" error", got.Error, "dependency failed")
			notNil(t, n+" finished at", got.FinishedAt)
		}
		got := b.getTask(more.id("orphan"))
		equal(t, "orphan status", got.Status, orkstate.TaskCancelled)
		equal(t, "orphan error", got.Error, "dependency cancelled")
		equal(t, "free task pending", b.taskStatus(more.id("free")), orkstate.TaskPending)
		isTrue(t, "nothing failed is dispatchable", !containsID(b.dispatchable(), more.id("late")))

		b.succeed(more.id("free"))
		b.reportOK(upd(ts.id("keep"), orkstate.TaskSuccess, 0), orkstate.OutcomeApplied)
		equal(t, "run finished", b.runStatus(r.ID), orkstate.RunFailed)
	})

	// FailDependentTasks is for the dependents of a failed task.
	s.test(t, "FailDependentsOfUnfailedTask", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("s"), nt("c", "s"))
		for _, st := range []orkstate.TaskStatus{orkstate.TaskPending, orkstate.TaskRunning} {
			if st == orkstate.TaskRunning {
				b.drive(ts.id("a"), st)
			}
			_, err := b.store.FailDependentTasks(b.ctx, ts.id("a"))
			errIs(t, "FailDependentTasks of a "+string(st)+" task", err, orkstate.ErrInvalidTransition)
			equal(t, "dependent untouched", b.taskStatus(ts.id("b")), orkstate.TaskPending)
		}
		b.succeed(ts.id("s"))
		_, err := b.store.FailDependentTasks(b.ctx, ts.id("s"))
		errIs(t, "FailDependentTasks of a succeeded task", err, orkstate.ErrInvalidTransition)
		equal(t, "dependent of the success untouched", b.taskStatus(ts.id("c")), orkstate.TaskPending)
		_, err = b.store.FailDependentTasks(b.ctx, unknownID)
		errIs(t, "FailDependentTasks of an unknown task", err, orkstate.ErrNotFound)
	})

	// One sweep call must get past any number of due lease rows of finished tasks:
	// it used to look at 200 claims' rows per call, find only finished tasks and
	// report nothing, so a caller that sweeps "while the batch was full" stopped
	// with an expired task left.
	s.test(t, "LeaseSweepPastFinishedClaims", func(t *testing.T, b *bundle) {
		const finished = 300
		_, ts := b.legacyRun(finished + 1)
		for i := 0; i < finished; i++ {
			c, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "quick", Limit: 1, Lease: time.Minute})
			noErr(t, "one-task claim", err)
			equal(t, "claimed", len(c), 1)
			b.reportOK(upd(c[0].ID, orkstate.TaskSuccess, c[0].Attempt), orkstate.OutcomeApplied)
		}
		lost, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "killed", Limit: 1, Lease: time.Minute})
		noErr(t, "claim of the killed claimer", err)
		equal(t, "the last task", lost[0].ID, ts[finished].ID)
		b.clock.advance(2 * time.Minute)
		out, err := b.store.ExpireTaskLeases(b.ctx, 10)
		noErr(t, "ExpireTaskLeases", err)
		deepEqual(t, "one sweep call expires the lost task", out,
			[]orkstate.TaskOutcome{{TaskID: lost[0].ID, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskPending}})
	})
}
