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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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

// txTracer records, per connection, whether each statement that reports polls to
// report_deferred_polls ran inside an explicit transaction and whether it also
// completed River jobs, for single queries and batches alike.
type txTracer struct {
	mu      sync.Mutex
	inTx    map[*pgx.Conn]bool
	reports []struct{ inTx, completesRiver bool }
}

func (tr *txTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tr.statement(conn, d.SQL)
	return ctx
}

func (tr *txTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A batch's statements (one round trip, one implicit transaction) count one by one.
func (tr *txTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (tr *txTracer) TraceBatchQuery(_ context.Context, conn *pgx.Conn, d pgx.TraceBatchQueryData) {
	tr.statement(conn, d.SQL)
}

func (tr *txTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (tr *txTracer) statement(conn *pgx.Conn, sql string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sql = strings.ToLower(strings.TrimSpace(sql))
	switch {
	case strings.HasPrefix(sql, "begin"):
		tr.inTx[conn] = true
	case strings.HasPrefix(sql, "commit"), strings.HasPrefix(sql, "rollback"):
		tr.inTx[conn] = false
	case strings.Contains(sql, "report_deferred_polls"):
		tr.reports = append(tr.reports, struct{ inTx, completesRiver bool }{
			tr.inTx[conn], strings.Contains(sql, "river_job") && strings.Contains(sql, "'completed'")})
	}
}

// TestGroupFinishIsOneStatement: polls that finish together are reported and
// their River jobs completed by one statement outside an explicit transaction
// (one round trip, committed on its own), not by BEGIN, a report, an UPDATE and
// COMMIT.
func TestGroupFinishIsOneStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const n = 12
	ids := b.deferredFixture(t, n)
	tr := &txTracer{inTx: map[*pgx.Conn]bool{}}
	pcfg := b.pool.Config()
	pcfg.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	must(t, err, "traced pool")
	t.Cleanup(pool.Close)
	cfg := b.config(barrierTracker(n, nil))
	cfg.Pool = pool
	cfg.MaxWorkers = 2 * n
	trig := b.start(t, cfg)
	b.enqueueAll(t, trig, ids)
	b.waitDeferredDone(t, 10*time.Second)
	rows := waitRiverFinal(t, trig, ids...)
	for _, id := range ids {
		if rows[id].State != rivertype.JobStateCompleted {
			t.Errorf("River job of deferred job %d: %s, want completed", id, rows[id].State)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.reports) == 0 || len(tr.reports) > n {
		t.Fatalf("%d statements reported polls, want 1 to %d", len(tr.reports), n)
	}
	for i, r := range tr.reports {
		if r.inTx || !r.completesRiver {
			t.Errorf("report statement %d: in a transaction %v, completes River jobs %v; want one statement doing both, outside a transaction",
				i, r.inTx, r.completesRiver)
		}
	}
}

// TestFinishStatementRaisesForAStoppedRiverJob: the group statement fails with
// _river_job_not_running's error (OK409, table river_job, the job named) when a
// River job of the group is not running, and applies nothing of the group.
func TestFinishStatementRaisesForAStoppedRiverJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ids := b.deferredFixture(t, 2)
	var riverIDs []int64
	rows, err := b.pool.Query(ctx, fmt.Sprintf(`insert into %[1]s.river_job (args, kind, max_attempts, queue, state, attempt, attempted_at, scheduled_at)
		select jsonb_build_object('deferred_job_id', id), $1, 3, $2,
			case when id = $3 then 'retryable' else 'running' end::%[1]s.river_job_state, 1, now(), now()
		from %[1]s.deferred_jobs order by id returning id`, b.schema), PollDeferredJobKind, DefaultQueue, ids[1])
	must(t, err, "insert river jobs")
	riverIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	must(t, err, "insert river jobs")
	tr, err := New(b.config(completeAtOnce()))
	must(t, err, "New")
	defer tr.Close()

	_, err = tr.pool.Exec(ctx, tr.finishStatement(), ids, []string{"completed", "completed"}, []string{"", ""}, riverIDs)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !isRiverJobNotRunning(pgErr) {
		t.Fatalf("finish statement: %v, want OK409 on table river_job", err)
	}
	if want := fmt.Sprintf("river job %d is not running", riverIDs[1]); !strings.Contains(pgErr.Message, want) {
		t.Errorf("message %q does not say %q", pgErr.Message, want)
	}
	if open := b.openDeferred(t, ids); !slices.Equal(open, ids) {
		t.Errorf("open deferred jobs %v, want both %v (nothing applied)", open, ids)
	}
}
