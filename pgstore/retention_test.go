package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// history inserts n runs of workflowID that finished `ago`, each with tasks tasks,
// every task with a log chunk and a log size, every third with a completed deferred
// job, and one lease row per run naming its tasks (expired `ago`): what months of
// work leave behind. It returns the runs' ids.
func (b *testBundle) history(t testing.TB, workflowID int64, n, tasks int, ago time.Duration) []int64 {
	t.Helper()
	q := `
	with r as (
		insert into {ork}.runs (workflow_id, status, tasks_total, tasks_finished, created_at, started_at, finished_at)
		select $1, (array['success', 'failed', 'cancelled'])[1 + g % 3], $3, $3, now() - $4::interval, now() - $4::interval,
		       now() - $4::interval + g * interval '1 millisecond'
		from generate_series(1, $2) g
		returning id
	), t as (
		insert into {ork}.tasks (run_id, task_index, task_name, status, attempts, created_at, finished_at)
		select r.id, i, 't' || i, 'success', 1, now() - $4::interval, now() - $4::interval
		from r, generate_series(0, $3 - 1) i
		returning id, run_id
	), logs as (
		insert into {ork}.task_logs (task_id, chunk) select t.id, 'line ' || t.id from t
	), sizes as (
		insert into {ork}.task_log_sizes (task_id, bytes) select t.id, 10 from t
	), jobs as (
		insert into {ork}.deferred_jobs (task_id, service_type, job_id, status, finished_at)
		select t.id, 'batch', 'job-' || t.id, 'completed', now() - $4::interval from t where t.id % 3 = 0
	), leases as (
		insert into {ork}.task_leases (expires_at, task_ids)
		select now() - $4::interval, range_agg(int8range(t.id, t.id, '[]')) from t group by t.run_id
	)
	select r.id from r order by r.id`
	rows, err := b.s.Pool().Query(b.ctx, b.sqlOf(q), workflowID, n, tasks, ago)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (b *testBundle) sqlOf(q string) string {
	return strings.NewReplacer("{ork}", b.s.Schema(), "{api}", b.s.Schema()+"_api").Replace(q)
}

// orphans lists rows whose parent is gone and runs missing some of their tasks, so a
// purge that removed half of something shows up.
func (b *testBundle) orphans(t testing.TB) []string {
	t.Helper()
	rows, err := b.s.Pool().Query(b.ctx, b.sqlOf(`
		select 'log of task ' || l.task_id from {ork}.task_logs l where not exists (select 1 from {ork}.tasks t where t.id = l.task_id)
		union all
		select 'job of task ' || j.task_id from {ork}.deferred_jobs j where not exists (select 1 from {ork}.tasks t where t.id = j.task_id)
		union all
		select 'deadline of task ' || d.task_id from {ork}.task_deadlines d where not exists (select 1 from {ork}.tasks t where t.id = d.task_id)
		union all
		select 'queue row of task ' || q.task_id from {ork}.task_queue q where not exists (select 1 from {ork}.tasks t where t.id = q.task_id)
		union all
		select 'run ' || r.id || ' has ' || (select count(*) from {ork}.tasks t where t.run_id = r.id) || ' of ' || r.tasks_total || ' tasks'
		from {ork}.runs r where r.status <> 'pending' and r.tasks_total <> (select count(*) from {ork}.tasks t where t.run_id = r.id)`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (b *testBundle) runIDs(t testing.TB) []int64 {
	t.Helper()
	rows, err := b.s.Pool().Query(b.ctx, b.sqlOf(`select id from {ork}.runs order by id`))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// finish claims and succeeds every ready task until the run's tasks are all done.
func finish(t testing.TB, s *pgstore.Store) {
	t.Helper()
	ctx := context.Background()
	for {
		got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "finisher", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return
		}
		ups := make([]orkstate.TaskUpdate, len(got))
		for i, c := range got {
			ups[i] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
		}
		if _, err := s.SetTaskStates(ctx, ups); err != nil {
			t.Fatal(err)
		}
	}
}

// Old finished runs go with everything that hangs off them; live runs, recent runs
// and a finished run whose deferred job is still polling stay; a second purge finds
// nothing.
func TestPurgeRemovesOnlyOldFinishedHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	s := b.s

	// A finished run through the API (logs, a deferred job, a deadline while it ran),
	// then aged by two days.
	old, oldTasks := startRun(t, s, []orkstate.TaskSpec{{Name: "a", TimeoutSeconds: 60}, {Name: "b", DependsOn: []string{"a"}}})
	noErr(t, s.AppendTaskLog(ctx, oldTasks[0].ID, "hello"))
	_, err := s.CreateDeferredJobs(ctx, oldTasks[0].ID, []orkstate.NewDeferredJob{{ServiceType: "batch", JobID: "j1"}})
	noErr(t, err)
	jobsOfA, err := s.DeferredJobsForTask(ctx, oldTasks[0].ID)
	noErr(t, err)
	noErr(t, s.CompleteDeferredJob(ctx, jobsOfA[0].ID))
	finish(t, s)
	if r, err := s.GetRun(ctx, old.ID); err != nil || !r.Status.IsTerminal() {
		t.Fatalf("old run = %+v, %v; want finished", r, err)
	}
	b.exec(t, `update {ork}.runs set finished_at = now() - interval '2 days' where id = $1`, old.ID)

	// A finished run, aged, whose deferred job is still polling: something live refers to it.
	held, heldTasks := startRun(t, s, []orkstate.TaskSpec{{Name: "a"}})
	finish(t, s)
	b.exec(t, `update {ork}.runs set finished_at = now() - interval '2 days' where id = $1`, held.ID)
	b.exec(t, `insert into {ork}.deferred_jobs (task_id, service_type, job_id, status) values ($1, 'batch', 'late', 'polling')`, heldTasks[0].ID)

	// A recent finished run and a live one with a dispatched task.
	recent, _ := startRun(t, s, []orkstate.TaskSpec{{Name: "a"}})
	finish(t, s)
	live, _ := startRun(t, s, []orkstate.TaskSpec{{Name: "a", TimeoutSeconds: 60}, {Name: "b"}})
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 1})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	// Every lease row aged past the period: the ones naming only finished tasks go, the
	// live run's stays, as it still names a dispatched task.
	b.exec(t, `update {ork}.task_leases set expires_at = now() - interval '3 days'`)

	// Generated history: 30 runs of 4 tasks, two days old.
	w := b.workflow(t, "history")
	b.history(t, w.ID, 30, 4, 48*time.Hour)
	jobs := b.count(t, `select count(*) from {ork}.deferred_jobs`)

	var progress []pgstore.PurgeResult
	got, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: time.Hour, BatchSize: 10,
		Progress: func(r pgstore.PurgeResult) { progress = append(progress, r) }})
	noErr(t, err)
	if got.Runs != 31 || got.Tasks != 30*4+2 || got.LogChunks != 30*4+1 || got.DeferredJobs != int64(jobs-1) || got.Leases < 31 {
		t.Fatalf("purged %+v; want 31 runs, 122 tasks, 121 log chunks, %d deferred jobs, ≥ 31 lease rows", got, jobs-1)
	}
	if len(progress) != got.Batches || got.Batches < 12 || progress[len(progress)-1] != got {
		t.Fatalf("%d progress calls for %d batches (last %+v, total %+v); want one per batch, ≥ 12 batches of 10 tasks",
			len(progress), got.Batches, progress[len(progress)-1], got)
	}

	left := b.runIDs(t)
	if !slices.Equal(left, []int64{held.ID, recent.ID, live.ID}) {
		t.Fatalf("runs left %v; want held %d, recent %d, live %d", left, held.ID, recent.ID, live.ID)
	}
	if bad := b.orphans(t); len(bad) > 0 {
		t.Fatal(bad)
	}
	if bad := queueMismatches(t, s); len(bad) > 0 {
		t.Fatal(bad)
	}
	if n := b.count(t, `select count(*) from {ork}.task_leases`); n != 1 {
		t.Fatalf("%d lease rows left; want the live one", n)
	}
	if n := b.count(t, `select count(*) from {ork}.task_log_sizes`); n != 0 {
		t.Fatalf("%d log sizes left; want 0", n)
	}

	// Paced: the 2 runs left behind in 2 batches, a pause after each.
	b.history(t, w.ID, 2, 1, 48*time.Hour)
	t0 := time.Now()
	paced, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: time.Hour, BatchSize: 1, Pause: 100 * time.Millisecond})
	noErr(t, err)
	if took := time.Since(t0); paced.Runs != 2 || took < 200*time.Millisecond {
		t.Fatalf("paced purge = %+v in %v; want 2 runs, ≥ 200 ms", paced, took)
	}

	again, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: time.Hour})
	noErr(t, err)
	if again != (pgstore.PurgeResult{}) {
		t.Fatalf("second purge = %+v; want nothing", again)
	}
	// The live run still works: its claimed task reports, the rest is claimed.
	if _, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: claimed[0].ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt}}); err != nil {
		t.Fatal(err)
	}
	finish(t, s)
	if r, err := s.GetRun(ctx, live.ID); err != nil || r.Status != orkstate.RunSuccess {
		t.Fatalf("live run = %+v, %v; want success", r, err)
	}
}

// Claimers, reporters and a lease sweeper work through live runs while two purgers
// delete months of history beside them: no live row is removed, no task is applied
// twice, every live run succeeds, the history is gone whole, and no statement of the
// install waits for a lock longer than lockBound (sampled from pg_stat_activity).
func TestPurgeUnderLoad(t *testing.T) {
	t.Parallel()
	const lockBound = time.Second
	b := setup(t)
	ctx, s := b.ctx, b.s

	w := b.workflow(t, "history")
	for range 4 {
		b.history(t, w.ID, 500, 8, 30*24*time.Hour)
	}
	b.exec(t, `analyze {ork}.runs, {ork}.tasks, {ork}.task_logs, {ork}.deferred_jobs, {ork}.task_leases`)
	var live []int64
	liveTasks := 0
	for range 4 {
		specs := make([]orkstate.TaskSpec, 150)
		for i := range specs {
			specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%03d", i), TimeoutSeconds: 60}
			if i%3 > 0 {
				specs[i].DependsOn = []string{fmt.Sprintf("t%03d", i-1)}
			}
		}
		r, _ := startRun(t, s, specs)
		live = append(live, r.ID)
		liveTasks += len(specs)
	}

	var mu sync.Mutex
	applied := map[int64]int{}
	var claimLat, purgeLat []time.Duration
	stop := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return every(gctx, stop, 3*time.Millisecond, sweepLeases(s)) })

	// The lock sampler: the longest any statement on this install has been waiting
	// for a lock (heavyweight lock waits only; row locks taken SKIP LOCKED never wait).
	var maxWait time.Duration
	var waiters int
	g.Go(func() error {
		return every(gctx, stop, 2*time.Millisecond, func(ctx context.Context) error {
			var wait time.Duration
			var n int
			err := s.Pool().QueryRow(ctx, `
				select coalesce(max(now() - a.state_change), '0'), count(*)
				from pg_stat_activity a
				where a.wait_event_type = 'Lock' and a.query like '%' || $1 || '%'`, s.Schema()).Scan(&wait, &n)
			if err != nil {
				return fmt.Errorf("lock sampler: %w", err)
			}
			mu.Lock()
			maxWait, waiters = max(maxWait, wait), waiters+n
			mu.Unlock()
			return nil
		})
	})

	var workers, purgers sync.WaitGroup
	purged := make([]pgstore.PurgeResult, 2)
	for i := range 2 {
		purgers.Add(1)
		g.Go(func() error {
			defer purgers.Done()
			last := time.Now()
			r, err := s.PurgeRuns(gctx, pgstore.PurgeParams{OlderThan: 24 * time.Hour, BatchSize: 400,
				Progress: func(pgstore.PurgeResult) {
					mu.Lock()
					purgeLat = append(purgeLat, time.Since(last))
					mu.Unlock()
					last = time.Now()
				}})
			purged[i] = r
			return err
		})
	}
	for i := range 3 {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			return timedWorker(gctx, s, fmt.Sprint("w", i), 200, &mu, &claimLat, applied)
		})
	}
	workers.Wait()
	purgers.Wait()
	close(stop)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	if len(applied) != liveTasks {
		t.Fatalf("%d live tasks got an applied success; want %d", len(applied), liveTasks)
	}
	for id, n := range applied {
		if n != 1 {
			t.Fatalf("task %d applied %d times", id, n)
		}
	}
	for _, id := range live {
		if r, err := s.GetRun(ctx, id); err != nil || r.Status != orkstate.RunSuccess {
			t.Fatalf("live run %d = %+v, %v; want success", id, r, err)
		}
	}
	if left := b.runIDs(t); !slices.Equal(left, live) {
		t.Fatalf("runs left %v; want the live runs %v", left, live)
	}
	if bad := b.orphans(t); len(bad) > 0 {
		t.Fatal(bad)
	}
	total := purged[0]
	total.Runs += purged[1].Runs
	total.Tasks += purged[1].Tasks
	if total.Runs != 2000 || total.Tasks != 16000 {
		t.Fatalf("purgers deleted %+v and %+v; want 2000 runs and 16000 tasks between them", purged[0], purged[1])
	}
	if maxWait > lockBound {
		t.Fatalf("a statement waited %v for a lock; bound %v", maxWait, lockBound)
	}
	t.Logf("purgers: %+v, %+v; batch of 400 tasks p50 %v max %v; claims and reports p50 %v p99 %v max %v (%d calls); lock waits sampled %d, longest %v",
		purged[0], purged[1], pct(purgeLat, 50), pct(purgeLat, 100), pct(claimLat, 50), pct(claimLat, 99), pct(claimLat, 100),
		len(claimLat), waiters, maxWait)
}

// pct is the p-th percentile of ds (100: the maximum).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// timedWorker claims and succeeds tasks until it has found nothing idle times in a
// row, recording each claim's and report's latency and each applied success.
func timedWorker(ctx context.Context, s *pgstore.Store, name string, idle int, mu *sync.Mutex,
	lat *[]time.Duration, applied map[int64]int) error {
	for found := 0; found < idle; {
		start := time.Now()
		got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: name, Limit: 10})
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		claimed := time.Since(start)
		if len(got) == 0 {
			found++
			time.Sleep(time.Millisecond)
			continue
		}
		found = 0
		ups := make([]orkstate.TaskUpdate, len(got))
		for k, c := range got {
			ups[k] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
		}
		start = time.Now()
		out, err := s.SetTaskStates(ctx, ups)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		reported := time.Since(start)
		mu.Lock()
		*lat = append(*lat, claimed, reported)
		for _, o := range out {
			if o.Outcome == orkstate.OutcomeApplied {
				applied[o.TaskID]++
			}
		}
		mu.Unlock()
	}
	return nil
}

// A purge killed mid-way loses only its batch in progress: a batch whose backend
// dies rolls back whole, the procedure keeps the batches it committed, and the next
// purge goes on from there until the history is gone.
func TestPurgeResumesAfterKill(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, s := b.ctx, b.s
	w := b.workflow(t, "history")
	hist := b.history(t, w.ID, 200, 3, 48*time.Hour)
	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, testdb.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	kill := func(c *pgx.Conn) {
		b.exec(t, `select pg_terminate_backend($1)`, c.PgConn().PID())
	}

	// 1. A batch deleted but not committed when its backend is killed: nothing goes.
	a := connect()
	tx, err := a.Begin(ctx)
	noErr(t, err)
	var runs int64
	noErr(t, tx.QueryRow(ctx, b.sqlOf(`select runs from {api}.purge_runs('1 hour', 30)`)).Scan(&runs))
	if runs != 10 {
		t.Fatalf("first batch deleted %d runs; want 10 (30 tasks)", runs)
	}
	kill(a)
	if n := len(b.runIDs(t)); n != 200 {
		t.Fatalf("%d runs after the killed batch; want all 200", n)
	}

	// 2. The procedure, stopped on a task row another transaction holds (a foreign-key
	// check's KEY SHARE, as a late log append would take), then killed there.
	holder, err := s.Pool().Begin(ctx)
	noErr(t, err)
	defer func() { _ = holder.Rollback(context.Background()) }()
	_, err = holder.Exec(ctx, b.sqlOf(`select 1 from {ork}.tasks where run_id = $1 for key share`), hist[120])
	noErr(t, err)
	p := connect()
	done := make(chan error, 1)
	go func() {
		_, err := p.Exec(ctx, b.sqlOf(`call {api}.purge_all_runs('1 hour', 3)`))
		done <- err
	}()
	waitFor(t, func() bool {
		return b.count(t, `select count(*) from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, p.PgConn().PID()) == 1
	})
	kill(p)
	if err := <-done; err == nil {
		t.Fatal("the killed procedure returned no error")
	}
	noErr(t, holder.Rollback(ctx))
	left := b.runIDs(t)
	if !slices.Equal(left, hist[120:]) {
		t.Fatalf("after the kill %d runs left, from %d; want the 80 from run %d on", len(left), left[0], hist[120])
	}
	if bad := b.orphans(t); len(bad) > 0 {
		t.Fatal(bad)
	}

	// 3. The next purge finishes the job; one more finds nothing.
	got, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: time.Hour})
	noErr(t, err)
	if got.Runs != 80 || got.Tasks != 240 {
		t.Fatalf("resumed purge = %+v; want 80 runs and 240 tasks", got)
	}
	if n := len(b.runIDs(t)); n != 0 {
		t.Fatalf("%d runs left; want none", n)
	}
	again, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: time.Hour})
	if err != nil || again != (pgstore.PurgeResult{}) {
		t.Fatalf("purge after the end = %+v, %v; want nothing", again, err)
	}
}

// A batch locks only the runs it deletes: the runs behind it stay free, so a second
// purger beside it takes the next ones instead of finding every candidate locked
// (and the batch reads the tasks of the runs it deletes, not of every candidate).
// Before, one batch locked and checked up to its limit in runs — a batch of 10 tasks
// here held all five old runs.
func TestPurgeBatchLocksOnlyTheRunsItDeletes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	w := b.workflow(t, "history")
	hist := b.history(t, w.ID, 5, 10, 48*time.Hour)
	tx, err := b.s.Pool().Begin(ctx)
	noErr(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	var runs, tasks int64
	noErr(t, tx.QueryRow(ctx, b.sqlOf(`select runs, tasks from {api}.purge_runs('1 hour', 10)`)).Scan(&runs, &tasks))
	if runs != 1 || tasks != 10 {
		t.Fatalf("batch of 10 tasks deleted %d runs, %d tasks; want 1 run of 10", runs, tasks)
	}
	// Another session sees the four runs the batch did not take unlocked…
	rows, err := b.s.Pool().Query(ctx, b.sqlOf(`select id from {ork}.runs order by id for update skip locked`))
	noErr(t, err)
	free, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	noErr(t, err)
	if !slices.Equal(free, hist[1:]) {
		t.Fatalf("runs another session can lock while the batch is open: %v; want %v", free, hist[1:])
	}
	// …and a second purger deletes the next one while the first has not committed.
	got, err := b.s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: time.Hour, BatchSize: 10})
	noErr(t, err)
	if got.Runs != 4 || got.Tasks != 40 {
		t.Fatalf("second purger beside an open batch = %+v; want the other 4 runs, 40 tasks", got)
	}
	noErr(t, tx.Commit(ctx))
	if n := len(b.runIDs(t)); n != 0 {
		t.Fatalf("%d runs left; want none", n)
	}
	if bad := b.orphans(t); len(bad) > 0 {
		t.Fatal(bad)
	}
}

// purge_all_runs' p_max_rate paces the procedure as MaxRate paces PurgeRuns: six
// batches of one task at 10 tasks/s take at least 500 ms (five waits of 100 ms).
func TestPurgeAllRunsMaxRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "history")
	b.history(t, w.ID, 6, 1, 48*time.Hour)
	t0 := time.Now()
	b.exec(t, `call {api}.purge_all_runs('1 hour', 1, 10)`)
	if took := time.Since(t0); took < 500*time.Millisecond {
		t.Fatalf("6 tasks at 10 tasks/s purged in %v; want at least 500ms", took)
	}
	if n := len(b.runIDs(t)); n != 0 {
		t.Fatalf("%d runs left; want none", n)
	}
}

// Bad input is refused by name and changes nothing.
func TestPurgeValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.s.PurgeRuns(b.ctx, pgstore.PurgeParams{OlderThan: -time.Second})
	wantValidation(t, err, "older_than")
	_, err = b.s.PurgeRuns(b.ctx, pgstore.PurgeParams{OlderThan: time.Hour, BatchSize: 10001})
	wantValidation(t, err, "batch_size")
	_, err = b.s.PurgeRuns(b.ctx, pgstore.PurgeParams{OlderThan: time.Hour, Pause: -time.Second})
	wantValidation(t, err, "pause")
	_, err = b.s.PurgeRuns(b.ctx, pgstore.PurgeParams{OlderThan: time.Hour, MaxRate: -1})
	wantValidation(t, err, "max_rate")
	_, err = b.s.Pool().Exec(b.ctx, b.sqlOf(`select * from {api}.purge_runs('-1 day', 10)`))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "OK422" || pgErr.ColumnName != "older_than" {
		t.Fatalf("purge_runs('-1 day') = %v; want OK422 naming older_than", err)
	}
	_, err = b.s.Pool().Exec(b.ctx, b.sqlOf(`call {api}.purge_all_runs('1 day', 10, -1)`))
	if !errors.As(err, &pgErr) || pgErr.Code != "OK422" || pgErr.ColumnName != "max_rate" {
		t.Fatalf("purge_all_runs(max_rate -1) = %v; want OK422 naming max_rate", err)
	}
}

// waitFor polls cond every millisecond for up to ten seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// PurgeParams.Vacuum vacuums the purged tables once the last batch is done, so their
// space is free for reuse at once.
func TestPurgeVacuums(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.workflow(t, "history")
	b.history(t, w.ID, 20, 3, 48*time.Hour)
	// vacuum_count, not last_vacuum: installs are reused across tests and runs, and a
	// table's statistics outlive the TRUNCATE that empties it.
	vacuums := func() int64 {
		var n int64
		noErr(t, b.s.Pool().QueryRow(b.ctx, `select vacuum_count from pg_stat_user_tables where relid = $1::regclass`,
			b.s.Schema()+".tasks").Scan(&n))
		return n
	}
	before := vacuums()
	got, err := b.s.PurgeRuns(b.ctx, pgstore.PurgeParams{OlderThan: time.Hour})
	noErr(t, err)
	if n := vacuums(); got.Runs != 20 || n != before {
		t.Fatalf("purge without Vacuum = %+v, vacuums %d → %d; want 20 runs, no vacuum", got, before, n)
	}
	b.history(t, w.ID, 20, 3, 48*time.Hour)
	got, err = b.s.PurgeRuns(b.ctx, pgstore.PurgeParams{OlderThan: time.Hour, Vacuum: true})
	noErr(t, err)
	if n := vacuums(); got.Runs != 20 || n <= before {
		t.Fatalf("purge with Vacuum = %+v, vacuums %d → %d; want 20 runs and tasks vacuumed", got, before, n)
	}
}

// A fair workflow's run has slot groups of its own (fair_run = the run): a purged run's
// go with it, a live fair run's stay, and the groups of pools alone (shared by every
// run) stay.
func TestPurgeRemovesFairRunsSlotGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, s := b.ctx, b.s
	key := fmt.Sprintf("purge-key-%d", time.Now().UnixNano())
	noErr(t, s.SetConcurrencyKey(ctx, key, 5))
	w := b.workflow(t, "fair")
	noErr(t, s.SetWorkflowLimits(ctx, w.ID, orkstate.WorkflowLimits{Fair: true}))
	_, err := s.ReplaceWorkflowTasks(ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", ConcurrencyKey: key}})
	noErr(t, err)
	pooled := b.workflow(t, "pooled")
	_, err = s.ReplaceWorkflowTasks(ctx, pooled.ID, []orkstate.TaskSpec{{Name: "a", ConcurrencyKey: key}})
	noErr(t, err)
	start := func(wf int64) *orkstate.Run {
		r := b.run(t, wf)
		started, err := s.StartPendingRuns(ctx, 10)
		if err != nil || len(started) != 1 {
			t.Fatalf("StartPendingRuns = %+v, %v; want one run", started, err)
		}
		return r
	}
	groups := func(runID int64) int {
		return b.count(t, `select count(*) from {ork}.slot_groups where fair_run = $1`, runID)
	}
	done1, done2, shared := start(w.ID), start(w.ID), start(pooled.ID)
	finish(t, s)
	live := start(w.ID)
	for _, r := range []int64{done1.ID, done2.ID, live.ID} {
		if n := groups(r); n != 2 {
			t.Fatalf("run %d has %d slot groups; want 2 (fair, fair + key)", r, n)
		}
	}
	sharedGroups := b.count(t, `select count(*) from {ork}.slot_groups where fair_run = 0`)
	if sharedGroups != 1 {
		t.Fatalf("%d shared slot groups; want 1 (the key's, run %d)", sharedGroups, shared.ID)
	}

	got, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: 0, BatchSize: 1})
	noErr(t, err)
	if got.Runs != 3 {
		t.Fatalf("purged %+v; want the 3 finished runs", got)
	}
	if n := b.count(t, `select count(*) from {ork}.slot_groups where fair_run in ($1, $2)`, done1.ID, done2.ID); n != 0 {
		t.Fatalf("%d slot groups of purged fair runs left; want 0", n)
	}
	if n := groups(live.ID); n != 2 {
		t.Fatalf("the live fair run has %d slot groups; want its 2", n)
	}
	if n := b.count(t, `select count(*) from {ork}.slot_groups where fair_run = 0`); n != sharedGroups {
		t.Fatalf("%d shared slot groups; want %d", n, sharedGroups)
	}
	// The live fair run still claims through its groups and finishes.
	finish(t, s)
	if r, err := s.GetRun(ctx, live.ID); err != nil || r.Status != orkstate.RunSuccess {
		t.Fatalf("live run = %+v, %v; want success", r, err)
	}
}

// A purge batch reads what it deletes and little else, however much history and how
// many ready tasks the install holds: every statement inside purge_runs and the
// tasks' delete trigger, read with auto_explain (analyze), removes at most a few
// rows by filter. Here the oldest finished run has the highest task ids, behind 2,000
// newer tasks, and 300 ready tasks wait in a queue whose statistics say it is empty. Before, the batch's task ids
// were read along tasks_pkey from the lowest id (the 2,000 newer tasks filtered out
// by run_id), and the trigger walked the whole queue comparing each row with every
// deleted task.
func TestPurgeBatchReadsByKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, s := b.ctx, b.s
	w := b.workflow(t, "history")
	b.history(t, w.ID, 200, 10, 24*time.Hour)
	old := b.history(t, w.ID, 1, 1000, 72*time.Hour)
	specs := make([]orkstate.TaskSpec, 300)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%d", i)}
	}
	// The queue's statistics of a moment it was empty after carrying 3,000 tasks, as
	// an install's often are.
	big := make([]orkstate.TaskSpec, 3000)
	for i := range big {
		big[i] = orkstate.TaskSpec{Name: fmt.Sprintf("b%d", i)}
	}
	startRun(t, s, big)
	for {
		got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1000})
		noErr(t, err)
		if len(got) == 0 {
			break
		}
	}
	b.exec(t, `analyze {ork}.runs, {ork}.tasks, {ork}.task_queue, {ork}.deferred_jobs, {ork}.task_leases, {ork}.task_deadlines`)
	startRun(t, s, specs)

	var mu sync.Mutex
	var plans []string
	cfg, err := pgx.ParseConfig(testdb.URL())
	noErr(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		plans = append(plans, n.Message)
		mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	noErr(t, err)
	defer conn.Close(context.Background())
	for _, q := range []string{`load 'auto_explain'`, `set auto_explain.log_min_duration = 0`, `set auto_explain.log_analyze = on`,
		`set auto_explain.log_timing = off`, `set auto_explain.log_nested_statements = on`, `set client_min_messages = log`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var runs, tasks int64
	noErr(t, conn.QueryRow(ctx, b.sqlOf(`select runs, tasks from {api}.purge_runs('48 hours', 1000)`)).Scan(&runs, &tasks))
	if runs != 1 || tasks != 1000 {
		t.Fatalf("purge_runs('48 hours') = %d runs, %d tasks; want run %d's 1,000", runs, tasks, old[0])
	}
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(plans, "\n")
	if !strings.Contains(all, "task_queue") {
		t.Fatalf("no plan of the delete trigger (auto_explain said %d things):\n%s", len(plans), all)
	}
	for _, m := range regexp.MustCompile(`Rows Removed by (Join )?Filter: (\d+)`).FindAllStringSubmatch(all, -1) {
		if n, _ := strconv.Atoi(m[2]); n > 1000 {
			t.Fatalf("a statement of the batch read %d rows it did not want (%s):\n%s", n, m[0], all)
		}
	}
}
