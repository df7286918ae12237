package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orkstate/orkstate"
)

// The --json shapes. Their field names are documented in docs/cli.md and only
// ever grow.

type workflowJSON struct {
	ID                int64           `json:"id"`
	Name              string          `json:"name"`
	Description       string          `json:"description"`
	JobName           string          `json:"job_name"`
	Project           string          `json:"project"`
	Region            string          `json:"region"`
	ExecutorType      string          `json:"executor_type"`
	TaskParams        json.RawMessage `json:"task_params"`
	Schedule          string          `json:"schedule"`
	ScheduleEnabled   bool            `json:"schedule_enabled"`
	LastScheduledAt   *time.Time      `json:"last_scheduled_at"`
	NextScheduledAt   *time.Time      `json:"next_scheduled_at"`
	CurrentSnapshotID *int64          `json:"current_snapshot_id"`
	CreatedAt         time.Time       `json:"created_at"`
	UpdatedAt         time.Time       `json:"updated_at"`
}

func workflowOut(w orkstate.Workflow) workflowJSON {
	return workflowJSON{ID: w.ID, Name: w.Name, Description: w.Description, JobName: w.JobName, Project: w.Project,
		Region: w.Region, ExecutorType: w.ExecutorType, TaskParams: rawOrNull(w.TaskParams), Schedule: w.Schedule,
		ScheduleEnabled: w.ScheduleEnabled, LastScheduledAt: utcPtr(w.LastScheduledAt), NextScheduledAt: utcPtr(w.NextScheduledAt),
		CurrentSnapshotID: w.CurrentSnapshotID, CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC()}
}

type statsJSON struct {
	Total      int `json:"total"`
	Pending    int `json:"pending"`
	Paused     int `json:"paused"`
	Dispatched int `json:"dispatched"`
	Running    int `json:"running"`
	Success    int `json:"success"`
	Failed     int `json:"failed"`
	Cancelled  int `json:"cancelled"`
}

type runJSON struct {
	ID          int64      `json:"id"`
	WorkflowID  int64      `json:"workflow_id"`
	Workflow    string     `json:"workflow"`
	SnapshotID  *int64     `json:"snapshot_id"`
	Status      string     `json:"status"`
	TriggeredBy string     `json:"triggered_by"`
	Error       string     `json:"error"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Tasks       statsJSON  `json:"tasks"`
}

func runOut(r orkstate.Run, workflow string, st orkstate.TaskStats) runJSON {
	return runJSON{ID: r.ID, WorkflowID: r.WorkflowID, Workflow: workflow, SnapshotID: r.SnapshotID, Status: string(r.Status),
		TriggeredBy: r.TriggeredBy, Error: r.Error, CreatedAt: r.CreatedAt.UTC(), StartedAt: utcPtr(r.StartedAt),
		FinishedAt: utcPtr(r.FinishedAt), Tasks: statsJSON(st)}
}

type taskJSON struct {
	ID             int64           `json:"id"`
	RunID          int64           `json:"run_id"`
	Index          int             `json:"index"`
	Name           string          `json:"name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	MaxRetries     int             `json:"max_retries"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	ExecutionName  string          `json:"execution_name"`
	Error          string          `json:"error"`
	Params         json.RawMessage `json:"params"`
	Output         json.RawMessage `json:"output"`
	ClaimedBy      string          `json:"claimed_by"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
	RetryAt        *time.Time      `json:"retry_at"`
	CreatedAt      time.Time       `json:"created_at"`
	DispatchedAt   *time.Time      `json:"dispatched_at"`
	StartedAt      *time.Time      `json:"started_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	// Priority is the task's; PriorityOverride its spec's (null: the workflow's).
	Priority         int    `json:"priority"`
	PriorityOverride *int   `json:"priority_override"`
	ConcurrencyKey   string `json:"concurrency_key"`
	// WaitsFor says what the task waits for ([] when finished): dependency
	// names, or one phrase such as "a claim", "retry at …", "resume of the run".
	WaitsFor []string `json:"waits_for"`
}

func taskOut(t orkstate.Task, waits []string) taskJSON {
	if waits == nil {
		waits = []string{}
	}
	deps := t.DependsOn
	if deps == nil {
		deps = []string{}
	}
	return taskJSON{ID: t.ID, RunID: t.RunID, Index: t.TaskIndex, Name: t.TaskName, ExecutorType: t.ExecutorType,
		DependsOn: deps, Status: string(t.Status), Attempts: t.Attempts, MaxRetries: t.MaxRetries,
		TimeoutSeconds: t.TimeoutSeconds, ExecutionName: t.ExecutionName, Error: t.Error, Params: rawOrNull(t.Params),
		Output: rawOrNull(t.Output), ClaimedBy: t.ClaimedBy, LeaseExpiresAt: utcPtr(t.LeaseExpiresAt),
		RetryAt: utcPtr(t.RetryAt), CreatedAt: t.CreatedAt.UTC(), DispatchedAt: utcPtr(t.DispatchedAt),
		StartedAt: utcPtr(t.StartedAt), FinishedAt: utcPtr(t.FinishedAt), Priority: t.Priority,
		PriorityOverride: t.PriorityOverride, ConcurrencyKey: t.ConcurrencyKey, WaitsFor: waits}
}

type deferredJobJSON struct {
	ID             int64           `json:"id"`
	TaskID         int64           `json:"task_id"`
	ServiceType    string          `json:"service_type"`
	JobID          string          `json:"job_id"`
	JobData        json.RawMessage `json:"job_data"`
	Status         string          `json:"status"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	NextPollAt     *time.Time      `json:"next_poll_at"`
	LastPolledAt   *time.Time      `json:"last_polled_at"`
	CreatedAt      time.Time       `json:"created_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	ClaimedBy      string          `json:"claimed_by"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
}

func deferredJobOut(j orkstate.DeferredJob) deferredJobJSON {
	return deferredJobJSON{ID: j.ID, TaskID: j.TaskID, ServiceType: j.ServiceType, JobID: j.JobID, JobData: rawOrNull(j.JobData),
		Status: string(j.Status), Error: j.Error, Attempts: j.Attempts, NextPollAt: utcPtr(j.NextPollAt),
		LastPolledAt: utcPtr(j.LastPolledAt), CreatedAt: j.CreatedAt.UTC(), FinishedAt: utcPtr(j.FinishedAt),
		ClaimedBy: j.ClaimedBy, LeaseExpiresAt: utcPtr(j.LeaseExpiresAt)}
}

func rawOrNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Human output: UTC times to the second, durations to the millisecond.

const timeLayout = "2006-01-02 15:04:05Z"

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

func took(from, to *time.Time) string {
	if from == nil || to == nil {
		return "-"
	}
	return to.Sub(*from).Round(time.Millisecond).String()
}

// offset is t relative to the run's start ("+1.25s"), as the demo prints it.
func offset(start, t *time.Time) string {
	if t == nil || start == nil {
		return "-"
	}
	return fmt.Sprintf("%+.2fs", t.Sub(*start).Seconds())
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to its first line and at most n characters, for tables.
func oneLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// statsLine sums a run's tasks by status: "8 tasks: 3 success, 1 running, 4 pending".
func statsLine(st orkstate.TaskStats) string {
	parts := []string{}
	for _, p := range []struct {
		n    int
		name string
	}{{st.Success, "success"}, {st.Failed, "failed"}, {st.Cancelled, "cancelled"}, {st.Running, "running"},
		{st.Dispatched, "dispatched"}, {st.Pending, "pending"}, {st.Paused, "paused"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d tasks", st.Total)
	}
	return fmt.Sprintf("%d tasks: %s", st.Total, strings.Join(parts, ", "))
}
