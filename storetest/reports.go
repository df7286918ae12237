package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func (s *suite) testTaskReports(t *testing.T) {
	// Every (from, to) pair of the transition table, one batch per from-status:
	// the same status is ignored, an allowed move applied, anything else invalid
	// and left unchanged.
	t.Run("TransitionTable", func(t *testing.T) {
		t.Parallel()
		for _, from := range orkstate.TaskStatuses {
			s.test(t, "From_"+string(from), func(t *testing.T, b *bundle) {
				var specs []orkstate.NewTask
				for _, to := range orkstate.TaskStatuses {
					specs = append(specs, nt("to_"+string(to)))
				}
				_, ts := b.dagRun(specs...)
				var us []orkstate.TaskUpdate
				for _, to := range orkstate.TaskStatuses {
					id := ts.id("to_" + string(to))
					b.drive(id, from)
					us = append(us, upd(id, to, 0))
				}
				before := map[int64]orkstate.Task{}
				for _, u := range us {
					before[u.TaskID] = *b.getTask(u.TaskID)
				}
				out := b.report(us...)
				for i, to := range orkstate.TaskStatuses {
					wantOutcome, wantStatus := orkstate.OutcomeInvalid, from
					switch {
					case to == from:
						wantOutcome = orkstate.OutcomeIgnored
					case orkstate.CanTransitionTask(from, to):
						wantOutcome, wantStatus = orkstate.OutcomeApplied, to
					}
					what := fmt.Sprintf("%s → %s", from, to)
					equal(t, what+" outcome task id", out[i].TaskID, us[i].TaskID)
					equal(t, what+" outcome", out[i].Outcome, wantOutcome)
					equal(t, what+" outcome status", out[i].Status, wantStatus)
					got := b.getTask(us[i].TaskID)
					equal(t, what+" stored status", got.Status, wantStatus)
					if wantOutcome != orkstate.OutcomeApplied {
						deepEqual(t, what+" leaves the row unchanged", *got, before[us[i].TaskID])
					}
				}
			})
		}
	})

	s.test(t, "UpdateTaskStatusSingle", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"))
		a := ts.id("a")
		c := b.claimTask(a)

		o, err := b.store.UpdateTaskStatus(b.ctx, orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskRunning, Attempt: c.Attempt, ExecutionName: "exec-1"})
		noErr(t, "running", err)
		deepEqual(t, "applied", *o, orkstate.TaskOutcome{TaskID: a, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskRunning})
		equal(t, "execution name", b.getTask(a).ExecutionName, "exec-1")

		o, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskRunning, c.Attempt))
		noErr(t, "duplicate running", err)
		equal(t, "duplicate is ignored", o.Outcome, orkstate.OutcomeIgnored)

		_, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskSuccess, c.Attempt+1))
		errIs(t, "newer attempt than the task's", err, orkstate.ErrStale)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskDispatched, 0))
		errIs(t, "report to dispatched", err, orkstate.ErrInvalidTransition)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskPaused, 0))
		errIs(t, "running → paused", err, orkstate.ErrInvalidTransition)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskStatus("bogus"), 0))
		isValidation(t, "unknown status", err)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskStatus(""), 0))
		isValidation(t, "empty status", err)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(unknownID, orkstate.TaskSuccess, 0))
		errIs(t, "unknown task", err, orkstate.ErrNotFound)
		equal(t, "still running", b.taskStatus(a), orkstate.TaskRunning)

		o, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskSuccess, c.Attempt))
		noErr(t, "success", err)
		equal(t, "success applied", o.Outcome, orkstate.OutcomeApplied)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(a, orkstate.TaskFailed, 0))
		errIs(t, "success → failed", err, orkstate.ErrInvalidTransition)
		equal(t, "still success", b.taskStatus(a), orkstate.TaskSuccess)
	})

	s.test(t, "Fields", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		before := time.Now()
		c := b.claimTask(a)
		equal(t, "attempt", c.Attempt, 1)
		u := orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskRunning, Attempt: 1, ExecutionName: "exec-a", Output: raw(`{"partial":true}`)}
		b.reportOK(u, orkstate.OutcomeApplied)
		got := b.getTask(a)
		equal(t, "execution name", got.ExecutionName, "exec-a")
		jsonEqual(t, "output", got.Output, raw(`{"partial":true}`))
		between(t, "started at", got.StartedAt, before, time.Now(), time.Second)
		startedAt := *got.StartedAt

		// A duplicate changes nothing, not even fields.
		u.ExecutionName, u.Output = "exec-other", raw(`{"other":1}`)
		b.reportOK(u, orkstate.OutcomeIgnored)
		got = b.getTask(a)
		equal(t, "execution name after duplicate", got.ExecutionName, "exec-a")
		jsonEqual(t, "output after duplicate", got.Output, raw(`{"partial":true}`))
		sameTime(t, "started at after duplicate", got.StartedAt, startedAt)

		// Empty strings and nil output keep the stored values.
		b.reportOK(orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskSuccess, Attempt: 1}, orkstate.OutcomeApplied)
		got = b.getTask(a)
		equal(t, "execution name kept", got.ExecutionName, "exec-a")
		jsonEqual(t, "output kept", got.Output, raw(`{"partial":true}`))
		notNil(t, "finished at", got.FinishedAt)
		isNil(t, "lease cleared", got.LeaseExpiresAt)
		sameTime(t, "started at kept", got.StartedAt, startedAt)

		// An invalid report changes no field either.
		b.reportOK(orkstate.TaskUpdate{TaskID: a, Status: orkstate.TaskRunning, ExecutionName: "late", Error: "late"}, orkstate.OutcomeInvalid)
		got = b.getTask(a)
		equal(t, "execution name after invalid", got.ExecutionName, "exec-a")
		equal(t, "error after invalid", got.Error, "")
	})

	s.test(t, "ClaimFieldsAndRequeue", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		c := b.claimTask(a)
		b.reportOK(upd(a, orkstate.TaskRunning, c.Attempt), orkstate.OutcomeApplied)
		j := b.job(a)
		b.reportOK(upd(a, orkstate.TaskPending, c.Attempt), orkstate.OutcomeApplied)
		got := b.getTask(a)
		equal(t, "status", got.Status, orkstate.TaskPending)
		equal(t, "attempts kept", got.Attempts, 1)
		equal(t, "claimed by cleared", got.ClaimedBy, "")
		isNil(t, "lease cleared", got.LeaseExpiresAt)
		isNil(t, "dispatched at cleared", got.DispatchedAt)
		isNil(t, "started at cleared", got.StartedAt)
		isNil(t, "retry at cleared", got.RetryAt)
		isNil(t, "finished at", got.FinishedAt)
		equal(t, "requeue cancels the deferred job", b.getJob(j.ID).Status, orkstate.DeferredCancelled)
		isTrue(t, "dispatchable again", containsID(b.dispatchable(), a))
		c2 := b.claimTask(a)
		equal(t, "next claim's attempt", c2.Attempt, 2)
	})

	s.test(t, "TerminalCancelsDeferredJobs", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"))
		b.drive(ts.id("a"), orkstate.TaskRunning)
		ja := b.job(ts.id("a"))
		jb := b.job(ts.id("b"))
		b.reportOK(upd(ts.id("a"), orkstate.TaskSuccess, 0), orkstate.OutcomeApplied)
		b.reportOK(upd(ts.id("b"), orkstate.TaskCancelled, 0), orkstate.OutcomeApplied)
		equal(t, "job of a task reported success", b.getJob(ja.ID).Status, orkstate.DeferredCancelled)
		equal(t, "job of a cancelled task", b.getJob(jb.ID).Status, orkstate.DeferredCancelled)
	})

	s.test(t, "Stale", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		c := b.claimTask(a)
		out := b.report(upd(a, orkstate.TaskRunning, c.Attempt+1), upd(a, orkstate.TaskSuccess, 7))
		for i := range out {
			equal(t, "wrong attempt outcome", out[i].Outcome, orkstate.OutcomeStale)
			equal(t, "status after stale", out[i].Status, orkstate.TaskDispatched)
		}
		// Stale is checked before the transition table and before "ignored".
		out = b.report(upd(a, orkstate.TaskDispatched, 9))
		equal(t, "stale before invalid", out[0].Outcome, orkstate.OutcomeStale)
		b.reportOK(upd(a, orkstate.TaskRunning, 0), orkstate.OutcomeApplied) // unfenced
		out = b.report(upd(a, orkstate.TaskRunning, 9))
		equal(t, "stale before ignored", out[0].Outcome, orkstate.OutcomeStale)
		equal(t, "task", b.taskStatus(a), orkstate.TaskRunning)
	})

	s.test(t, "BatchSameTaskTwice", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("fast"), nt("other"))
		f, o := ts.id("fast"), ts.id("other")
		cf := b.claimTask(f)
		co := b.claimTask(o)
		out := b.report(upd(f, orkstate.TaskRunning, cf.Attempt), upd(f, orkstate.TaskSuccess, cf.Attempt))
		deepEqual(t, "running then success", out, []orkstate.TaskOutcome{
			{TaskID: f, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskRunning},
			{TaskID: f, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskSuccess},
		})
		equal(t, "fast", b.taskStatus(f), orkstate.TaskSuccess)
		out = b.report(upd(o, orkstate.TaskSuccess, co.Attempt), upd(o, orkstate.TaskRunning, co.Attempt))
		deepEqual(t, "success then running", out, []orkstate.TaskOutcome{
			{TaskID: o, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskSuccess},
			{TaskID: o, Outcome: orkstate.OutcomeInvalid, Status: orkstate.TaskSuccess},
		})
		equal(t, "other", b.taskStatus(o), orkstate.TaskSuccess)
	})

	s.test(t, "BatchUnknownIDs", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"), nt("c"))
		a, bb, c := ts.id("a"), ts.id("b"), ts.id("c")
		b.drive(c, orkstate.TaskSuccess)
		out := b.report(
			upd(a, orkstate.TaskRunning, 0),
			upd(unknownID, orkstate.TaskSuccess, 0),
			upd(c, orkstate.TaskFailed, 0),
			upd(-1, orkstate.TaskRunning, 0),
			upd(bb, orkstate.TaskCancelled, 0),
		)
		deepEqual(t, "outcomes in input order", out, []orkstate.TaskOutcome{
			{TaskID: a, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskRunning},
			{TaskID: unknownID, Outcome: orkstate.OutcomeNotFound, Status: ""},
			{TaskID: c, Outcome: orkstate.OutcomeInvalid, Status: orkstate.TaskSuccess},
			{TaskID: -1, Outcome: orkstate.OutcomeNotFound, Status: ""},
			{TaskID: bb, Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskCancelled},
		})
		equal(t, "a", b.taskStatus(a), orkstate.TaskRunning)
		equal(t, "b", b.taskStatus(bb), orkstate.TaskCancelled)
	})

	s.test(t, "BatchBadInputChangesNothing", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b"), nt("c", "a"))
		a, bb := ts.id("a"), ts.id("b")
		before := b.listTasks(r.ID)
		cases := map[string][]orkstate.TaskUpdate{
			"unknown status": {upd(a, orkstate.TaskSuccess, 0), upd(bb, orkstate.TaskStatus("bogus"), 0)},
			"empty status":   {upd(a, orkstate.TaskSuccess, 0), upd(bb, orkstate.TaskStatus(""), 0)},
			"invalid JSON":   {upd(a, orkstate.TaskSuccess, 0), {TaskID: bb, Status: orkstate.TaskSuccess, Output: raw(`{"x":`)}},
		}
		for what, us := range cases {
			_, err := b.store.SetTaskStates(b.ctx, us)
			isValidation(t, "SetTaskStates with "+what, err)
			deepEqual(t, "tasks after "+what, b.listTasks(r.ID), before)
			equal(t, "run after "+what, b.runStatus(r.ID), orkstate.RunRunning)
		}
	})

	s.test(t, "BatchEmpty", func(t *testing.T, b *bundle) {
		b.legacyRun(1)
		out, err := b.store.SetTaskStates(b.ctx, nil)
		noErr(t, "SetTaskStates(nil)", err)
		equal(t, "no outcomes", len(out), 0)
	})
}
