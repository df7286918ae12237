package notify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// TestWaitCoalesces drives a Waker through its Listener's dispatch, without a
// database: signals coalesce, kinds filter, a backlog wins, and a Wait cancelled
// while debouncing leaves the signal for the next one.
func TestWaitCoalesces(t *testing.T) {
	t.Parallel()
	l, err := NewListener(nil, &ListenerConfig{ConnString: "postgres://localhost/x"}) // never started
	if err != nil {
		t.Fatal(err)
	}
	const poll = 30 * time.Millisecond
	w, err := NewWaker(l, &WakerConfig{PollInterval: poll, Debounce: time.Hour, Kinds: []orkstate.WakeKind{orkstate.WakeKindTasksReady}})
	if err != nil {
		t.Fatal(err)
	}

	for range 1000 {
		l.dispatch(Event{Kind: orkstate.WakeKindTasksReady}, pendingNotified)
	}
	mustWait(t, w, orkstate.WakeNotified) // the first wake-up is not debounced
	mustWait(t, w, orkstate.WakePoll)     // the other 999 were the same wake-up

	l.dispatch(Event{Kind: orkstate.WakeKindDeferredJobs}, pendingNotified)
	l.dispatch(Event{Kind: orkstate.WakeKindRunFinished}, pendingNotified)
	mustWait(t, w, orkstate.WakePoll) // kinds it does not wake on

	// Within the hour of Debounce: the Wait waits it out, so cancel it.
	l.dispatch(Event{Kind: orkstate.WakeKindTasksReady}, pendingNotified)
	ctx, cancel := context.WithTimeout(t.Context(), poll)
	defer cancel()
	if _, err := w.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait during debounce = %v, want DeadlineExceeded", err)
	}
	if w.sub.pending.Load() != pendingNotified || len(w.sub.c) != 1 {
		t.Fatalf("after a cancelled Wait: pending %b, %d tokens; want the signal kept", w.sub.pending.Load(), len(w.sub.c))
	}

	w.mu.Lock()
	w.lastNotify = time.Time{} // the hour is over
	w.mu.Unlock()
	l.dispatch(Event{}, pendingBacklog)
	mustWait(t, w, orkstate.WakeBacklog) // wins over the pending notification
	mustWait(t, w, orkstate.WakePoll)

	w.Close()
	w.Close()
	l.dispatch(Event{Kind: orkstate.WakeKindTasksReady}, pendingNotified)
	mustWait(t, w, orkstate.WakePoll) // closed: no longer hears the listener
}
