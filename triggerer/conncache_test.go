package triggerer

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
)

// TestCommitGroupsKeepTheirBackends: the commit groups' statements run on at most
// maxCommitsInFlight backends, whatever connection the pool would hand out next
// (each backend's first group statement costs 13–14 ms of server CPU). Between
// bursts the test puts connections whose backend ran no group statement where
// the pool hands out its next ones.
func TestCommitGroupsKeepTheirBackends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const bursts, perBurst = 5, 4
	ids := b.deferredFixture(t, bursts*perBurst)
	tr, err := New(b.config(completeAtOnce()))
	must(t, err, "New")
	var mu sync.Mutex
	pids := map[uint32]bool{}
	tr.groups.onFinishBackend = func(pid uint32) {
		mu.Lock()
		pids[pid] = true
		mu.Unlock()
	}
	must(t, tr.Start(ctx), "Start")
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = tr.Stop(sctx)
		tr.Close()
	})
	for i := range bursts {
		part := ids[i*perBurst : (i+1)*perBurst]
		b.enqueueAll(t, tr, part)
		waitFor(t, "the burst to complete", func() (bool, error) {
			return len(b.openDeferred(t, part)) == 0, nil
		})
		mu.Lock()
		used := maps.Clone(pids)
		mu.Unlock()
		unusedConnsOnTop(t, tr.pool, used)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pids) > maxCommitsInFlight {
		t.Errorf("group statements ran on %d backends, want at most %d", len(pids), maxCommitsInFlight)
	}
}

// unusedConnsOnTop leaves pool's idle connections whose backend is not in used
// where the pool hands out its next connections (pgxpool reuses the last
// released), and opens one more when there is room.
func unusedConnsOnTop(t *testing.T, pool *pgxpool.Pool, used map[uint32]bool) {
	t.Helper()
	ctx := context.Background()
	idle := pool.AcquireAllIdle(ctx)
	if pool.Stat().TotalConns() < pool.Config().MaxConns {
		c, err := pool.Acquire(ctx)
		must(t, err, "acquire a new connection")
		idle = append(idle, c)
	}
	slices.SortStableFunc(idle, func(a, b *pgxpool.Conn) int {
		ua, ub := used[a.Conn().PgConn().PID()], used[b.Conn().PgConn().PID()]
		switch {
		case ua == ub:
			return 0
		case ua:
			return -1 // released first: deepest
		}
		return 1
	})
	for _, c := range idle {
		c.Release()
	}
}

// TestConnCacheReleases: the cache keeps at most max connections, hands back
// the last one kept, and gives the pool back a connection inside a transaction,
// every connection at close, and any put after close.
func TestConnCacheReleases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	pool, err := pgxpool.New(ctx, b.pool.Config().ConnString())
	must(t, err, "pool")
	defer pool.Close()
	c := newConnCache(pool, 1)
	// Released connections go back to the pool asynchronously.
	outOfPool := func(want int32, after string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for pool.Stat().AcquiredConns() != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := pool.Stat().AcquiredConns(); got != want {
			t.Errorf("%d connections out of the pool %s, want %d", got, after, want)
		}
	}

	a, err := c.get(ctx)
	must(t, err, "get")
	d, err := c.get(ctx)
	must(t, err, "get")
	c.put(a)
	c.put(d) // the cache is full: released
	outOfPool(1, "after a full cache's put")
	again, err := c.get(ctx)
	must(t, err, "get")
	if again.conn != a.conn {
		t.Error("get did not return the cached connection")
	}
	_, err = again.conn.Exec(ctx, "begin")
	must(t, err, "begin")
	c.put(again) // inside a transaction: released
	outOfPool(0, "after putting one inside a transaction")

	old, err := c.get(ctx)
	must(t, err, "get")
	old.since = time.Now().Add(-connCacheHold)
	c.put(old) // out of the pool for connCacheHold: released
	outOfPool(0, "after putting an old one")

	f, err := c.get(ctx)
	must(t, err, "get")
	g, err := c.get(ctx)
	must(t, err, "get")
	c.put(f)
	c.close()
	c.put(g)
	outOfPool(0, "after close")
}

// TestReadPollTargets: the poll's read returns, for the ids that exist, what a
// poll needs — as Store.GetDeferredJobs has it — including job data that is
// absent.
func TestReadPollTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	tr, err := New(b.config())
	must(t, err, "New")
	defer tr.Close()
	fx := b.newRun(t)
	created, err := tr.CreateDeferredJobs(ctx, fx.a.ID, []orkstate.NewDeferredJob{
		{ServiceType: "bq", JobID: "with-data", JobData: json.RawMessage(`{"project": "p", "n": [1, 2]}`)},
		{ServiceType: "http", JobID: "without-data"},
	})
	must(t, err, "CreateDeferredJobs")
	_, err = b.store.ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{{JobID: created[1].ID, Result: orkstate.PollFailed, Error: "gone"}})
	must(t, err, "fail the second job")
	ids := []int64{created[0].ID, created[1].ID, created[1].ID + 1000}
	got, err := tr.groups.readPollTargets(ctx, ids)
	must(t, err, "readPollTargets")
	want, err := b.store.GetDeferredJobs(ctx, ids)
	must(t, err, "GetDeferredJobs")
	if len(got) != 2 || len(want) != 2 {
		t.Fatalf("read %d jobs, GetDeferredJobs %d; want 2 each", len(got), len(want))
	}
	byID := map[int64]orkstate.DeferredJob{}
	for _, j := range got {
		byID[j.ID] = j
	}
	for _, w := range want {
		g := byID[w.ID]
		if g.TaskID != w.TaskID || g.ServiceType != w.ServiceType || g.JobID != w.JobID || g.Status != w.Status ||
			!jsonEqual(t, g.JobData, w.JobData) {
			t.Errorf("deferred job %d: read %+v, want %+v", w.ID, g, w)
		}
	}
	if g := byID[created[1].ID]; g.JobData != nil || g.Status != orkstate.DeferredFailed {
		t.Errorf("job without data: job data %q, status %s; want none, failed", g.JobData, g.Status)
	}
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	must(t, json.Unmarshal(a, &x), "unmarshal")
	must(t, json.Unmarshal(b, &y), "unmarshal")
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
