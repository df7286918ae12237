package notify_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// lockedBuffer collects the example's log lines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The package example's loop survives its backends being terminated again and
// again mid-run (pg_terminate_backend, as a Postgres restart or a failover does):
// it retries with backoff and goes on running DAGs. It used to return the first
// error, ending the process. Issue 11, item 13.
func TestSchedulerLoopSurvivesTerminatedBackends(t *testing.T) {
	// Not parallel: it captures the standard logger the example writes to.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	shared, schema := testdb.Schema(t)
	appName := "orktest_loop_" + schema

	cfg, err := pgxpool.ParseConfig(testdb.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	loopStore, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgstore.New(shared, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	wf, err := admin.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "chain"})
	if err != nil {
		t.Fatal(err)
	}
	specs := []orkstate.TaskSpec{{Name: "t0"}}
	for i := 1; i < 8; i++ {
		specs = append(specs, orkstate.TaskSpec{Name: fmt.Sprintf("t%d", i), DependsOn: []string{fmt.Sprintf("t%d", i-1)}})
	}
	if _, err := admin.ReplaceWorkflowTasks(ctx, wf.ID, specs); err != nil {
		t.Fatal(err)
	}

	logs := &lockedBuffer{}
	prev := log.Writer()
	log.SetOutput(logs)
	defer log.SetOutput(prev)
	listener, err := notify.NewListener(pool, &notify.ListenerConfig{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	waker, err := notify.NewWaker(listener, &notify.WakerConfig{PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer waker.Close()
	if err := listener.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer listener.Stop()

	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	ended := make(chan error, 1)
	go func() { ended <- schedule(loopCtx, loopStore, waker) }()

	// Two seconds of runs arriving while every backend of the loop's pool (the
	// listener's too) is terminated every 100 ms.
	terminated := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if _, err := admin.CreateRun(ctx, wf.ID, "test"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := shared.QueryRow(ctx, `select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
			where application_name = $1) k`, appName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		terminated += n
		select {
		case err := <-ended:
			t.Fatalf("the loop ended while its backends were terminated: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The loop is still there and still works: a run created now finishes.
	last, err := admin.CreateRun(ctx, wf.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := admin.GetRun(ctx, last.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == orkstate.RunSuccess {
			break
		}
		select {
		case err := <-ended:
			t.Fatalf("the loop ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("the run created after the terminations is %s when the test timed out", r.Status)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stopLoop()
	if err := <-ended; err != context.Canceled {
		t.Fatalf("schedule returned %v after its context ended, want context.Canceled", err)
	}
	retries := strings.Count(logs.String(), "; again in")
	t.Logf("%d backends terminated, %d transient errors retried", terminated, retries)
	if terminated == 0 || retries == 0 {
		t.Fatalf("%d backends terminated and %d retries: the test did not exercise the loop's recovery", terminated, retries)
	}
}
