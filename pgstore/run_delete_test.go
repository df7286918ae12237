package pgstore_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// Since migration 010 tasks.run_id has no foreign key: the tasks of a deleted run
// go by runs' statement trigger, and a run's deletion is ordered with the starts of
// it by the run's row lock. Workflows are deleted while schedulers start their runs;
// no task may outlive its run, and the install must have no foreign key on
// tasks.run_id (the check the trigger replaced, about a third of a start's CPU).
func TestRunDeletionRacesStartsWithoutOrphans(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	if n := b.count(t, `select count(*) from pg_constraint where conrelid = '{ork}.tasks'::regclass and contype = 'f'
		and conkey = array[(select attnum from pg_attribute where attrelid = '{ork}.tasks'::regclass and attname = 'run_id')]`); n != 0 {
		t.Fatalf("tasks.run_id has %d foreign keys, want none (migration 010)", n)
	}
	specs := []orkstate.TaskSpec{{Name: "a", DependsOn: []string{}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"a"}}}
	for round := 0; round < 20; round++ {
		var wfs []int64
		for k := 0; k < 4; k++ {
			w := b.workflow(t, fmt.Sprintf("race_%d_%d", round, k))
			snap, err := b.s.CreateSnapshot(b.ctx, w.ID, specs)
			noErr(t, err)
			noErr(t, b.s.SetCurrentSnapshot(b.ctx, w.ID, snap.ID))
			// The first run's start compiles the snapshot: done before the race,
			// which is then between starts from compiled snapshots and deletions.
			b.run(t, w.ID)
			for {
				started, err := b.s.StartPendingRuns(b.ctx, 10)
				noErr(t, err)
				if len(started) == 0 {
					break
				}
			}
			in := make([]orkstate.NewRun, 25)
			for i := range in {
				in[i] = orkstate.NewRun{WorkflowID: w.ID, TriggeredBy: "race"}
			}
			_, err = b.s.CreateRuns(b.ctx, in)
			noErr(t, err)
			wfs = append(wfs, w.ID)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for k := 0; k < 3; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					started, err := b.s.StartPendingRuns(b.ctx, 5)
					if pgstore.IsTransient(err) {
						continue // a deadlock with a deletion, retried as a scheduler does
					}
					if err != nil {
						errs <- err
						return
					}
					if len(started) == 0 {
						return
					}
				}
			}()
		}
		for _, id := range wfs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A deletion can deadlock with a start (the first start of a snapshot
				// compiles it while the deletion waits for the run to set its
				// snapshot_id null); the caller retries, as pgstore.IsTransient says.
				err := b.s.DeleteWorkflow(b.ctx, id)
				for pgstore.IsTransient(err) {
					err = b.s.DeleteWorkflow(b.ctx, id)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := b.count(t, `select count(*) from {ork}.tasks t where not exists (select 1 from {ork}.runs r where r.id = t.run_id)`); n != 0 {
			t.Fatalf("round %d: %d tasks outlived their runs", round, n)
		}
	}
	if n := b.count(t, `select count(*) from {ork}.tasks`); n != 0 {
		t.Fatalf("%d tasks left after every workflow was deleted", n)
	}
}
