package notify

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/orkstate/orkstate"
)

// RunStatusFunc looks up a run's current status.
type RunStatusFunc func(ctx context.Context, runID int64) (orkstate.RunStatus, error)

// StoreRunStatus is a RunStatusFunc that reads the run through s.GetRun.
func StoreRunStatus(s orkstate.RunStore) RunStatusFunc {
	return func(ctx context.Context, runID int64) (orkstate.RunStatus, error) {
		r, err := s.GetRun(ctx, runID)
		if err != nil {
			return "", err
		}
		return r.Status, nil
	}
}

// WakerConfig configures a PGWaker. The zero value works (WaitForRun needs RunStatus).
type WakerConfig struct {
	// Debounce is the least time between two wake-ups by notification. The first
	// notification after a quiet spell wakes Wait at once; those that arrive
	// within Debounce of that wake-up coalesce into one wake-up when it ends, so a
	// burst of any size wakes the loop about once per Debounce. It is also the
	// most a notification can wait during a burst. Defaults to 5 milliseconds.
	Debounce time.Duration

	// Kinds are the notifications that wake Wait. Runs notifications serve
	// WaitForRun whatever Kinds says. Defaults to [orkstate.WakeKindTasksReady] (a
	// scheduler); a triggerer wants [orkstate.WakeKindDeferredJobs].
	Kinds []orkstate.WakeKind

	// PollInterval is the most Wait sleeps without a notification, and how often
	// WaitForRun looks a run up when no notification names it. It bounds how late
	// work is noticed when notifications are lost, off or impossible (poll-only).
	// Defaults to 1 second.
	PollInterval time.Duration

	// RunStatus looks a run up for WaitForRun: once when it starts (the run may
	// have finished already), after every PollInterval, and after a reconnect or a
	// runs notification with "more". Defaults to nil, and WaitForRun then returns
	// a validation error. StoreRunStatus adapts an orkstate.Store.
	RunStatus RunStatusFunc
}

func (c *WakerConfig) withDefaults() WakerConfig {
	var r WakerConfig
	if c != nil {
		r = *c
	}
	if r.Debounce == 0 {
		r.Debounce = 5 * time.Millisecond
	}
	if len(r.Kinds) == 0 {
		r.Kinds = []orkstate.WakeKind{orkstate.WakeKindTasksReady}
	}
	if r.PollInterval == 0 {
		r.PollInterval = time.Second
	}
	return r
}

func (c *WakerConfig) validate() error {
	if c.Debounce < 0 {
		return orkstate.Invalid("WakerConfig.Debounce", c.Debounce, "must not be negative")
	}
	for _, k := range c.Kinds {
		if !k.Valid() {
			return orkstate.Invalid("WakerConfig.Kinds", k, "unknown kind")
		}
	}
	if c.PollInterval < 0 {
		return orkstate.Invalid("WakerConfig.PollInterval", c.PollInterval, "must not be negative")
	}
	return nil
}

// PGWaker is the orkstate.Waker of a Postgres install: woken by a Listener's
// notifications, or by polling alone when it has none. Wait is meant for one
// loop: concurrent Waits share the signals (each wake-up goes to one of them).
// WaitForRun may be called from any number of goroutines.
type PGWaker struct {
	cfg WakerConfig
	l   *Listener   // nil in poll-only mode
	sub *subscriber // nil in poll-only mode

	mu         sync.Mutex
	lastNotify time.Time // when Wait last returned for a notification
	closeOnce  sync.Once
}

var _ orkstate.Waker = (*PGWaker)(nil)

// NewWaker returns a PGWaker woken by l's notifications (nil cfg is the zero
// config). With a nil l it is poll-only: Wait always sleeps PollInterval and
// WaitForRun polls — the mode for connections through PgBouncer's transaction
// pooling, which cannot LISTEN. The Waker hears l from now on, whether or not l
// has started; a Listener that is down or stopped leaves it polling.
func NewWaker(l *Listener, cfg *WakerConfig) (*PGWaker, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	w := &PGWaker{cfg: c, l: l}
	if l != nil {
		var kinds uint32
		for _, k := range c.Kinds {
			kinds |= kindBit(k)
		}
		w.sub = l.subscribe(kinds)
	}
	return w, nil
}

// PollOnly reports whether the Waker has no Listener.
func (w *PGWaker) PollOnly() bool { return w.l == nil }

// Close stops the Waker hearing its Listener. It is safe to call more than once;
// afterwards Wait and WaitForRun only poll.
func (w *PGWaker) Close() {
	if w.l == nil {
		return
	}
	w.closeOnce.Do(func() { w.l.unsubscribe(w.sub) })
}

// Wait implements orkstate.Waker. A notification that arrived since the previous Wait
// returned makes it return at once (after Debounce, when the previous return was
// for a notification too). WakeBacklog wins over WakeNotified when both are
// pending.
func (w *PGWaker) Wait(ctx context.Context) (orkstate.WakeReason, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	poll := time.NewTimer(w.cfg.PollInterval)
	defer poll.Stop()
	var signals <-chan struct{}
	if w.sub != nil {
		signals = w.sub.c
	}
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-poll.C:
			return orkstate.WakePoll, nil
		case <-signals:
		}
		if d := w.debounceLeft(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				w.sub.rearm() // the flags are still pending for the next Wait
				return 0, ctx.Err()
			case <-t.C:
			}
		}
		why := w.sub.pending.Swap(0)
		if why == 0 {
			continue // the token of signals an earlier Wait already took
		}
		w.mu.Lock()
		w.lastNotify = time.Now()
		w.mu.Unlock()
		if why&pendingBacklog != 0 {
			return orkstate.WakeBacklog, nil
		}
		return orkstate.WakeNotified, nil
	}
}

// debounceLeft is how long a notification must still wait to honour Debounce.
func (w *PGWaker) debounceLeft() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastNotify.IsZero() {
		return 0
	}
	return w.cfg.Debounce - time.Since(w.lastNotify)
}

// WaitForRun implements orkstate.Waker. It starts hearing runs notifications before it
// first looks the run up, so a run that finishes at any moment is seen. The status
// it returns always comes from RunStatus: a notification naming the run only makes
// it look again at once (any role that may connect can NOTIFY the runs channel
// with any payload, so a payload is a hint, never an answer). It also looks the
// run up every PollInterval and after a reconnect or a runs notification that
// says "more". It returns the first error RunStatus returns.
func (w *PGWaker) WaitForRun(ctx context.Context, runID int64) (orkstate.RunStatus, error) {
	if w.cfg.RunStatus == nil {
		return "", orkstate.Invalid("WakerConfig.RunStatus", nil, "must be set to use WaitForRun")
	}
	var wake <-chan struct{}
	var rw *runWaiter
	if w.l != nil {
		rw = w.l.watchRun(runID)
		defer w.l.unwatchRun(rw)
		wake = rw.c
	}
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	for {
		st, err := w.cfg.RunStatus(ctx, runID)
		if err != nil {
			return "", fmt.Errorf("notify: wait for run %d: %w", runID, err)
		}
		if st.IsTerminal() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-wake:
		case <-poll.C:
		}
	}
}
