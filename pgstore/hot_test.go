package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// startRun creates a workflow with the given DAG and starts one run of it.
func startRun(t testing.TB, s *pgstore.Store, specs []orkstate.TaskSpec) (*orkstate.Run, []orkstate.Task) {
	t.Helper()
	ctx := context.Background()
	w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: fmt.Sprintf("wf-%d", time.Now().UnixNano()), JobName: "job", Project: "p", Region: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) > 0 {
		if _, err := s.ReplaceWorkflowTasks(ctx, w.ID, specs); err != nil {
			t.Fatal(err)
		}
	}
	run, err := s.CreateRun(ctx, w.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	started, err := s.StartPendingRuns(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(started) != 1 || started[0].Status != orkstate.RunRunning {
		t.Fatalf("StartPendingRuns = %+v, want one running run", started)
	}
	tasks, err := s.ListTasks(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	return run, tasks
}

func TestDiamondFlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	run, tasks := startRun(t, s, []orkstate.TaskSpec{
		{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"a"}},
		{Name: "d", DependsOn: []string{"b", "c"}},
	})
	if len(tasks) != 4 {
		t.Fatalf("got %d tasks", len(tasks))
	}
	claim := func(want ...string) []orkstate.ClaimedTask {
		t.Helper()
		got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "t", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range got {
			names = append(names, c.TaskName)
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Fatalf("claimed %v, want %v", names, want)
		}
		return got
	}
	a := claim("a")
	if a[0].Attempt != 1 || a[0].JobName != "job" || a[0].Project != "p" {
		t.Fatalf("claimed %+v", a[0])
	}
	out, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: a[0].ID, Status: orkstate.TaskRunning, Attempt: 1},
		{TaskID: a[0].ID, Status: orkstate.TaskSuccess, Attempt: 1, Output: json.RawMessage(`{"rows":3}`)},
		{TaskID: 999999, Status: orkstate.TaskSuccess},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Outcome != orkstate.OutcomeApplied || out[1].Outcome != orkstate.OutcomeApplied || out[2].Outcome != orkstate.OutcomeNotFound {
		t.Fatalf("outcomes %+v", out)
	}
	bc := claim("b", "c")
	if string(bc[0].UpstreamOutputs["a"]) != `{"rows": 3}` {
		t.Fatalf("upstream outputs %s", bc[0].UpstreamOutputs)
	}
	if _, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: bc[0].ID, Status: orkstate.TaskSuccess, Attempt: 1},
		{TaskID: bc[1].ID, Status: orkstate.TaskSuccess, Attempt: 1},
	}); err != nil {
		t.Fatal(err)
	}
	d := claim("d")
	if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: d[0].ID, Status: orkstate.TaskSuccess, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != orkstate.RunSuccess || got.FinishedAt == nil {
		t.Fatalf("run %+v, want success", got)
	}
}

// A claimer whose backend dies before it commits loses nothing: its claim rolls back.
func TestClaimerBackendTerminated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	run, _ := startRun(t, s, []orkstate.TaskSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}})

	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	claimed, err := s.WithTx(tx).ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "doomed", Limit: 2})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, "select pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("commit after the backend was terminated succeeded")
	}
	// pg_terminate_backend only signals; the locks go when the backend has exited.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var alive bool
		if err := s.Pool().QueryRow(ctx, "select exists (select 1 from pg_stat_activity where pid = $1)", pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still alive", pid)
		}
	}
	again, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "survivor", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 3 {
		t.Fatalf("after the kill %d tasks were claimable, want 3", len(again))
	}
	for _, c := range again {
		if c.Attempt != 1 || c.RunID != run.ID {
			t.Fatalf("claimed %+v, want attempt 1 of run %d", c, run.ID)
		}
	}
}

// One lease row names a claim's tasks; the sweep keeps it while any of them is still
// dispatched under the ended lease (here: left over by the limit, or finished, or
// claimed again under a new lease), and deletes it once it has dealt with them all.
func TestLeaseRowOutlivesAPartialSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	b := &testBundle{ctx: ctx, s: s}
	startRun(t, s, []orkstate.TaskSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}})
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "gone", Limit: 10, Lease: time.Hour})
	if err != nil || len(claimed) != 5 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	if n := b.count(t, `select count(*) from {ork}.task_leases`); n != 1 {
		t.Fatalf("%d lease rows for one claim, want 1", n)
	}
	// a finished before its lease ended: the sweep must leave it alone.
	if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: claimed[0].ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt}); err != nil {
		t.Fatal(err)
	}
	b.exec(t, `update {ork}.task_leases set expires_at = now() - interval '1 minute'`)
	b.exec(t, `update {ork}.tasks set lease_expires_at = now() - interval '1 minute' where status = 'dispatched'`)

	first, err := s.ExpireTaskLeases(ctx, 2)
	if err != nil || len(first) != 2 {
		t.Fatalf("first sweep: %+v %v", first, err)
	}
	if n := b.count(t, `select count(*) from {ork}.task_leases`); n != 1 {
		t.Fatalf("the lease row went with two of its tasks still expired (%d rows)", n)
	}
	// One expired task is claimed again: its new lease row is not due, the old one still is.
	again, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "next", Limit: 1, Lease: time.Hour})
	if err != nil || len(again) != 1 || again[0].Attempt != 2 {
		t.Fatalf("claim again: %+v %v", again, err)
	}
	rest, err := s.ExpireTaskLeases(ctx, 10)
	if err != nil || len(rest) != 2 {
		t.Fatalf("second sweep: %+v %v", rest, err)
	}
	for _, o := range append(first, rest...) {
		if o.Outcome != orkstate.OutcomeApplied || o.Status != orkstate.TaskPending || o.TaskID == claimed[0].ID {
			t.Fatalf("sweep outcome %+v", o)
		}
	}
	if n := b.count(t, `select count(*) from {ork}.task_leases where expires_at <= now()`); n != 0 {
		t.Fatalf("%d due lease rows left after every task was dealt with", n)
	}
	if n := b.count(t, `select count(*) from {ork}.task_leases`); n != 1 {
		t.Fatalf("%d lease rows, want the re-claim's", n)
	}
	if none, err := s.ExpireTaskLeases(ctx, 10); err != nil || len(none) != 0 {
		t.Fatalf("third sweep: %+v %v", none, err)
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatal(bad)
	}
}

// churnWorker claims with a 5 ms lease until it has found nothing idle times in a row;
// it holds each batch for a random 0…maxHold ms (sometimes past the lease), then
// reports every task with the status pick chooses and hands the call to record.
func churnWorker(ctx context.Context, s *pgstore.Store, name string, rng *rand.Rand, limit, idle int, maxHold time.Duration,
	pick func(*rand.Rand) orkstate.TaskStatus,
	record func([]orkstate.ClaimedTask, []orkstate.TaskUpdate, []orkstate.TaskOutcome) error) error {
	for found := 0; found < idle; {
		got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: name, Limit: limit, Lease: 5 * time.Millisecond})
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if len(got) == 0 {
			found++
			time.Sleep(time.Millisecond)
			continue
		}
		found = 0
		time.Sleep(time.Duration(rng.Int64N(int64(maxHold))))
		ups := make([]orkstate.TaskUpdate, len(got))
		for k, c := range got {
			ups[k] = orkstate.TaskUpdate{TaskID: c.ID, Status: pick(rng), Attempt: c.Attempt}
		}
		out, err := s.SetTaskStates(ctx, ups)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := record(got, ups, out); err != nil {
			return err
		}
	}
	return nil
}

// every runs fn every period until stop is closed.
func every(ctx context.Context, stop <-chan struct{}, period time.Duration, fn func(context.Context) error) error {
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(period):
		}
		if err := fn(ctx); err != nil {
			return err
		}
	}
}

func sweepLeases(s *pgstore.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := s.ExpireTaskLeases(ctx, 50); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
		return nil
	}
}

// Claimers with leases shorter than their work, a sweeper expiring them meanwhile, and
// late reports: every task ends successful with exactly one applied success, late
// reports are refused as stale, and the queue, lease and deadline tables agree with
// the tasks at the end.
func TestLeaseChurn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	specs := make([]orkstate.TaskSpec, 400)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%03d", i), TimeoutSeconds: 60}
	}
	run, _ := startRun(t, s, specs)

	var mu sync.Mutex
	history := map[int64][]string{}
	applied := map[int64]int{}
	stale := 0
	stop := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return every(gctx, stop, 2*time.Millisecond, sweepLeases(s)) })
	var claimers sync.WaitGroup
	for i := 0; i < 4; i++ {
		claimers.Add(1)
		g.Go(func() error {
			defer claimers.Done()
			success := func(*rand.Rand) orkstate.TaskStatus { return orkstate.TaskSuccess }
			return churnWorker(gctx, s, fmt.Sprint("c", i), rand.New(rand.NewPCG(uint64(i), 1)), 20, 50, 8*time.Millisecond, success,
				func(got []orkstate.ClaimedTask, _ []orkstate.TaskUpdate, out []orkstate.TaskOutcome) error {
					mu.Lock()
					defer mu.Unlock()
					for k, o := range out {
						history[o.TaskID] = append(history[o.TaskID], fmt.Sprintf("c%d attempt %d: %s", i, got[k].Attempt, o.Outcome))
						switch o.Outcome {
						case orkstate.OutcomeApplied:
							applied[o.TaskID]++
						case orkstate.OutcomeStale:
							stale++
						default:
							return fmt.Errorf("task %d: outcome %s", o.TaskID, o.Outcome)
						}
					}
					return nil
				})
		})
	}
	claimers.Wait()
	close(stop)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(specs) {
		t.Fatalf("%d tasks got an applied success, want %d", len(applied), len(specs))
	}
	for id, n := range applied {
		if n != 1 {
			t.Fatalf("task %d: %d applied successes: %v", id, n, history[id])
		}
	}
	t.Logf("%d late reports refused as stale", stale)
	if r, err := s.GetRun(ctx, run.ID); err != nil || r.Status != orkstate.RunSuccess {
		t.Fatalf("run = %+v, %v; want success", r, err)
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatal(bad)
	}
}

// Everything at once over chains of tasks: claimers with short leases, reports that
// succeed or fail (with retries), a lease sweeper, and runs paused, resumed and
// cancelled under them. Afterwards no task has two applied successes, the run
// counters match the tasks, and the queue, lease and deadline tables match the rule.
func TestMixedChurn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	b := &testBundle{ctx: ctx, s: s}
	var runs []int64
	for r := 0; r < 8; r++ {
		var specs []orkstate.TaskSpec
		for c := 0; c < 5; c++ {
			for l := 0; l < 6; l++ {
				sp := orkstate.TaskSpec{Name: fmt.Sprintf("c%d_%d", c, l), MaxRetries: 1, TimeoutSeconds: 60}
				if l > 0 {
					sp.DependsOn = []string{fmt.Sprintf("c%d_%d", c, l-1)}
				}
				specs = append(specs, sp)
			}
		}
		run, _ := startRun(t, s, specs)
		runs = append(runs, run.ID)
	}

	var mu sync.Mutex
	successes := map[int64]int{}
	stop := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return every(gctx, stop, 3*time.Millisecond, sweepLeases(s)) })
	rng := rand.New(rand.NewPCG(99, 1))
	k := 0
	g.Go(func() error { // an operator pausing, resuming and cancelling runs
		return every(gctx, stop, 4*time.Millisecond, func(ctx context.Context) error {
			id := runs[rng.IntN(len(runs))]
			var err error
			switch {
			case k == 20 || k == 40:
				err = s.CancelRun(ctx, id)
			case k%2 == 0:
				err = s.PauseRun(ctx, id)
			default:
				err = s.ResumeRun(ctx, id)
			}
			k++
			// Pausing a paused run or resuming a running one is refused: that is fine here.
			if err != nil && !errors.Is(err, orkstate.ErrInvalidTransition) {
				return fmt.Errorf("operator: %w", err)
			}
			return nil
		})
	})
	var workers sync.WaitGroup
	for i := 0; i < 3; i++ {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			successOrFailure := func(rng *rand.Rand) orkstate.TaskStatus {
				if rng.IntN(5) == 0 {
					return orkstate.TaskFailed
				}
				return orkstate.TaskSuccess
			}
			return churnWorker(gctx, s, fmt.Sprint("w", i), rand.New(rand.NewPCG(uint64(i), 2)), 10, 100, 7*time.Millisecond, successOrFailure,
				func(_ []orkstate.ClaimedTask, ups []orkstate.TaskUpdate, out []orkstate.TaskOutcome) error {
					mu.Lock()
					defer mu.Unlock()
					for k, o := range out {
						if o.Outcome == orkstate.OutcomeApplied && ups[k].Status == orkstate.TaskSuccess {
							successes[o.TaskID]++
						}
					}
					return nil
				})
		})
	}
	workers.Wait()
	close(stop)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for id, n := range successes {
		if n > 1 {
			t.Fatalf("task %d: %d applied successes", id, n)
		}
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatal(bad)
	}
	if n := b.count(t, `select count(*) from {ork}.runs r where r.tasks_finished <> (select count(*) from {ork}.tasks t
		where t.run_id = r.id and t.status in ('success', 'failed', 'cancelled'))
		or (r.status in ('success', 'failed', 'cancelled')) <> (r.tasks_finished = r.tasks_total)`); n != 0 {
		t.Fatalf("%d runs whose counters or status disagree with their tasks", n)
	}
	t.Logf("%d tasks succeeded", len(successes))
}

// A claimer that lost its lease cannot overwrite the new claimer's state.
func TestExpiredLeaseFencesOldClaimer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	startRun(t, s, []orkstate.TaskSpec{{Name: "a"}})
	first, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "old", Limit: 1, Lease: time.Millisecond})
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := s.ExpireTaskLeases(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) == 1 {
			if out[0].Outcome != orkstate.OutcomeApplied || out[0].Status != orkstate.TaskPending {
				t.Fatalf("expire: %+v", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease never expired")
		}
		time.Sleep(2 * time.Millisecond)
	}
	second, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "new", Limit: 1})
	if err != nil || len(second) != 1 || second[0].Attempt != 2 {
		t.Fatalf("second claim %+v %v", second, err)
	}
	_, err = s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: first[0].ID, Status: orkstate.TaskFailed, Attempt: first[0].Attempt})
	if !errors.Is(err, orkstate.ErrStale) {
		t.Fatalf("late report: %v, want ErrStale", err)
	}
	task, err := s.GetTask(ctx, first[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != orkstate.TaskDispatched || task.ClaimedBy != "new" {
		t.Fatalf("task %+v changed by a stale report", task)
	}
}

// queueMismatches lists the tasks that the claim and sweep tables misfile, by the rule
// of migration 003: a task_queue row exactly for pending tasks whose dependencies have
// all succeeded (with ready_at = retry_at), and a waiting task's UnmetDeps the number
// that have not (issue 14: neither is read from the row alone); a task_deadlines row
// exactly for dispatched and running tasks with a timeout_at (the same time); and every
// dispatched task named by a task_leases row due no later than its lease.
func queueMismatches(t testing.TB, s *pgstore.Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), strings.NewReplacer("{ork}", s.Schema()).Replace(`
		select coalesce(t.id, q.task_id)::text || ': task ' || coalesce(t.status, 'none') || '/' ||
		       coalesce(t.unmet_deps::text, '-') || ', queue ' || case when q.task_id is null then 'none' else 'ready' end
		from {ork}.tasks t
		full join {ork}.task_queue q on q.task_id = t.id
		where (q.task_id is not null) <> coalesce(t.status = 'pending'
		          -- ready once every dependency has succeeded, however that is kept (readiness.sql)
		          and not exists (select 1 from unnest(t.depends_on) d where not exists (select 1 from {ork}.tasks u
		               where u.run_id = t.run_id and u.task_name = d and u.status = 'success')), false)
		   or (q.task_id is not null and q.ready_at is distinct from t.retry_at)
		union all
		-- a waiting task's UnmetDeps is its dependencies that have not succeeded
		select t.id::text || ': task ' || t.status || ' UnmetDeps ' || {ork}_api.task_unmet_deps(t.id, t.run_id, t.depends_on, t.unmet_deps) ||
		       ', unmet ' || x.n
		from {ork}.tasks t
		cross join lateral (select count(*)::integer as n from unnest(t.depends_on) d where not exists (select 1 from {ork}.tasks u
		               where u.run_id = t.run_id and u.task_name = d and u.status = 'success')) x
		where t.status in ('pending', 'paused') and {ork}_api.task_unmet_deps(t.id, t.run_id, t.depends_on, t.unmet_deps) <> x.n
		union all
		select coalesce(t.id, d.task_id)::text || ': task ' || coalesce(t.status, 'none') || ' timeout ' ||
		       coalesce(t.timeout_at::text, '-') || ', deadline ' || coalesce(d.timeout_at::text, 'none')
		from {ork}.tasks t
		full join {ork}.task_deadlines d on d.task_id = t.id
		where (d.task_id is not null) <> coalesce(t.status in ('dispatched', 'running') and t.timeout_at is not null, false)
		   or d.timeout_at is distinct from t.timeout_at and d.task_id is not null
		union all
		select t.id::text || ': dispatched with no lease row due by ' || coalesce(t.lease_expires_at::text, '-')
		from {ork}.tasks t
		where t.status = 'dispatched'
		  and not exists (select 1 from {ork}.task_leases l where l.task_ids @> t.id and l.expires_at <= t.lease_expires_at)
		order by 1`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Every path that moves a task keeps task_queue, task_deadlines and task_leases in
// step with tasks.
func TestTaskQueueFollowsTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	run, _ := startRun(t, s, []orkstate.TaskSpec{
		{Name: "a", MaxRetries: 1}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"a"}, TimeoutSeconds: 30},
		{Name: "d", DependsOn: []string{"b", "c"}}, {Name: "e"}, {Name: "f", DependsOn: []string{"e"}}, {Name: "g"},
		{Name: "h", TimeoutSeconds: 30}, {Name: "i", TimeoutSeconds: 30}, {Name: "j"},
	})
	check := func(step string) {
		t.Helper()
		if bad := queueMismatches(t, s); len(bad) > 0 {
			t.Fatalf("after %s, the queue, deadline or lease tables disagree with tasks: %v", step, bad)
		}
	}
	check("start")
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "q", Limit: 10})
	if err != nil || len(claimed) != 6 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	check("claim")
	ids := map[string]int64{}
	for _, c := range claimed {
		ids[c.TaskName] = c.ID
	}
	if _, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: ids["a"], Status: orkstate.TaskFailed, Error: "boom"}, // retry
		{TaskID: ids["e"], Status: orkstate.TaskRunning},
		{TaskID: ids["e"], Status: orkstate.TaskSuccess},
		{TaskID: ids["g"], Status: orkstate.TaskPending}, // requeue
		{TaskID: ids["h"], Status: orkstate.TaskRunning}, // the deadline moves to started_at
	}); err != nil {
		t.Fatal(err)
	}
	check("retry, success, requeue")
	// The sweeps: i's timeout and j's lease end now.
	b := &testBundle{ctx: ctx, s: s}
	b.exec(t, `update {ork}.tasks set timeout_at = now() - interval '1 second' where id = $1`, ids["i"])
	b.exec(t, `update {ork}.task_deadlines set timeout_at = now() - interval '1 second' where task_id = $1`, ids["i"])
	b.exec(t, `update {ork}.task_leases set expires_at = now() - interval '1 second' where task_ids @> $1::bigint`, ids["j"])
	b.exec(t, `update {ork}.tasks set lease_expires_at = now() - interval '1 second' where id = $1`, ids["j"])
	if out, err := s.FailTimedOutTasks(ctx, 10); err != nil || len(out) != 1 || out[0].TaskID != ids["i"] {
		t.Fatalf("timeout sweep: %+v %v", out, err)
	}
	check("timeout sweep")
	if out, err := s.ExpireTaskLeases(ctx, 10); err != nil || len(out) != 1 || out[0].TaskID != ids["j"] {
		t.Fatalf("lease sweep: %+v %v", out, err)
	}
	check("lease sweep")
	if n := b.count(t, `select count(*) from {ork}.task_leases where expires_at <= now()`); n != 0 {
		t.Fatalf("%d due lease rows left after the sweep, want 0", n)
	}
	if err := s.PauseRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	check("pause")
	if err := s.ResumeRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	check("resume")
	more, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "q", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	check("second claim")
	for _, c := range more {
		ids[c.TaskName] = c.ID
	}
	if _, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{
		{TaskID: ids["f"], Status: orkstate.TaskRunning},
		{TaskID: ids["h"], Status: orkstate.TaskSuccess}, // its deadline goes
	}); err != nil {
		t.Fatal(err)
	}
	check("running")
	// An imported copy of the run gets the same queue rows, downstream arrays,
	// readiness counters and timeouts as the original.
	src, err := s.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := s.ListTasks(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := s.ImportRun(ctx, orkstate.RunImport{Run: *src, Tasks: tasks})
	if err != nil {
		t.Fatal(err)
	}
	check("import")
	if orig, copied := taskShapes(t, s, run.ID), taskShapes(t, s, imp.RunID); !reflect.DeepEqual(orig, copied) {
		t.Fatalf("imported tasks differ:\n orig %v\n copy %v", orig, copied)
	}
	if err := s.RetryTask(ctx, ids["e"]); err != nil {
		t.Fatal(err)
	}
	check("operator retry of a succeeded task")
	if err := s.CancelRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	check("cancel")
}

// A statement that finishes 1,000 tasks (and their run) sends one notification per
// channel, not one per row, and a dependent made ready is announced on tasks_ready.
func TestOneNotificationPerStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	specs := make([]orkstate.TaskSpec, 1000)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%04d", i)}
	}
	_, tasks := startRun(t, s, specs)

	conn := listen(t, s, "_tasks_ready", "_runs")
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "n", Limit: 1000})
	if err != nil || len(claimed) != len(tasks) {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	ups := make([]orkstate.TaskUpdate, len(claimed))
	for i, c := range claimed {
		ups[i] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
	}
	if _, err := s.SetTaskStates(ctx, ups); err != nil {
		t.Fatal(err)
	}
	// A marker sent after the batch committed: everything before it has arrived.
	if _, err := s.Pool().Exec(ctx, "select pg_notify($1, 'marker')", s.Schema()+"_runs"); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	var payloads []string
	for {
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := conn.Conn().WaitForNotification(waitCtx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for notifications: %v (got %v)", err, got)
		}
		if n.Payload == "marker" {
			break
		}
		switch n.Channel {
		case s.Schema() + "_runs", s.Schema() + "_tasks_ready":
			got[strings.TrimPrefix(n.Channel, s.Schema())]++
			payloads = append(payloads, n.Channel+" "+n.Payload)
		}
	}
	if got["_runs"] != 1 || got["_tasks_ready"] != 0 || len(got) != 1 {
		t.Fatalf("notifications for a 1,000-task batch that finished its run: %v, want one on _runs; got %q", got, payloads)
	}
}

// taskShapes describes a run's tasks by name: status, unmet_deps, downstream names,
// timeout_at, the task_queue row and the deadline, for comparing a run with its import.
func taskShapes(t testing.TB, s *pgstore.Store, runID int64) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), strings.NewReplacer("{ork}", s.Schema()).Replace(`
		select t.task_name || ' ' || t.status || ' unmet=' || t.unmet_deps || ' down=' ||
		       coalesce((select string_agg(d.task_name, ',' order by d.task_name) from {ork}.tasks d where d.id = any(t.downstream)), '') ||
		       ' timeout=' || coalesce(t.timeout_at::text, '-') ||
		       ' queue=' || case when q.task_id is null then '-' else 'ready/' || coalesce(q.ready_at::text, '-') end ||
		       ' deadline=' || coalesce(dl.timeout_at::text, '-')
		from {ork}.tasks t
		left join {ork}.task_queue q on q.task_id = t.id
		left join {ork}.task_deadlines dl on dl.task_id = t.id
		where t.run_id = $1 order by t.task_name`), runID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// listen holds a pooled connection listening on the install's channels (suffixes
// such as "_runs") until the test ends, then unlistens it: a connection must not go
// back to the shared pool still listening, or other tests hear its channels.
func listen(t testing.TB, s *pgstore.Store, suffixes ...string) *pgxpool.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Closed, not given back: pgx keeps notifications it has received but not handed
	// out, even after UNLISTEN, and installs are reused, so a later test on this
	// connection would be handed this one's leftovers on its own channel names.
	t.Cleanup(func() { _ = conn.Hijack().Close(ctx) })
	for _, suffix := range suffixes {
		if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{s.Schema() + suffix}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// The first run of a snapshot compiles it; later runs insert their tasks from the
// compiled rows. Both paths must give a run the same tasks, counters, dependents,
// queue rows and columns, and the compiled run must run to success.
func TestCompiledSnapshotRunsMatchTheFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	b := &testBundle{ctx: ctx, s: s}
	w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "compiled", JobName: "job"})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.CreateSnapshot(ctx, w.ID, []orkstate.TaskSpec{
		{Name: "root", ExecutorType: "x", Params: json.RawMessage(`{"k": 1}`), MaxRetries: 2, TimeoutSeconds: 9},
		{Name: "left", DependsOn: []string{"root"}}, {Name: "right", DependsOn: []string{"root", "root"}},
		{Name: "sink", DependsOn: []string{"right", "left"}}, {Name: "alone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCurrentSnapshot(ctx, w.ID, snap.ID); err != nil {
		t.Fatal(err)
	}
	start := func() int64 {
		t.Helper()
		run, err := s.CreateRun(ctx, w.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		started, err := s.StartPendingRuns(ctx, 10)
		if err != nil || len(started) != 1 || started[0].Status != orkstate.RunRunning || started[0].TasksCreated != 5 {
			t.Fatalf("StartPendingRuns = %+v, %v; want one running run of 5 tasks", started, err)
		}
		return run.ID
	}
	first := start()
	if n := b.count(t, `select count(*) from {ork}.snapshot_tasks where snapshot_id = $1`, snap.ID); n != 5 {
		t.Fatalf("the first run compiled %d rows, want 5", n)
	}
	second := start()
	if orig, compiled := taskShapes(t, s, first), taskShapes(t, s, second); !reflect.DeepEqual(orig, compiled) {
		t.Fatalf("compiled run differs:\n first  %v\n second %v", orig, compiled)
	}
	columns := func(run int64) []string {
		tasks, err := s.ListTasks(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range tasks {
			out = append(out, fmt.Sprintf("%d %s %s %v %s %d %d %s", k.TaskIndex, k.TaskName, k.ExecutorType, k.DependsOn,
				k.Params, k.MaxRetries, k.TimeoutSeconds, k.Status))
		}
		return out
	}
	if a, c := columns(first), columns(second); !reflect.DeepEqual(a, c) {
		t.Fatalf("compiled run's columns differ:\n first  %v\n second %v", a, c)
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatalf("queue after the compiled start: %v", bad)
	}
	run, err := s.GetRun(ctx, second)
	if err != nil || run.Status != orkstate.RunRunning || run.StartedAt == nil {
		t.Fatalf("compiled run = %+v, %v", run, err)
	}
	// Drive both runs to the end.
	for done := 0; done < 10; {
		claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 100})
		if err != nil || len(claimed) == 0 {
			t.Fatalf("claim after %d done: %d %v", done, len(claimed), err)
		}
		ups := make([]orkstate.TaskUpdate, len(claimed))
		for i, c := range claimed {
			ups[i] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
		}
		if _, err := s.SetTaskStates(ctx, ups); err != nil {
			t.Fatal(err)
		}
		done += len(claimed)
	}
	for _, id := range []int64{first, second} {
		if run, err := s.GetRun(ctx, id); err != nil || run.Status != orkstate.RunSuccess {
			t.Fatalf("run %d = %+v, %v; want success", id, run, err)
		}
	}
}

// A success makes a dependent with one dependency ready without writing a version of
// its row (issue 14): the row keeps its xmin (a lock sets only xmax), it joins the
// queue, and UnmetDeps reads 1 before and 0 after. A dependent with two dependencies
// counts down apart, without writing its row either (TestFanInReadinessWithoutWritingTheJoin).
func TestReadinessWithoutWritingTheDependent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	_, tasks := startRun(t, s, []orkstate.TaskSpec{
		{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c"}, {Name: "d", DependsOn: []string{"a", "c"}}})
	id := map[string]int64{}
	for _, k := range tasks {
		id[k.TaskName] = k.ID
	}
	xmin := func(name string) (x string) {
		t.Helper()
		if err := s.Pool().QueryRow(ctx, fmt.Sprintf(`select xmin::text from %s.tasks where id = $1`, s.Schema()), id[name]).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	unmet := func(name string) int {
		t.Helper()
		k, err := s.GetTask(ctx, id[name])
		if err != nil {
			t.Fatal(err)
		}
		return k.UnmetDeps
	}
	if got := unmet("b"); got != 1 {
		t.Fatalf("b unmet before a = %d, want 1", got)
	}
	bBefore, dBefore := xmin("b"), xmin("d")
	out, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: id["a"], Status: orkstate.TaskSuccess}})
	if err != nil || out[0].Outcome != orkstate.OutcomeApplied {
		t.Fatal(out, err)
	}
	if got := xmin("b"); got != bBefore {
		t.Errorf("b's row was rewritten by a's success (xmin %s → %s)", bBefore, got)
	}
	if got := xmin("d"); got != dBefore {
		t.Errorf("d's row (two dependencies) was rewritten by a's success (xmin %s → %s)", dBefore, got)
	}
	if got := unmet("b"); got != 0 {
		t.Errorf("b unmet after a = %d, want 0", got)
	}
	if got := unmet("d"); got != 1 {
		t.Errorf("d unmet after a = %d, want 1", got)
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatal(bad)
	}
	got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range got {
		names = append(names, k.TaskName)
	}
	if fmt.Sprint(names) != "[b c]" {
		t.Errorf("claimed %v, want [b c]", names)
	}
}

// A join's dependencies make it ready without a new version of its row (issue 14): each
// success, in a batch of its own, leaves the join's xmin as it was while UnmetDeps
// counts down and the join is queued after the last. A success while the run is
// paused, a dependency that fails and retries, and an operator's retry of a succeeded
// dependency keep the count right; purging the run removes its count. Fails on the
// code before migration 008 (the join's xmin changes with each success).
func TestFanInReadinessWithoutWritingTheJoin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	run, tasks := startRun(t, s, []orkstate.TaskSpec{
		{Name: "a"}, {Name: "b", MaxRetries: 1}, {Name: "c"}, {Name: "join", DependsOn: []string{"a", "b", "c"}}})
	id := map[string]int64{}
	for _, k := range tasks {
		id[k.TaskName] = k.ID
	}
	q := func(query string, args ...any) (x string) {
		t.Helper()
		if err := s.Pool().QueryRow(ctx, strings.ReplaceAll(query, "{ork}", s.Schema()), args...).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	xmin := func() string { return q(`select xmin::text from {ork}.tasks where id = $1`, id["join"]) }
	check := func(step string, wantUnmet int) {
		t.Helper()
		k, err := s.GetTask(ctx, id["join"])
		if err != nil {
			t.Fatal(err)
		}
		if k.UnmetDeps != wantUnmet {
			t.Errorf("after %s: join UnmetDeps = %d, want %d", step, k.UnmetDeps, wantUnmet)
		}
		if bad := queueMismatches(t, s); len(bad) > 0 {
			t.Fatalf("after %s: %v", step, bad)
		}
	}
	report := func(name string, status orkstate.TaskStatus) {
		t.Helper()
		out, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: id[name], Status: status}})
		if err != nil || out[0].Outcome != orkstate.OutcomeApplied && out[0].Outcome != orkstate.OutcomeRetrying {
			t.Fatalf("%s %s: %v %v", name, status, out, err)
		}
	}
	success := func(name string, wantUnmet int) {
		t.Helper()
		before := xmin()
		report(name, orkstate.TaskSuccess)
		if got := xmin(); got != before {
			t.Errorf("the join's row was rewritten by %s's success (xmin %s → %s)", name, before, got)
		}
		check(name+" success", wantUnmet)
	}
	check("start", 3)
	if claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 10}); err != nil || len(claimed) != 3 {
		t.Fatalf("claimed %v, %v; want a, b, c", claimed, err)
	}
	success("a", 2)
	noErr(t, s.PauseRun(ctx, run.ID))
	success("c", 1) // the join is paused: it counts down all the same
	noErr(t, s.ResumeRun(ctx, run.ID))
	check("resume", 1)
	report("b", orkstate.TaskFailed) // retried: b is pending again, the join still waits
	check("b failed with a retry left", 1)
	success("b", 0)

	noErr(t, s.RetryTask(ctx, id["c"])) // the join waits for c again
	check("operator retry of c", 1)
	success("c", 0)
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 10})
	if err != nil || len(claimed) != 1 || claimed[0].TaskName != "join" {
		t.Fatalf("claimed %v, %v; want the join", claimed, err)
	}
	report("join", orkstate.TaskSuccess)
	if n := q(`select count(*)::text from {ork}.task_deps_unmet where task_id = $1`, id["join"]); n != "1" {
		t.Fatalf("the join has %s rows in task_deps_unmet, want 1", n)
	}
	if r, err := s.GetRun(ctx, run.ID); err != nil || r.Status != orkstate.RunSuccess {
		noErr(t, s.UpdateRunStatus(ctx, run.ID, orkstate.RunSuccess, ""))
	}
	if _, err := s.PurgeRuns(ctx, orkstate.PurgeParams{}); err != nil {
		t.Fatal(err)
	}
	if n := q(`select count(*)::text from {ork}.task_deps_unmet`); n != "0" {
		t.Fatalf("task_deps_unmet has %s rows after the run was purged, want 0", n)
	}
}
