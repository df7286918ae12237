package orkstate

import (
	"fmt"
	"strings"
)

// TaskStatus is the state of one task. Values are the lower-case strings stored in
// the database; the zero value is not a valid status.
type TaskStatus string

// Task statuses. See CanTransitionTask for the allowed moves between them.
const (
	TaskPending    TaskStatus = "pending"
	TaskPaused     TaskStatus = "paused"
	TaskDispatched TaskStatus = "dispatched"
	TaskRunning    TaskStatus = "running"
	TaskSuccess    TaskStatus = "success"
	TaskFailed     TaskStatus = "failed"
	TaskCancelled  TaskStatus = "cancelled"
)

// TaskStatuses lists every task status in lifecycle order.
var TaskStatuses = []TaskStatus{TaskPending, TaskPaused, TaskDispatched, TaskRunning, TaskSuccess, TaskFailed, TaskCancelled}

// ParseTaskStatus returns the status named by s in any case ("RUNNING" is
// running, as in the original). An unknown string is an error naming it; there is
// no default.
func ParseTaskStatus(s string) (TaskStatus, error) {
	s = strings.ToLower(s)
	for _, st := range TaskStatuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", &ValidationError{Field: "task status", Value: s, Reason: "unknown task status"}
}

func (s TaskStatus) String() string { return string(s) }

// Valid reports whether s is one of TaskStatuses exactly (lower case); input from
// callers goes through ParseTaskStatus, which accepts any case.
func (s TaskStatus) Valid() bool { st, err := ParseTaskStatus(string(s)); return err == nil && st == s }

// IsTerminal reports whether s is success, failed or cancelled.
func (s TaskStatus) IsTerminal() bool {
	return s == TaskSuccess || s == TaskFailed || s == TaskCancelled
}

// taskTransitions is the transition table of docs/semantics.md ("Statuses and the
// transition table"). pending→dispatched is reserved to claims and terminal→pending
// to an operator retry, so neither is here.
var taskTransitions = map[TaskStatus][]TaskStatus{
	TaskPending:    {TaskRunning, TaskSuccess, TaskFailed, TaskCancelled, TaskPaused},
	TaskPaused:     {TaskPending, TaskCancelled},
	TaskDispatched: {TaskRunning, TaskSuccess, TaskFailed, TaskCancelled, TaskPending},
	TaskRunning:    {TaskSuccess, TaskFailed, TaskCancelled, TaskPending},
}

// CanTransitionTask reports whether a status report may move a task from one
// status to another. Claims (pending→dispatched) and operator retries
// (terminal→pending) have their own calls and are not reports.
func CanTransitionTask(from, to TaskStatus) bool {
	for _, t := range taskTransitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// RunStatus is the state of one run.
type RunStatus string

// Run statuses.
const (
	RunPending   RunStatus = "pending"
	RunRunning   RunStatus = "running"
	RunPaused    RunStatus = "paused"
	RunSuccess   RunStatus = "success"
	RunFailed    RunStatus = "failed"
	RunCancelled RunStatus = "cancelled"
)

// RunStatuses lists every run status.
var RunStatuses = []RunStatus{RunPending, RunRunning, RunPaused, RunSuccess, RunFailed, RunCancelled}

// ParseRunStatus returns the status named by s in any case, or an error naming it.
func ParseRunStatus(s string) (RunStatus, error) {
	s = strings.ToLower(s)
	for _, st := range RunStatuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", &ValidationError{Field: "run status", Value: s, Reason: "unknown run status"}
}

func (s RunStatus) String() string { return string(s) }

// Valid reports whether s is one of RunStatuses exactly (lower case).
func (s RunStatus) Valid() bool { st, err := ParseRunStatus(string(s)); return err == nil && st == s }

// IsTerminal reports whether s is success, failed or cancelled. A terminal run never changes again.
func (s RunStatus) IsTerminal() bool {
	return s == RunSuccess || s == RunFailed || s == RunCancelled
}

// DeferredJobStatus is the state of one deferred job.
type DeferredJobStatus string

// Deferred job statuses: pending → polling → completed / failed; pending or polling → cancelled.
const (
	DeferredPending   DeferredJobStatus = "pending"
	DeferredPolling   DeferredJobStatus = "polling"
	DeferredCompleted DeferredJobStatus = "completed"
	DeferredFailed    DeferredJobStatus = "failed"
	DeferredCancelled DeferredJobStatus = "cancelled"
)

// DeferredJobStatuses lists every deferred job status.
var DeferredJobStatuses = []DeferredJobStatus{DeferredPending, DeferredPolling, DeferredCompleted, DeferredFailed, DeferredCancelled}

// ParseDeferredJobStatus returns the status named by s in any case, or an error naming it.
func ParseDeferredJobStatus(s string) (DeferredJobStatus, error) {
	s = strings.ToLower(s)
	for _, st := range DeferredJobStatuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", &ValidationError{Field: "deferred job status", Value: s, Reason: "unknown deferred job status"}
}

func (s DeferredJobStatus) String() string { return string(s) }

// Valid reports whether s is one of DeferredJobStatuses exactly (lower case).
func (s DeferredJobStatus) Valid() bool {
	st, err := ParseDeferredJobStatus(string(s))
	return err == nil && st == s
}

// IsTerminal reports whether s is completed, failed or cancelled.
func (s DeferredJobStatus) IsTerminal() bool {
	return s == DeferredCompleted || s == DeferredFailed || s == DeferredCancelled
}

// CanTransitionDeferredJob reports whether a deferred job may move between the two statuses.
func CanTransitionDeferredJob(from, to DeferredJobStatus) bool {
	switch from {
	case DeferredPending:
		return to == DeferredPolling || to == DeferredCompleted || to == DeferredFailed || to == DeferredCancelled
	case DeferredPolling:
		return to == DeferredCompleted || to == DeferredFailed || to == DeferredCancelled
	}
	return false
}

// Outcome says what a batch status change did with one input row.
type Outcome string

// Outcomes of SetTaskStates and ReportDeferredPolls, one per input row.
const (
	// OutcomeApplied: the change was made.
	OutcomeApplied Outcome = "applied"
	// OutcomeRetrying: a failure was turned into a retry (pending, retry_at set).
	OutcomeRetrying Outcome = "retrying"
	// OutcomeIgnored: the row already had that status (a duplicate report); nothing changed.
	OutcomeIgnored Outcome = "ignored"
	// OutcomeInvalid: the transition table forbids the change; nothing changed.
	OutcomeInvalid Outcome = "invalid"
	// OutcomeStale: the report carried an older attempt than the row's; nothing changed.
	OutcomeStale Outcome = "stale"
	// OutcomeNotFound: no row has that id.
	OutcomeNotFound Outcome = "not_found"
)

// Err returns the error a single-row call reports for this outcome, nil for applied,
// retrying and ignored.
func (o Outcome) Err() error {
	switch o {
	case OutcomeInvalid:
		return ErrInvalidTransition
	case OutcomeStale:
		return ErrStale
	case OutcomeNotFound:
		return ErrNotFound
	case OutcomeApplied, OutcomeRetrying, OutcomeIgnored:
		return nil
	}
	return fmt.Errorf("orkstate: unknown outcome %q", string(o))
}
