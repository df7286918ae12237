package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// limitsStore is a store with its pool and schema, for the checks that read tables.
func limitsStore(t *testing.T) (*pgstore.Store, *pgxpool.Pool, string) {
	t.Helper()
	p, schema := testdb.Schema(t)
	s, err := pgstore.New(p, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return s, p, schema
}

// keyedRun creates a run of wf with n tasks of executor type et, key key (may be "").
func keyedRun(t *testing.T, s *pgstore.Store, wf int64, n int, et, key string, retries, timeout int) *orkstate.Run {
	t.Helper()
	ctx := context.Background()
	r, err := s.CreateRun(ctx, wf, "test")
	if err != nil {
		t.Fatal(err)
	}
	specs := make([]orkstate.NewTask, n)
	for i := range specs {
		specs[i] = orkstate.NewTask{TaskIndex: i, TaskName: fmt.Sprintf("t%d", i), ExecutorType: et,
			ConcurrencyKey: key, MaxRetries: retries, TimeoutSeconds: timeout}
	}
	if _, err := s.CreateDAGTasks(ctx, r.ID, specs); err != nil {
		t.Fatal(err)
	}
	return r
}

func newWorkflow(t *testing.T, s *pgstore.Store, l orkstate.WorkflowLimits) int64 {
	t.Helper()
	ctx := context.Background()
	w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: fmt.Sprintf("wf-%d", rand.Int64()), TaskParams: []byte(`{"task_count": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetWorkflowLimits(ctx, w.ID, l); err != nil {
		t.Fatal(err)
	}
	return w.ID
}

// checkPools compares every pool's counter with the tasks of its groups that hold
// their slots (slot_hold's bit 1) and with those actually in flight, and requires no
// task out of flight to hold slots.
func checkPools(t *testing.T, p *pgxpool.Pool, schema string) {
	t.Helper()
	rows, err := p.Query(context.Background(), fmt.Sprintf(`
		select p.id, coalesce(p.key, 'workflow ' || p.workflow_id), p.in_flight, coalesce(p.slots, 0),
		       (select count(*) from %[1]s.tasks t join %[1]s.slot_groups g on g.id = t.slot_group
		        where p.id in (g.workflow_pool, g.key_pool) and t.slot_hold & 1 = 1),
		       (select count(*) from %[1]s.tasks t join %[1]s.slot_groups g on g.id = t.slot_group
		        where p.id in (g.workflow_pool, g.key_pool) and t.status in ('dispatched', 'running')),
		       (select count(*) from %[1]s.tasks t
		        where t.slot_hold & 1 = 1 and t.status not in ('dispatched', 'running'))
		from %[1]s.slot_pools p order by p.id`, schema))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var name string
		var counter, slots, slotRows, inFlight, strays int
		if err := rows.Scan(&id, &name, &counter, &slots, &slotRows, &inFlight, &strays); err != nil {
			t.Fatal(err)
		}
		// A counter may pass its slots only through a late running report (the state
		// machine takes them), which this churn makes; it must always equal the truth.
		if counter != slotRows || counter != inFlight || strays != 0 {
			t.Errorf("pool %s: counter %d, tasks holding its slots %d, tasks in flight %d, slots %d, tasks out of flight holding slots %d",
				name, counter, slotRows, inFlight, slots, strays)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSlotPoolsAgreeAfterChurn: workflow pools, key pools, both on one task, and fair
// runs, through claims, failing reports with retries, lease expiry, timeouts, pause,
// resume, cancel and operator retry at once: afterwards every pool's counter equals
// its slot rows and its tasks in flight.
func TestSlotPoolsAgreeAfterChurn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, schema := limitsStore(t)
	if err := s.SetConcurrencyKey(ctx, "k", 5); err != nil {
		t.Fatal(err)
	}
	capped := newWorkflow(t, s, orkstate.WorkflowLimits{MaxTasksInFlight: ptr(4), Fair: true})
	plain := newWorkflow(t, s, orkstate.WorkflowLimits{})
	var runs []int64
	for i := range 3 {
		runs = append(runs, keyedRun(t, s, capped, 30, "x", "k", 2, 1).ID)
		runs = append(runs, keyedRun(t, s, capped, 30, "x", "", 2, 0).ID)
		runs = append(runs, keyedRun(t, s, plain, 30, "x", []string{"k", ""}[i%2], 2, 1).ID)
	}
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	worker := func(i int, fn func(rng *rand.Rand) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for time.Now().Before(stop) {
				if err := fn(rng); err != nil {
					errs <- fmt.Errorf("worker %d: %w", i, err)
					return
				}
			}
		}()
	}
	for i := range 3 {
		worker(i, func(rng *rand.Rand) error {
			got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: fmt.Sprint(i), Limit: 1 + rng.IntN(6), Lease: 300 * time.Millisecond})
			if err != nil || len(got) == 0 {
				return err
			}
			var ups []orkstate.TaskUpdate
			for _, c := range got {
				st := []orkstate.TaskStatus{orkstate.TaskSuccess, orkstate.TaskFailed, orkstate.TaskRunning, orkstate.TaskPending, ""}[rng.IntN(5)]
				if st != "" {
					ups = append(ups, orkstate.TaskUpdate{TaskID: c.ID, Status: st, Attempt: c.Attempt})
				}
			}
			if len(ups) > 0 {
				_, err = s.SetTaskStates(ctx, ups)
			}
			return err
		})
	}
	worker(3, func(*rand.Rand) error {
		if _, err := s.ExpireTaskLeases(ctx, 100); err != nil {
			return err
		}
		_, err := s.FailTimedOutTasks(ctx, 100)
		return err
	})
	worker(4, func(rng *rand.Rand) error {
		// not the run worker 5 cancels: a cancel between this pause and resume makes
		// the resume fail
		r := runs[rng.IntN(len(runs)-1)]
		if s.PauseRun(ctx, r) == nil {
			return s.ResumeRun(ctx, r)
		}
		return nil
	})
	var cancelled atomic.Bool
	worker(5, func(rng *rand.Rand) error {
		ts, err := s.ListTasks(ctx, runs[rng.IntN(len(runs)-1)])
		if err != nil {
			return err
		}
		for _, tk := range ts {
			if tk.Status.IsTerminal() {
				_ = s.RetryTask(ctx, tk.ID) // a finished run refuses
				break
			}
		}
		if time.Until(stop) < time.Second && !cancelled.Swap(true) {
			return s.CancelRun(ctx, runs[len(runs)-1])
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkPools(t, p, schema)
}

// TestStartPendingRunsRacingMaxActiveRuns: four schedulers start runs of a workflow
// capped at 3 active runs while another finishes them; a monitor never sees more
// than 3 running, and every run is started exactly once. Everyone stops when every
// run has finished (not after a fixed idle time, which a loaded machine outlasted),
// or fails at a generous deadline.
func TestStartPendingRunsRacingMaxActiveRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, schema := limitsStore(t)
	wf := newWorkflow(t, s, orkstate.WorkflowLimits{MaxActiveRuns: ptr(3)})
	const total = 30
	for range total {
		if _, err := s.CreateRun(ctx, wf, "test"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	var done, finished atomic.Bool // done: stop; finished: every run finished
	var worst atomic.Int64
	var monitor sync.WaitGroup
	monitor.Add(1)
	go func() {
		defer monitor.Done()
		for !done.Load() {
			var n int64
			if err := p.QueryRow(ctx, fmt.Sprintf(`select count(*) from %s.runs where status in ('running', 'paused')`, schema)).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			if n > worst.Load() {
				worst.Store(n)
			}
		}
	}()
	// stop ends every loop: when all runs have finished, or at the deadline.
	stop := func() bool {
		if done.Load() {
			return true
		}
		if time.Now().After(deadline) {
			done.Store(true)
			return true
		}
		return false
	}
	var mu sync.Mutex
	startedBy := map[int64]int{}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop() {
				got, err := s.StartPendingRuns(ctx, 1+i)
				if err != nil {
					t.Error(err)
					done.Store(true)
					return
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, r := range got {
					startedBy[r.RunID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() { // finishes the runs it finds running; says when none is left unfinished
		defer wg.Done()
		for !stop() {
			got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "fin", Limit: 10})
			if err != nil {
				t.Error(err)
				done.Store(true)
				return
			}
			if len(got) == 0 {
				var left int
				if err := p.QueryRow(ctx, fmt.Sprintf(`select count(*) from %s.runs
					where status not in ('success', 'failed', 'cancelled')`, schema)).Scan(&left); err != nil {
					t.Error(err)
					done.Store(true)
					return
				}
				if left == 0 {
					finished.Store(true)
					done.Store(true)
					return
				}
				time.Sleep(time.Millisecond)
				continue
			}
			ups := make([]orkstate.TaskUpdate, len(got))
			for i, c := range got {
				ups[i] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
			}
			if _, err := s.SetTaskStates(ctx, ups); err != nil {
				t.Error(err)
				done.Store(true)
				return
			}
		}
	}()
	wg.Wait()
	done.Store(true)
	monitor.Wait()
	if !finished.Load() {
		t.Errorf("not every run finished by the deadline")
	}
	if w := worst.Load(); w > 3 || w < 2 {
		t.Errorf("most active runs seen: %d, want 3 at most (and the limit reached)", w)
	}
	if len(startedBy) != total {
		t.Errorf("runs started: %d, want %d", len(startedBy), total)
	}
	for id, n := range startedBy {
		if n != 1 {
			t.Errorf("run %d started %d times", id, n)
		}
	}
}

// TestClaimSkipsTasksAFullPoolHoldsBack: 20,000 ready tasks of a key whose one slot
// is taken, and 1,000 without a key. A claim of 1,000 reads the free tasks and one
// index probe of the held-back group (its head is never fetched): the transaction's
// own statistics count the queue entries it read.
func TestClaimSkipsTasksAFullPoolHoldsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, schema := limitsStore(t)
	if err := s.SetConcurrencyKey(ctx, "one", 1); err != nil {
		t.Fatal(err)
	}
	wf := newWorkflow(t, s, orkstate.WorkflowLimits{})
	keyedRun(t, s, wf, 20000, "x", "one", 0, 0)
	if got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 10}); err != nil || len(got) != 1 {
		t.Fatalf("first claim: %d tasks, %v; want the one slot", len(got), err)
	}
	keyedRun(t, s, wf, 1000, "x", "", 0, 0)
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// The xact view also shows counts of earlier transactions of this backend that
	// are not flushed yet (the 20,000 tasks' creation): a difference is taken.
	queueReads := func() int64 {
		var n int64
		if err := tx.QueryRow(ctx, fmt.Sprintf(`select coalesce(sum(idx_tup_fetch + seq_tup_read), 0) from pg_stat_xact_user_tables
			where schemaname = '%s' and relname = 'task_queue'`, schema)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := queueReads()
	got, err := s.WithTx(tx).ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1000})
	if err != nil || len(got) != 1000 {
		t.Fatalf("claim: %d tasks, %v; want the 1,000 without a key", len(got), err)
	}
	read := queueReads() - before
	// 1,000 ordered reads + 1,000 key probes of the lock and the delete + a few probes
	if read > 3100 {
		t.Errorf("the claim read %d queue index entries; the 20,000 held-back tasks must not be read", read)
	}
	t.Logf("queue index entries read by the claim: %d", read)
}

// TestFairnessBoundWithLargeRun: a fair workflow's run with 20,000 ready tasks, then
// a 10-task run; claims of 100 take the small run whole in the first claim (the bound
// is ceil(10 / ceil(L/2)) claims of L), and the claim costs no more than one of a
// workflow without fairness.
func TestFairnessBoundWithLargeRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, _ := limitsStore(t)
	wf := newWorkflow(t, s, orkstate.WorkflowLimits{Fair: true})
	keyedRun(t, s, wf, 20000, "x", "", 0, 0)
	small := keyedRun(t, s, wf, 10, "x", "", 0, 0)
	start := time.Now()
	got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range got {
		if c.RunID == small.ID {
			n++
		}
	}
	if n != 10 {
		t.Errorf("the first claim of 100 took %d of the small run's 10 tasks", n)
	}
	t.Logf("claim of 100 with 20,000 ready in a fair run: %v", time.Since(start))
}

func ptr[T any](v T) *T { return &v }

// TestPrioritiesMigrationDownKeepsWork: migration 005's down part keeps every ready,
// leased and timed task (their priorities, keys and slots go with the tables), and
// the install works again after migrating up.
func TestPrioritiesMigrationDownKeepsWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, schema := limitsStore(t)
	if err := s.SetConcurrencyKey(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	wf := newWorkflow(t, s, orkstate.WorkflowLimits{Priority: 3, MaxActiveRuns: ptr(5), MaxTasksInFlight: ptr(10)})
	keyedRun(t, s, wf, 5, "x", "k", 0, 60)
	keyedRun(t, s, wf, 5, "x", "", 0, 0)
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "m", Limit: 3})
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	count := func(q string) int {
		var n int
		if err := p.QueryRow(ctx, fmt.Sprintf(q, schema)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	queued, leased := count(`select count(*) from %s.task_queue`), count(`select count(*) from %s.task_leases`)
	if err := pgstore.MigrateTo(ctx, p, schema, 4); err != nil {
		t.Fatal(err)
	}
	if q, l := count(`select count(*) from %s.task_queue`), count(`select count(*) from %s.task_leases`); q != queued || l != leased {
		t.Fatalf("at version 4: %d queue rows (had %d), %d lease rows (had %d)", q, queued, l, leased)
	}
	if err := pgstore.Migrate(ctx, p, schema); err != nil {
		t.Fatal(err)
	}
	for _, c := range claimed {
		if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}); err != nil {
			t.Fatal(err)
		}
	}
	rest, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "m", Limit: 100})
	if err != nil || len(rest) != 7 {
		t.Fatalf("after the round trip: claimed %d, %v; want the 7 left", len(rest), err)
	}
	checkPools(t, p, schema)
}

// TestSetConcurrencyKeyRefusesNullSlots: a key always has a slot count (schema version
// 8). set_concurrency_key(key, null) used to make a key that only counted, which the
// Go contract could neither create nor copy; now it is OK422 naming slots and changes
// nothing, and the table refuses such a row.
func TestSetConcurrencyKeyRefusesNullSlots(t *testing.T) {
	t.Parallel()
	s, p, schema := limitsStore(t)
	ctx := context.Background()
	if err := s.SetConcurrencyKey(ctx, "gpu", 2); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"gpu", "new"} {
		_, err := p.Exec(ctx, `select `+schema+`_api.set_concurrency_key($1, null)`, key)
		wantSQLState(t, "set_concurrency_key("+key+", null)", err, "OK422")
		if err == nil || !strings.Contains(err.Error(), "slots must be between 1 and 1000000, got NULL") {
			t.Errorf("set_concurrency_key(%s, null): %v, want a message naming slots and NULL", key, err)
		}
	}
	keys, err := s.ConcurrencyKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []orkstate.ConcurrencyKey{{Key: "gpu", Slots: 2}}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys after the refused calls: %+v, want %+v", keys, want)
	}
	_, err = p.Exec(ctx, `insert into `+schema+`.slot_pools (key, slots) values ('raw', null)`)
	wantSQLState(t, "a key row without slots", err, "23514")
}

// TestMigrationGivesCountingKeysSlots: a key made with null slots before schema
// version 9 gets 1,000,000 slots (it limited nothing before and still counts its tasks);
// a workflow's pool without a limit keeps null; the way down keeps the rows.
func TestMigrationGivesCountingKeysSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := testdb.Pool(t)
	schema := testdb.SchemaName(t)
	t.Cleanup(func() { testdb.Drop(t, p, schema) })
	if err := pgstore.MigrateTo(ctx, p, schema, 8); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`insert into {ork}.workflows (name) values ('w')`,
		`insert into {ork}.slot_pools (key, slots, in_flight) values ('counted', null, 3), ('gpu', 4, 1)`,
		`insert into {ork}.slot_pools (workflow_id, slots) select id, null from {ork}.workflows`,
	} {
		if _, err := p.Exec(ctx, strings.ReplaceAll(q, "{ork}", schema)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := pgstore.Migrate(ctx, p, schema); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		var got string
		if err := p.QueryRow(ctx, `select string_agg(coalesce(key, 'workflow') || ' ' || coalesce(slots::text, 'null')
			|| ' ' || in_flight, ', ' order by id) from `+schema+`.slot_pools`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := read(), "counted 1000000 3, gpu 4 1, workflow null 0"; got != want {
		t.Errorf("pools after the upgrade: %s, want %s", got, want)
	}
	if err := pgstore.MigrateTo(ctx, p, schema, 8); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), "counted 1000000 3, gpu 4 1, workflow null 0"; got != want {
		t.Errorf("pools after the way down: %s, want %s", got, want)
	}
}

// TestSlotOnTaskMigrationKeepsSlots: migration 011 moves the slots held from
// task_slots rows onto the task rows (slot_hold) and its down part writes the rows
// back: after a round trip through version 10 the claimed tasks still hold their
// slots, and reporting them gives every slot back once.
func TestSlotOnTaskMigrationKeepsSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, schema := limitsStore(t)
	if err := s.SetConcurrencyKey(ctx, "k", 5); err != nil {
		t.Fatal(err)
	}
	wf := newWorkflow(t, s, orkstate.WorkflowLimits{MaxTasksInFlight: ptr(10)})
	keyedRun(t, s, wf, 5, "x", "k", 0, 0)
	keyedRun(t, s, wf, 5, "x", "", 0, 0)
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "m", Limit: 4})
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	count := func(q string) int {
		var n int
		if err := p.QueryRow(ctx, strings.ReplaceAll(q, "{ork}", schema)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := pgstore.MigrateTo(ctx, p, schema, 10); err != nil {
		t.Fatal(err)
	}
	if n := count(`select count(*) from {ork}.task_slots s join {ork}.tasks t on t.id = s.task_id
		where t.status = 'dispatched' and s.slot_group = t.slot_group`); n != 4 {
		t.Fatalf("at version 10: %d task_slots rows of the 4 claimed tasks", n)
	}
	if err := pgstore.Migrate(ctx, p, schema); err != nil {
		t.Fatal(err)
	}
	if n := count(`select count(*) from {ork}.tasks where slot_hold & 1 = 1 and status = 'dispatched'`); n != 4 {
		t.Fatalf("after the round trip: %d of the 4 claimed tasks hold their slots", n)
	}
	checkPools(t, p, schema)
	for _, c := range claimed {
		if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}); err != nil {
			t.Fatal(err)
		}
	}
	checkPools(t, p, schema)
	if n := count(`select coalesce(sum(in_flight), 0) from {ork}.slot_pools`); n != 0 {
		t.Fatalf("after the reports: %d slots still counted", n)
	}
}
