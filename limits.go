package orkstate

import (
	"context"
	"fmt"
	"strings"
)

// Bounds of priorities and limits; values outside them are validation errors.
const (
	MinPriority = -1000
	MaxPriority = 1000
	// MaxSlots bounds a concurrency key's slots and a workflow's limits.
	MaxSlots = 1000000
	// MaxConcurrencyKeyLen bounds a concurrency key's length in bytes.
	MaxConcurrencyKeyLen = 200
)

// WorkflowLimits are a workflow's scheduling settings (docs/semantics.md,
// "Priorities and limits"). The zero value is the default: priority 0, no limits,
// strict order.
type WorkflowLimits struct {
	// Priority is the default priority of the workflow's tasks (MinPriority …
	// MaxPriority); a claim takes higher priorities first. A task spec may set its own.
	// A new priority reaches the tasks not ready yet; ready tasks keep theirs.
	Priority int
	// MaxActiveRuns, when not nil, caps the workflow's running and paused runs:
	// StartPendingRuns leaves the others pending, in order. 1 … MaxSlots.
	MaxActiveRuns *int
	// MaxTasksInFlight, when not nil, caps the workflow's dispatched and running
	// tasks. 1 … MaxSlots. The first limit a workflow gets applies to runs started
	// after it; a later change applies at once.
	MaxTasksInFlight *int
	// Fair interleaves the workflow's runs in a claim (round-robin between runs)
	// instead of taking them in id order; applies to runs started after it is set.
	Fair bool
}

// Validate reports the first field out of bounds.
func (l WorkflowLimits) Validate() error {
	if err := ValidPriority(l.Priority); err != nil {
		return err
	}
	if l.MaxActiveRuns != nil && (*l.MaxActiveRuns < 1 || *l.MaxActiveRuns > MaxSlots) {
		return Invalid("max_active_runs", *l.MaxActiveRuns, fmt.Sprintf("must be between 1 and %d (nil: no limit)", MaxSlots))
	}
	if l.MaxTasksInFlight != nil && (*l.MaxTasksInFlight < 1 || *l.MaxTasksInFlight > MaxSlots) {
		return Invalid("max_tasks_in_flight", *l.MaxTasksInFlight, fmt.Sprintf("must be between 1 and %d (nil: no limit)", MaxSlots))
	}
	return nil
}

// ValidPriority refuses a priority outside MinPriority … MaxPriority.
func ValidPriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return Invalid("priority", p, fmt.Sprintf("must be between %d and %d", MinPriority, MaxPriority))
	}
	return nil
}

// ValidConcurrencyKey refuses an empty key, one with surrounding spaces or one
// longer than MaxConcurrencyKeyLen.
func ValidConcurrencyKey(key string) error {
	if key == "" || strings.TrimSpace(key) != key || len(key) > MaxConcurrencyKeyLen {
		return Invalid("concurrency_key", key,
			fmt.Sprintf("must be 1 to %d characters without surrounding spaces", MaxConcurrencyKeyLen))
	}
	return nil
}

// ValidSlots refuses a slot count outside 1 … MaxSlots.
func ValidSlots(slots int) error {
	if slots < 1 || slots > MaxSlots {
		return Invalid("slots", slots, fmt.Sprintf("must be between 1 and %d", MaxSlots))
	}
	return nil
}

// validSpecLimits checks a task spec's priority and concurrency key.
func validSpecLimits(t TaskSpec) error { return ValidTaskLimits(t.Name, t.Priority, t.ConcurrencyKey) }

// ValidTaskLimits checks the priority (nil: the workflow's) and the concurrency key
// ("": none) of the task named name.
func ValidTaskLimits(name string, priority *int, key string) error {
	if priority != nil {
		if err := ValidPriority(*priority); err != nil {
			return fmt.Errorf("task %q: %w", name, err)
		}
	}
	if key != "" {
		if err := ValidConcurrencyKey(key); err != nil {
			return fmt.Errorf("task %q: %w", name, err)
		}
	}
	return nil
}

// ConcurrencyKey is a named pool of slots: at most Slots tasks whose spec names the
// key are dispatched or running at once.
type ConcurrencyKey struct {
	Key string
	// Slots is the limit (1 … MaxSlots). A key has one always: a key meant only to
	// group tasks takes MaxSlots.
	Slots int
	// InFlight is the number of tasks holding one of the key's slots now.
	InFlight int
}

// LimitStore holds priorities, concurrency limits and fairness. They are enforced
// by ClaimTasks and StartPendingRuns.
type LimitStore interface {
	// SetWorkflowLimits replaces a workflow's limits after validating them.
	SetWorkflowLimits(ctx context.Context, workflowID int64, l WorkflowLimits) error
	GetWorkflowLimits(ctx context.Context, workflowID int64) (*WorkflowLimits, error)
	// SetConcurrencyKey creates a key or changes its slots (1 … MaxSlots). A task
	// spec may name only a key that exists when its run starts. Lowering the slots
	// below the tasks in flight takes nothing back: the key's tasks wait.
	SetConcurrencyKey(ctx context.Context, key string, slots int) error
	// ConcurrencyKeys lists every key with its slots and tasks in flight, by key.
	ConcurrencyKeys(ctx context.Context) ([]ConcurrencyKey, error)
}
