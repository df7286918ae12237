package triggerer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

const fakeServiceType = "fake"

// testBundle is one test's install: a fresh schema with orkstate's and River's tables.
type testBundle struct {
	pool   *pgxpool.Pool
	schema string
	store  *pgstore.Store
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	pool, schema := testdb.Schema(t)
	if err := MigrateRiver(context.Background(), pool, schema); err != nil {
		t.Fatalf("MigrateRiver: %v", err)
	}
	store, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatalf("pgstore.New: %v", err)
	}
	return &testBundle{pool: pool, schema: schema, store: store}
}

// fastRetry retries a failed poll at once, so attempts run out in milliseconds.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(5 * time.Millisecond) }

// config is a Config that polls every few milliseconds.
func (b *testBundle) config(trackers ...Tracker) *Config {
	return &Config{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxAttempts:  3,
		MaxWorkers:   8,
		Pool:         b.pool,
		PollInterval: 10 * time.Millisecond,
		PollTimeout:  5 * time.Second,
		Schema:       b.schema,
		Trackers:     trackers,
		River: &river.Config{
			FetchCooldown:     5 * time.Millisecond,
			FetchPollInterval: 25 * time.Millisecond,
			RetryPolicy:       fastRetry{},
			TestOnly:          true,
		},
	}
}

// start builds and starts a Triggerer, stopped when the test ends.
func (b *testBundle) start(t *testing.T, cfg *Config) *Triggerer {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if err := tr.Stop(ctx); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		tr.Close()
		tr.Close()
	})
	return tr
}

// fixture is a running run of two tasks: a (running, about to report deferred
// jobs) and b, which depends on a.
type fixture struct {
	run  *orkstate.Run
	a, b orkstate.Task
}

func (b *testBundle) newRun(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	wf, err := b.store.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "wf", ExecutorType: "x"})
	must(t, err, "CreateWorkflow")
	run, err := b.store.CreateRun(ctx, wf.ID, "test")
	must(t, err, "CreateRun")
	tasks, err := b.store.CreateDAGTasks(ctx, run.ID, []orkstate.NewTask{
		{TaskIndex: 0, TaskName: "a", ExecutorType: "x"},
		{TaskIndex: 1, TaskName: "b", ExecutorType: "x", DependsOn: []string{"a"}},
	})
	must(t, err, "CreateDAGTasks")
	claimed, err := b.store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "test", Limit: 10})
	must(t, err, "ClaimTasks")
	if len(claimed) != 1 || claimed[0].TaskName != "a" {
		t.Fatalf("ClaimTasks claimed %d tasks, want only a", len(claimed))
	}
	outs, err := b.store.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: claimed[0].ID, Status: orkstate.TaskRunning, Attempt: claimed[0].Attempt}})
	must(t, err, "SetTaskStates")
	if outs[0].Outcome != orkstate.OutcomeApplied {
		t.Fatalf("set a running: outcome %s", outs[0].Outcome)
	}
	return fixture{run: run, a: tasks[0], b: tasks[1]}
}

// deferJobs makes task report deferred jobs of the fake service with the given job ids.
func (b *testBundle) deferJobs(t *testing.T, tr *Triggerer, taskID int64, serviceType string, jobIDs ...string) []orkstate.DeferredJob {
	t.Helper()
	ctx := context.Background()
	jobs := make([]orkstate.NewDeferredJob, len(jobIDs))
	for i, id := range jobIDs {
		jobs[i] = orkstate.NewDeferredJob{ServiceType: serviceType, JobID: id, JobData: json.RawMessage(`{"n":1}`)}
	}
	tx, err := b.pool.Begin(ctx)
	must(t, err, "begin")
	defer func() { _ = tx.Rollback(ctx) }()
	created, err := tr.CreateDeferredJobsTx(ctx, tx, taskID, jobs)
	must(t, err, "CreateDeferredJobsTx")
	must(t, tx.Commit(ctx), "commit")
	return created
}

// fakeTracker scripts answers per job id and checks that no job is polled by
// two workers at once, nor again after it was reported finished.
type fakeTracker struct {
	serviceType string
	poll        func(ctx context.Context, jobID string, call int) (orkstate.PollResult, string, error)

	mu          sync.Mutex
	calls       map[string]int
	inflight    map[string]int
	finished    map[string]int
	violations  []string
	firstPolled chan string // receives each job id at its first poll, when not nil
}

func newFake(poll func(ctx context.Context, jobID string, call int) (orkstate.PollResult, string, error)) *fakeTracker {
	return &fakeTracker{serviceType: fakeServiceType, poll: poll,
		calls: map[string]int{}, inflight: map[string]int{}, finished: map[string]int{}}
}

func (f *fakeTracker) ServiceType() string { return f.serviceType }

func (f *fakeTracker) Poll(ctx context.Context, jobID string, _ json.RawMessage) (orkstate.PollResult, string, error) {
	f.mu.Lock()
	f.calls[jobID]++
	n := f.calls[jobID]
	f.inflight[jobID]++
	if f.inflight[jobID] > 1 {
		f.violations = append(f.violations, jobID+" polled by two workers at once")
	}
	if f.finished[jobID] > 0 {
		f.violations = append(f.violations, jobID+" polled after it finished")
	}
	f.mu.Unlock()
	if n == 1 && f.firstPolled != nil {
		f.firstPolled <- jobID
	}

	result, msg, err := f.poll(ctx, jobID, n)

	f.mu.Lock()
	f.inflight[jobID]--
	if err == nil && (result == orkstate.PollCompleted || result == orkstate.PollFailed) {
		f.finished[jobID]++
	}
	f.mu.Unlock()
	return result, msg, err
}

func (f *fakeTracker) callsOf(jobID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[jobID]
}

func (f *fakeTracker) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		t.Error(v)
	}
}

// runningThen answers running for the first n-1 polls of a job and then result.
func runningThen(n map[string]int, result orkstate.PollResult, msg string) func(context.Context, string, int) (orkstate.PollResult, string, error) {
	return func(_ context.Context, jobID string, call int) (orkstate.PollResult, string, error) {
		if call < n[jobID] {
			return orkstate.PollRunning, "", nil
		}
		return result, msg, nil
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls cond until it holds (failing the test after 20 s).
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// riverJobs returns the poll jobs by deferred job id.
func riverJobs(t *testing.T, tr *Triggerer) map[int64]*rivertype.JobRow {
	t.Helper()
	res, err := tr.Client().JobList(context.Background(), river.NewJobListParams().Kinds(PollDeferredJobKind).First(10000))
	must(t, err, "JobList")
	out := map[int64]*rivertype.JobRow{}
	for _, row := range res.Jobs {
		var args PollDeferredJobArgs
		must(t, json.Unmarshal(row.EncodedArgs, &args), "decode args")
		if _, dup := out[args.DeferredJobID]; dup {
			t.Errorf("two river jobs for deferred job %d", args.DeferredJobID)
		}
		out[args.DeferredJobID] = row
	}
	return out
}

// waitRiverFinal waits until the River jobs of every deferred job in ids are finalized.
func waitRiverFinal(t *testing.T, tr *Triggerer, ids ...int64) map[int64]*rivertype.JobRow {
	t.Helper()
	var jobs map[int64]*rivertype.JobRow
	waitFor(t, "river jobs to finish", func() (bool, error) {
		jobs = riverJobs(t, tr)
		for _, id := range ids {
			if j, ok := jobs[id]; !ok || j.FinalizedAt == nil {
				return false, nil
			}
		}
		return true, nil
	})
	return jobs
}

func output(t *testing.T, row *rivertype.JobRow) PollOutput {
	t.Helper()
	var out PollOutput
	if err := json.Unmarshal(row.Output(), &out); err != nil {
		t.Fatalf("output of river job %d (%s): %v", row.ID, row.Output(), err)
	}
	return out
}

func lastError(row *rivertype.JobRow) string {
	if len(row.Errors) == 0 {
		return ""
	}
	return row.Errors[len(row.Errors)-1].Error
}

func (b *testBundle) deferredJob(t *testing.T, id int64) *orkstate.DeferredJob {
	t.Helper()
	dj, err := b.store.GetDeferredJob(context.Background(), id)
	must(t, err, "GetDeferredJob")
	return dj
}

func (b *testBundle) task(t *testing.T, id int64) *orkstate.Task {
	t.Helper()
	task, err := b.store.GetTask(context.Background(), id)
	must(t, err, "GetTask")
	return task
}

func (b *testBundle) runStatus(t *testing.T, id int64) orkstate.RunStatus {
	t.Helper()
	run, err := b.store.GetRun(context.Background(), id)
	must(t, err, "GetRun")
	return run.Status
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := newFake(runningThen(map[string]int{"bq-1": 3, "bq-2": 2}, orkstate.PollCompleted, ""))
	tr := b.start(t, b.config(fake))
	fx := b.newRun(t)
	ctx := context.Background()

	djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "bq-1", "bq-2")
	jobs := waitRiverFinal(t, tr, djs[0].ID, djs[1].ID)
	fake.check(t)

	for _, dj := range djs {
		row := jobs[dj.ID]
		if row.State != rivertype.JobStateCompleted {
			t.Errorf("river job of %s: state %s, want completed", dj.JobID, row.State)
		}
		if out := output(t, row); out.Result != orkstate.PollCompleted || out.Status != orkstate.DeferredCompleted {
			t.Errorf("river job of %s: output %+v", dj.JobID, out)
		}
		got := b.deferredJob(t, dj.ID)
		if got.Status != orkstate.DeferredCompleted || got.FinishedAt == nil {
			t.Errorf("deferred job %s: status %s, finished_at %v", dj.JobID, got.Status, got.FinishedAt)
		}
		if got.LastPolledAt == nil {
			t.Errorf("deferred job %s: running polls were not recorded", dj.JobID)
		}
	}
	if c1, c2 := fake.callsOf("bq-1"), fake.callsOf("bq-2"); c1 != 3 || c2 != 2 {
		t.Errorf("polls: bq-1 %d, bq-2 %d; want 3 and 2", c1, c2)
	}
	if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskSuccess {
		t.Fatalf("task a: %s, want success", a.Status)
	}

	// a's success unblocked b; finishing b finishes the run.
	claimed, err := b.store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "test", Limit: 10})
	must(t, err, "ClaimTasks")
	if len(claimed) != 1 || claimed[0].ID != fx.b.ID {
		t.Fatalf("claimed %d tasks, want b", len(claimed))
	}
	outs, err := b.store.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: fx.b.ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt}})
	must(t, err, "SetTaskStates")
	if outs[0].Outcome != orkstate.OutcomeApplied {
		t.Fatalf("b success: %s", outs[0].Outcome)
	}
	if st := b.runStatus(t, fx.run.ID); st != orkstate.RunSuccess {
		t.Errorf("run: %s, want success", st)
	}
}

func TestTwoTriggerers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 30
	polls := map[string]int{}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("job-%02d", i)
		polls[ids[i]] = 2 + i%4
	}
	// A slow poll widens the window in which a second worker could wrongly take the job.
	inner := runningThen(polls, orkstate.PollCompleted, "")
	fake := newFake(func(ctx context.Context, jobID string, call int) (orkstate.PollResult, string, error) {
		time.Sleep(2 * time.Millisecond)
		return inner(ctx, jobID, call)
	})
	tr1 := b.start(t, b.config(fake))
	cfg2 := b.config(fake)
	tr2 := b.start(t, cfg2)
	fx := b.newRun(t)

	djs := b.deferJobs(t, tr1, fx.a.ID, fakeServiceType, ids...)
	dids := make([]int64, len(djs))
	for i, dj := range djs {
		dids[i] = dj.ID
	}
	jobs := waitRiverFinal(t, tr2, dids...)
	fake.check(t)

	for _, dj := range djs {
		if row := jobs[dj.ID]; row.State != rivertype.JobStateCompleted {
			t.Errorf("river job of %s: %s, want completed", dj.JobID, row.State)
		}
		if got := fake.callsOf(dj.JobID); got != polls[dj.JobID] {
			t.Errorf("%s polled %d times, want %d", dj.JobID, got, polls[dj.JobID])
		}
		fake.mu.Lock()
		finished := fake.finished[dj.JobID]
		fake.mu.Unlock()
		if finished != 1 {
			t.Errorf("%s finished %d times, want once", dj.JobID, finished)
		}
		if got := b.deferredJob(t, dj.ID); got.Status != orkstate.DeferredCompleted {
			t.Errorf("deferred job %s: %s", dj.JobID, got.Status)
		}
	}
	if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskSuccess {
		// Every deferred job completed: a task left running means two concurrent
		// ReportDeferredPolls (one per triggerer) each missed the other's completion.
		t.Errorf("task a: %s, want success once all its %d deferred jobs completed", a.Status, n)
	}
	// Which client polled is River's business; both must at least have been able to.
	attempted := map[string]bool{}
	for _, row := range jobs {
		for _, by := range row.AttemptedBy {
			attempted[by] = true
		}
	}
	t.Logf("polled by %d clients", len(attempted))
}

func TestTrackerSaysFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := newFake(func(_ context.Context, jobID string, _ int) (orkstate.PollResult, string, error) {
		if jobID == "bad" {
			return orkstate.PollFailed, "quota exceeded", nil
		}
		return orkstate.PollRunning, "", nil
	})
	tr := b.start(t, b.config(fake))
	fx := b.newRun(t)

	djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "bad", "slow")
	jobs := waitRiverFinal(t, tr, djs[0].ID, djs[1].ID)
	fake.check(t)

	bad, slow := jobs[djs[0].ID], jobs[djs[1].ID]
	if bad.State != rivertype.JobStateCompleted {
		t.Errorf("river job of bad: %s, want completed", bad.State)
	}
	if out := output(t, bad); out.Result != orkstate.PollFailed || out.Error != "quota exceeded" || out.TaskStatus != orkstate.TaskFailed {
		t.Errorf("river job of bad: output %+v", out)
	}
	if got := b.deferredJob(t, djs[0].ID); got.Status != orkstate.DeferredFailed || got.Error != "quota exceeded" {
		t.Errorf("deferred job bad: %s %q", got.Status, got.Error)
	}
	// The task's failure cancelled its other deferred job, and its poller stopped.
	if got := b.deferredJob(t, djs[1].ID); got.Status != orkstate.DeferredCancelled {
		t.Errorf("deferred job slow: %s, want cancelled", got.Status)
	}
	if slow.State != rivertype.JobStateCancelled || !strings.Contains(lastError(slow), "cancelled") {
		t.Errorf("river job of slow: %s %q, want cancelled", slow.State, lastError(slow))
	}
	a := b.task(t, fx.a.ID)
	if a.Status != orkstate.TaskFailed || !strings.Contains(a.Error, "quota exceeded") {
		t.Errorf("task a: %s %q, want failed with the tracker's error", a.Status, a.Error)
	}
	if bt := b.task(t, fx.b.ID); bt.Status != orkstate.TaskFailed {
		t.Errorf("task b: %s, want failed (dependency failed)", bt.Status)
	}
	if st := b.runStatus(t, fx.run.ID); st != orkstate.RunFailed {
		t.Errorf("run: %s, want failed", st)
	}
}

func TestTrackerErrors(t *testing.T) {
	t.Parallel()

	t.Run("until attempts run out", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		fake := newFake(func(context.Context, string, int) (orkstate.PollResult, string, error) {
			return "", "", errors.New("service unreachable")
		})
		tr := b.start(t, b.config(fake)) // MaxAttempts 3
		fx := b.newRun(t)
		djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "down")

		row := waitRiverFinal(t, tr, djs[0].ID)[djs[0].ID]
		if got := fake.callsOf("down"); got != 3 {
			t.Errorf("polled %d times, want 3 (MaxAttempts)", got)
		}
		if row.State != rivertype.JobStateCompleted || len(row.Errors) != 2 {
			t.Errorf("river job: %s with %d errors, want completed after 2 recorded errors", row.State, len(row.Errors))
		}
		out := output(t, row)
		if out.Result != orkstate.PollFailed || !strings.Contains(out.Error, "service unreachable") {
			t.Errorf("river job output %+v", out)
		}
		dj := b.deferredJob(t, djs[0].ID)
		if dj.Status != orkstate.DeferredFailed || !strings.Contains(dj.Error, "service unreachable") || !strings.Contains(dj.Error, "3 times") {
			t.Errorf("deferred job: %s %q", dj.Status, dj.Error)
		}
		if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskFailed || !strings.Contains(a.Error, "service unreachable") {
			t.Errorf("task a: %s %q", a.Status, a.Error)
		}
	})

	t.Run("recovers before attempts run out", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		fake := newFake(func(_ context.Context, _ string, call int) (orkstate.PollResult, string, error) {
			if call <= 2 {
				return "", "", errors.New("flaky")
			}
			return orkstate.PollCompleted, "", nil
		})
		tr := b.start(t, b.config(fake))
		fx := b.newRun(t)
		djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "flaky")

		row := waitRiverFinal(t, tr, djs[0].ID)[djs[0].ID]
		if row.State != rivertype.JobStateCompleted || len(row.Errors) != 2 || output(t, row).Result != orkstate.PollCompleted {
			t.Errorf("river job: %s, %d errors, output %s", row.State, len(row.Errors), row.Output())
		}
		if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskSuccess {
			t.Errorf("task a: %s, want success", a.Status)
		}
	})

	t.Run("poll timeout is a tracker error", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		fake := newFake(func(ctx context.Context, _ string, _ int) (orkstate.PollResult, string, error) {
			<-ctx.Done()
			return "", "", ctx.Err()
		})
		cfg := b.config(fake)
		cfg.PollTimeout = 20 * time.Millisecond
		cfg.MaxAttempts = 2
		tr := b.start(t, cfg)
		fx := b.newRun(t)
		djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "hangs")

		waitRiverFinal(t, tr, djs[0].ID)
		dj := b.deferredJob(t, djs[0].ID)
		if dj.Status != orkstate.DeferredFailed || !strings.Contains(dj.Error, "deadline exceeded") {
			t.Errorf("deferred job: %s %q, want failed by the timeout", dj.Status, dj.Error)
		}
	})
}

func TestUnknownServiceType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := newFake(runningThen(nil, orkstate.PollCompleted, ""))
	tr := b.start(t, b.config(fake))
	fx := b.newRun(t)
	djs := b.deferJobs(t, tr, fx.a.ID, "bigquery", "bq-job")

	row := waitRiverFinal(t, tr, djs[0].ID)[djs[0].ID]
	if row.State != rivertype.JobStateCancelled || !strings.Contains(lastError(row), `"bigquery"`) {
		t.Errorf("river job: %s %q, want cancelled with an error naming bigquery", row.State, lastError(row))
	}
	dj := b.deferredJob(t, djs[0].ID)
	if dj.Status != orkstate.DeferredFailed || !strings.Contains(dj.Error, `service type "bigquery"`) {
		t.Errorf("deferred job: %s %q", dj.Status, dj.Error)
	}
	if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskFailed || !strings.Contains(a.Error, "bigquery") {
		t.Errorf("task a: %s %q", a.Status, a.Error)
	}
	if st := b.runStatus(t, fx.run.ID); st != orkstate.RunFailed {
		t.Errorf("run: %s, want failed", st)
	}
	if got := fake.callsOf("bq-job"); got != 0 {
		t.Errorf("another tracker polled it %d times", got)
	}
}

func TestRunCancelledWhilePolling(t *testing.T) {
	t.Parallel()

	// blocking answers running after release is closed, or the context's error.
	blocking := func(release <-chan struct{}, sawCancel *bool, mu *sync.Mutex) *fakeTracker {
		f := newFake(func(ctx context.Context, _ string, _ int) (orkstate.PollResult, string, error) {
			select {
			case <-release:
				return orkstate.PollRunning, "", nil
			case <-ctx.Done():
				mu.Lock()
				*sawCancel = true
				mu.Unlock()
				return "", "", ctx.Err()
			}
		})
		f.firstPolled = make(chan string, 1)
		return f
	}

	t.Run("river jobs cancelled in the same transaction", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var mu sync.Mutex
		sawCancel := false
		release := make(chan struct{})
		defer close(release)
		fake := blocking(release, &sawCancel, &mu)
		tr := b.start(t, b.config(fake))
		fx := b.newRun(t)
		djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "long")
		<-fake.firstPolled

		ctx := context.Background()
		tx, err := b.pool.Begin(ctx)
		must(t, err, "begin")
		must(t, b.store.WithTx(tx).CancelRun(ctx, fx.run.ID), "CancelRun")
		n, err := tr.CancelRunJobsTx(ctx, tx, fx.run.ID)
		must(t, err, "CancelRunJobsTx")
		must(t, tx.Commit(ctx), "commit")
		if n != 1 {
			t.Errorf("CancelRunJobsTx cancelled %d river jobs, want 1", n)
		}

		row := waitRiverFinal(t, tr, djs[0].ID)[djs[0].ID]
		if row.State != rivertype.JobStateCancelled {
			t.Errorf("river job: %s, want cancelled", row.State)
		}
		mu.Lock()
		if !sawCancel {
			t.Error("the poll in flight was not interrupted")
		}
		mu.Unlock()
		if dj := b.deferredJob(t, djs[0].ID); dj.Status != orkstate.DeferredCancelled {
			t.Errorf("deferred job: %s, want cancelled", dj.Status)
		}
		if st := b.runStatus(t, fx.run.ID); st != orkstate.RunCancelled {
			t.Errorf("run: %s, want cancelled", st)
		}
		if got := fake.callsOf("long"); got != 1 {
			t.Errorf("polled %d times, want 1", got)
		}
	})

	t.Run("worker notices the cancelled deferred job", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var mu sync.Mutex
		sawCancel := false
		release := make(chan struct{})
		fake := blocking(release, &sawCancel, &mu)
		tr := b.start(t, b.config(fake))
		fx := b.newRun(t)
		djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "long")
		<-fake.firstPolled

		// Only the store cancels; the poll in flight then answers running.
		must(t, b.store.CancelRun(context.Background(), fx.run.ID), "CancelRun")
		close(release)

		row := waitRiverFinal(t, tr, djs[0].ID)[djs[0].ID]
		if row.State != rivertype.JobStateCancelled || !strings.Contains(lastError(row), "cancelled") {
			t.Errorf("river job: %s %q, want cancelled", row.State, lastError(row))
		}
		if dj := b.deferredJob(t, djs[0].ID); dj.Status != orkstate.DeferredCancelled {
			t.Errorf("deferred job: %s, want cancelled", dj.Status)
		}
		if got := fake.callsOf("long"); got != 1 {
			t.Errorf("polled %d times, want 1", got)
		}
	})
}

func TestCancelTaskJobsBeforePolling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Never started: the River jobs wait, as they would for a busy triggerer.
	tr, err := New(b.config(newFake(runningThen(nil, orkstate.PollCompleted, ""))))
	must(t, err, "New")
	t.Cleanup(tr.Close)
	fx := b.newRun(t)
	djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "one", "two")

	ctx := context.Background()
	_, err = b.store.CancelDeferredJobsForTask(ctx, fx.a.ID)
	must(t, err, "CancelDeferredJobsForTask")
	n, err := tr.CancelTaskJobs(ctx, fx.a.ID)
	must(t, err, "CancelTaskJobs")
	if n != 2 {
		t.Errorf("cancelled %d river jobs, want 2", n)
	}
	jobs := riverJobs(t, tr)
	for _, dj := range djs {
		if row := jobs[dj.ID]; row.State != rivertype.JobStateCancelled {
			t.Errorf("river job of %s: %s, want cancelled", dj.JobID, row.State)
		}
	}
	if n, err := tr.CancelTaskJobs(ctx, fx.a.ID); err != nil || n != 0 {
		t.Errorf("second CancelTaskJobs: %d, %v; want 0, nil", n, err)
	}
}

func TestCreateDeferredJobsTx(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr, err := New(b.config())
	must(t, err, "New")
	t.Cleanup(tr.Close)
	fx := b.newRun(t)
	ctx := context.Background()

	t.Run("rollback leaves neither", func(t *testing.T) {
		tx, err := b.pool.Begin(ctx)
		must(t, err, "begin")
		created, err := tr.CreateDeferredJobsTx(ctx, tx, fx.a.ID, []orkstate.NewDeferredJob{{ServiceType: fakeServiceType, JobID: "x"}})
		must(t, err, "CreateDeferredJobsTx")
		if len(created) != 1 {
			t.Fatalf("created %d", len(created))
		}
		must(t, tx.Rollback(ctx), "rollback")
		djs, err := b.store.DeferredJobsForTask(ctx, fx.a.ID)
		must(t, err, "DeferredJobsForTask")
		if len(djs) != 0 || len(riverJobs(t, tr)) != 0 {
			t.Errorf("after rollback: %d deferred jobs, %d river jobs", len(djs), len(riverJobs(t, tr)))
		}
	})

	t.Run("one river job per deferred job", func(t *testing.T) {
		created, err := tr.CreateDeferredJobs(ctx, fx.a.ID, []orkstate.NewDeferredJob{{ServiceType: fakeServiceType, JobID: "y"}})
		must(t, err, "CreateDeferredJobs")
		must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return tr.EnqueueTx(ctx, tx, created[0].ID) }), "EnqueueTx")
		jobs := riverJobs(t, tr)
		if len(jobs) != 1 || jobs[created[0].ID] == nil {
			t.Fatalf("river jobs %v, want one for deferred job %d", jobs, created[0].ID)
		}
		row := jobs[created[0].ID]
		if row.Queue != DefaultQueue || row.MaxAttempts != 3 {
			t.Errorf("river job: queue %s, max attempts %d", row.Queue, row.MaxAttempts)
		}
	})

	t.Run("finished task refused", func(t *testing.T) {
		must(t, b.store.CancelRun(ctx, fx.run.ID), "CancelRun")
		before := len(riverJobs(t, tr))
		_, err := tr.CreateDeferredJobs(ctx, fx.a.ID, []orkstate.NewDeferredJob{{ServiceType: fakeServiceType, JobID: "z"}})
		if !errors.Is(err, orkstate.ErrInvalidTransition) {
			t.Errorf("err = %v, want ErrInvalidTransition", err)
		}
		if after := len(riverJobs(t, tr)); after != before {
			t.Errorf("river jobs %d → %d", before, after)
		}
	})
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := newFake(runningThen(map[string]int{"r": 2}, orkstate.PollCompleted, ""))
	cfg := b.config(fake)
	tr, err := New(cfg)
	must(t, err, "New")
	t.Cleanup(tr.Close)
	fx := b.newRun(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	djs := b.deferJobs(t, tr, fx.a.ID, fakeServiceType, "r")
	waitRiverFinal(t, tr, djs[0].ID)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskSuccess {
		t.Errorf("task a: %s", a.Status)
	}
}

func TestMigrateRiverConcurrent(t *testing.T) {
	t.Parallel()
	pool, schema := testdb.Schema(t)
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- MigrateRiver(ctx, pool, schema) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("MigrateRiver: %v", err)
		}
	}
	must(t, MigrateRiver(ctx, pool, schema), "MigrateRiver again")
	var n int
	must(t, pool.QueryRow(ctx, "select count(*) from "+schema+".river_job").Scan(&n), "river_job in the install schema")
	if err := MigrateRiver(ctx, pool, "Bad-Name"); !orkstate.IsValidation(err) {
		t.Errorf("bad schema: err = %v, want a validation error", err)
	}
}

// TestMigrateRiverBoundsGINPendingLists: MigrateRiver sets gin_pending_list_limit on
// River's two GIN indexes, does not alter them again once set, and leaves an index
// alone whose pending list a DBA has configured.
func TestMigrateRiverBoundsGINPendingLists(t *testing.T) {
	t.Parallel()
	pool, schema := testdb.Schema(t)
	ctx := context.Background()
	must(t, MigrateRiver(ctx, pool, schema), "MigrateRiver")
	type index struct {
		Options []string
		Xmin    string
	}
	read := func() map[string]index {
		rows, err := pool.Query(ctx, `select c.relname, coalesce(c.reloptions, '{}'), c.xmin::text
			from pg_class c where c.relnamespace = $1::regnamespace and c.relname = any($2)`, schema, riverGINIndexes)
		must(t, err, "read reloptions")
		out := map[string]index{}
		var name string
		var ix index
		_, err = pgx.ForEachRow(rows, []any{&name, &ix.Options, &ix.Xmin}, func() error {
			out[name] = ix
			return nil
		})
		must(t, err, "read reloptions")
		return out
	}
	first := read()
	want := fmt.Sprintf("gin_pending_list_limit=%d", riverGINPendingListLimit)
	for _, name := range riverGINIndexes {
		if !slices.Contains(first[name].Options, want) {
			t.Errorf("%s: reloptions %v, want %s", name, first[name].Options, want)
		}
	}

	// Set already: a second migration does not rewrite the index's catalog row.
	must(t, MigrateRiver(ctx, pool, schema), "MigrateRiver again")
	if again := read(); !reflect.DeepEqual(again, first) {
		t.Errorf("second MigrateRiver altered the indexes: %v, before %v", again, first)
	}

	// A DBA's own choice stays.
	args := pgx.Identifier{schema, "river_job_args_index"}.Sanitize()
	_, err := pool.Exec(ctx, "alter index "+args+" reset (gin_pending_list_limit); alter index "+args+" set (fastupdate = off)")
	must(t, err, "DBA's setting")
	must(t, MigrateRiver(ctx, pool, schema), "MigrateRiver after the DBA's setting")
	if got := read()["river_job_args_index"].Options; !reflect.DeepEqual(got, []string{"fastupdate=off"}) {
		t.Errorf("river_job_args_index after the DBA set fastupdate: reloptions %v, want [fastupdate=off]", got)
	}

	// An application role that does not own the indexes (an install its owner
	// migrated with an earlier version) migrates with nothing to do and no error.
	meta := pgx.Identifier{schema, "river_job_metadata_index"}.Sanitize()
	_, err = pool.Exec(ctx, "alter index "+meta+" reset (gin_pending_list_limit)")
	must(t, err, "reset the metadata index")
	role := schema + "_app"
	_, err = pool.Exec(ctx, fmt.Sprintf("create role %[1]s; grant usage on schema %[2]s to %[1]s; grant select on %[2]s.river_migration to %[1]s",
		pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()))
	must(t, err, "application role")
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), fmt.Sprintf("drop owned by %[1]s; drop role %[1]s", pgx.Identifier{role}.Sanitize()))
	})
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["role"] = role
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err, "application pool")
	defer app.Close()
	if err := MigrateRiver(ctx, app, schema); err != nil {
		t.Errorf("MigrateRiver as a role that does not own River's indexes: %v", err)
	}
	if got := read()["river_job_metadata_index"].Options; len(got) != 0 {
		t.Errorf("river_job_metadata_index after the application role's MigrateRiver: reloptions %v, want none", got)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	if _, err := New(nil); !orkstate.IsValidation(err) || !strings.Contains(err.Error(), "Pool") {
		t.Errorf("New(nil): %v, want a validation error naming Pool", err)
	}
	pool := testdb.Pool(t)
	for _, cfg := range []*Config{
		{Pool: pool, MaxAttempts: -1},
		{Pool: pool, MaxWorkers: -1},
		{Pool: pool, PollInterval: -time.Second},
		{Pool: pool, Schema: "Not A Schema"},
		{Pool: pool, Trackers: []Tracker{TrackerFunc{Type: "x"}, TrackerFunc{Type: "x"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): err = nil", cfg)
		}
	}
}
