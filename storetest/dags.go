package storetest

import (
	"fmt"
	"sort"
	"testing"

	"github.com/orkstate/orkstate"
)

// dagCase is a DAG, the task that fails in its middle, and what must follow.
type dagCase struct {
	name  string
	specs []orkstate.NewTask
	// before succeed first, in order; fail then fails.
	before []string
	fail   string
	// dependents are exactly the tasks failed with "dependency failed".
	dependents []string
}

func dagCases() []dagCase {
	chain := []orkstate.NewTask{nt("a"), nt("b", "a"), nt("c", "b"), nt("d", "c")}
	fan := []orkstate.NewTask{nt("root")}
	var mids []string
	for i := 1; i <= 5; i++ {
		m := fmt.Sprintf("m%d", i)
		mids = append(mids, m)
		fan = append(fan, nt(m, "root"))
	}
	fan = append(fan, nt("sink", mids...), nt("after", "sink"))
	diamond := []orkstate.NewTask{nt("a"), nt("b", "a"), nt("c", "a"), nt("d", "b", "c"), nt("e", "c")}
	return []dagCase{
		{name: "Chain", specs: chain, before: []string{"a"}, fail: "b", dependents: []string{"c", "d"}},
		{name: "FanOutFanIn", specs: fan, before: []string{"root", "m1"}, fail: "m3", dependents: []string{"sink", "after"}},
		{name: "Diamond", specs: diamond, before: []string{"a"}, fail: "b", dependents: []string{"d"}},
	}
}

func names(ts tasks) []string {
	var out []string
	for n := range ts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *suite) testDAGs(t *testing.T) {
	for _, dc := range dagCases() {
		s.test(t, dc.name+"AllSucceed", func(t *testing.T, b *bundle) {
			r, ts := b.dagRun(dc.specs...)
			done := map[string]bool{}
			for rounds := 0; len(done) < len(ts); rounds++ {
				if rounds > len(ts) {
					t.Fatalf("no progress: done %v of %v", done, names(ts))
				}
				got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 100})
				noErr(t, "ClaimTasks", err)
				isTrue(t, "something claimable while unfinished", len(got) > 0)
				var us []orkstate.TaskUpdate
				for _, c := range got {
					for _, dep := range c.DependsOn {
						isTrue(t, c.TaskName+" claimed only after "+dep, done[dep])
					}
					equal(t, "upstream outputs of "+c.TaskName, len(c.UpstreamOutputs), len(c.DependsOn))
					jsonEqual(t, "upstream output", c.UpstreamOutputs[firstOr(c.DependsOn)], outputFor(firstOr(c.DependsOn)))
					us = append(us,
						upd(c.ID, orkstate.TaskRunning, c.Attempt),
						orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt, Output: outputFor(c.TaskName)})
				}
				equal(t, "run running before the end", b.runStatus(r.ID), orkstate.RunRunning)
				for _, o := range b.report(us...) {
					equal(t, "outcome", o.Outcome, orkstate.OutcomeApplied)
				}
				for _, c := range got {
					done[c.TaskName] = true
				}
			}
			got := b.getRun(r.ID)
			equal(t, "run", got.Status, orkstate.RunSuccess)
			notNil(t, "run finished at", got.FinishedAt)
			equal(t, "nothing left", len(b.dispatchable()), 0)
		})

		s.test(t, dc.name+"FailureInTheMiddle", func(t *testing.T, b *bundle) {
			r, ts := b.dagRun(dc.specs...)
			for _, n := range dc.before {
				b.succeed(ts.id(n))
			}
			b.fail(ts.id(dc.fail), "broken", orkstate.OutcomeApplied)
			isDep := map[string]bool{}
			for _, n := range dc.dependents {
				isDep[n] = true
				got := b.getTask(ts.id(n))
				equal(t, n+" status", got.Status, orkstate.TaskFailed)
				equal(t, n+" error", got.Error, "dependency failed")
				notNil(t, n+" finished at", got.FinishedAt)
			}
			equal(t, "failed task error", b.getTask(ts.id(dc.fail)).Error, "broken")
			// Everything else is untouched and runs to the end.
			for _, n := range names(ts) {
				st := b.taskStatus(ts.id(n))
				if n == dc.fail || isDep[n] {
					continue
				}
				isTrue(t, n+" not failed by the middle failure", st != orkstate.TaskFailed)
			}
			for {
				got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 100})
				noErr(t, "ClaimTasks", err)
				if len(got) == 0 {
					break
				}
				equal(t, "run running until the last task", b.runStatus(r.ID), orkstate.RunRunning)
				for _, c := range got {
					isTrue(t, "dependent "+c.TaskName+" never claimed", !isDep[c.TaskName])
					b.reportOK(upd(c.ID, orkstate.TaskSuccess, c.Attempt), orkstate.OutcomeApplied)
				}
			}
			st, err := b.store.RunTaskStats(b.ctx, r.ID)
			noErr(t, "RunTaskStats", err)
			deepEqual(t, "stats", *st, orkstate.TaskStats{Total: len(ts), Success: len(ts) - 1 - len(dc.dependents), Failed: 1 + len(dc.dependents)})
			got := b.getRun(r.ID)
			equal(t, "run", got.Status, orkstate.RunFailed)
			notNil(t, "run finished at", got.FinishedAt)
		})
	}

	s.test(t, "RetryThenSuccessUnblocks", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), withRetries(nt("b", "a"), 1), nt("c", "b"), nt("d", "b"))
		b.succeed(ts.id("a"))
		b.fail(ts.id("b"), "flaky", orkstate.OutcomeRetrying)
		for _, n := range []string{"c", "d"} {
			got := b.getTask(ts.id(n))
			equal(t, n+" waits", got.Status, orkstate.TaskPending)
			equal(t, n+" unmet", got.UnmetDeps, 1)
		}
		equal(t, "run", b.runStatus(r.ID), orkstate.RunRunning)
		b.retryDue(ts.id("b"), 1)
		c := b.claimTask(ts.id("b"))
		equal(t, "attempt", c.Attempt, 2)
		b.reportOK(upd(ts.id("b"), orkstate.TaskSuccess, 2), orkstate.OutcomeApplied)
		deepEqual(t, "dependents dispatchable", b.dispatchable(), []int64{ts.id("c"), ts.id("d")})
		b.succeed(ts.id("c"))
		b.succeed(ts.id("d"))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunSuccess)
	})

	s.test(t, "CancelInTheMiddle", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c", "b"), nt("side", "a"))
		b.succeed(ts.id("a"))
		b.reportOK(upd(ts.id("b"), orkstate.TaskCancelled, 0), orkstate.OutcomeApplied)
		got := b.getTask(ts.id("c"))
		equal(t, "c", got.Status, orkstate.TaskCancelled)
		equal(t, "c error", got.Error, "dependency cancelled")
		equal(t, "side untouched", b.taskStatus(ts.id("side")), orkstate.TaskPending)
		equal(t, "run running", b.runStatus(r.ID), orkstate.RunRunning)
		b.succeed(ts.id("side"))
		equal(t, "run cancelled (no failure)", b.runStatus(r.ID), orkstate.RunCancelled)
	})

	s.test(t, "CompletionRule", func(t *testing.T, b *bundle) {
		cases := []struct {
			ends []orkstate.TaskStatus
			want orkstate.RunStatus
		}{
			{[]orkstate.TaskStatus{orkstate.TaskSuccess, orkstate.TaskSuccess}, orkstate.RunSuccess},
			{[]orkstate.TaskStatus{orkstate.TaskSuccess, orkstate.TaskCancelled}, orkstate.RunCancelled},
			{[]orkstate.TaskStatus{orkstate.TaskCancelled, orkstate.TaskFailed}, orkstate.RunFailed},
			{[]orkstate.TaskStatus{orkstate.TaskFailed, orkstate.TaskSuccess}, orkstate.RunFailed},
		}
		for _, c := range cases {
			r, ts := b.legacyRun(len(c.ends))
			for i, end := range c.ends {
				equal(t, "run before the last task", b.runStatus(r.ID), orkstate.RunRunning)
				b.reportOK(upd(ts[i].ID, end, 0), orkstate.OutcomeApplied)
			}
			got := b.getRun(r.ID)
			equal(t, fmt.Sprintf("run after %v", c.ends), got.Status, c.want)
			notNil(t, "finished at", got.FinishedAt)
			// A terminal run never changes: a late report on its tasks is refused.
			out := b.report(upd(ts[0].ID, orkstate.TaskRunning, 0))
			equal(t, "late report", out[0].Outcome, orkstate.OutcomeInvalid)
			equal(t, "run unchanged", b.runStatus(r.ID), c.want)
		}
	})

	s.test(t, "PausedTaskCancelledCompletes", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b"))
		b.drive(ts.id("a"), orkstate.TaskPaused)
		b.succeed(ts.id("b"))
		equal(t, "run waits for the paused task", b.runStatus(r.ID), orkstate.RunRunning)
		b.reportOK(upd(ts.id("a"), orkstate.TaskCancelled, 0), orkstate.OutcomeApplied)
		equal(t, "run", b.runStatus(r.ID), orkstate.RunCancelled)
	})
}

func firstOr(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}

func outputFor(name string) []byte {
	if name == "" {
		return nil
	}
	return []byte(fmt.Sprintf(`{"from":%q}`, name))
}
