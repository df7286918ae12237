package orkstate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The input rules both stores share. Each store calls these before it touches the
// database, so a call refused by one is refused by the other with the same
// *ValidationError, and defaults are filled in one place (docs/semantics.md).

// Normalize checks a claim and fills its defaults: Claimer required (not blank, a
// name within MaxNameLength, stored as given), Limit 1 … MaxClaimLimit, Lease 0 →
// DefaultTaskLease and at most MaxLease, executor types valid names.
func (p ClaimParams) Normalize() (ClaimParams, error) {
	if err := ValidName("claimer", p.Claimer, true); err != nil {
		return p, err
	}
	if err := CheckBatchLimit(p.Limit); err != nil {
		return p, err
	}
	lease, err := normalizeLease(p.Lease, DefaultTaskLease)
	if err != nil {
		return p, err
	}
	p.Lease = lease
	for _, et := range p.ExecutorTypes {
		if err := ValidName("executor_types", et, false); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Normalize checks a deferred-job claim like ClaimParams.Normalize; Lease 0 →
// DefaultDeferredLease.
func (p DeferredClaimParams) Normalize() (DeferredClaimParams, error) {
	if err := ValidName("claimer", p.Claimer, true); err != nil {
		return p, err
	}
	if err := CheckBatchLimit(p.Limit); err != nil {
		return p, err
	}
	lease, err := normalizeLease(p.Lease, DefaultDeferredLease)
	p.Lease = lease
	return p, err
}

func normalizeLease(lease, def time.Duration) (time.Duration, error) {
	switch {
	case lease < 0:
		return lease, Invalid("lease", lease, "must not be negative")
	case lease == 0:
		return def, nil
	case lease > MaxLease:
		return lease, Invalid("lease", lease, fmt.Sprintf("must be at most %s", MaxLease))
	case lease < time.Microsecond:
		// Stored with microsecond precision: a shorter lease would be none at all.
		return lease, Invalid("lease", lease, "must be at least 1µs")
	}
	return lease, nil
}

// CheckBatchLimit bounds the hot paths' batches (claims, sweeps, run starts): 1 …
// MaxClaimLimit, as the SQL functions do.
func CheckBatchLimit(limit int) error {
	if limit < 1 || limit > MaxClaimLimit {
		return Invalid("limit", limit, fmt.Sprintf("must be between 1 and %d", MaxClaimLimit))
	}
	return nil
}

// CheckListLimit bounds the lists that are not paged (PendingTasks, DueWorkflows, …):
// a limit must be positive.
func CheckListLimit(limit int) error {
	if limit <= 0 {
		return Invalid("limit", limit, "must be positive")
	}
	return nil
}

// PageBounds applies the paging rules: limit 0 → DefaultPageLimit, above
// MaxPageLimit → MaxPageLimit (clamped, not refused); a negative limit or offset is
// a validation error.
func PageBounds(limit, offset int) (int, int, error) {
	switch {
	case limit < 0:
		return 0, 0, Invalid("limit", limit, "must not be negative")
	case offset < 0:
		return 0, 0, Invalid("offset", offset, "must not be negative")
	case limit == 0:
		limit = DefaultPageLimit
	case limit > MaxPageLimit:
		limit = MaxPageLimit
	}
	return limit, offset, nil
}

// NormalizeTaskUpdates checks a batch of reports and returns a copy with statuses in
// lower case (input may use any case). Unknown statuses, attempts outside 0 …
// MaxAttempt, text PostgreSQL cannot store and invalid JSON fail the whole batch.
func NormalizeTaskUpdates(updates []TaskUpdate) ([]TaskUpdate, error) {
	out := make([]TaskUpdate, len(updates))
	for i, u := range updates {
		st, err := ParseTaskStatus(string(u.Status))
		if err != nil {
			return nil, Invalid("status", string(u.Status), fmt.Sprintf("unknown task status in update %d (task %d)", i, u.TaskID))
		}
		u.Status = st
		if u.Attempt < 0 || u.Attempt > MaxAttempt {
			return nil, Invalid("attempt", u.Attempt, fmt.Sprintf("must be between 0 and %d (update %d)", MaxAttempt, i))
		}
		if err := ValidText("execution_name", u.ExecutionName); err != nil {
			return nil, err
		}
		if err := ValidText("error", u.Error); err != nil {
			return nil, err
		}
		if err := ValidJSON("output", u.Output); err != nil {
			return nil, err
		}
		out[i] = u
	}
	return out, nil
}

// ParsePollResult returns the poll result named by s in any case.
func ParsePollResult(s string) (PollResult, error) {
	switch r := PollResult(strings.ToLower(s)); r {
	case PollRunning, PollCompleted, PollFailed:
		return r, nil
	}
	return "", Invalid("result", s, "unknown poll result")
}

// NormalizePollReports checks a batch of poll reports and returns a copy with
// results in lower case and NextPollAfter of running reports defaulted
// (DefaultNextPollAfter) and bounded (MaxPollInterval).
func NormalizePollReports(reports []DeferredPollReport) ([]DeferredPollReport, error) {
	out := make([]DeferredPollReport, len(reports))
	for i, r := range reports {
		res, err := ParsePollResult(string(r.Result))
		if err != nil {
			return nil, Invalid("result", string(r.Result), fmt.Sprintf("unknown poll result in report %d (job %d)", i, r.JobID))
		}
		r.Result = res
		switch {
		case r.NextPollAfter < 0:
			return nil, Invalid("next_poll_after", r.NextPollAfter, "must not be negative")
		case r.NextPollAfter > MaxPollInterval:
			return nil, Invalid("next_poll_after", r.NextPollAfter, fmt.Sprintf("must be at most %s", MaxPollInterval))
		case r.NextPollAfter == 0 && r.Result == PollRunning:
			r.NextPollAfter = DefaultNextPollAfter
		}
		if r.Attempt < 0 || r.Attempt > MaxAttempt {
			return nil, Invalid("attempt", r.Attempt, fmt.Sprintf("must be between 0 and %d (report %d)", MaxAttempt, i))
		}
		if err := ValidText("error", r.Error); err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// Validate checks a new workflow: a name (required), the other names, text and
// JSON within bounds, and the schedule when one is given.
func (w NewWorkflow) Validate() error {
	if err := ValidName("name", w.Name, true); err != nil {
		return err
	}
	for _, f := range []struct{ field, v string }{
		{"job_name", w.JobName}, {"region", w.Region}, {"project", w.Project}, {"executor_type", w.ExecutorType},
	} {
		if err := ValidName(f.field, f.v, false); err != nil {
			return err
		}
	}
	if err := ValidText("description", w.Description); err != nil {
		return err
	}
	if err := ValidJSON("task_params", w.TaskParams); err != nil {
		return err
	}
	if strings.TrimSpace(w.Schedule) != "" {
		if _, err := ParseSchedule(w.Schedule); err != nil {
			return err
		}
	}
	return nil
}

// ValidateNewTasks checks CreateDAGTasks' input without a store: names (non-empty,
// unique, within MaxNameLength), indexes (0 … MaxTaskIndex, unique), retries and
// timeouts within bounds, valid JSON params, at most MaxTaskCount tasks.
// Dependencies are checked against the run by the store.
func ValidateNewTasks(tasks []NewTask) error {
	if len(tasks) > MaxTaskCount {
		return Invalid("tasks", len(tasks), fmt.Sprintf("at most %d tasks per call", MaxTaskCount))
	}
	names := make(map[string]bool, len(tasks))
	idx := make(map[int]bool, len(tasks))
	for _, k := range tasks {
		if err := validTaskFields(k.TaskName, k.ExecutorType, k.DependsOn, k.MaxRetries, k.TimeoutSeconds); err != nil {
			return err
		}
		if k.TaskIndex < 0 || k.TaskIndex > MaxTaskIndex {
			return Invalid("task_index", k.TaskIndex, fmt.Sprintf("must be between 0 and %d (task %s)", MaxTaskIndex, k.TaskName))
		}
		if names[k.TaskName] {
			return Invalid("task name", k.TaskName, "duplicate task name")
		}
		if idx[k.TaskIndex] {
			return Invalid("task_index", k.TaskIndex, "duplicate task index (task "+k.TaskName+")")
		}
		names[k.TaskName], idx[k.TaskIndex] = true, true
		if err := ValidJSON("params", k.Params); err != nil {
			return err
		}
		if err := ValidTaskLimits(k.TaskName, k.Priority, k.ConcurrencyKey); err != nil {
			return err
		}
	}
	return nil
}

// validTaskFields checks what a TaskSpec and a NewTask have in common.
func validTaskFields(name, executorType string, deps []string, maxRetries, timeoutSeconds int) error {
	if err := ValidName("task name", name, true); err != nil {
		return err
	}
	if err := ValidName("executor_type", executorType, false); err != nil {
		return err
	}
	for _, d := range deps {
		if err := ValidName("depends_on", d, true); err != nil {
			return err
		}
	}
	if maxRetries < 0 || maxRetries > MaxTaskRetries {
		return Invalid("max_retries", maxRetries, fmt.Sprintf("must be between 0 and %d (task %s)", MaxTaskRetries, name))
	}
	if timeoutSeconds < 0 || timeoutSeconds > MaxTimeoutSeconds {
		return Invalid("timeout_seconds", timeoutSeconds, fmt.Sprintf("must be between 0 and %d (task %s)", MaxTimeoutSeconds, name))
	}
	return nil
}

// ValidateTaskCount checks CreateTasks' count: 0 … MaxTaskCount (0 creates nothing).
func ValidateTaskCount(count int) error {
	if count < 0 || count > MaxTaskCount {
		return Invalid("count", count, fmt.Sprintf("must be between 0 and %d", MaxTaskCount))
	}
	return nil
}

// ValidateNewRuns checks CreateRuns' input: each triggered_by a name (it may be
// empty), as CreateRun checks it. The error names the first bad item by its index.
func ValidateNewRuns(runs []NewRun) error {
	for i, r := range runs {
		if err := ValidName("triggered_by", r.TriggeredBy, false); err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
	}
	return nil
}

// ValidateNewDeferredJobs checks CreateDeferredJobs' input: service_type and job_id
// required names, job_data valid JSON.
func ValidateNewDeferredJobs(jobs []NewDeferredJob) error {
	for i, j := range jobs {
		if err := ValidName("service_type", j.ServiceType, true); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		if err := ValidName("job_id", j.JobID, true); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		if err := ValidJSON("job_data", j.JobData); err != nil {
			return err
		}
	}
	return nil
}

// LegacyTaskCount reads task_params.task_count as a run start does: absent (or not
// a number) → DefaultLegacyTaskCount; a number is rounded and must lie in 0 …
// MaxTaskCount, else the run fails with this error (its text is the run's error,
// the same as pgstore's).
func LegacyTaskCount(taskParams json.RawMessage) (int, error) {
	var p map[string]json.RawMessage
	if len(taskParams) == 0 || json.Unmarshal(taskParams, &p) != nil {
		return DefaultLegacyTaskCount, nil
	}
	var f float64
	if raw, ok := p["task_count"]; !ok || json.Unmarshal(raw, &f) != nil {
		return DefaultLegacyTaskCount, nil
	}
	if f < -0.5 || f >= MaxTaskCount+0.5 {
		return 0, fmt.Errorf("task_params.task_count must be between 0 and %d, got %s", MaxTaskCount, strconv.FormatFloat(f, 'f', -1, 64))
	}
	return int(f + 0.5), nil
}

// LegacyTaskParams are the params of legacy count-based task i of a run, as the
// original builds them: {"task_index": i, "run_id": …, "workflow_name": …}.
func LegacyTaskParams(index int, runID int64, workflowName string) json.RawMessage {
	b, _ := json.Marshal(struct {
		TaskIndex    int    `json:"task_index"`
		RunID        int64  `json:"run_id"`
		WorkflowName string `json:"workflow_name"`
	}{index, runID, workflowName})
	return b
}

// DAGExecutorType is the executor type of a workflow whose tasks come from a
// compiled DAG: a run of it with neither a snapshot nor compiled tasks fails
// instead of starting legacy tasks.
const DAGExecutorType = "dag"

// MissingDAGError is the error a run of a "dag" workflow without a snapshot or
// compiled tasks fails with (the same text in both stores).
func MissingDAGError(workflowName string) string {
	return fmt.Sprintf("workflow %q has executor type dag but no compiled tasks or snapshot", workflowName)
}

// ValidTime refuses a time outside the years 1 … 9999: PostgreSQL's timestamptz
// holds more, but sqlitecompat's microseconds since 1970 in an int64 would wrap
// silently past the year 294,000.
func ValidTime(field string, t *time.Time) error {
	if t != nil && (t.Year() < 1 || t.Year() > 9999) {
		return Invalid(field, t.Format(time.RFC3339), "must lie in the years 1 to 9999")
	}
	return nil
}

// ScheduleChange is what SetSchedule stores.
type ScheduleChange struct {
	Expr    string
	Enabled bool
	// Next is the first fire time after now when enabled, else nil.
	Next *time.Time
}

// PlanSchedule validates a schedule change: expr is trimmed; empty clears the
// schedule and disables it; otherwise it must parse (even when disabled), and when
// enabled Next is its first fire time after now. now must not be zero: stores pass
// their clock for a caller's zero time.
func PlanSchedule(expr string, enabled bool, now time.Time) (ScheduleChange, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return ScheduleChange{}, nil
	}
	if _, err := ParseSchedule(expr); err != nil {
		return ScheduleChange{}, err
	}
	c := ScheduleChange{Expr: expr, Enabled: enabled}
	if enabled {
		next, err := NextFireTime(expr, now)
		if err != nil {
			return ScheduleChange{}, err
		}
		c.Next = &next
	}
	return c, nil
}
