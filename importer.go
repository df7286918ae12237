package orkstate

import (
	"context"
	"fmt"
	"strings"
)

// RunImporter is an optional interface of a Store that can insert a run with its
// rows as they are, without replaying them through the state machine. storecopy
// uses it when the destination implements it, and then copies runs losslessly.
type RunImporter interface {
	// ImportRun inserts the run and its rows as they are — statuses, attempts,
	// claims and leases, retry_at, outputs, errors and every timestamp — in one
	// transaction, under new ids. Dependencies (downstream arrays, edge tables,
	// unmet-dependency counts) are rebuilt from the tasks' depends_on names, and the
	// run's counters are computed from the task statuses. The imported rows are
	// live: a ready task can be claimed, a dispatched one's lease expires, a
	// running one times out, as if they had been created here.
	//
	// Validation errors change nothing: an unknown workflow is ErrNotFound (an
	// unknown snapshot too), and bad input — an unknown status, a duplicate task
	// name or index, a task's depends_on naming no task of the run, a dependency
	// cycle, a log or job of a task not in Tasks — is a *ValidationError.
	ImportRun(ctx context.Context, in RunImport) (*ImportedRun, error)
}

// RunImport is the input of ImportRun.
type RunImport struct {
	// Run is the source run; WorkflowID and SnapshotID are already those of the
	// destination. Its ID is ignored.
	Run Run
	// Tasks are the source rows, with their source ids (the keys of Logs, of
	// DeferredJob.TaskID and of ImportedRun.Tasks). RunID is ignored.
	Tasks []Task
	// Logs holds each task's whole log, by source task id; empty logs may be left out.
	Logs map[int64]string
	// Jobs are the source rows, with TaskID the source task id.
	Jobs []DeferredJob
}

// ImportedRun maps the imported rows' source ids to their new ids.
type ImportedRun struct {
	RunID int64
	Tasks map[int64]int64
	Jobs  map[int64]int64
}

// Validate checks what ImportRun requires of its input, without a store: valid
// statuses, a DAG (unique names and indexes, known dependencies, no cycle),
// non-negative counters, valid JSON, priorities and concurrency keys within their
// bounds (a task's Priority equal to its PriorityOverride when it has one), logs within MaxTaskLogBytes and logs and jobs
// that belong to the run's tasks.
func (in RunImport) Validate() error {
	if !in.Run.Status.Valid() {
		return Invalid("run status", string(in.Run.Status), "unknown run status")
	}
	ids := make(map[int64]bool, len(in.Tasks))
	indexes := make(map[int]bool, len(in.Tasks))
	specs := make([]TaskSpec, len(in.Tasks))
	for i, k := range in.Tasks {
		if ids[k.ID] {
			return Invalid("task id", k.ID, "duplicate source task id")
		}
		ids[k.ID] = true
		if k.TaskIndex < 0 {
			return Invalid("task_index", k.TaskIndex, "must not be negative (task "+k.TaskName+")")
		}
		if indexes[k.TaskIndex] {
			return Invalid("task_index", k.TaskIndex, "duplicate task index")
		}
		indexes[k.TaskIndex] = true
		if !k.Status.Valid() {
			return Invalid("task status", string(k.Status), "unknown task status (task "+k.TaskName+")")
		}
		if k.Attempts < 0 {
			return Invalid("attempts", k.Attempts, "must not be negative (task "+k.TaskName+")")
		}
		if err := ValidJSON("output", k.Output); err != nil {
			return err
		}
		if err := ValidTaskLimits(k.TaskName, k.PriorityOverride, k.ConcurrencyKey); err != nil {
			return err
		}
		if err := ValidPriority(k.Priority); err != nil {
			return fmt.Errorf("task %q: %w", k.TaskName, err)
		}
		if k.PriorityOverride != nil && *k.PriorityOverride != k.Priority {
			return Invalid("priority", k.Priority, fmt.Sprintf("task %q: must equal its priority_override %d", k.TaskName, *k.PriorityOverride))
		}
		specs[i] = TaskSpec{Name: k.TaskName, DependsOn: k.DependsOn, Params: k.Params,
			MaxRetries: k.MaxRetries, TimeoutSeconds: k.TimeoutSeconds}
	}
	if err := ValidateDAG(specs); err != nil {
		return err
	}
	for id, log := range in.Logs {
		if !ids[id] {
			return Invalid("log", id, "belongs to no task of the run")
		}
		if len(log) > MaxTaskLogBytes {
			return Invalid("log", id, "longer than MaxTaskLogBytes")
		}
		if strings.IndexByte(log, 0) >= 0 {
			return Invalid("log", id, "must not contain NUL bytes")
		}
	}
	for i, j := range in.Jobs {
		if !ids[j.TaskID] {
			return Invalid("deferred job", j.ID, fmt.Sprintf("job %d: its task %d is not a task of the run", i, j.TaskID))
		}
		if strings.TrimSpace(j.ServiceType) == "" {
			return Invalid("service_type", j.ServiceType, fmt.Sprintf("job %d: must not be empty", i))
		}
		if strings.TrimSpace(j.JobID) == "" {
			return Invalid("job_id", j.JobID, fmt.Sprintf("job %d: must not be empty", i))
		}
		if !j.Status.Valid() {
			return Invalid("deferred job status", string(j.Status), fmt.Sprintf("job %d: unknown status", i))
		}
		if err := ValidJSON("job_data", j.JobData); err != nil {
			return err
		}
	}
	return nil
}

// UnmetDeps counts, for each task (by source id), its distinct dependencies that
// have not succeeded: the readiness counter an importer stores.
func (in RunImport) UnmetDeps() map[int64]int {
	status := make(map[string]TaskStatus, len(in.Tasks))
	for _, k := range in.Tasks {
		status[k.TaskName] = k.Status
	}
	out := make(map[int64]int, len(in.Tasks))
	for _, k := range in.Tasks {
		seen := map[string]bool{}
		n := 0
		for _, d := range k.DependsOn {
			if !seen[d] {
				seen[d] = true
				if status[d] != TaskSuccess {
					n++
				}
			}
		}
		out[k.ID] = n
	}
	return out
}
