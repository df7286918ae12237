// Package storetest is the conformance suite every orkstate.Store passes. It
// checks the contract of docs/semantics.md, not an implementation: a backend runs
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) orkstate.Store {
//			return newMyStore(t, now)
//		})
//	}
//
// and every subtest gets its own fresh, migrated, empty store, so subtests run in
// parallel. now is the subtest's clock, which the store must read wherever its
// behaviour depends on the time (pgstore.Config.Now, sqlitecompat.Config.Now): the
// suite moves that clock forward to make leases end, timeouts pass and polls fall
// due, instead of waiting for them in real time. A case that needs a capability the store declares it lacks
// (orkstate.Capabilities) is skipped with a message naming the capability, and a
// group a runner carves out with SkipGroup is skipped with the runner's reason;
// nothing else is ever skipped.
package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// Run runs the whole suite. newStore must return a fresh, migrated, empty store
// for the test it is given, running at the time now tells it, and release it when
// that test ends (t.Cleanup). One test calls Close on its store itself, so that
// cleanup must tolerate a closed store.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) orkstate.Store, opts ...Option) {
	o := &options{skip: map[string]string{}, concurrencyTasks: 20000}
	if testing.Short() {
		o.concurrencyTasks = 2000
	}
	for _, opt := range opts {
		opt(o)
	}
	s := &suite{newStore: newStore, concurrencyTasks: o.concurrencyTasks}
	skip := o.skip
	groups := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Store", s.testStore},
		{"Workflow", s.testWorkflows},
		{"WorkflowPage", s.testWorkflowPages},
		{"WorkflowTasks", s.testWorkflowTasks},
		{"Snapshot", s.testSnapshots},
		{"Run", s.testRuns},
		{"RunPage", s.testRunPages},
		{"RunControl", s.testRunControl},
		{"StartPendingRuns", s.testStartPendingRuns},
		{"CreateTasks", s.testCreateTasks},
		{"TaskRead", s.testTaskReads},
		{"TaskReport", s.testTaskReports},
		{"Claim", s.testClaims},
		{"Lease", s.testLeases},
		{"Retry", s.testRetries},
		{"DAG", s.testDAGs},
		{"Log", s.testLogs},
		{"Schedule", s.testSchedules},
		{"Deferred", s.testDeferred},
		{"Concurrency", s.testConcurrency},
		{"Limits", s.testLimits},
		{"LimitFields", s.testLimitFields},
		{"Bounds", s.testBounds},
		{"Agreement", s.testAgreement},
		{"Hardening", s.testHardening},
		{"Purge", s.testPurge},
		{"ReportAndClaim", s.testReportAndClaim},
	}
	known := map[string]bool{}
	for _, g := range groups {
		known[g.name] = true
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			if reason, ok := skip[g.name]; ok {
				t.Skipf("carved out by this runner: %s", reason)
			}
			g.fn(t)
		})
	}
	for name := range skip {
		if !known[name] {
			t.Errorf("SkipGroup(%q): no such group", name)
		}
	}
}

// Option changes how Run runs the suite.
type Option func(*options)

type options struct {
	skip             map[string]string // group → reason
	concurrencyTasks int
}

// SkipGroup carves the named group out of this run, for a way of calling a store
// the group's cases do not apply to (the pgx runner's WithTx mode has no
// concurrent callers). The reason is the skip message.
func SkipGroup(group, reason string) Option {
	return func(o *options) { o.skip[group] = reason }
}

// ConcurrencyTasks sets how many tasks Concurrency/ClaimersEachTaskOnce races its
// claimers over (default 20,000; 2,000 with -short). A store whose every call is
// Go code (SQLite's) runs it many times slower under the race detector, where a
// smaller race finds the same data races.
func ConcurrencyTasks(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.concurrencyTasks = n
		}
	}
}

type suite struct {
	newStore         func(t *testing.T, now func() time.Time) orkstate.Store
	concurrencyTasks int
}

// bundle is what one test works with: its own store, the store's clock and a context.
type bundle struct {
	t     *testing.T
	ctx   context.Context
	store orkstate.Store
	clock *clock
	caps  orkstate.Capabilities
	seq   atomic.Int64
}

func (s *suite) setup(t *testing.T) *bundle {
	t.Helper()
	c := &clock{}
	st := s.newStore(t, c.now)
	if st == nil {
		t.Fatal("newStore returned nil")
	}
	return &bundle{t: t, ctx: context.Background(), store: st, clock: c, caps: st.Capabilities()}
}

// test declares one parallel subtest with its own bundle.
func (s *suite) test(t *testing.T, name string, fn func(t *testing.T, b *bundle)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		fn(t, s.setup(t))
	})
}

// requireCapability skips t when the store lacks the named capability.
func requireCapability(t *testing.T, name string, has bool) {
	t.Helper()
	if !has {
		t.Skipf("store lacks capability %s", name)
	}
}

// next returns a number unique within the bundle, for names.
func (b *bundle) next() int64 { return b.seq.Add(1) }

func (b *bundle) uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, b.next()) }
