package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// parallel runs fn(0) … fn(n-1) at once and waits for all of them.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func (s *suite) testConcurrency(t *testing.T) {
	s.test(t, "ClaimersEachTaskOnce", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		total := s.concurrencyTasks
		const runs, claimers, batch = 10, 8, 200
		var runIDs []int64
		all := map[int64]bool{}
		for i := 0; i < runs; i++ {
			r, ts := b.legacyRun(total / runs)
			runIDs = append(runIDs, r.ID)
			for _, tk := range ts {
				all[tk.ID] = true
			}
		}
		equal(t, "tasks created", len(all), total)

		claimed := make([][]int64, claimers)
		errs := make([]error, claimers)
		parallel(claimers, func(i int) {
			name := fmt.Sprintf("claimer-%d", i)
			for {
				got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: name, Limit: batch})
				if err != nil {
					errs[i] = fmt.Errorf("ClaimTasks: %w", err)
					return
				}
				if len(got) == 0 {
					return
				}
				us := make([]orkstate.TaskUpdate, 0, len(got))
				for _, c := range got {
					if c.ClaimedBy != name || c.Attempt != 1 {
						errs[i] = fmt.Errorf("task %d claimed by %q attempt %d", c.ID, c.ClaimedBy, c.Attempt)
						return
					}
					claimed[i] = append(claimed[i], c.ID)
					us = append(us, upd(c.ID, orkstate.TaskSuccess, c.Attempt))
				}
				out, err := b.store.SetTaskStates(b.ctx, us)
				if err != nil {
					errs[i] = fmt.Errorf("SetTaskStates: %w", err)
					return
				}
				for _, o := range out {
					if o.Outcome != orkstate.OutcomeApplied {
						errs[i] = fmt.Errorf("task %d: outcome %s", o.TaskID, o.Outcome)
						return
					}
				}
			}
		})
		for i, err := range errs {
			noErr(t, fmt.Sprintf("claimer %d", i), err)
		}
		seen := map[int64]int{}
		busy := 0
		for _, ids := range claimed {
			if len(ids) > 0 {
				busy++
			}
			for _, id := range ids {
				seen[id]++
			}
		}
		dups := 0
		for id, n := range seen {
			if n > 1 {
				dups++
			}
			isTrue(t, fmt.Sprintf("claimed task %d belongs to the test", id), all[id])
		}
		equal(t, "tasks claimed more than once", dups, 0)
		equal(t, "tasks claimed", len(seen), total)
		isTrue(t, "more than one claimer got work", busy > 1)
		equal(t, "nothing left to dispatch", len(b.dispatchable()), 0)
		for _, id := range runIDs {
			st, err := b.store.RunTaskStats(b.ctx, id)
			noErr(t, "RunTaskStats", err)
			deepEqual(t, "run stats", *st, orkstate.TaskStats{Total: total / runs, Success: total / runs})
			equal(t, "run", b.runStatus(id), orkstate.RunSuccess)
		}
	})

	s.test(t, "StartPendingRunsRace", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		wf := b.workflow()
		const nRuns, nStarters = 30, 6
		for i := 0; i < nRuns; i++ {
			b.run(wf)
		}
		started := make([][]orkstate.StartedRun, nStarters)
		errs := make([]error, nStarters)
		parallel(nStarters, func(i int) {
			for {
				got, err := b.store.StartPendingRuns(b.ctx, 4)
				if err != nil {
					errs[i] = err
					return
				}
				if len(got) == 0 {
					return
				}
				started[i] = append(started[i], got...)
			}
		})
		for i, err := range errs {
			noErr(t, fmt.Sprintf("starter %d", i), err)
		}
		seen := map[int64]int{}
		for _, ss := range started {
			for _, s := range ss {
				seen[s.RunID]++
				equal(t, "started status", s.Status, orkstate.RunRunning)
			}
		}
		equal(t, "runs started", len(seen), nRuns)
		for id, n := range seen {
			equal(t, fmt.Sprintf("run %d started", id), n, 1)
			equal(t, fmt.Sprintf("run %d tasks", id), len(b.listTasks(id)), 3)
		}
	})

	s.test(t, "DeferredClaimersEachJobOnce", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		_, ts := b.legacyRun(50)
		want := map[int64]bool{}
		for _, tk := range ts {
			var in []orkstate.NewDeferredJob
			for k := 0; k < 4; k++ {
				in = append(in, orkstate.NewDeferredJob{ServiceType: "http", JobID: fmt.Sprintf("%d-%d", tk.ID, k)})
			}
			js, err := b.store.CreateDeferredJobs(b.ctx, tk.ID, in)
			noErr(t, "CreateDeferredJobs", err)
			for _, j := range js {
				want[j.ID] = true
			}
		}
		const pollers = 6
		got := make([][]int64, pollers)
		errs := make([]error, pollers)
		parallel(pollers, func(i int) {
			for {
				js, err := b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: fmt.Sprintf("poller-%d", i), Limit: 7})
				if err != nil {
					errs[i] = err
					return
				}
				if len(js) == 0 {
					return
				}
				got[i] = append(got[i], jobIDs(js)...)
			}
		})
		for i, err := range errs {
			noErr(t, fmt.Sprintf("poller %d", i), err)
		}
		seen := map[int64]int{}
		for _, ids := range got {
			for _, id := range ids {
				seen[id]++
			}
		}
		equal(t, "jobs claimed", len(seen), len(want))
		for id, n := range seen {
			equal(t, fmt.Sprintf("job %d claimed", id), n, 1)
			isTrue(t, "known job", want[id])
		}
	})

	s.test(t, "ConcurrentOverlappingReports", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		// Several reporters send the same 300 tasks at once, each in its own shuffled
		// order (a scheduler retrying a report, a lease sweep racing a late report):
		// no deadlock, each transition applied exactly once, the rest ignored.
		const n, reporters = 300, 6
		r, _ := b.legacyRun(n)
		cs, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: n})
		noErr(t, "ClaimTasks", err)
		equal(t, "claimed", len(cs), n)
		ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
		defer cancel()
		for _, st := range []orkstate.TaskStatus{orkstate.TaskRunning, orkstate.TaskSuccess} {
			applied := make([]int, reporters)
			errs := make([]error, reporters)
			parallel(reporters, func(i int) {
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				us := make([]orkstate.TaskUpdate, n)
				for k, c := range cs {
					us[k] = upd(c.ID, st, c.Attempt)
				}
				rng.Shuffle(n, func(a, b int) { us[a], us[b] = us[b], us[a] })
				out, err := b.store.SetTaskStates(ctx, us)
				if err != nil {
					errs[i] = err
					return
				}
				for _, o := range out {
					switch o.Outcome {
					case orkstate.OutcomeApplied:
						applied[i]++
					case orkstate.OutcomeIgnored:
					default:
						errs[i] = fmt.Errorf("task %d: outcome %s", o.TaskID, o.Outcome)
						return
					}
				}
			})
			total := 0
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: reporter %d: %v", st, i, err)
				}
				total += applied[i]
			}
			equal(t, string(st)+" transitions applied", total, n)
		}
		equal(t, "run", b.runStatus(r.ID), orkstate.RunSuccess)
	})

	s.test(t, "ConcurrentDecrementsOfSharedDependents", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		// Every sink depends on every root, and each root's success is reported by its
		// own reporter at once: all of them decrement the same 60 sinks. No deadlock,
		// and the sinks become dispatchable exactly when the last root succeeds.
		const roots, sinks = 12, 60
		var specs []orkstate.NewTask
		var rootNames []string
		for i := 0; i < roots; i++ {
			name := fmt.Sprintf("root%02d", i)
			rootNames = append(rootNames, name)
			specs = append(specs, nt(name))
		}
		for i := 0; i < sinks; i++ {
			specs = append(specs, nt(fmt.Sprintf("sink%02d", i), rootNames...))
		}
		r, ts := b.dagRun(specs...)
		cs, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 100})
		noErr(t, "ClaimTasks", err)
		equal(t, "claimed roots", len(cs), roots)
		ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
		defer cancel()
		errs := make([]error, roots)
		parallel(roots, func(i int) {
			_, errs[i] = b.store.SetTaskStates(ctx, []orkstate.TaskUpdate{upd(cs[i].ID, orkstate.TaskSuccess, cs[i].Attempt)})
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("reporter %d: %v", i, err)
			}
		}
		want := make([]int64, 0, sinks)
		for i := 0; i < sinks; i++ {
			id := ts.id(fmt.Sprintf("sink%02d", i))
			equal(t, "sink unmet", b.getTask(id).UnmetDeps, 0)
			want = append(want, id)
		}
		slices.Sort(want)
		deepEqual(t, "dispatchable", b.dispatchable(), want)
		equal(t, "run", b.runStatus(r.ID), orkstate.RunRunning)
	})

	s.test(t, "ConcurrentReportsCompleteRunOnce", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		// Many workers finish the tasks of one fan-in DAG at once: the sink becomes
		// dispatchable exactly once and the run completes exactly once.
		specs := []orkstate.NewTask{}
		var mids []string
		for i := 0; i < 40; i++ {
			n := fmt.Sprintf("m%02d", i)
			mids = append(mids, n)
			specs = append(specs, nt(n))
		}
		specs = append(specs, nt("sink", mids...))
		r, ts := b.dagRun(specs...)
		cs, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 100})
		noErr(t, "ClaimTasks", err)
		equal(t, "claimed", len(cs), 40)
		errs := make([]error, len(cs))
		// 40 small batches take well under a second; the bound keeps a store that
		// deadlocks and retries from holding the suite for minutes.
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		parallel(len(cs), func(i int) {
			out, err := b.store.SetTaskStates(ctx, []orkstate.TaskUpdate{
				upd(cs[i].ID, orkstate.TaskRunning, cs[i].Attempt), upd(cs[i].ID, orkstate.TaskSuccess, cs[i].Attempt),
			})
			if err == nil && (out[0].Outcome != orkstate.OutcomeApplied || out[1].Outcome != orkstate.OutcomeApplied) {
				err = fmt.Errorf("outcomes %v", out)
			}
			errs[i] = err
		})
		failed := 0
		var first error
		for _, err := range errs {
			if err != nil {
				if failed++; first == nil {
					first = err
				}
			}
		}
		if failed > 0 {
			t.Fatalf("%d of %d concurrent reporters failed; first: %v", failed, len(errs), first)
		}
		sink := b.getTask(ts.id("sink"))
		equal(t, "sink unmet", sink.UnmetDeps, 0)
		deepEqual(t, "sink dispatchable", b.dispatchable(), []int64{sink.ID})
		equal(t, "run running", b.runStatus(r.ID), orkstate.RunRunning)
		b.succeed(sink.ID)
		equal(t, "run", b.runStatus(r.ID), orkstate.RunSuccess)
	})
}
