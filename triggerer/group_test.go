package triggerer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"

	"github.com/orkstate/orkstate"
)

func TestSplitOnError(t *testing.T) {
	t.Parallel()
	items := []int{1, 2, 3, 4, 5, 6, 7, 8}
	var applied, failed []int
	calls := 0
	splitOnError(items, func(part []int) error {
		calls++
		if slices.Contains(part, 5) {
			return errors.New("5 is bad")
		}
		applied = append(applied, part...)
		return nil
	}, func(item int, err error) { failed = append(failed, item) })
	slices.Sort(applied)
	if !slices.Equal(applied, []int{1, 2, 3, 4, 6, 7, 8}) || !slices.Equal(failed, []int{5}) {
		t.Errorf("applied %v, failed %v; want all but 5 applied, 5 failed", applied, failed)
	}
	if calls != 7 { // 8 → 4+4 → (ok) + 2+2 → (ok) + 1+1
		t.Errorf("%d calls, want 7", calls)
	}
}

func TestBatcherGroupsWhatArrivesDuringAFlush(t *testing.T) {
	t.Parallel()
	release, started := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	seen := map[int]int{}
	var wg sync.WaitGroup
	b := newBatcher(50, 1, 0, func(items []int) {
		mu.Lock()
		sizes = append(sizes, len(items))
		for _, it := range items {
			seen[it]++
		}
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			close(started)
			<-release
		}
		for range items {
			wg.Done()
		}
	})
	wg.Add(120)
	b.add(0)
	<-started
	for i := 1; i < 120; i++ {
		b.add(i)
	}
	close(release)
	wg.Wait()
	if !slices.Equal(sizes, []int{1, 50, 50, 19}) {
		t.Errorf("group sizes %v, want [1 50 50 19]: the first flush alone, then the queue in groups of at most 50", sizes)
	}
	for i := range 120 {
		if seen[i] != 1 {
			t.Errorf("item %d flushed %d times", i, seen[i])
		}
	}
}

// barrierTracker answers completed once n polls are waiting, so that their
// finishes arrive together and share a group; before answering it calls
// before(jobID).
func barrierTracker(n int, before func(jobID string)) Tracker {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return TrackerFunc{Type: fakeServiceType, Func: func(ctx context.Context, jobID string, _ json.RawMessage) (orkstate.PollResult, string, error) {
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
		}
		if before != nil {
			before(jobID)
		}
		return orkstate.PollCompleted, "", nil
	}}
}

// openDeferred returns the ids of ids' deferred jobs that are still pending or polling.
func (b *testBundle) openDeferred(t *testing.T, ids []int64) []int64 {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		"select id from "+b.schema+".deferred_jobs where id = any($1) and status in ('pending', 'polling') order by id", ids)
	must(t, err, "open deferred jobs")
	open, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	must(t, err, "open deferred jobs")
	return open
}

func (b *testBundle) enqueueAll(t *testing.T, tr *Triggerer, ids []int64) {
	t.Helper()
	ctx := context.Background()
	must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return tr.EnqueueTx(ctx, tx, ids...) }), "EnqueueTx")
}

// TestGroupOneBadPollFailsAlone: a poll whose report cannot be applied (here a
// trigger raises for it) fails on its own; the polls that finished with it in
// one group are committed.
func TestGroupOneBadPollFailsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const n = 12
	ids := b.deferredFixture(t, n)
	bad := ids[5]
	_, err := b.pool.Exec(ctx, fmt.Sprintf(`
		create function %[1]s.refuse_bad() returns trigger language plpgsql as $$
		begin raise exception 'deferred job %%s refused by the test', new.id; end $$;
		create trigger deferred_jobs_refuse_bad before update of status on %[1]s.deferred_jobs
			for each row when (new.id = %[2]d and new.status = 'completed') execute function %[1]s.refuse_bad();`, b.schema, bad))
	must(t, err, "refusing trigger")
	cfg := b.config(barrierTracker(n, nil))
	cfg.MaxWorkers = 2 * n
	cfg.MaxAttempts = 1 // the bad one's error is final at once
	tr := b.start(t, cfg)
	b.enqueueAll(t, tr, ids)

	waitFor(t, "all but the bad job to complete", func() (bool, error) {
		return slices.Equal(b.openDeferred(t, ids), []int64{bad}), nil
	})
	rows := waitRiverFinal(t, tr, ids...)
	for _, id := range ids {
		row := rows[id]
		switch {
		case id == bad && (row.State != rivertype.JobStateDiscarded || !strings.Contains(lastError(row), "refused by the test")):
			t.Errorf("bad job's River job: %s, errors %v; want discarded with the trigger's error", row.State, row.Errors)
		case id != bad && row.State != rivertype.JobStateCompleted:
			t.Errorf("River job of deferred job %d: %s, want completed", id, row.State)
		}
	}
}

// TestGroupRiverJobNoLongerRunning: a poll whose River job stopped running while
// it polled (a rescuer made it retryable) is left out of its group and not
// applied; the others in the group are.
func TestGroupRiverJobNoLongerRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const n = 6
	ids := b.deferredFixture(t, n)
	var jobID string
	must(t, b.pool.QueryRow(ctx, "select job_id from "+b.schema+".deferred_jobs where id = $1", ids[2]).Scan(&jobID), "job id")
	rescue := func(polled string) {
		if polled != jobID {
			return
		}
		_, err := b.pool.Exec(ctx, fmt.Sprintf(`update %s.river_job set state = 'retryable', scheduled_at = now() + interval '1 hour'
			where kind = $1 and (args->>'deferred_job_id')::bigint = $2`, b.schema), PollDeferredJobKind, ids[2])
		if err != nil {
			t.Errorf("rescue: %v", err)
		}
	}
	cfg := b.config(barrierTracker(n, rescue))
	cfg.MaxWorkers = 2 * n
	tr := b.start(t, cfg)
	b.enqueueAll(t, tr, ids)

	waitFor(t, "the other jobs to complete", func() (bool, error) {
		return slices.Equal(b.openDeferred(t, ids), []int64{ids[2]}), nil
	})
	// Nothing more happens to it: its River job waits (an hour) to run again.
	time.Sleep(100 * time.Millisecond)
	if open := b.openDeferred(t, ids); !slices.Equal(open, []int64{ids[2]}) {
		t.Errorf("open deferred jobs %v, want only %d", open, ids[2])
	}
	rows := riverJobs(t, tr)
	if st := rows[ids[2]].State; st != rivertype.JobStateRetryable {
		t.Errorf("the rescued River job is %s, want retryable", st)
	}
}
