package notify

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// testBundle is one test's listener on its own (uninstalled) schema name: channels
// are all a listener needs, so the schema is never migrated.
type testBundle struct {
	pool     *pgxpool.Pool
	schema   string
	appName  string
	listener *Listener
}

// setup makes a Listener for a fresh schema name, stopped when t ends. cfg may
// be nil; its Schema and ApplicationName are filled in.
func setup(t *testing.T, cfg *ListenerConfig) *testBundle {
	t.Helper()
	b := &testBundle{pool: testdb.Pool(t), schema: testdb.SchemaName(t)}
	b.appName = "orktest_" + b.schema
	c := ListenerConfig{}
	if cfg != nil {
		c = *cfg
	}
	c.Schema, c.ApplicationName = b.schema, b.appName
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	l, err := NewListener(b.pool, &c)
	if err != nil {
		t.Fatalf("NewListener: %v", err)
	}
	t.Cleanup(l.Stop)
	b.listener = l
	return b
}

func (b *testBundle) start(t *testing.T) {
	t.Helper()
	if err := b.listener.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func (b *testBundle) waker(t *testing.T, cfg *WakerConfig) *PGWaker {
	t.Helper()
	w, err := NewWaker(b.listener, cfg)
	if err != nil {
		t.Fatalf("NewWaker: %v", err)
	}
	t.Cleanup(w.Close)
	return w
}

// notify sends one notification from a pool connection, as the SQL functions will.
func (b *testBundle) notify(t *testing.T, k orkstate.WakeKind, payload string) {
	t.Helper()
	if _, err := b.pool.Exec(t.Context(), "select pg_notify($1, $2)", Channel(b.schema, k), payload); err != nil {
		t.Fatalf("pg_notify: %v", err)
	}
}

// pids lists the backends carrying the listener's application_name.
func (b *testBundle) pids(t *testing.T) []int32 {
	t.Helper()
	rows, _ := b.pool.Query(t.Context(),
		"select pid from pg_stat_activity where application_name = $1 order by pid", b.appName)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return pids
}

// waitForPids polls pg_stat_activity until the listener's backends are want's
// length: a closed connection's backend exits a moment after the client leaves,
// and nothing signals that to the test.
func (b *testBundle) waitForPids(t *testing.T, n int) []int32 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := b.pids(t)
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends of %s = %v, want %d of them", b.appName, pids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustWait calls Wait and fails t unless it returns want.
func mustWait(t *testing.T, w orkstate.Waker, want orkstate.WakeReason) {
	t.Helper()
	r, err := w.Wait(t.Context())
	if err != nil || r != want {
		t.Fatalf("Wait = %v, %v; want %v", r, err, want)
	}
}

func TestListenerLifecycle(t *testing.T) {
	t.Parallel()

	t.Run("pool connection is hijacked and named", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.start(t)
		if got := b.waitForPids(t, 1); len(got) != 1 {
			t.Fatalf("pids = %v", got)
		}
		if err := b.listener.Start(t.Context()); err == nil {
			t.Fatalf("second Start = nil, want an error")
		}
		b.listener.Stop()
		b.listener.Stop() // safe twice
		b.waitForPids(t, 0)
		if s := b.listener.Stats(); s.Connects != 1 {
			t.Fatalf("Stats = %+v, want 1 connect", s)
		}
	})

	t.Run("own connection closed by ctx cancel", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &ListenerConfig{ConnString: testdb.URL()})
		ctx, cancel := context.WithCancel(t.Context())
		if err := b.listener.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		b.waitForPids(t, 1)
		cancel()
		b.waitForPids(t, 0)
		b.listener.Stop() // returns at once: already ended
	})

	t.Run("first connect failing fails Start", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &ListenerConfig{ConnString: "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5"})
		if err := b.listener.Start(t.Context()); err == nil {
			t.Fatalf("Start = nil, want a connect error")
		}
		b.listener.Stop()
	})

	t.Run("Stop before Start", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.listener.Stop()
		if err := b.listener.Start(t.Context()); err == nil {
			t.Fatalf("Start after Stop = nil, want an error")
		}
	})
}

// TestWakeLatency: a notification wakes a Wait at once; the 1-minute fallback
// poll would fail the test by timing out.
func TestWakeLatency(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// Debounce 1ns: every sample is an isolated notification, however quickly
	// the samples follow each other.
	w := b.waker(t, &WakerConfig{PollInterval: time.Minute, Debounce: time.Nanosecond})
	b.start(t)
	mustWait(t, w, orkstate.WakeBacklog) // the first connect's

	const samples = 50
	var lat []time.Duration
	for range samples {
		type result struct {
			r   orkstate.WakeReason
			err error
			at  time.Time
		}
		got := make(chan result, 1)
		go func() {
			r, err := w.Wait(t.Context())
			got <- result{r, err, time.Now()}
		}()
		sent := time.Now()
		b.notify(t, orkstate.WakeKindTasksReady, "")
		res := <-got
		if res.err != nil || res.r != orkstate.WakeNotified {
			t.Fatalf("Wait = %v, %v; want notified", res.r, res.err)
		}
		lat = append(lat, res.at.Sub(sent))
	}
	slices.Sort(lat)
	t.Logf("NOTIFY (pool Exec incl. commit) → Wait return over %d samples: min %v, median %v, p90 %v, max %v",
		samples, lat[0], lat[samples/2], lat[samples*9/10], lat[samples-1])
	if lat[samples/2] > 100*time.Millisecond {
		t.Errorf("median wake latency %v, want milliseconds", lat[samples/2])
	}
}

// TestListenerReconnects: the listener's backend is terminated; while it is down
// Wait keeps returning by poll, then it reconnects and says notifications may
// have been missed, and notifications wake again.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	const (
		poll = 100 * time.Millisecond
		// Generous for -race on shared cores; what matters is "about poll", not "a minute".
		slack = 400 * time.Millisecond
	)
	// ReconnectDelayMin 300ms (±20%) keeps the listener down for a few polls.
	b := setup(t, &ListenerConfig{ConnString: testdb.URL(), ReconnectDelayMin: 300 * time.Millisecond})
	w := b.waker(t, &WakerConfig{PollInterval: poll})
	var rs fakeRuns
	rs.set(7, orkstate.RunRunning)
	runWaker := b.waker(t, &WakerConfig{PollInterval: time.Minute, RunStatus: rs.get})
	b.start(t)
	mustWait(t, w, orkstate.WakeBacklog)
	before := b.waitForPids(t, 1)

	// A WaitForRun whose run finished while the listener was away: the backlog
	// signal makes it look again instead of waiting for its minute-long poll.
	runDone := make(chan orkstate.RunStatus, 1)
	firstLookup := rs.calledOnce()
	go func() {
		st, err := runWaker.WaitForRun(t.Context(), 7)
		if err != nil {
			t.Errorf("WaitForRun: %v", err)
		}
		runDone <- st
	}()
	<-firstLookup

	if _, err := b.pool.Exec(t.Context(), "select pg_terminate_backend($1)", before[0]); err != nil {
		t.Fatalf("pg_terminate_backend: %v", err)
	}
	rs.set(7, orkstate.RunSuccess)

	polls := 0
	for {
		start := time.Now()
		r, err := w.Wait(t.Context())
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if d := time.Since(start); d > poll+slack {
			t.Fatalf("Wait took %v while reconnecting, want about the %v poll interval", d, poll)
		}
		if r == orkstate.WakeBacklog {
			break
		}
		if r != orkstate.WakePoll {
			t.Fatalf("Wait = %v while reconnecting, want poll or backlog", r)
		}
		polls++
	}
	if polls == 0 {
		t.Errorf("no Wait returned by poll while the listener was down")
	}
	if st := <-runDone; st != orkstate.RunSuccess {
		t.Errorf("WaitForRun = %v, want success", st)
	}
	after := b.waitForPids(t, 1)
	if after[0] == before[0] {
		t.Fatalf("listener backend is still %d", after[0])
	}
	if s := b.listener.Stats(); s.Connects != 2 {
		t.Fatalf("Stats = %+v, want 2 connects", s)
	}
	b.notify(t, orkstate.WakeKindTasksReady, "")
	mustWait(t, w, orkstate.WakeNotified)
	t.Logf("%d polls while the listener was down", polls)
}

// TestSchemasDoNotHearEachOther: two installs' listeners in one database.
func TestSchemasDoNotHearEachOther(t *testing.T) {
	t.Parallel()
	a, b := setup(t, nil), setup(t, nil)
	wa := a.waker(t, &WakerConfig{PollInterval: time.Minute})
	wb := b.waker(t, &WakerConfig{PollInterval: 50 * time.Millisecond})
	wbBarrier := b.waker(t, &WakerConfig{PollInterval: time.Minute, Kinds: []orkstate.WakeKind{orkstate.WakeKindDeferredJobs}})
	a.start(t)
	b.start(t)
	mustWait(t, wa, orkstate.WakeBacklog)
	mustWait(t, wb, orkstate.WakeBacklog)
	mustWait(t, wbBarrier, orkstate.WakeBacklog)

	a.notify(t, orkstate.WakeKindTasksReady, "")
	mustWait(t, wa, orkstate.WakeNotified)
	// One session's notifications reach every listener in commit order, so once
	// b hears the barrier it would have heard a's notification too.
	a.notify(t, orkstate.WakeKindTasksReady, "")
	b.notify(t, orkstate.WakeKindDeferredJobs, "")
	mustWait(t, wbBarrier, orkstate.WakeNotified)
	mustWait(t, wb, orkstate.WakePoll)
	if s := b.listener.Stats(); s.Notifications != 1 {
		t.Fatalf("b's listener heard %d notifications, want 1 (its own)", s.Notifications)
	}
}

// TestWakerBurst: 10,000 notifications in one transaction wake a loop that does
// no work at all about once per Debounce while they stream in (hundreds of
// milliseconds under -race), instead of once per notification.
func TestWakerBurst(t *testing.T) {
	t.Parallel()
	const (
		n        = 10000
		debounce = 100 * time.Millisecond
	)
	b := setup(t, nil)
	w := b.waker(t, &WakerConfig{PollInterval: 500 * time.Millisecond, Debounce: debounce})
	b.start(t)
	mustWait(t, w, orkstate.WakeBacklog)

	if _, err := b.pool.Exec(t.Context(), "select pg_notify($1, g::text) from generate_series(1, $2::int) g",
		TasksReadyChannel(b.schema), n); err != nil {
		t.Fatalf("pg_notify burst: %v", err)
	}
	var wakes int
	var first, last time.Time
	for {
		r, err := w.Wait(t.Context())
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if r == orkstate.WakeNotified {
			wakes++
			last = time.Now()
			if first.IsZero() {
				first = last
			}
			continue
		}
		// A poll means a quiet PollInterval; the burst is over once all arrived.
		if r == orkstate.WakePoll && b.listener.Stats().Notifications == n {
			break
		}
	}
	span := last.Sub(first)
	// Leading edge, one wake per Debounce while it streams, one trailing.
	bound := int(span/debounce) + 2
	t.Logf("%d notifications woke the loop %d times over %v (bound %d)", n, wakes, span, bound)
	if wakes < 1 || wakes > bound || wakes > 50 {
		t.Fatalf("%d wakes over %v, want 1..%d and at most 50", wakes, span, bound)
	}
}

func TestPollOnlyWaker(t *testing.T) {
	t.Parallel()
	const poll = 20 * time.Millisecond
	w, err := NewWaker(nil, &WakerConfig{PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // nothing to close; safe
	for range 3 {
		start := time.Now()
		mustWait(t, w, orkstate.WakePoll)
		if d := time.Since(start); d < poll {
			t.Fatalf("Wait returned after %v, before the %v interval", d, poll)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(cancelled) = %v, want context.Canceled", err)
	}
}

// fakeRuns is a RunStatusFunc over a map, counting its calls.
type fakeRuns struct {
	mu     sync.Mutex
	status map[int64]orkstate.RunStatus
	calls  int
	onCall []chan struct{} // closed at the next call
}

func (f *fakeRuns) set(id int64, st orkstate.RunStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status = make(map[int64]orkstate.RunStatus)
	}
	f.status[id] = st
}

func (f *fakeRuns) get(_ context.Context, id int64) (orkstate.RunStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, c := range f.onCall {
		close(c)
	}
	f.onCall = nil
	st, ok := f.status[id]
	if !ok {
		return "", orkstate.ErrNotFound
	}
	return st, nil
}

// calledOnce returns a channel closed at the next lookup: the waiter is then
// registered, since WaitForRun listens before it first looks.
func (f *fakeRuns) calledOnce() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan struct{})
	f.onCall = append(f.onCall, c)
	return c
}

func (f *fakeRuns) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestWaitForRun's cases share one listener and run in turn: a "more" payload
// wakes every waiter of the schema, which would add lookups to the others.
func TestWaitForRun(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)

	// runWaker returns a Waker whose poll never comes within the test.
	runWaker := func(t *testing.T, rs *fakeRuns) *PGWaker {
		return b.waker(t, &WakerConfig{PollInterval: time.Minute, RunStatus: rs.get})
	}
	// waitAsync starts WaitForRun and returns once it listens.
	type result struct {
		st  orkstate.RunStatus
		err error
	}
	waitAsync := func(t *testing.T, w *PGWaker, rs *fakeRuns, ctx context.Context, id int64) <-chan result {
		called := rs.calledOnce()
		got := make(chan result, 1)
		go func() {
			st, err := w.WaitForRun(ctx, id)
			got <- result{st, err}
		}()
		<-called
		return got
	}

	t.Run("finished before waiting", func(t *testing.T) {
		var rs fakeRuns
		rs.set(1, orkstate.RunFailed)
		st, err := runWaker(t, &rs).WaitForRun(t.Context(), 1)
		if err != nil || st != orkstate.RunFailed || rs.callCount() != 1 {
			t.Fatalf("WaitForRun = %v, %v after %d lookups; want failed after 1", st, err, rs.callCount())
		}
	})

	t.Run("named by a notification", func(t *testing.T) {
		var rs fakeRuns
		rs.set(2, orkstate.RunRunning)
		got := waitAsync(t, runWaker(t, &rs), &rs, t.Context(), 2)
		// Another run first: it must not end the wait nor cost a lookup.
		b.notify(t, orkstate.WakeKindRunFinished, `{"runs":[{"id":3,"status":"success"}]}`)
		rs.set(2, orkstate.RunCancelled)
		b.notify(t, orkstate.WakeKindRunFinished, `{"runs":[{"id":1,"status":"success"},{"id":2,"status":"cancelled"}]}`)
		res := <-got
		if res.err != nil || res.st != orkstate.RunCancelled || rs.callCount() != 2 {
			t.Fatalf("WaitForRun = %v, %v after %d lookups; want cancelled after 2", res.st, res.err, rs.callCount())
		}
	})

	// Any role can NOTIFY the runs channel: a payload saying the run succeeded while
	// the run is still running makes the waiter look, not return. Issue 11, item 11.
	t.Run("forged notification", func(t *testing.T) {
		var rs fakeRuns
		rs.set(9, orkstate.RunRunning)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		got := waitAsync(t, runWaker(t, &rs), &rs, ctx, 9)
		looked := rs.calledOnce()
		b.notify(t, orkstate.WakeKindRunFinished, `{"runs":[{"id":9,"status":"success"}]}`)
		select {
		case <-looked:
		case res := <-got:
			t.Fatalf("WaitForRun = %v, %v on a forged notification; want it to look the run up and go on waiting", res.st, res.err)
		}
		select {
		case res := <-got:
			t.Fatalf("WaitForRun = %v, %v on a forged notification; want it still waiting", res.st, res.err)
		case <-time.After(200 * time.Millisecond):
		}
		rs.set(9, orkstate.RunFailed)
		b.notify(t, orkstate.WakeKindRunFinished, `{"runs":[{"id":9,"status":"success"}]}`)
		if res := <-got; res.err != nil || res.st != orkstate.RunFailed {
			t.Fatalf("WaitForRun = %v, %v; want the stored status, failed", res.st, res.err)
		}
	})

	t.Run("more runs than named", func(t *testing.T) {
		var rs fakeRuns
		rs.set(4, orkstate.RunRunning)
		got := waitAsync(t, runWaker(t, &rs), &rs, t.Context(), 4)
		rs.set(4, orkstate.RunSuccess)
		b.notify(t, orkstate.WakeKindRunFinished, `{"runs":[{"id":5,"status":"success"}],"more":true}`)
		res := <-got
		if res.err != nil || res.st != orkstate.RunSuccess || rs.callCount() != 2 {
			t.Fatalf("WaitForRun = %v, %v after %d lookups; want success after 2", res.st, res.err, rs.callCount())
		}
	})

	t.Run("poll only", func(t *testing.T) {
		var rs fakeRuns
		rs.set(6, orkstate.RunRunning)
		w, err := NewWaker(nil, &WakerConfig{PollInterval: 10 * time.Millisecond, RunStatus: rs.get})
		if err != nil {
			t.Fatal(err)
		}
		got := waitAsync(t, w, &rs, t.Context(), 6)
		rs.set(6, orkstate.RunSuccess)
		if res := <-got; res.err != nil || res.st != orkstate.RunSuccess {
			t.Fatalf("WaitForRun = %v, %v; want success", res.st, res.err)
		}
	})

	t.Run("unknown run", func(t *testing.T) {
		var rs fakeRuns
		if _, err := runWaker(t, &rs).WaitForRun(t.Context(), 404); !errors.Is(err, orkstate.ErrNotFound) {
			t.Fatalf("WaitForRun = %v, want ErrNotFound", err)
		}
	})

	t.Run("context ends", func(t *testing.T) {
		var rs fakeRuns
		rs.set(8, orkstate.RunPaused)
		ctx, cancel := context.WithCancel(t.Context())
		got := waitAsync(t, runWaker(t, &rs), &rs, ctx, 8)
		cancel()
		if res := <-got; !errors.Is(res.err, context.Canceled) {
			t.Fatalf("WaitForRun = %v, %v; want context.Canceled", res.st, res.err)
		}
	})
}
