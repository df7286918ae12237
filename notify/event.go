// Package notify wakes orkstate's loops through PostgreSQL LISTEN/NOTIFY.
//
// An install's functions notify three channels, each prefixed by the install
// schema so that two installs in one database never hear each other (see
// docs/semantics.md, "Notifications"):
//
//   - <schema>_tasks_ready: tasks became dispatchable; no payload.
//   - <schema>_deferred_jobs: deferred work was created or became due; no payload.
//   - <schema>_runs: runs finished; payload {"runs":[{"id":1,"status":"success"}],"more":true}.
//
// A [Listener] holds one dedicated connection that LISTENs on the three
// channels. Its handlers only set flags and make non-blocking sends, so a slow
// consumer never stalls the listen loop; it reconnects with backoff when the
// connection is lost and, after every (re)connect, signals that notifications may
// have been missed while it was not listening.
//
// A [PGWaker] is the [orkstate.Waker] a scheduler or triggerer loop sleeps on:
// Wait returns when a relevant notification arrives (a burst wakes the loop
// once), when the fallback poll interval passes, or when the context ends.
// [NewWaker] with a nil Listener gives a poll-only PGWaker for connections that
// cannot LISTEN (PgBouncer in transaction pooling mode). The kinds of
// notification are [orkstate.WakeKind]s; [Channel] names their channels. Notifications are only ever a hint: every loop must
// stay correct on polling alone.
package notify

import (
	"encoding/json"
	"fmt"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/schemaname"
)

// Channel is the channel that an install in schema notifies for k:
// "<schema>_" followed by k's value.
func Channel(schema string, k orkstate.WakeKind) string { return schema + "_" + string(k) }

// kindBit is k's place in a kind set; 0 for an unknown kind.
func kindBit(k orkstate.WakeKind) uint32 {
	for i, kk := range orkstate.WakeKinds {
		if kk == k {
			return 1 << i
		}
	}
	return 0
}

// TasksReadyChannel is the channel "<schema>_tasks_ready".
func TasksReadyChannel(schema string) string { return Channel(schema, orkstate.WakeKindTasksReady) }

// DeferredJobsChannel is the channel "<schema>_deferred_jobs".
func DeferredJobsChannel(schema string) string { return Channel(schema, orkstate.WakeKindDeferredJobs) }

// RunsChannel is the channel "<schema>_runs".
func RunsChannel(schema string) string { return Channel(schema, orkstate.WakeKindRunFinished) }

// validateSchema returns a validation error naming field unless schema is a valid
// install schema name: the rule of pgstore.ValidateSchemaName, which also keeps the
// longest channel, "<schema>_deferred_jobs", within Postgres' 63 bytes.
func validateSchema(field, schema string) error { return schemaname.Validate(field, schema) }

// MaxRunsPerNotification is the most runs one runs notification names; when more
// finished in one statement the payload says "more":true.
const MaxRunsPerNotification = 100

// FinishedRun is one run named by a runs notification.
type FinishedRun struct {
	ID     int64
	Status orkstate.RunStatus
}

// Event is one notification, parsed.
type Event struct {
	Kind orkstate.WakeKind
	// Runs are the runs that finished, for WakeKindRunFinished; nil otherwise.
	Runs []FinishedRun
	// More, for WakeKindRunFinished: more runs finished in the same statement than
	// Runs names, so a waiter whose run is not named must look it up.
	More bool
}

// ParseEvent parses a notification received on channel. A channel that is not
// one of schema's is an error, and so is a runs payload that is not the JSON
// described in the package doc or names a status that is not terminal. The
// payloads of the other channels are ignored.
func ParseEvent(schema, channel, payload string) (Event, error) {
	for _, k := range orkstate.WakeKinds {
		if Channel(schema, k) == channel {
			return parseEvent(k, payload)
		}
	}
	return Event{}, fmt.Errorf("notify: channel %q is not one of schema %q", channel, schema)
}

// runsPayload is the JSON of a runs notification.
type runsPayload struct {
	Runs []struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	} `json:"runs"`
	More bool `json:"more"`
}

// parseEvent parses the payload of a notification of kind k. On an error the
// event still carries k, and a runs event says More so that waiters look their
// runs up instead of missing them.
func parseEvent(k orkstate.WakeKind, payload string) (Event, error) {
	ev := Event{Kind: k}
	if k != orkstate.WakeKindRunFinished {
		return ev, nil
	}
	var p runsPayload
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		ev.More = true
		return ev, fmt.Errorf("notify: runs payload %.200q: %w", payload, err)
	}
	ev.More = p.More
	ev.Runs = make([]FinishedRun, 0, len(p.Runs))
	for _, r := range p.Runs {
		st, err := orkstate.ParseRunStatus(r.Status)
		if err == nil && !st.IsTerminal() {
			err = orkstate.Invalid("run status", r.Status, "a finished run's status must be terminal")
		}
		if err != nil {
			ev.More = true
			return ev, fmt.Errorf("notify: runs payload, run %d: %w", r.ID, err)
		}
		ev.Runs = append(ev.Runs, FinishedRun{ID: r.ID, Status: st})
	}
	return ev, nil
}
