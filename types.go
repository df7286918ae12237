package orkstate

import (
	"encoding/json"
	"time"
)

// Workflow is a named, optionally scheduled DAG definition.
type Workflow struct {
	ID           int64
	Name         string
	Description  string
	JobName      string
	Region       string
	Project      string
	ExecutorType string
	// TaskParams is free-form JSON; task_count in it sizes legacy count-based runs.
	TaskParams        json.RawMessage
	Schedule          string
	ScheduleEnabled   bool
	LastScheduledAt   *time.Time
	NextScheduledAt   *time.Time
	CurrentSnapshotID *int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// NewWorkflow is the input of CreateWorkflow. Name is required and unique.
// A non-empty Schedule is validated (5- or 6-field cron) and enabled.
type NewWorkflow struct {
	Name         string
	Description  string
	JobName      string
	Region       string
	Project      string
	ExecutorType string
	TaskParams   json.RawMessage
	Schedule     string
}

// TaskSpec is one node of a compiled DAG, as stored in workflow_tasks and in
// snapshots. Names are unique within a DAG; DependsOn names other nodes.
type TaskSpec struct {
	Name           string          `json:"name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Params         json.RawMessage `json:"params,omitempty"`
	Signature      json.RawMessage `json:"signature,omitempty"`
	MaxRetries     int             `json:"max_retries,omitempty"`
	TimeoutSeconds int             `json:"timeout_seconds,omitempty"`
	// Priority, when not nil, overrides the workflow's priority for this task
	// (MinPriority … MaxPriority). Snapshots and a workflow's compiled tasks keep it,
	// and ConcurrencyKey.
	Priority *int `json:"priority,omitempty"`
	// ConcurrencyKey, when not empty, names the slot pool the task counts against
	// (see SetConcurrencyKey); the key must exist when the run starts.
	ConcurrencyKey string `json:"concurrency_key,omitempty"`
}

// WorkflowTask is a stored compiled DAG node of a workflow.
type WorkflowTask struct {
	ID         int64
	WorkflowID int64
	TaskIndex  int
	TaskSpec
	CreatedAt time.Time
}

// Snapshot is a workflow's DAG frozen by content hash; runs created while it is
// current use it, whatever the workflow's tasks become later.
type Snapshot struct {
	ID          int64
	WorkflowID  int64
	ContentHash string
	Tasks       []TaskSpec
	CreatedAt   time.Time
}

// NewRun is one run for CreateRuns: a pending run of the workflow WorkflowID,
// capturing its current snapshot, as CreateRun(ctx, WorkflowID, TriggeredBy) makes.
type NewRun struct {
	WorkflowID  int64
	TriggeredBy string
}

// Run is one execution of a workflow.
type Run struct {
	ID          int64
	WorkflowID  int64
	SnapshotID  *int64
	Status      RunStatus
	TriggeredBy string
	Error       string
	CreatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
}

// RunSummary is a run with its workflow's name and task counts, as listed in pages.
type RunSummary struct {
	Run
	WorkflowName string
	Stats        TaskStats
}

// TaskStats counts a run's tasks by status.
type TaskStats struct {
	Total      int
	Pending    int
	Paused     int
	Dispatched int
	Running    int
	Success    int
	Failed     int
	Cancelled  int
}

// Task is one task of a run.
type Task struct {
	ID             int64
	RunID          int64
	TaskIndex      int
	TaskName       string
	ExecutorType   string
	DependsOn      []string
	Status         TaskStatus
	ExecutionName  string
	Params         json.RawMessage
	Output         json.RawMessage
	Error          string
	Attempts       int
	MaxRetries     int
	TimeoutSeconds int // 0: no timeout
	RetryAt        *time.Time
	UnmetDeps      int
	ClaimedBy      string
	LeaseExpiresAt *time.Time
	CreatedAt      time.Time
	DispatchedAt   *time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	// Priority is the task's priority (docs/semantics.md, "Priorities and limits"):
	// its spec's (PriorityOverride), else its workflow's as it was when the task
	// became ready.
	Priority int
	// PriorityOverride is the priority the task's spec set; nil: the task follows
	// its workflow's priority until it is ready.
	PriorityOverride *int
	// ConcurrencyKey is the key the task's spec named ("" for none).
	ConcurrencyKey string
}

// NewTask is the input of CreateDAGTasks: one task of a run with its dependencies by name.
type NewTask struct {
	TaskIndex      int
	TaskName       string
	ExecutorType   string
	DependsOn      []string
	Params         json.RawMessage
	MaxRetries     int
	TimeoutSeconds int
	// Priority and ConcurrencyKey are TaskSpec's.
	Priority       *int
	ConcurrencyKey string
}

// TaskUpdate is one status report for SetTaskStates and UpdateTaskStatus.
type TaskUpdate struct {
	TaskID int64
	Status TaskStatus
	// ExecutionName, when not empty, replaces the stored one.
	ExecutionName string
	// Error, when not empty, replaces the stored one.
	Error string
	// Output, when not nil, replaces the stored one.
	Output json.RawMessage
	// Attempt is the fencing token returned by ClaimTasks. Zero means unfenced (an operator's change).
	Attempt int
}

// TaskOutcome is what SetTaskStates did with one input, in input order.
type TaskOutcome struct {
	TaskID  int64
	Outcome Outcome
	// Status is the task's status after the call ("" when not found).
	Status TaskStatus
}

// TaskIdentity names a task and where it belongs.
type TaskIdentity struct {
	TaskID       int64
	RunID        int64
	TaskIndex    int
	TaskName     string
	WorkflowID   int64
	WorkflowName string
}

// RetryInfo is a task's retry and timeout metadata.
type RetryInfo struct {
	Attempts       int
	MaxRetries     int
	TimeoutSeconds int
	RetryAt        *time.Time
}

// ClaimParams is the input of ClaimTasks.
type ClaimParams struct {
	// Claimer names the scheduler; it is recorded on the task. Required.
	Claimer string
	// Limit caps how many tasks are claimed; 1 to 10,000.
	Limit int
	// ExecutorTypes, when not empty, restricts the claim to these executor types.
	ExecutorTypes []string
	// Lease is how long the claim holds before ExpireTaskLeases may hand the task to
	// another claimer. Defaults to 5 minutes.
	Lease time.Duration
}

// ClaimedTask is what a scheduler needs to dispatch one claimed task.
type ClaimedTask struct {
	Task
	// Attempt is the fencing token: report it back with TaskUpdate.Attempt.
	Attempt      int
	WorkflowID   int64
	WorkflowName string
	JobName      string
	Project      string
	Region       string
	// UpstreamOutputs maps each dependency's name to its output (null when it stored none).
	UpstreamOutputs map[string]json.RawMessage
}

// StartedRun reports what StartPendingRuns did with one run.
type StartedRun struct {
	RunID        int64
	Status       RunStatus
	TasksCreated int
	// Error says why the run failed to start (unknown dependency, cycle, no tasks).
	Error string
}

// DeferredJob is polling work that a task started elsewhere.
type DeferredJob struct {
	ID             int64
	TaskID         int64
	ServiceType    string
	JobID          string
	JobData        json.RawMessage
	Status         DeferredJobStatus
	Error          string
	Attempts       int
	ClaimedBy      string
	LeaseExpiresAt *time.Time
	NextPollAt     *time.Time
	CreatedAt      time.Time
	StartedAt      *time.Time
	LastPolledAt   *time.Time
	FinishedAt     *time.Time
}

// NewDeferredJob is the input of CreateDeferredJobs.
type NewDeferredJob struct {
	ServiceType string
	JobID       string
	JobData     json.RawMessage
}

// DeferredClaimParams is the input of ClaimDeferredJobs.
type DeferredClaimParams struct {
	Claimer string
	Limit   int
	// Lease defaults to 1 minute.
	Lease time.Duration
}

// PollResult is what one poll of a deferred job found.
type PollResult string

// Poll results.
const (
	PollRunning   PollResult = "running"
	PollCompleted PollResult = "completed"
	PollFailed    PollResult = "failed"
)

// DeferredPollReport is one input of ReportDeferredPolls.
type DeferredPollReport struct {
	JobID  int64
	Result PollResult
	Error  string
	// NextPollAfter is when to poll again when Result is running. Defaults to 10 seconds.
	NextPollAfter time.Duration
	// Attempt is the fencing token from ClaimDeferredJobs; zero means unfenced.
	Attempt int
}

// DeferredOutcome is what ReportDeferredPolls did with one input, in input order.
type DeferredOutcome struct {
	JobID   int64
	Outcome Outcome
	Status  DeferredJobStatus
	// TaskStatus is the task's status after the call when the report finished it.
	TaskStatus TaskStatus
}

// WorkflowListQuery selects a page of workflows.
type WorkflowListQuery struct {
	// Search matches names case-insensitively as a substring; %, _ and \ are literal.
	Search string
	// Limit defaults to 50, at most 1,000.
	Limit  int
	Offset int
}

// WorkflowPage is one page of workflows ordered by name, with the total count.
type WorkflowPage struct {
	Workflows []Workflow
	Total     int
}

// RunListQuery selects a page of runs.
type RunListQuery struct {
	// Status, when not empty, keeps runs in that status.
	Status RunStatus
	// WorkflowName, when not empty, keeps runs of workflows whose names contain it
	// (case-insensitive, %, _ and \ literal).
	WorkflowName string
	// Limit defaults to 50, at most 1,000.
	Limit  int
	Offset int
}

// RunPage is one page of runs, newest first, with the total count.
type RunPage struct {
	Runs  []RunSummary
	Total int
}

// Page bounds shared by every paged list.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 1000
	// MaxTaskLogBytes caps one task's stored log; appends beyond it are refused.
	MaxTaskLogBytes = 4 << 20
	// MaxClaimLimit caps one claim batch.
	MaxClaimLimit = 10000
)
