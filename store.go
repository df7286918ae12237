package orkstate

import (
	"context"
	"encoding/json"
	"time"
)

// Store is the contract every backend implements (pgstore on PostgreSQL,
// sqlitecompat on SQLite) and storetest checks. Every method takes a context;
// errors wrap ErrNotFound, ErrInvalidTransition, ErrConflict, ErrStale or a
// *ValidationError, and a call that returns a validation error changed nothing.
type Store interface {
	WorkflowStore
	RunStore
	TaskStore
	ScheduleStore
	DeferredJobStore
	LimitStore

	// Migrate installs or upgrades the store's schema to the newest version.
	Migrate(ctx context.Context) error
	// Capabilities says what this backend supports beyond the common contract.
	Capabilities() Capabilities
	// Close releases what the Store opened itself (not a pool it was given).
	Close()
}

// Capabilities are the named differences between backends; storetest skips the
// cases a backend declares it lacks, and such a method returns ErrUnsupported.
type Capabilities struct {
	// ConcurrentClaimers: several processes may claim at once (SKIP LOCKED).
	ConcurrentClaimers bool
	// SQLFunctions: the hot paths are callable as SQL functions from psql.
	SQLFunctions bool
	// ListenNotify: wake-ups travel through LISTEN/NOTIFY.
	ListenNotify bool
}

// WorkflowStore holds workflows, their compiled DAGs and snapshots.
type WorkflowStore interface {
	// CreateWorkflow inserts a workflow; a taken name is ErrConflict.
	CreateWorkflow(ctx context.Context, w NewWorkflow) (*Workflow, error)
	GetWorkflow(ctx context.Context, id int64) (*Workflow, error)
	GetWorkflowByName(ctx context.Context, name string) (*Workflow, error)
	// GetWorkflowsByIDs returns the workflows that exist among ids, ordered by id.
	GetWorkflowsByIDs(ctx context.Context, ids []int64) ([]Workflow, error)
	// ListWorkflows returns every workflow ordered by name.
	ListWorkflows(ctx context.Context) ([]Workflow, error)
	ListWorkflowsPage(ctx context.Context, q WorkflowListQuery) (*WorkflowPage, error)
	// DeleteWorkflow removes a workflow with its runs, tasks, logs and deferred jobs.
	DeleteWorkflow(ctx context.Context, id int64) error

	// ReplaceWorkflowTasks replaces a workflow's compiled DAG after validating it
	// (unique names, known dependencies, no cycle) and returns it in index order.
	ReplaceWorkflowTasks(ctx context.Context, workflowID int64, tasks []TaskSpec) ([]WorkflowTask, error)
	ListWorkflowTasks(ctx context.Context, workflowID int64) ([]WorkflowTask, error)

	// CreateSnapshot validates the DAG and stores it under its content hash, or
	// returns the existing snapshot with the same hash. It does not make it current.
	CreateSnapshot(ctx context.Context, workflowID int64, tasks []TaskSpec) (*Snapshot, error)
	GetSnapshot(ctx context.Context, id int64) (*Snapshot, error)
	// SetCurrentSnapshot makes a snapshot of the workflow the one new runs capture.
	SetCurrentSnapshot(ctx context.Context, workflowID, snapshotID int64) error
}

// RunStore holds runs.
type RunStore interface {
	// CreateRun inserts a pending run capturing the workflow's current snapshot.
	CreateRun(ctx context.Context, workflowID int64, triggeredBy string) (*Run, error)
	// CreateRuns inserts len(runs) pending runs in one step (one statement on
	// PostgreSQL, one transaction on SQLite) and returns them in input order, with
	// ascending ids; each is what CreateRun of that item would make. It is all or
	// nothing: an invalid triggered_by or an unknown workflow in any item is an error
	// naming the item (by its index, "run 3: …") and creates no run. Empty input
	// creates nothing and returns no error.
	CreateRuns(ctx context.Context, runs []NewRun) ([]Run, error)
	GetRun(ctx context.Context, id int64) (*Run, error)
	// ListRuns returns runs newest first, of one workflow when workflowID is not 0.
	ListRuns(ctx context.Context, workflowID int64) ([]Run, error)
	ListRunsPage(ctx context.Context, q RunListQuery) (*RunPage, error)
	// PendingRuns returns up to limit pending runs, oldest first.
	PendingRuns(ctx context.Context, limit int) ([]Run, error)
	// UpdateRunStatus sets a run's status; a terminal run never changes
	// (ErrInvalidTransition). Cancelling goes through CancelRun's rules.
	UpdateRunStatus(ctx context.Context, id int64, status RunStatus, errMsg string) error
	// CancelRun cancels a run with its unfinished tasks (in every state) and their deferred jobs.
	CancelRun(ctx context.Context, id int64) error
	// PauseRun stops dispatch of a running run's tasks; ResumeRun restores it.
	PauseRun(ctx context.Context, id int64) error
	ResumeRun(ctx context.Context, id int64) error
	// RunTaskStats counts a run's tasks by status.
	RunTaskStats(ctx context.Context, runID int64) (*TaskStats, error)
	// StartPendingRuns claims up to limit pending runs, creates their tasks (from the
	// snapshot, else the compiled tasks, else task_params.task_count legacy tasks) and
	// marks them running; a run whose DAG is invalid fails with an error naming why.
	StartPendingRuns(ctx context.Context, limit int) ([]StartedRun, error)
}

// TaskStore holds tasks and the hot paths that move them.
type TaskStore interface {
	// CreateTasks creates count legacy tasks (indexes 0..count-1, names task_<i>), idempotent per index.
	CreateTasks(ctx context.Context, runID int64, count int, executorType string, params json.RawMessage) ([]Task, error)
	// CreateDAGTasks creates a run's tasks with their dependencies; idempotent per
	// (run, index) and (run, name). A dependency on a name in neither the input nor
	// the run, or a cycle, is a validation error and creates nothing.
	CreateDAGTasks(ctx context.Context, runID int64, tasks []NewTask) ([]Task, error)
	GetTask(ctx context.Context, id int64) (*Task, error)
	// ListTasks returns a run's tasks in index order.
	ListTasks(ctx context.Context, runID int64) ([]Task, error)
	// PendingTasks returns up to limit pending tasks in dispatch order (id).
	PendingTasks(ctx context.Context, limit int) ([]Task, error)
	// RunningTasks returns up to limit dispatched or running tasks in id order.
	RunningTasks(ctx context.Context, limit int) ([]Task, error)
	// DispatchableTasks lists, without claiming, what ClaimTasks would claim.
	DispatchableTasks(ctx context.Context, limit int) ([]Task, error)

	// UpdateTaskStatus applies one report through the same rules as SetTaskStates and
	// returns its outcome; invalid, stale and not_found come back as errors.
	UpdateTaskStatus(ctx context.Context, u TaskUpdate) (*TaskOutcome, error)
	// SetTaskStates applies N reports in one statement and returns one outcome per
	// input, in order. Bad rows never block good ones.
	SetTaskStates(ctx context.Context, updates []TaskUpdate) ([]TaskOutcome, error)
	// ClaimTasks moves up to p.Limit dispatchable tasks to dispatched for p.Claimer.
	ClaimTasks(ctx context.Context, p ClaimParams) ([]ClaimedTask, error)
	// ExpireTaskLeases returns dispatched tasks whose lease ran out to pending; fewer
	// than limit outcomes means no other expired lease is due.
	ExpireTaskLeases(ctx context.Context, limit int) ([]TaskOutcome, error)
	// FailTimedOutTasks fails dispatched or running tasks past their timeout, under the retry rule.
	FailTimedOutTasks(ctx context.Context, limit int) ([]TaskOutcome, error)
	// RetryTask is an operator's retry: a finished task of an unfinished run goes back
	// to pending, with the tasks that failed or were cancelled because of it.
	RetryTask(ctx context.Context, id int64) error
	// FailDependentTasks fails, transitively, the unfinished tasks that depend on a
	// failed task, and returns how many it failed. A task that has not failed:
	// ErrInvalidTransition.
	FailDependentTasks(ctx context.Context, taskID int64) (int, error)

	// AppendTaskLog appends a chunk in O(chunk); a log past MaxTaskLogBytes is refused.
	AppendTaskLog(ctx context.Context, taskID int64, chunk string) error
	TaskLog(ctx context.Context, taskID int64) (string, error)
	SetTaskOutput(ctx context.Context, taskID int64, output json.RawMessage) error
	// UpstreamOutputs maps each dependency name of the task to its output.
	UpstreamOutputs(ctx context.Context, taskID int64) (map[string]json.RawMessage, error)
	TaskRetryInfo(ctx context.Context, taskID int64) (*RetryInfo, error)
	TaskIdentity(ctx context.Context, taskID int64) (*TaskIdentity, error)
}

// ScheduleStore holds workflow schedules.
type ScheduleStore interface {
	// SetSchedule validates expr (5- or 6-field cron) and sets it; enabling or changing
	// it recomputes the next fire time from now. An empty expr clears the schedule.
	SetSchedule(ctx context.Context, workflowID int64, expr string, enabled bool, now time.Time) error
	// SetScheduleTimes overwrites the last and next fire times.
	SetScheduleTimes(ctx context.Context, workflowID int64, last, next *time.Time) error
	// DueWorkflows lists enabled schedules whose next fire time is at or before now.
	DueWorkflows(ctx context.Context, now time.Time, limit int) ([]Workflow, error)
	// FireDueSchedules creates one run per due workflow and advances its next fire time
	// in the same step; however many schedulers race, each fire time yields one run.
	FireDueSchedules(ctx context.Context, now time.Time, limit int) ([]Run, error)
}

// DeferredJobStore holds deferred jobs.
type DeferredJobStore interface {
	// CreateDeferredJobs adds deferred jobs to an unfinished task.
	CreateDeferredJobs(ctx context.Context, taskID int64, jobs []NewDeferredJob) ([]DeferredJob, error)
	GetDeferredJob(ctx context.Context, id int64) (*DeferredJob, error)
	// PendingDeferredJobs lists pending or polling jobs, oldest first.
	PendingDeferredJobs(ctx context.Context, limit int) ([]DeferredJob, error)
	DeferredJobsForTask(ctx context.Context, taskID int64) ([]DeferredJob, error)
	// UpdateDeferredJobStatus moves a job under CanTransitionDeferredJob; completed
	// and failed finish its task by the rules of ReportDeferredPolls.
	UpdateDeferredJobStatus(ctx context.Context, id int64, status DeferredJobStatus, errMsg string) error
	// MarkDeferredJobPolled records a poll that found the job still running.
	MarkDeferredJobPolled(ctx context.Context, id int64) error
	CompleteDeferredJob(ctx context.Context, id int64) error
	FailDeferredJob(ctx context.Context, id int64, errMsg string) error
	// CancelDeferredJobsForTask cancels a task's unfinished jobs and returns how many.
	CancelDeferredJobsForTask(ctx context.Context, taskID int64) (int, error)
	// ClaimDeferredJobs leases up to p.Limit due jobs (new, next poll reached, or lease expired).
	ClaimDeferredJobs(ctx context.Context, p DeferredClaimParams) ([]DeferredJob, error)
	// ReportDeferredPolls applies poll results in one statement: running → next poll time;
	// completed → the job completes, and its task succeeds once all its jobs completed;
	// failed → the job fails and so does its task (retry rule applies).
	ReportDeferredPolls(ctx context.Context, reports []DeferredPollReport) ([]DeferredOutcome, error)
}
