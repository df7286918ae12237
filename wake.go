package orkstate

import (
	"context"
	"fmt"
)

// Waker is what a scheduler or triggerer loop sleeps on between rounds of work.
// A loop written against Waker runs on any store: notify.PGWaker implements it
// on PostgreSQL LISTEN/NOTIFY (or by polling alone), sqlitecompat's Waker in
// process. Wake-ups are only ever hints: every loop must stay correct on the
// fallback poll alone.
type Waker interface {
	// Wait returns when there may be work: a relevant change was announced (a
	// burst of announcements is one wake-up), the fallback poll interval passed,
	// or announcements may have been missed. It returns ctx's error when ctx ends.
	Wait(ctx context.Context) (WakeReason, error)

	// WaitForRun returns the status of run runID once it is terminal, which may be
	// at once when it finished before the call. It returns ctx's error when ctx
	// ends, and the error of looking the run up (ErrNotFound for an unknown run).
	WaitForRun(ctx context.Context, runID int64) (RunStatus, error)
}

// WakeReason says why Waker.Wait returned. The zero value is not a reason.
type WakeReason int

// Reasons Waker.Wait returns for.
const (
	// WakePoll: the fallback poll interval passed without an announcement.
	WakePoll WakeReason = iota + 1
	// WakeNotified: a change of a kind the Waker wakes on was announced.
	WakeNotified
	// WakeBacklog: announcements may have been missed (a listener reconnected),
	// so look for work as after a poll.
	WakeBacklog
)

func (r WakeReason) String() string {
	switch r {
	case WakePoll:
		return "poll"
	case WakeNotified:
		return "notified"
	case WakeBacklog:
		return "backlog"
	}
	return fmt.Sprintf("WakeReason(%d)", int(r))
}

// WakeKind is a kind of change a store announces to its Wakers (see
// docs/semantics.md, "Notifications"). Its value is the name pgstore's channel
// for it ends with ("<schema>_tasks_ready", …); the zero value is not a kind.
type WakeKind string

// The kinds of change a store announces.
const (
	// WakeKindTasksReady: tasks became dispatchable (run started, dependency
	// succeeded, requeue, resume, lease expired, retry scheduled).
	WakeKindTasksReady WakeKind = "tasks_ready"
	// WakeKindDeferredJobs: deferred jobs were created or became due.
	WakeKindDeferredJobs WakeKind = "deferred_jobs"
	// WakeKindRunFinished: runs finished.
	WakeKindRunFinished WakeKind = "runs"
)

// WakeKinds lists every WakeKind.
var WakeKinds = []WakeKind{WakeKindTasksReady, WakeKindDeferredJobs, WakeKindRunFinished}

func (k WakeKind) String() string { return string(k) }

// Valid reports whether k is one of WakeKinds.
func (k WakeKind) Valid() bool {
	for _, kk := range WakeKinds {
		if kk == k {
			return true
		}
	}
	return false
}
