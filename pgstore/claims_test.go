package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// TestClaimsRaceQueueSyncs races claims against every kind of caller that holds tasks
// and then touches their queue rows: pause, resume and cancel of whole runs (through
// _queue_sync), lease sweeps requeueing the tasks of a claimer that never reports, and
// reporters. A claim locks the queue rows and then the task rows it picks, both SKIP
// LOCKED, so it never waits for them. Claims are plain SQL calls, so a deadlock between
// a claim and one of the others fails the test instead of being retried (a claim that
// waited for its picked task rows instead of skipping them deadlocked with pause_run
// here within seconds: pause_run's second statement locks tasks that became pending
// after its first). Afterwards every (task, attempt) was claimed once, every task of
// the runs not cancelled succeeded once, and the queue agrees with the tasks.
func TestClaimsRaceQueueSyncs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	var runs []int64
	for r := 0; r < 4; r++ {
		specs := make([]orkstate.TaskSpec, 150)
		for i := range specs {
			specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%03d", i), TimeoutSeconds: 60}
		}
		run, _ := startRun(t, s, specs)
		runs = append(runs, run.ID)
	}
	cancelled := runs[len(runs)-1]
	claim := fmt.Sprintf(`select id, attempt from %s_api.claim_tasks($1, $2, null, $3::interval)`, s.Schema())

	var mu sync.Mutex
	claimed := map[[2]int64]int{} // (task, attempt) → claims
	successes := map[int64]int{}
	stop := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return every(gctx, stop, 2*time.Millisecond, sweepLeases(s)) })
	rng := rand.New(rand.NewPCG(5, 1))
	k := 0
	g.Go(func() error { // an operator pausing and resuming runs, and cancelling one
		return every(gctx, stop, 3*time.Millisecond, func(ctx context.Context) error {
			id := runs[rng.IntN(len(runs)-1)]
			var err error
			switch {
			case k == 30:
				err = s.CancelRun(ctx, cancelled)
			case k%2 == 0:
				err = s.PauseRun(ctx, id)
			default:
				err = s.ResumeRun(ctx, id)
			}
			k++
			if err != nil && !errors.Is(err, orkstate.ErrInvalidTransition) {
				return fmt.Errorf("operator: %w", err)
			}
			return nil
		})
	})
	var workers sync.WaitGroup
	for i := 0; i < 5; i++ {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			name := fmt.Sprint("c", i)
			for idle := 0; idle < 60; {
				// Worker 0 claims with a short lease and never reports: the sweep hands its
				// tasks to the others. The others' leases outlive their reports.
				lease := "1 minute"
				if i == 0 {
					lease = "5 milliseconds"
				}
				rows, err := s.Pool().Query(gctx, claim, name, 1+rng.IntN(20), lease)
				if err != nil {
					return fmt.Errorf("claim: %w", err)
				}
				var ups []orkstate.TaskUpdate
				for rows.Next() {
					var id int64
					var attempt int
					if err := rows.Scan(&id, &attempt); err != nil {
						return err
					}
					ups = append(ups, orkstate.TaskUpdate{TaskID: id, Status: orkstate.TaskSuccess, Attempt: attempt})
				}
				if err := rows.Err(); err != nil {
					return fmt.Errorf("claim: %w", err)
				}
				mu.Lock()
				for _, u := range ups {
					claimed[[2]int64{u.TaskID, int64(u.Attempt)}]++
				}
				mu.Unlock()
				if len(ups) == 0 {
					idle++
					time.Sleep(2 * time.Millisecond)
					continue
				}
				if i == 0 {
					continue
				}
				out, err := s.SetTaskStates(gctx, ups)
				if err != nil {
					return fmt.Errorf("report: %w", err)
				}
				mu.Lock()
				for _, o := range out {
					if o.Outcome == orkstate.OutcomeApplied {
						successes[o.TaskID]++
					}
				}
				mu.Unlock()
			}
			return nil
		})
	}
	workers.Wait()
	close(stop)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// Resume whatever the operator left paused and finish the rest in one loop. Worker
	// 0's last claims may still be dispatched under a 5 ms lease that ended after the
	// sweep above stopped: the loop sweeps them back too, and ends once nothing is in
	// flight and nothing is claimable (a pending task without its queue row would
	// leave its run unfinished below, and queueMismatches names it).
	for _, id := range runs[:len(runs)-1] {
		_ = s.ResumeRun(ctx, id)
	}
	inFlight := fmt.Sprintf(`select count(*) from %s.tasks where status in ('dispatched', 'running')`, s.Schema())
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := s.ExpireTaskLeases(ctx, 1000); err != nil {
			t.Fatal(err)
		}
		got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "last", Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			var n int
			if err := s.Pool().QueryRow(ctx, inFlight).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		var ups []orkstate.TaskUpdate
		for _, c := range got {
			claimed[[2]int64{c.ID, int64(c.Attempt)}]++
			ups = append(ups, orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt})
		}
		out, err := s.SetTaskStates(ctx, ups)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			if o.Outcome == orkstate.OutcomeApplied {
				successes[o.TaskID]++
			}
		}
	}
	for key, n := range claimed {
		if n != 1 {
			t.Fatalf("task %d attempt %d claimed %d times", key[0], key[1], n)
		}
	}
	for id, n := range successes {
		if n != 1 {
			t.Fatalf("task %d: %d applied successes", id, n)
		}
	}
	for _, id := range runs[:len(runs)-1] {
		if r, err := s.GetRun(ctx, id); err != nil || r.Status != orkstate.RunSuccess {
			t.Fatalf("run %d = %+v, %v; want success (a ready task lost its queue row?)", id, r, err)
		}
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatal(bad)
	}
	t.Logf("%d claims of (task, attempt), %d successes", len(claimed), len(successes))
}
