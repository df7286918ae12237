package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// Priorities, concurrency limits and fairness (docs/semantics.md, "Priorities and
// limits").

// prioTask is a task with executor type "p" (so one claim sees all of them), a
// priority when prio is not nil and a concurrency key.
func prioTask(name string, prio *int, key string, deps ...string) orkstate.NewTask {
	n := nt(name, deps...)
	n.ExecutorType, n.Priority, n.ConcurrencyKey = "p", prio, key
	return n
}

// setLimits sets a workflow's limits or fails.
func (b *bundle) setLimits(wf int64, l orkstate.WorkflowLimits) {
	b.t.Helper()
	noErr(b.t, "SetWorkflowLimits", b.store.SetWorkflowLimits(b.ctx, wf, l))
}

// claimN claims up to n tasks as one claimer.
func (b *bundle) claimN(n int) []orkstate.ClaimedTask {
	b.t.Helper()
	got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: n})
	noErr(b.t, "ClaimTasks", err)
	return got
}

// keyInFlight is the key's InFlight as ConcurrencyKeys reports it (-1: no such key).
func (b *bundle) keyInFlight(key string) int {
	b.t.Helper()
	ks, err := b.store.ConcurrencyKeys(b.ctx)
	noErr(b.t, "ConcurrencyKeys", err)
	for _, k := range ks {
		if k.Key == key {
			return k.InFlight
		}
	}
	return -1
}

func (s *suite) testLimits(t *testing.T) {
	s.test(t, "PriorityOrderAcrossRunsAndWorkflows", func(t *testing.T, b *bundle) {
		low, high := b.workflow(), b.workflow()
		b.setLimits(high.ID, orkstate.WorkflowLimits{Priority: 5})
		r1 := b.run(low)
		t1 := b.addTasks(r1.ID, prioTask("a", nil, ""), prioTask("b", ptr(10), ""), prioTask("c", nil, ""))
		r2 := b.run(high)
		t2 := b.addTasks(r2.ID, prioTask("d", nil, ""), prioTask("e", ptr(-3), ""), prioTask("f", nil, ""))
		r3 := b.run(low)
		t3 := b.addTasks(r3.ID, prioTask("g", nil, ""))
		// b (10), then high's d, f (5, FIFO), then low's a, c, g (0, FIFO across runs), then e (-3)
		want := []int64{t1.id("b"), t2.id("d"), t2.id("f"), t1.id("a"), t1.id("c"), t3.id("g"), t2.id("e")}
		var got []int64
		for range want {
			c := b.claimN(1)
			equal(t, "tasks per claim", len(c), 1)
			got = append(got, c[0].ID)
		}
		deepEqual(t, "claim order, one at a time", got, want)
	})

	s.test(t, "PriorityOrderInOneClaimAndRetryKeepsIt", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		r := b.run(wf)
		ts := b.addTasks(r.ID, withRetries(prioTask("a", ptr(1), ""), 2), prioTask("b", nil, ""), prioTask("c", ptr(2), ""))
		deepEqual(t, "one claim's order", claimedIDs(b.claimN(10)), []int64{ts.id("c"), ts.id("a"), ts.id("b")})
		u := upd(ts.id("a"), orkstate.TaskFailed, 1)
		b.reportOK(u, orkstate.OutcomeRetrying)
		b.reportOK(upd(ts.id("b"), orkstate.TaskPending, 1), orkstate.OutcomeApplied)
		b.retryDue(ts.id("a"), 1)
		equal(t, "both dispatchable", len(b.dispatchable()), 2)
		deepEqual(t, "a retry keeps its priority", claimedIDs(b.claimN(10)), []int64{ts.id("a"), ts.id("b")})
	})

	s.test(t, "ClaimedTasksCarryPriorityAndKey", func(t *testing.T, b *bundle) {
		noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "gpu", 5))
		wf := b.workflow()
		b.setLimits(wf.ID, orkstate.WorkflowLimits{Priority: 4})
		r := b.run(wf)
		ts := b.addTasks(r.ID, prioTask("a", ptr(9), "gpu"), prioTask("b", nil, ""), prioTask("c", ptr(-2), "gpu"),
			prioTask("d", nil, "gpu"))
		type carried struct {
			Priority       int
			Override       string // "nil" or the number, so a failure prints it
			ConcurrencyKey string
		}
		override := func(p *int) string {
			if p == nil {
				return "nil"
			}
			return fmt.Sprint(*p)
		}
		want := map[int64]carried{
			ts.id("a"): {9, "9", "gpu"},
			ts.id("b"): {4, "nil", ""},
			ts.id("c"): {-2, "-2", "gpu"},
			ts.id("d"): {4, "nil", "gpu"},
		}
		got := b.claimN(10)
		equal(t, "claimed", len(got), len(want))
		for _, c := range got {
			deepEqual(t, fmt.Sprintf("task %s's priority, override and key as claimed", c.TaskName),
				carried{c.Priority, override(c.PriorityOverride), c.ConcurrencyKey}, want[c.ID])
			k := b.getTask(c.ID)
			deepEqual(t, fmt.Sprintf("task %s's priority, override and key as claimed and as read", c.TaskName),
				carried{c.Priority, override(c.PriorityOverride), c.ConcurrencyKey},
				carried{k.Priority, override(k.PriorityOverride), k.ConcurrencyKey})
		}
	})

	s.test(t, "WorkflowPriorityReachesTasksNotReady", func(t *testing.T, b *bundle) {
		wf, other := b.workflow(), b.workflow()
		r := b.run(wf)
		ts := b.addTasks(r.ID, prioTask("up", nil, ""), prioTask("ready", nil, ""), prioTask("down", nil, "", "up"))
		ro := b.run(other)
		to := b.addTasks(ro.ID, prioTask("o", ptr(3), ""))
		b.setLimits(wf.ID, orkstate.WorkflowLimits{Priority: 7})
		// "up" and "ready" were ready: they keep priority 0, behind o (3)
		c := b.claimN(1)
		equal(t, "first claim", c[0].ID, to.id("o"))
		c = b.claimN(1)
		equal(t, "second claim", c[0].ID, ts.id("up"))
		b.reportOK(upd(ts.id("up"), orkstate.TaskSuccess, c[0].Attempt), orkstate.OutcomeApplied)
		// "down" was waiting: it has the new priority 7 and passes "ready"
		equal(t, "third claim", b.claimN(1)[0].ID, ts.id("down"))
		equal(t, "fourth claim", b.claimN(1)[0].ID, ts.id("ready"))
	})

	s.test(t, "KeySlots", func(t *testing.T, b *bundle) {
		noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "gpu", 2))
		r := b.run()
		specs := []orkstate.NewTask{}
		for i := range 5 {
			specs = append(specs, withRetries(prioTask(fmt.Sprintf("k%d", i), nil, "gpu"), 1))
		}
		specs = append(specs, prioTask("free1", nil, ""), prioTask("free2", nil, ""))
		ts := b.addTasks(r.ID, specs...)
		got := b.claimN(10)
		equal(t, "claimed: two keyed and the two free tasks", len(got), 4)
		equal(t, "gpu in flight", b.keyInFlight("gpu"), 2)
		equal(t, "a full key gives nothing more", len(b.claimN(10)), 0)
		var keyed []orkstate.ClaimedTask
		for _, c := range got {
			if c.ID != ts.id("free1") && c.ID != ts.id("free2") {
				keyed = append(keyed, c)
			}
		}
		// a failure that retries gives its slot back; so does a success
		b.reportOK(upd(keyed[0].ID, orkstate.TaskFailed, keyed[0].Attempt), orkstate.OutcomeRetrying)
		equal(t, "gpu in flight after a retrying failure", b.keyInFlight("gpu"), 1)
		b.reportOK(upd(keyed[1].ID, orkstate.TaskRunning, keyed[1].Attempt), orkstate.OutcomeApplied)
		equal(t, "running keeps the slot", b.keyInFlight("gpu"), 1)
		b.reportOK(upd(keyed[1].ID, orkstate.TaskSuccess, keyed[1].Attempt), orkstate.OutcomeApplied)
		equal(t, "gpu in flight after a success", b.keyInFlight("gpu"), 0)
		equal(t, "two more keyed tasks", len(b.claimN(10)), 2)
		noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "gpu", 3))
		equal(t, "one more after raising the slots", len(b.claimN(10)), 1)
		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, r.ID))
		equal(t, "a cancel gives every slot back", b.keyInFlight("gpu"), 0)
	})

	s.test(t, "WorkflowMaxTasksInFlight", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		b.setLimits(wf.ID, orkstate.WorkflowLimits{MaxTasksInFlight: ptr(3)})
		l, err := b.store.GetWorkflowLimits(b.ctx, wf.ID)
		noErr(t, "GetWorkflowLimits", err)
		equal(t, "max tasks in flight", *l.MaxTasksInFlight, 3)
		r1, r2 := b.run(wf), b.run(wf)
		b.addTasks(r1.ID, prioTask("a", nil, ""), prioTask("b", nil, ""))
		b.addTasks(r2.ID, prioTask("c", nil, ""), prioTask("d", nil, ""))
		got := b.claimN(10)
		equal(t, "claimed across the workflow's runs", len(got), 3)
		equal(t, "nothing more", len(b.claimN(10)), 0)
		noErr(t, "PauseRun", b.store.PauseRun(b.ctx, r2.ID))
		b.reportOK(upd(got[0].ID, orkstate.TaskPending, got[0].Attempt), orkstate.OutcomeApplied)
		equal(t, "a requeue gives its slot back", len(b.claimN(10)), 1)
	})

	s.test(t, "MaxActiveRuns", func(t *testing.T, b *bundle) {
		wf := b.workflow(func(w *orkstate.NewWorkflow) { w.TaskParams = raw(`{"task_count": 1}`) })
		b.setLimits(wf.ID, orkstate.WorkflowLimits{MaxActiveRuns: ptr(2)})
		other := b.workflow(func(w *orkstate.NewWorkflow) { w.TaskParams = raw(`{"task_count": 1}`) })
		var runs []*orkstate.Run
		for range 4 {
			runs = append(runs, b.run(wf))
		}
		free := b.run(other)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		var ids []int64
		for _, s := range started {
			ids = append(ids, s.RunID)
		}
		deepEqual(t, "started: the two oldest and the other workflow's", ids, []int64{runs[0].ID, runs[1].ID, free.ID})
		equal(t, "third run", b.runStatus(runs[2].ID), orkstate.RunPending)
		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, runs[0].ID))
		started, err = b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "one slot freed", len(started), 1)
		equal(t, "the next in order", started[0].RunID, runs[2].ID)
	})

	s.test(t, "FairRoundRobin", func(t *testing.T, b *bundle) {
		// A fair workflow: a run with many ready tasks, then a 10-task run. A claim of
		// L takes turns between the runs, so the small run is fully claimed within
		// ceil(10 / ceil(L/2)) claims whatever the big run's size (here L = 4: 5).
		wf := b.workflow()
		b.setLimits(wf.ID, orkstate.WorkflowLimits{Fair: true})
		big := b.run(wf)
		var specs []orkstate.NewTask
		for i := range 2000 {
			n := prioTask(fmt.Sprintf("b%d", i), nil, "")
			n.TaskIndex = i
			specs = append(specs, n)
		}
		_, err := b.store.CreateDAGTasks(b.ctx, big.ID, specs[:len(specs):len(specs)])
		noErr(t, "CreateDAGTasks big", err)
		small := b.run(wf)
		_, err = b.store.CreateDAGTasks(b.ctx, small.ID, specs[:10])
		noErr(t, "CreateDAGTasks small", err)
		calls, left := 0, 10
		for left > 0 {
			calls++
			if calls > 5 {
				t.Fatalf("the small run still has %d unclaimed tasks after 5 claims of 4", left)
			}
			for _, c := range b.claimN(4) {
				if c.RunID == small.ID {
					left--
				}
			}
		}
	})

	s.test(t, "BadInputChangesNothing", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		for _, l := range []orkstate.WorkflowLimits{
			{Priority: 1001}, {Priority: -5000}, {MaxActiveRuns: ptr(0)}, {MaxActiveRuns: ptr(-1)},
			{MaxTasksInFlight: ptr(0)}, {MaxTasksInFlight: ptr(-3)}, {Priority: 3, MaxTasksInFlight: ptr(2_000_000)},
		} {
			isValidation(t, fmt.Sprintf("SetWorkflowLimits(%+v)", l), b.store.SetWorkflowLimits(b.ctx, wf.ID, l))
		}
		errIs(t, "SetWorkflowLimits of an unknown workflow", b.store.SetWorkflowLimits(b.ctx, 999999, orkstate.WorkflowLimits{}), orkstate.ErrNotFound)
		_, err := b.store.GetWorkflowLimits(b.ctx, 999999)
		errIs(t, "GetWorkflowLimits of an unknown workflow", err, orkstate.ErrNotFound)
		l, err := b.store.GetWorkflowLimits(b.ctx, wf.ID)
		noErr(t, "GetWorkflowLimits", err)
		deepEqual(t, "limits unchanged", *l, orkstate.WorkflowLimits{})
		for _, c := range []struct {
			key   string
			slots int
		}{{"", 1}, {" k", 1}, {"k", 0}, {"k", -1}, {"k", 1_000_001}} {
			isValidation(t, fmt.Sprintf("SetConcurrencyKey(%q, %d)", c.key, c.slots), b.store.SetConcurrencyKey(b.ctx, c.key, c.slots))
		}
		ks, err := b.store.ConcurrencyKeys(b.ctx)
		noErr(t, "ConcurrencyKeys", err)
		equal(t, "no key created", len(ks), 0)
		// A key always has slots (no "unlimited" key: 0 is refused, as pgstore's SQL
		// refuses null): a refused change keeps the old count.
		noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "k", 3))
		for _, slots := range []int{0, -1, 1_000_001} {
			isValidation(t, fmt.Sprintf("SetConcurrencyKey(k, %d)", slots), b.store.SetConcurrencyKey(b.ctx, "k", slots))
		}
		ks, err = b.store.ConcurrencyKeys(b.ctx)
		noErr(t, "ConcurrencyKeys", err)
		deepEqual(t, "the key after refused changes", ks, []orkstate.ConcurrencyKey{{Key: "k", Slots: 3}})
		r := b.run(wf)
		_, err = b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{prioTask("a", nil, "nokey")})
		isValidation(t, "a task naming an unknown key", err)
		_, err = b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{prioTask("a", ptr(99999), "")})
		isValidation(t, "an absurd task priority", err)
		equal(t, "no task created", len(b.listTasks(r.ID)), 0)
		_, err = b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a", Priority: ptr(-1001)}})
		isValidation(t, "a snapshot with an absurd priority", err)
	})

	s.test(t, "ClaimersNeverExceedLimits", func(t *testing.T, b *bundle) {
		for _, limit := range []int{1, 5, 50} {
			b.claimersUnderLimit(t, limit)
		}
	})

	s.test(t, "SlotsAfterChurn", func(t *testing.T, b *bundle) { b.slotChurn(t) })
}

// claimersUnderLimit runs 8 claimers over 200 tasks of one key with `limit` slots
// (and 40 of a workflow capped at limit, without a key), while a monitor samples the
// key's count and the tasks actually in flight. Every task completes exactly once.
func (b *bundle) claimersUnderLimit(t *testing.T, limit int) {
	key := fmt.Sprintf("k%d", limit)
	noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, key, limit))
	capped := b.workflow()
	b.setLimits(capped.ID, orkstate.WorkflowLimits{MaxTasksInFlight: ptr(limit)})
	keyed, cappedRun := b.run(), b.run(capped)
	etKey, etCap := "key-"+key, "cap-"+key
	var specs, capSpecs []orkstate.NewTask
	for i := range 200 {
		n := nt(fmt.Sprintf("t%d", i))
		n.TaskIndex, n.ExecutorType, n.ConcurrencyKey = i, etKey, key
		specs = append(specs, n)
	}
	for i := range 40 {
		n := nt(fmt.Sprintf("c%d", i))
		n.TaskIndex, n.ExecutorType = i, etCap
		capSpecs = append(capSpecs, n)
	}
	_, err := b.store.CreateDAGTasks(b.ctx, keyed.ID, specs)
	noErr(t, "CreateDAGTasks", err)
	_, err = b.store.CreateDAGTasks(b.ctx, cappedRun.ID, capSpecs)
	noErr(t, "CreateDAGTasks", err)

	var done atomic.Bool
	var mu sync.Mutex
	var problems []string
	type claimRec struct {
		at time.Time
		id int64
	}
	var ledger []claimRec
	completed := map[int64]int{}
	monitor := make(chan struct{})
	go func() {
		defer close(monitor)
		for !done.Load() {
			running, err := b.store.RunningTasks(b.ctx, 10000)
			if err != nil {
				mu.Lock()
				problems = append(problems, "RunningTasks: "+err.Error())
				mu.Unlock()
				return
			}
			nk, nc := 0, 0
			for _, r := range running {
				switch r.ExecutorType {
				case etKey:
					nk++
				case etCap:
					nc++
				}
			}
			n := b.keyInFlight(key)
			if nk > limit || nc > limit || n > limit {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("limit %d exceeded: %d keyed tasks in flight, %d capped, key count %d", limit, nk, nc, n))
				mu.Unlock()
			}
		}
	}()
	errs := make([]error, 8)
	parallel(8, func(i int) {
		name := fmt.Sprintf("c%d", i)
		idle := 0
		for idle < 50 {
			got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: name, Limit: 1 + rand.IntN(10),
				ExecutorTypes: []string{etKey, etCap}})
			if err != nil {
				errs[i] = err
				return
			}
			if len(got) == 0 {
				idle++
				time.Sleep(2 * time.Millisecond)
				continue
			}
			idle = 0
			mu.Lock()
			for _, c := range got {
				ledger = append(ledger, claimRec{time.Now(), c.ID})
			}
			mu.Unlock()
			ups := make([]orkstate.TaskUpdate, len(got))
			for j, c := range got {
				ups[j] = upd(c.ID, orkstate.TaskSuccess, c.Attempt)
			}
			out, err := b.store.SetTaskStates(b.ctx, ups)
			if err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			for _, o := range out {
				if o.Outcome == orkstate.OutcomeApplied {
					completed[o.TaskID]++
				}
			}
			mu.Unlock()
		}
	})
	done.Store(true)
	<-monitor
	for _, err := range errs {
		noErr(t, "claimer", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	equal(t, fmt.Sprintf("limit %d: claims in the ledger", limit), len(ledger), 240)
	equal(t, fmt.Sprintf("limit %d: tasks completed", limit), len(completed), 240)
	for id, n := range completed {
		if n != 1 {
			t.Errorf("task %d completed %d times", id, n)
		}
	}
	equal(t, "key count at the end", b.keyInFlight(key), 0)
}

// slotChurn moves keyed tasks through every way into and out of flight at once —
// claims, failing reports with retries, lease expiry, timeouts, pause, resume, cancel
// and operator retry — and then checks that the key counts exactly the keyed tasks
// in flight.
func (b *bundle) slotChurn(t *testing.T) {
	noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "churn", 6))
	var runs []int64
	for range 6 {
		run := b.run()
		var specs []orkstate.NewTask
		for i := range 30 {
			n := nt(fmt.Sprintf("t%d", i))
			n.TaskIndex, n.ExecutorType, n.ConcurrencyKey, n.MaxRetries = i, "churn", "churn", 2
			if i%5 == 0 {
				n.TimeoutSeconds = 1
			}
			specs = append(specs, n)
		}
		_, err := b.store.CreateDAGTasks(b.ctx, run.ID, specs)
		noErr(t, "CreateDAGTasks", err)
		runs = append(runs, run.ID)
	}
	stop := time.Now().Add(3 * time.Second)
	errs := make([]error, 6)
	parallel(6, func(i int) {
		rng := rand.New(rand.NewPCG(uint64(i), 13))
		for time.Now().Before(stop) {
			var err error
			switch i {
			case 0, 1, 2: // claimers: report success, failure, requeue, or nothing (leases run out)
				var got []orkstate.ClaimedTask
				got, err = b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: fmt.Sprint(i), Limit: 3,
					Lease: 300 * time.Millisecond})
				if err == nil && len(got) > 0 {
					var ups []orkstate.TaskUpdate
					for _, c := range got {
						switch rng.IntN(4) {
						case 0:
							ups = append(ups, upd(c.ID, orkstate.TaskSuccess, c.Attempt))
						case 1:
							ups = append(ups, upd(c.ID, orkstate.TaskFailed, c.Attempt))
						case 2:
							ups = append(ups, upd(c.ID, orkstate.TaskRunning, c.Attempt))
						}
					}
					if len(ups) > 0 {
						_, err = b.store.SetTaskStates(b.ctx, ups)
					}
				}
			case 3: // sweeps
				if _, err = b.store.ExpireTaskLeases(b.ctx, 100); err == nil {
					_, err = b.store.FailTimedOutTasks(b.ctx, 100)
				}
			case 4: // pause and resume
				r := runs[rng.IntN(len(runs))]
				if e := b.store.PauseRun(b.ctx, r); e == nil {
					time.Sleep(5 * time.Millisecond)
					err = b.store.ResumeRun(b.ctx, r)
				}
			case 5: // operator retries, and one cancel
				r := runs[rng.IntN(len(runs)-1)]
				ts, e := b.store.ListTasks(b.ctx, r)
				if e != nil {
					err = e
					break
				}
				for _, tk := range ts {
					if tk.Status.IsTerminal() {
						_ = b.store.RetryTask(b.ctx, tk.ID) // a finished run refuses: fine
						break
					}
				}
				if time.Until(stop) < time.Second {
					_ = b.store.CancelRun(b.ctx, runs[len(runs)-1])
				}
			}
			if err != nil && !orkstateExpected(err) {
				errs[i] = err
				return
			}
		}
	})
	for i, err := range errs {
		noErr(t, fmt.Sprintf("churn worker %d", i), err)
	}
	running, err := b.store.RunningTasks(b.ctx, 10000)
	noErr(t, "RunningTasks", err)
	n := 0
	for _, r := range running {
		if r.ExecutorType == "churn" {
			n++
		}
	}
	equal(t, "key count equals the keyed tasks in flight", b.keyInFlight("churn"), n)
	isTrue(t, "within the slots", n <= 6)
}

// orkstateExpected: the refusals a racing operator meets (a run already paused or
// finished, a task already moved).
func orkstateExpected(err error) bool {
	return errors.Is(err, orkstate.ErrInvalidTransition) || errors.Is(err, orkstate.ErrNotFound)
}
