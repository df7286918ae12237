package notify_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/notify"
)

// The functions' own NOTIFY wakes a loop: a dependency's success makes its dependent
// ready, and a Waker whose fallback poll is a minute away returns as notified.
func TestDependencySuccessWakesWaiter(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := testdb.Store(t)
	w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "wake"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplaceWorkflowTasks(ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRun(ctx, w.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartPendingRuns(ctx, 1); err != nil {
		t.Fatal(err)
	}
	a, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "t", Limit: 10})
	if err != nil || len(a) != 1 {
		t.Fatalf("claim a: %v %v", a, err)
	}

	l, err := notify.NewListener(s.Pool(), &notify.ListenerConfig{Schema: s.Schema()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	waker, err := notify.NewWaker(l, &notify.WakerConfig{PollInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer waker.Close()

	if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: a[0].ID, Status: orkstate.TaskSuccess, Attempt: a[0].Attempt}); err != nil {
		t.Fatal(err)
	}
	r, err := waker.Wait(ctx)
	if err != nil || r != orkstate.WakeNotified {
		t.Fatalf("Wait after a's success = %v, %v; want notified", r, err)
	}
	b, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "t", Limit: 10})
	if err != nil || len(b) != 1 || b[0].TaskName != "b" {
		t.Fatalf("claim after the wake-up: %v %v", b, err)
	}
}

// A forged runs notification (any role may NOTIFY the channel) does not make
// WaitForRun report a run that is still running as finished: the status comes from
// the store. Issue 11, item 11.
func TestWaitForRunIgnoresForgedNotification(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := testdb.Store(t)
	w, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := s.CreateRun(ctx, w.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartPendingRuns(ctx, 1); err != nil {
		t.Fatal(err)
	}
	l, err := notify.NewListener(s.Pool(), &notify.ListenerConfig{Schema: s.Schema()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	waker, err := notify.NewWaker(l, &notify.WakerConfig{PollInterval: time.Minute, RunStatus: notify.StoreRunStatus(s)})
	if err != nil {
		t.Fatal(err)
	}
	defer waker.Close()

	waitCtx, stop := context.WithTimeout(ctx, time.Second)
	defer stop()
	got := make(chan error, 1)
	go func() {
		st, err := waker.WaitForRun(waitCtx, run.ID)
		if err == nil {
			err = fmt.Errorf("WaitForRun returned %s", st)
		}
		got <- err
	}()
	// Forge until the wait ends: the first NOTIFY may come before WaitForRun listens.
	payload := fmt.Sprintf(`{"runs":[{"id":%d,"status":"success"}]}`, run.ID)
	for {
		if _, err := s.Pool().Exec(ctx, "select pg_notify($1, $2)", notify.RunsChannel(s.Schema()), payload); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitForRun of a running run under forged notifications: %v; want it to wait until its context ends", err)
			}
			if r, _ := s.GetRun(ctx, run.ID); r.Status != orkstate.RunRunning {
				t.Fatalf("run is %s", r.Status)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
