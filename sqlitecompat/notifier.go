package sqlitecompat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/orkstate/orkstate"
)

// kind bits of the in-process signals, the counterparts of pgstore's channels.
type kind uint8

const (
	kindTasksReady kind = 1 << iota // tasks became dispatchable
	kindDeferred                    // deferred jobs were created or became due
	kindRuns                        // runs finished
)

func kindBit(k orkstate.WakeKind) kind {
	switch k {
	case orkstate.WakeKindTasksReady:
		return kindTasksReady
	case orkstate.WakeKindDeferredJobs:
		return kindDeferred
	case orkstate.WakeKindRunFinished:
		return kindRuns
	}
	return 0
}

// runEvent is a run that finished in a committed write.
type runEvent struct {
	id     int64
	status orkstate.RunStatus
}

// ErrClosed is returned by Waker.Wait and WaitForRun once the Store is closed.
var ErrClosed = errors.New("sqlitecompat: store closed")

// notifier fans signals out to a Store's subscribers. Signals are sent after the
// write that caused them committed, so a woken waiter sees the new rows; they are
// hints, and a waiter's fallback poll finds whatever it missed (work written by
// another process sharing the file is only ever found that way).
type notifier struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	kinds   kind
	c       chan struct{} // capacity 1: a token says "look at pending"
	mu      sync.Mutex
	pending kind
	runs    []runEvent // only for run watchers
	watch   int64      // run id a WaitForRun watches, 0 otherwise
	done    chan struct{}
}

func newNotifier() *notifier { return &notifier{subs: map[*subscriber]struct{}{}} }

func (n *notifier) subscribe(kinds kind, watch int64) *subscriber {
	sub := &subscriber{kinds: kinds, watch: watch, c: make(chan struct{}, 1), done: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(sub.done)
	} else {
		n.subs[sub] = struct{}{}
	}
	return sub
}

func (n *notifier) unsubscribe(sub *subscriber) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.subs, sub)
}

func (n *notifier) signal(k kind, runs []runEvent) {
	if len(runs) > 0 {
		k |= kindRuns
	}
	if k == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs {
		hit := k & sub.kinds
		if hit == 0 {
			continue
		}
		sub.mu.Lock()
		if sub.watch != 0 {
			for _, r := range runs {
				if r.id == sub.watch {
					sub.runs = append(sub.runs, r)
				}
			}
			if len(sub.runs) == 0 {
				sub.mu.Unlock()
				continue
			}
		}
		sub.pending |= hit
		sub.mu.Unlock()
		select {
		case sub.c <- struct{}{}:
		default:
		}
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.closed = true
	for sub := range n.subs {
		close(sub.done)
	}
	n.subs = map[*subscriber]struct{}{}
}

// WakerConfig configures a Waker. The zero value works.
type WakerConfig struct {
	// Debounce is the least time between two wake-ups by signal: the first commit
	// after a quiet spell wakes Wait at once, those within Debounce of that
	// wake-up coalesce into one wake-up when it ends. Defaults to 5 milliseconds.
	Debounce time.Duration

	// Kinds are the changes that wake Wait. Runs finishing serve WaitForRun
	// whatever Kinds says. Defaults to [orkstate.WakeKindTasksReady] (a
	// scheduler); a triggerer wants [orkstate.WakeKindDeferredJobs].
	Kinds []orkstate.WakeKind

	// PollInterval is the most Wait sleeps without a signal, and how often
	// WaitForRun looks a run up. It bounds how late work written by another
	// process sharing the file is noticed. Defaults to 1 second.
	PollInterval time.Duration
}

// Waker is the in-process orkstate.Waker of a Store: a scheduler or triggerer
// loop is written once against orkstate.Waker and runs on pgstore (LISTEN/NOTIFY
// through package notify) and on sqlitecompat alike. Commits of this Store wake
// it; writes by another process sharing the file are found by the fallback poll.
type Waker struct {
	s   *Store
	cfg WakerConfig
	sub *subscriber

	mu         sync.Mutex
	lastNotify time.Time
	stopOnce   sync.Once
}

var _ orkstate.Waker = (*Waker)(nil)

// Waker returns a Waker for this Store (nil cfg is the zero config). WaitForRun
// reads runs through this Store's GetRun. Stop releases it.
func (s *Store) Waker(cfg *WakerConfig) (*Waker, error) {
	var c WakerConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Debounce < 0 {
		return nil, orkstate.Invalid("WakerConfig.Debounce", c.Debounce, "must not be negative")
	}
	if c.PollInterval < 0 {
		return nil, orkstate.Invalid("WakerConfig.PollInterval", c.PollInterval, "must not be negative")
	}
	if c.Debounce == 0 {
		c.Debounce = 5 * time.Millisecond
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if len(c.Kinds) == 0 {
		c.Kinds = []orkstate.WakeKind{orkstate.WakeKindTasksReady}
	}
	var kinds kind
	for _, k := range c.Kinds {
		b := kindBit(k)
		if b == 0 {
			return nil, orkstate.Invalid("WakerConfig.Kinds", k, "unknown kind")
		}
		kinds |= b
	}
	return &Waker{s: s, cfg: c, sub: s.notifier.subscribe(kinds, 0)}, nil
}

// Stop unregisters the Waker; later Waits only poll. Safe to call twice.
func (w *Waker) Stop() {
	w.stopOnce.Do(func() { w.s.notifier.unsubscribe(w.sub) })
}

// Wait implements orkstate.Waker: it returns orkstate.WakeNotified when a commit
// of this Store signalled one of the Waker's kinds since the previous Wait (a
// burst is one wake-up, at most one per Debounce), orkstate.WakePoll after PollInterval
// without one, ctx's error when ctx ends and ErrClosed once the Store is closed.
func (w *Waker) Wait(ctx context.Context) (orkstate.WakeReason, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	poll := time.NewTimer(w.cfg.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-w.sub.done:
			return 0, ErrClosed
		case <-poll.C:
			return orkstate.WakePoll, nil
		case <-w.sub.c:
		}
		w.mu.Lock()
		left := w.cfg.Debounce - time.Since(w.lastNotify)
		w.mu.Unlock()
		if left > 0 {
			t := time.NewTimer(left)
			select {
			case <-ctx.Done():
				t.Stop()
				w.rearm()
				return 0, ctx.Err()
			case <-t.C:
			}
		}
		w.sub.mu.Lock()
		why := w.sub.pending
		w.sub.pending = 0
		w.sub.mu.Unlock()
		if why == 0 {
			continue
		}
		w.mu.Lock()
		w.lastNotify = time.Now()
		w.mu.Unlock()
		return orkstate.WakeNotified, nil
	}
}

func (w *Waker) rearm() {
	select {
	case w.sub.c <- struct{}{}:
	default:
	}
}

// WaitForRun implements orkstate.Waker: it returns the run's status once it is
// terminal, at once when it already is. A run finished by a commit of this Store
// is seen at that commit; one finished by another process on the next poll.
func (w *Waker) WaitForRun(ctx context.Context, runID int64) (orkstate.RunStatus, error) {
	sub := w.s.notifier.subscribe(kindRuns, runID)
	defer w.s.notifier.unsubscribe(sub)
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	for {
		r, err := w.s.GetRun(ctx, runID)
		if err != nil {
			return "", fmt.Errorf("sqlitecompat: wait for run %d: %w", runID, err)
		}
		if r.Status.IsTerminal() {
			return r.Status, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-sub.done:
			return "", ErrClosed
		case <-sub.c:
			sub.mu.Lock()
			runs := sub.runs
			sub.mu.Unlock()
			if len(runs) > 0 {
				return runs[0].status, nil
			}
		case <-poll.C:
		}
	}
}
