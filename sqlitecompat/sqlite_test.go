package sqlitecompat_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// seedTasks creates one running run with n legacy tasks and returns their ids.
func seedTasks(t *testing.T, s *sqlitecompat.Store, n int) map[int64]bool {
	t.Helper()
	ctx := context.Background()
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: fmt.Sprintf("wf-%d", time.Now().UnixNano())})
	if err != nil {
		t.Fatalf("CreateWorkflow: %v", err)
	}
	run, err := s.CreateRun(ctx, wf.ID, "test")
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	ts, err := s.CreateTasks(ctx, run.ID, n, "x", nil)
	if err != nil {
		t.Fatalf("CreateTasks: %v", err)
	}
	ids := map[int64]bool{}
	for _, k := range ts {
		ids[k.ID] = true
	}
	return ids
}

// claimAll claims in small batches until nothing is left, marking each claimed
// task successful, and returns what it claimed.
func claimAll(ctx context.Context, s *sqlitecompat.Store, name string, pause time.Duration) ([]int64, error) {
	return claimAllAfter(ctx, s, name, pause, nil)
}

// claimAllAfter is claimAll that calls afterFirst (when not nil) once its first
// claim got work, before reporting it.
func claimAllAfter(ctx context.Context, s *sqlitecompat.Store, name string, pause time.Duration, afterFirst func() error) ([]int64, error) {
	var got []int64
	for {
		time.Sleep(pause) // dispatching, outside any transaction
		cs, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: name, Limit: 7})
		if err != nil {
			return got, err
		}
		if len(cs) == 0 {
			return got, nil
		}
		if afterFirst != nil && len(got) == 0 {
			if err := afterFirst(); err != nil {
				return got, err
			}
		}
		us := make([]orkstate.TaskUpdate, len(cs))
		for i, c := range cs {
			got = append(got, c.ID)
			us[i] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt}
		}
		if _, err := s.SetTaskStates(ctx, us); err != nil {
			return got, err
		}
	}
}

func checkOnce(t *testing.T, want map[int64]bool, claims ...[]int64) {
	t.Helper()
	seen := map[int64]int{}
	busy := 0
	for _, c := range claims {
		if len(c) > 0 {
			busy++
		}
		for _, id := range c {
			seen[id]++
			if seen[id] == 2 {
				t.Errorf("task %d claimed twice", id)
			}
			if !want[id] {
				t.Errorf("claimed unknown task %d", id)
			}
		}
	}
	if len(seen) != len(want) {
		t.Errorf("claimed %d distinct tasks, want %d", len(seen), len(want))
	}
	if busy < 2 {
		t.Errorf("only %d claimer got work", busy)
	}
}

// Two Stores on one file are two sets of connections with their own locks, like
// two processes: each task is claimed exactly once.
func TestTwoHandlesClaimOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ork.db")
	ctx := context.Background()
	a, err := sqlitecompat.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlitecompat.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := seedTasks(t, a, 300)
	claims := make([][]int64, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			claims[i], errs[i] = claimAll(ctx, s, fmt.Sprint("g", i), time.Millisecond)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkOnce(t, want, claims...)
}

const childEnv = "ORKSTATE_SQLITE_CLAIM_CHILD"

// TestClaimChild is the body of the child processes of TestTwoProcessesClaimOnce.
func TestClaimChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper process for TestTwoProcessesClaimOnce")
	}
	ctx := context.Background()
	s, err := sqlitecompat.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Start together: say ready, then wait for the parent's go file.
	if err := os.WriteFile(fmt.Sprintf("%s.ready.%d", path, os.Getpid()), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path + ".go"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no start signal")
		}
	}
	// Each child holds its first claim until the other has one too, so both always
	// get work however the machine schedules them (a loaded machine once let one
	// child take all 400 tasks before the other's first claim).
	both := func() error {
		if err := os.WriteFile(fmt.Sprintf("%s.first.%d", path, os.Getpid()), nil, 0o600); err != nil {
			return err
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			if first, _ := filepath.Glob(path + ".first.*"); len(first) >= 2 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the other child never claimed")
			}
		}
	}
	ids, err := claimAllAfter(ctx, s, fmt.Sprint("pid", os.Getpid()), time.Millisecond, both)
	for _, id := range ids {
		fmt.Printf("CLAIMED %d\n", id)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestTwoProcessesClaimOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := filepath.Join(t.TempDir(), "ork.db")
	s, err := sqlitecompat.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := seedTasks(t, s, 400)

	const procs = 2
	claims := make([][]int64, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := 0; i < procs; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestClaimChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			var log strings.Builder
			for sc.Scan() {
				line := sc.Text()
				if rest, ok := strings.CutPrefix(line, "CLAIMED "); ok {
					id, _ := strconv.ParseInt(rest, 10, 64)
					claims[i] = append(claims[i], id)
				} else {
					log.WriteString(line + "\n")
				}
			}
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("child %d: %v\n%s%s", i, err, log.String(), stderr.String())
			}
		}()
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ready, _ := filepath.Glob(path + ".ready.*")
		if len(ready) == procs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d children ready", len(ready), procs)
		}
	}
	if err := os.WriteFile(path+".go", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkOnce(t, want, claims...)
	st, err := s.RunTaskStats(context.Background(), mustOneRun(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if st.Success != len(want) {
		t.Errorf("successful tasks = %d, want %d", st.Success, len(want))
	}
}

func mustOneRun(t *testing.T, s *sqlitecompat.Store) int64 {
	t.Helper()
	runs, err := s.ListRuns(context.Background(), 0)
	if err != nil || len(runs) != 1 {
		t.Fatalf("ListRuns: %v, %d runs", err, len(runs))
	}
	return runs[0].ID
}

func TestMigrateDownAndUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != sqlitecompat.LatestVersion() || v < 1 {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, sqlitecompat.LatestVersion())
	}
	seedTasks(t, s, 3)
	if err := s.MigrateTo(ctx, 0); err != nil {
		t.Fatalf("MigrateTo(0): %v", err)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master
		WHERE name NOT LIKE 'sqlite_%' AND name <> 'orkstate_schema_version'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d schema objects left after MigrateTo(0)", n)
	}
	if v, _ := s.SchemaVersion(ctx); v != 0 {
		t.Errorf("version after down = %d", v)
	}
	if err := s.MigrateTo(ctx, -1); !orkstate.IsValidation(err) {
		t.Errorf("MigrateTo(-1) = %v, want a validation error", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate twice: %v", err)
	}
	if ws, err := s.ListWorkflows(ctx); err != nil || len(ws) != 0 {
		t.Errorf("ListWorkflows after down/up: %v, %d", err, len(ws))
	}
	seedTasks(t, s, 3)
}

// Timestamps keep microseconds in one format (INTEGER unix microseconds).
func TestTimestampsSubSecond(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	var mu sync.Mutex
	now := base
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := sqlitecompat.Open(ctx, filepath.Join(t.TempDir(), "ork.db"), &sqlitecompat.Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := base.UTC().Truncate(time.Microsecond)
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if !wf.CreatedAt.Equal(want) || wf.CreatedAt.Nanosecond() != 123456000 {
		t.Errorf("CreatedAt = %v, want %v", wf.CreatedAt, want)
	}
	last, next := base.Add(time.Millisecond+7*time.Microsecond), base.Add(time.Hour+999*time.Microsecond)
	if err := s.SetScheduleTimes(ctx, wf.ID, &last, &next); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetWorkflow(ctx, wf.ID)
	if !got.LastScheduledAt.Equal(last.Truncate(time.Microsecond)) || !got.NextScheduledAt.Equal(next.Truncate(time.Microsecond)) {
		t.Errorf("schedule times = %v, %v; want %v, %v", got.LastScheduledAt, got.NextScheduledAt, last, next)
	}
	run, _ := s.CreateRun(ctx, wf.ID, "t")
	ts, err := s.CreateDAGTasks(ctx, run.ID, []orkstate.NewTask{{TaskName: "a", MaxRetries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1})
	if err != nil || len(c) != 1 {
		t.Fatalf("claim: %v %d", err, len(c))
	}
	if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: ts[0].ID, Status: orkstate.TaskFailed, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	k, _ := s.GetTask(ctx, ts[0].ID)
	if k.RetryAt == nil || !k.RetryAt.Equal(want.Add(time.Second)) {
		t.Errorf("RetryAt = %v, want %v (sub-second kept)", k.RetryAt, want.Add(time.Second))
	}
	// Not due half a second later, due at exactly now+1s.
	mu.Lock()
	now = base.Add(500 * time.Millisecond)
	mu.Unlock()
	if c, _ := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1}); len(c) != 0 {
		t.Errorf("claimed before retry_at")
	}
	mu.Lock()
	now = base.Add(time.Second)
	mu.Unlock()
	if c, _ := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1}); len(c) != 1 {
		t.Errorf("not claimed at retry_at")
	}
	var typ string
	if err := s.DB().QueryRowContext(ctx, `SELECT typeof(created_at) || typeof(dispatched_at) FROM tasks`).Scan(&typ); err != nil || typ != "integerinteger" {
		t.Errorf("stored types %q, %v", typ, err)
	}
}

func TestMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlitecompat.Open(ctx, ":memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := seedTasks(t, s, 50)
	var wg sync.WaitGroup
	claims := make([][]int64, 3)
	for i := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claims[i], _ = claimAll(ctx, s, fmt.Sprint("m", i), time.Millisecond)
		}()
	}
	wg.Wait()
	checkOnce(t, want, claims...)
}

func TestWaker(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := newStore(t)
	w, err := s.Waker(&sqlitecompat.WakerConfig{PollInterval: time.Hour, Kinds: []orkstate.WakeKind{orkstate.WakeKindTasksReady}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := s.Waker(&sqlitecompat.WakerConfig{Kinds: []orkstate.WakeKind{"nope"}}); !orkstate.IsValidation(err) {
		t.Errorf("unknown kind: %v", err)
	}
	wf, _ := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w", TaskParams: []byte(`{"task_count":1}`)})
	run, _ := s.CreateRun(ctx, wf.ID, "t")
	done := make(chan orkstate.RunStatus, 1)
	go func() {
		st, err := w.WaitForRun(ctx, run.ID)
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	if _, err := s.StartPendingRuns(ctx, 10); err != nil {
		t.Fatal(err)
	}
	r, err := w.Wait(ctx)
	if err != nil || r != orkstate.WakeNotified {
		t.Fatalf("Wait = %v, %v; want notified", r, err)
	}
	c, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 5})
	if err != nil || len(c) != 1 {
		t.Fatalf("claim: %v %d", err, len(c))
	}
	if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: c[0].ID, Status: orkstate.TaskSuccess, Attempt: c[0].Attempt}); err != nil {
		t.Fatal(err)
	}
	if st := <-done; st != orkstate.RunSuccess {
		t.Errorf("WaitForRun = %s", st)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := w.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with nothing signalled = %v", err)
	}
	s.Close()
	if _, err := w.Wait(ctx); !errors.Is(err, sqlitecompat.ErrClosed) && err != nil {
		t.Errorf("Wait after Close = %v", err)
	}
}
