// Package statefile reads and writes an orkstate store's whole state as one
// versioned JSON document (docs/statefile.md): the concurrency keys with their
// slots, every workflow with its priority, limits and fairness, compiled DAG,
// schedule and the snapshots its runs use, every run with its tasks, their logs and
// deferred jobs — statuses, attempts, priorities and keys, claims and leases, retry
// times, outputs, errors and every timestamp of runs, tasks and jobs.
//
// Export reads any orkstate.Store through the contract. Import writes a document
// into any Store that implements orkstate.RunImporter (pgstore and sqlitecompat
// do) through storecopy, so a file import and a store-to-store copy are the same
// code. Decode reads the versions OldestVersion … Version and refuses a document
// that is truncated, of an unknown format or version, or that fails the checks ImportRun makes, with an error naming where;
// Import checks the whole document and the destination before it writes, so a
// refused document imports nothing.
//
// The document holds no store ids: ids belong to the store that assigns them. Runs
// are listed per workflow in id order, tasks in id (dispatch) order, deferred jobs
// per task in id order, and snapshots are referred to by their content hash. So
// export → import into an empty store → export gives the same bytes.
package statefile

import (
	"encoding/json"
	"time"
)

// Format is the value of a document's "format" field.
const Format = "orkstate-state"

// Version is the document version this package writes. A change that an older
// reader would misread gets a new version. Version 2 added priorities, concurrency
// keys, workflow limits and fairness (issue 13).
const Version = 2

// OldestVersion is the oldest version Decode reads: a version 1 document is a store
// without priorities, limits or keys, and reads as such.
const OldestVersion = 1

// Document is the whole state of a store.
type Document struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// ConcurrencyKeys are the store's keys with their slots, ordered by key.
	ConcurrencyKeys []ConcurrencyKey `json:"concurrency_keys"`
	Workflows       []Workflow       `json:"workflows"`
}

// ConcurrencyKey is a named pool of slots (orkstate.ConcurrencyKey, without the
// tasks in flight: those are counted from the tasks on import).
type ConcurrencyKey struct {
	Key   string `json:"key"`
	Slots int    `json:"slots"`
}

// Workflow is one workflow with everything that belongs to it.
type Workflow struct {
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	JobName      string          `json:"job_name"`
	Region       string          `json:"region"`
	Project      string          `json:"project"`
	ExecutorType string          `json:"executor_type"`
	TaskParams   json.RawMessage `json:"task_params"`
	// Priority, MaxActiveRuns, MaxTasksInFlight and Fair are the workflow's
	// orkstate.WorkflowLimits (null: no limit).
	Priority         int  `json:"priority"`
	MaxActiveRuns    *int `json:"max_active_runs"`
	MaxTasksInFlight *int `json:"max_tasks_in_flight"`
	Fair             bool `json:"fair"`
	// Schedule is the cron expression ("" for none).
	Schedule        string     `json:"schedule"`
	ScheduleEnabled bool       `json:"schedule_enabled"`
	LastScheduledAt *time.Time `json:"last_scheduled_at"`
	NextScheduledAt *time.Time `json:"next_scheduled_at"`
	// CurrentSnapshot is the content hash of the snapshot new runs capture ("" for none).
	CurrentSnapshot string `json:"current_snapshot"`
	// Tasks is the compiled DAG in index order.
	Tasks []TaskSpec `json:"tasks"`
	// Snapshots are the snapshots that are current or used by a run, ordered by hash.
	Snapshots []Snapshot `json:"snapshots"`
	Runs      []Run      `json:"runs"`
}

// TaskSpec is one node of a compiled DAG or snapshot.
type TaskSpec struct {
	Name           string          `json:"name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Params         json.RawMessage `json:"params"`
	Signature      json.RawMessage `json:"signature"`
	MaxRetries     int             `json:"max_retries"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	// Priority is the spec's own priority (null: the workflow's).
	Priority       *int   `json:"priority"`
	ConcurrencyKey string `json:"concurrency_key"`
}

// Snapshot is a frozen DAG, keyed by its content hash (orkstate.ContentHash).
type Snapshot struct {
	ContentHash string     `json:"content_hash"`
	Tasks       []TaskSpec `json:"tasks"`
}

// Run is one run with its tasks.
type Run struct {
	// Snapshot is the content hash of the run's snapshot ("" for none).
	Snapshot    string     `json:"snapshot"`
	Status      string     `json:"status"`
	TriggeredBy string     `json:"triggered_by"`
	Error       string     `json:"error"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Tasks       []Task     `json:"tasks"`
}

// Task is one task of a run, with its log and deferred jobs.
type Task struct {
	Index          int             `json:"index"`
	Name           string          `json:"name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Params         json.RawMessage `json:"params"`
	Status         string          `json:"status"`
	ExecutionName  string          `json:"execution_name"`
	Output         json.RawMessage `json:"output"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	MaxRetries     int             `json:"max_retries"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	RetryAt        *time.Time      `json:"retry_at"`
	ClaimedBy      string          `json:"claimed_by"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
	CreatedAt      time.Time       `json:"created_at"`
	DispatchedAt   *time.Time      `json:"dispatched_at"`
	StartedAt      *time.Time      `json:"started_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	// Priority is the task's priority; PriorityOverride its spec's (null: it
	// follows its workflow's until it is ready).
	Priority         int           `json:"priority"`
	PriorityOverride *int          `json:"priority_override"`
	ConcurrencyKey   string        `json:"concurrency_key"`
	Log              string        `json:"log"`
	DeferredJobs     []DeferredJob `json:"deferred_jobs"`
}

// DeferredJob is one deferred job of a task.
type DeferredJob struct {
	ServiceType    string          `json:"service_type"`
	JobID          string          `json:"job_id"`
	JobData        json.RawMessage `json:"job_data"`
	Status         string          `json:"status"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	ClaimedBy      string          `json:"claimed_by"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
	NextPollAt     *time.Time      `json:"next_poll_at"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at"`
	LastPolledAt   *time.Time      `json:"last_polled_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
}

// Counts sums what a document holds.
type Counts struct {
	Workflows, Runs, Tasks, DeferredJobs int
}

// Counts returns how many workflows, runs, tasks and deferred jobs d holds.
func (d *Document) Counts() Counts {
	var c Counts
	for _, w := range d.Workflows {
		c.Workflows++
		c.Runs += len(w.Runs)
		for _, r := range w.Runs {
			c.Tasks += len(r.Tasks)
			for _, t := range r.Tasks {
				c.DeferredJobs += len(t.DeferredJobs)
			}
		}
	}
	return c
}

// Progress is told how many runs of total are done; export, import and copy call
// it after every run. Nil reports nothing.
type Progress func(done, total int)
