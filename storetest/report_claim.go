package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// One round trip per scheduler loop (orkstate.ReportClaimer): a store that
// implements it reports and claims in one transaction, the report first, as
// SetTaskStates and ClaimTasks would one after the other; bad input on either side
// changes nothing.
func (s *suite) testReportAndClaim(t *testing.T) {
	rc := func(t *testing.T, b *bundle) orkstate.ReportClaimer {
		t.Helper()
		r, ok := b.store.(orkstate.ReportClaimer)
		if !ok {
			t.Skip("store does not implement orkstate.ReportClaimer")
		}
		return r
	}

	s.test(t, "ReportThenClaim", func(t *testing.T, b *bundle) {
		r := rc(t, b)
		// a → b (chain), c ready beside them, d after a and c (fan-in)
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c"), nt("d", "a", "c"))
		ca := b.claimTask(ts.id("a"))
		b.reportOK(upd(ts.id("a"), orkstate.TaskRunning, ca.Attempt), orkstate.OutcomeApplied)
		ok := upd(ts.id("a"), orkstate.TaskSuccess, ca.Attempt)
		ok.Output = raw(`{"rows":7}`)
		before := time.Now()
		out, got, err := r.ReportAndClaim(b.ctx, []orkstate.TaskUpdate{ok}, orkstate.ClaimParams{Claimer: "sched-2", Limit: 10})
		noErr(t, "ReportAndClaim", err)
		after := time.Now()
		deepEqual(t, "outcomes", out, []orkstate.TaskOutcome{{TaskID: ts.id("a"), Outcome: orkstate.OutcomeApplied, Status: orkstate.TaskSuccess}})
		// b became ready through the report and is claimed by the same call; d still waits for c.
		deepEqual(t, "claimed", claimedIDs(got), []int64{ts.id("b"), ts.id("c")})
		cb := got[0]
		equal(t, "b status", cb.Status, orkstate.TaskDispatched)
		equal(t, "b claimed by", cb.ClaimedBy, "sched-2")
		equal(t, "b attempt", cb.Attempt, 1)
		between(t, "b dispatched at", cb.DispatchedAt, before, after, time.Second)
		between(t, "b default lease", cb.LeaseExpiresAt, before.Add(5*time.Minute), after.Add(5*time.Minute), time.Second)
		equal(t, "b's upstream outputs", len(cb.UpstreamOutputs), 1)
		jsonEqual(t, "a's output for b", cb.UpstreamOutputs["a"], raw(`{"rows":7}`))
		equal(t, "c's upstream outputs", len(got[1].UpstreamOutputs), 0)
		equal(t, "a stored", b.taskStatus(ts.id("a")), orkstate.TaskSuccess)
		equal(t, "b stored", b.taskStatus(ts.id("b")), orkstate.TaskDispatched)
		equal(t, "d stored", b.taskStatus(ts.id("d")), orkstate.TaskPending)

		// The next loop reports b and c and claims d, which c's success made ready.
		out, got, err = r.ReportAndClaim(b.ctx, []orkstate.TaskUpdate{
			upd(ts.id("c"), orkstate.TaskSuccess, got[1].Attempt), upd(ts.id("b"), orkstate.TaskSuccess, cb.Attempt),
		}, orkstate.ClaimParams{Claimer: "sched-2", Limit: 10, Lease: time.Minute})
		noErr(t, "ReportAndClaim 2", err)
		equal(t, "outcomes 2", len(out), 2)
		equal(t, "c first (input order)", out[0].TaskID, ts.id("c"))
		equal(t, "c applied", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "b applied", out[1].Outcome, orkstate.OutcomeApplied)
		deepEqual(t, "claimed d", claimedIDs(got), []int64{ts.id("d")})
		equal(t, "d's upstream outputs", len(got[0].UpstreamOutputs), 2)

		// The last report: the run finishes; nothing is left to claim.
		out, got, err = r.ReportAndClaim(b.ctx, []orkstate.TaskUpdate{upd(ts.id("d"), orkstate.TaskSuccess, got[0].Attempt)},
			orkstate.ClaimParams{Claimer: "sched-2", Limit: 10})
		noErr(t, "ReportAndClaim 3", err)
		equal(t, "d applied", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "nothing to claim", len(got), 0)
		equal(t, "run", b.runStatus(b.getTask(ts.id("d")).RunID), orkstate.RunSuccess)
	})

	s.test(t, "OutcomesLikeSetTaskStates", func(t *testing.T, b *bundle) {
		r := rc(t, b)
		_, ts := b.dagRun(nt("a"), nt("b"), nt("c"), withRetries(nt("f"), 1), nt("ready"))
		ca, cb, cc, cf := b.claimTask(ts.id("a")), b.claimTask(ts.id("b")), b.claimTask(ts.id("c")), b.claimTask(ts.id("f"))
		failure := upd(ts.id("f"), orkstate.TaskFailed, cf.Attempt)
		failure.Error = "boom"
		out, got, err := r.ReportAndClaim(b.ctx, []orkstate.TaskUpdate{
			upd(ts.id("a"), orkstate.TaskRunning, ca.Attempt),   // a named twice: applied in order
			upd(ts.id("b"), orkstate.TaskSuccess, cb.Attempt+1), // stale
			upd(ts.id("a"), orkstate.TaskSuccess, ca.Attempt),
			upd(1<<40, orkstate.TaskSuccess, 1),              // not found
			upd(ts.id("c"), orkstate.TaskPaused, cc.Attempt), // dispatched → paused: invalid
			failure, // retrying
		}, orkstate.ClaimParams{Claimer: claimer, Limit: 10, ExecutorTypes: []string{b.getTask(ts.id("ready")).ExecutorType}})
		noErr(t, "ReportAndClaim", err)
		var outcomes []orkstate.Outcome
		for _, o := range out {
			outcomes = append(outcomes, o.Outcome)
		}
		deepEqual(t, "outcomes in input order", outcomes, []orkstate.Outcome{orkstate.OutcomeApplied, orkstate.OutcomeStale,
			orkstate.OutcomeApplied, orkstate.OutcomeNotFound, orkstate.OutcomeInvalid, orkstate.OutcomeRetrying})
		equal(t, "a's second outcome's status", out[2].Status, orkstate.TaskSuccess)
		equal(t, "not found has no status", out[3].Status, orkstate.TaskStatus(""))
		// bad rows never block the good ones, nor the claim
		deepEqual(t, "claimed", claimedIDs(got), []int64{ts.id("ready")})
		equal(t, "b untouched", b.taskStatus(ts.id("b")), orkstate.TaskDispatched)
		equal(t, "f waits for its retry", b.taskStatus(ts.id("f")), orkstate.TaskPending)
	})

	s.test(t, "EmptyReportIsAClaim", func(t *testing.T, b *bundle) {
		r := rc(t, b)
		_, ts := b.legacyRun(3)
		for _, none := range [][]orkstate.TaskUpdate{nil, {}} {
			out, got, err := r.ReportAndClaim(b.ctx, none, orkstate.ClaimParams{Claimer: claimer, Limit: 2})
			noErr(t, "ReportAndClaim without reports", err)
			equal(t, "no outcomes", len(out), 0)
			isTrue(t, "outcomes not nil", out != nil)
			isTrue(t, "claimed not nil", got != nil)
			if none == nil {
				deepEqual(t, "first two", claimedIDs(got), tasksIDs(ts[:2]))
			} else {
				deepEqual(t, "the last", claimedIDs(got), tasksIDs(ts[2:]))
			}
		}
		out, got, err := r.ReportAndClaim(b.ctx, []orkstate.TaskUpdate{upd(ts[0].ID, orkstate.TaskRunning, 1)},
			orkstate.ClaimParams{Claimer: claimer, Limit: 2})
		noErr(t, "ReportAndClaim with nothing ready", err)
		equal(t, "running applied", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "nothing claimed", len(got), 0)
		isTrue(t, "claimed not nil", got != nil)
	})

	s.test(t, "BadInputChangesNothing", func(t *testing.T, b *bundle) {
		r := rc(t, b)
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c"))
		ca := b.claimTask(ts.id("a"))
		good := []orkstate.TaskUpdate{upd(ts.id("a"), orkstate.TaskSuccess, ca.Attempt)}
		goodClaim := orkstate.ClaimParams{Claimer: claimer, Limit: 10}
		badStatus := append(slices.Clone(good), upd(ts.id("c"), "finished", 0))
		negative := append(slices.Clone(good), upd(ts.id("c"), orkstate.TaskCancelled, -1))
		cases := []struct {
			what    string
			updates []orkstate.TaskUpdate
			p       orkstate.ClaimParams
		}{
			{"an unknown status", badStatus, goodClaim},
			{"a negative attempt", negative, goodClaim},
			{"no claimer", good, orkstate.ClaimParams{Limit: 10}},
			{"a zero limit", good, orkstate.ClaimParams{Claimer: claimer}},
			{"a limit above the max", good, orkstate.ClaimParams{Claimer: claimer, Limit: orkstate.MaxClaimLimit + 1}},
			{"a negative lease", good, orkstate.ClaimParams{Claimer: claimer, Limit: 10, Lease: -time.Second}},
			{"a lease above the max", good, orkstate.ClaimParams{Claimer: claimer, Limit: 10, Lease: 25 * time.Hour}},
			{"a bad executor type", good, orkstate.ClaimParams{Claimer: claimer, Limit: 10, ExecutorTypes: []string{"bad\x00type"}}},
		}
		for _, c := range cases {
			out, got, err := r.ReportAndClaim(b.ctx, c.updates, c.p)
			isValidation(t, "ReportAndClaim with "+c.what, err)
			isTrue(t, c.what+": no outcomes", out == nil)
			isTrue(t, c.what+": no claims", got == nil)
			equal(t, c.what+": a not reported", b.taskStatus(ts.id("a")), orkstate.TaskDispatched)
			equal(t, c.what+": c not claimed", b.taskStatus(ts.id("c")), orkstate.TaskPending)
			deepEqual(t, c.what+": dispatchable", b.dispatchable(), []int64{ts.id("c")})
		}
		_, got, err := r.ReportAndClaim(b.ctx, good, goodClaim)
		noErr(t, "ReportAndClaim, good", err)
		deepEqual(t, "then b and c", claimedIDs(got), []int64{ts.id("b"), ts.id("c")})
	})

	for _, keyed := range []bool{false, true} {
		name := "SchedulerLoopsEachTaskOnce"
		if keyed {
			// Slot pools: a report gives slots back and the claim takes them again, in
			// one transaction; a pool is never over its slots and ends empty.
			name += "WithKeys"
		}
		s.test(t, name, func(t *testing.T, b *bundle) {
			s.schedulerLoops(t, b, rc(t, b), keyed)
		})
	}
}

// schedulerLoops runs DAGs (chains and a fan-out/fan-in per run) through
// schedulers that report the last loop's tasks and claim the next ones in one call
// each, and checks every task was claimed once and every run succeeded.
func (s *suite) schedulerLoops(t *testing.T, b *bundle, r orkstate.ReportClaimer, keyed bool) {
	requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
	const slots = 5
	key := func(i int) string {
		if !keyed {
			return ""
		}
		return fmt.Sprintf("k%d", i%2)
	}
	if keyed {
		noErr(t, "SetConcurrencyKey k0", b.store.SetConcurrencyKey(b.ctx, "k0", slots))
		noErr(t, "SetConcurrencyKey k1", b.store.SetConcurrencyKey(b.ctx, "k1", slots))
	}
	var specs []orkstate.NewTask
	for c := 0; c < 4; c++ {
		for l := 0; l < 5; l++ {
			n := nt(fmt.Sprintf("c%d_%d", c, l))
			if l > 0 {
				n.DependsOn = []string{fmt.Sprintf("c%d_%d", c, l-1)}
			}
			n.ExecutorType, n.ConcurrencyKey = "x", key(c)
			specs = append(specs, n)
		}
	}
	mids := []string{}
	specs = append(specs, orkstate.NewTask{TaskIndex: -1, TaskName: "root", ExecutorType: "x"})
	for i := 0; i < 10; i++ {
		mids = append(mids, fmt.Sprintf("m%d", i))
		specs = append(specs, orkstate.NewTask{TaskIndex: -1, TaskName: mids[i], DependsOn: []string{"root"}, ExecutorType: "x", ConcurrencyKey: key(i)})
	}
	specs = append(specs, orkstate.NewTask{TaskIndex: -1, TaskName: "sink", DependsOn: mids, ExecutorType: "x"})
	const runs, schedulers, batch = 10, 4, 7
	var runIDs []int64
	for i := 0; i < runs; i++ {
		run, _ := b.dagRun(specs...)
		runIDs = append(runIDs, run.ID)
	}
	total := runs * len(specs)
	claimed := make([][]int64, schedulers)
	errs := make([]error, schedulers)
	parallel(schedulers, func(i int) {
		name := fmt.Sprintf("sched-%d", i)
		var reports []orkstate.TaskUpdate
		idle := 0
		for idle < 20 {
			out, got, err := r.ReportAndClaim(b.ctx, reports, orkstate.ClaimParams{Claimer: name, Limit: batch})
			if err != nil {
				errs[i] = fmt.Errorf("ReportAndClaim: %w", err)
				return
			}
			for _, o := range out {
				if o.Outcome != orkstate.OutcomeApplied {
					errs[i] = fmt.Errorf("task %d: outcome %s", o.TaskID, o.Outcome)
					return
				}
			}
			reports = reports[:0]
			for _, c := range got {
				if c.ClaimedBy != name || c.Attempt != 1 {
					errs[i] = fmt.Errorf("task %d claimed by %q attempt %d", c.ID, c.ClaimedBy, c.Attempt)
					return
				}
				claimed[i] = append(claimed[i], c.ID)
				reports = append(reports, upd(c.ID, orkstate.TaskSuccess, c.Attempt))
			}
			if keyed {
				ks, err := b.store.ConcurrencyKeys(b.ctx)
				if err != nil {
					errs[i] = fmt.Errorf("ConcurrencyKeys: %w", err)
					return
				}
				for _, k := range ks {
					if k.InFlight > slots {
						errs[i] = fmt.Errorf("key %s: %d in flight, %d slots", k.Key, k.InFlight, slots)
						return
					}
				}
			}
			if len(got) == 0 {
				idle++
				time.Sleep(5 * time.Millisecond) // the others' reports make more ready
			} else {
				idle = 0
			}
		}
	})
	for _, err := range errs {
		noErr(t, "scheduler", err)
	}
	seen := map[int64]bool{}
	for _, ids := range claimed {
		for _, id := range ids {
			isTrue(t, fmt.Sprintf("task %d claimed once", id), !seen[id])
			seen[id] = true
		}
	}
	equal(t, "tasks claimed", len(seen), total)
	for _, id := range runIDs {
		equal(t, fmt.Sprintf("run %d", id), b.runStatus(id), orkstate.RunSuccess)
	}
	if keyed {
		equal(t, "k0 in flight at the end", b.keyInFlight("k0"), 0)
		equal(t, "k1 in flight at the end", b.keyInFlight("k1"), 0)
	}
}
