package statefile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/storecopy"
)

// Import writes d into dst, which must implement orkstate.RunImporter, through
// storecopy: every run is inserted as it is, in one transaction per run (see
// storecopy's package doc for what a copy keeps). It checks d (Validate) and that
// none of its workflow names is taken in dst (ErrConflict naming it) before it
// writes anything. If a write fails after that, the workflows it created are
// deleted again, so dst is as before — except for the document's concurrency keys,
// which are set first (a key dst has gets the document's slots) and which the
// Store contract cannot delete; a caller that can give dst a transaction
// (pgstore's WithTx) gets the same without relying on that clean-up, keys included.
func Import(ctx context.Context, d *Document, dst orkstate.Store, progress Progress) (*storecopy.Result, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return transfer(ctx, newDocStore(d), dst, d.Counts().Runs, progress)
}

// transfer copies src into dst with storecopy.Copy, with Import's checks and
// clean-up: dst must implement orkstate.RunImporter (so nothing is replayed and
// every status, attempt and timestamp is kept), src's workflow names must be free
// in dst, and a failed copy deletes the workflows it created. runs is the number
// of runs in src, for progress (0 when unknown).
func transfer(ctx context.Context, src, dst orkstate.Store, runs int, progress Progress) (*storecopy.Result, error) {
	imp, ok := dst.(orkstate.RunImporter)
	if !ok {
		return nil, fmt.Errorf("statefile: %w: the destination cannot import runs as they are (orkstate.RunImporter)", orkstate.ErrUnsupported)
	}
	wfs, err := src.ListWorkflows(ctx)
	if err != nil {
		return nil, fmt.Errorf("statefile: list workflows: %w", err)
	}
	for _, wf := range wfs {
		_, err := dst.GetWorkflowByName(ctx, wf.Name)
		switch {
		case err == nil:
			return nil, fmt.Errorf("statefile: %w: workflow %q exists in the destination; import into an empty store", orkstate.ErrConflict, wf.Name)
		case !errors.Is(err, orkstate.ErrNotFound):
			return nil, fmt.Errorf("statefile: look up workflow %q in the destination: %w", wf.Name, err)
		}
	}
	counted := &countingImporter{Store: dst, imp: imp, total: runs, progress: progress}
	res, err := storecopy.Copy(ctx, src, counted)
	if err != nil {
		cctx := context.WithoutCancel(ctx)
		for _, id := range res.Workflows {
			if derr := dst.DeleteWorkflow(cctx, id); derr != nil && !errors.Is(derr, orkstate.ErrNotFound) {
				return nil, fmt.Errorf("%w (and removing what was imported failed: %v)", err, derr)
			}
		}
		return nil, err
	}
	return res, nil
}

// countingImporter reports progress after every imported run.
type countingImporter struct {
	orkstate.Store
	imp      orkstate.RunImporter
	total    int
	done     int
	progress Progress
}

func (c *countingImporter) ImportRun(ctx context.Context, in orkstate.RunImport) (*orkstate.ImportedRun, error) {
	out, err := c.imp.ImportRun(ctx, in)
	if err == nil {
		c.done++
		if c.progress != nil {
			c.progress(c.done, c.total)
		}
	}
	return out, err
}

// docStore is a document seen as a read-only orkstate.Store, so that storecopy
// copies it like any other store. Ids are positions in the document. storecopy
// reads a source through the nine methods below; the embedded Store is nil, so
// any other call would panic, and the round-trip tests (TestExportImportRoundTrip,
// TestImportFailureLeavesNothing) would fail if storecopy ever made one.
type docStore struct {
	orkstate.Store
	keys      []orkstate.ConcurrencyKey
	limits    map[int64]*orkstate.WorkflowLimits
	workflows []orkstate.Workflow
	wfTasks   map[int64][]orkstate.WorkflowTask
	snapshots map[int64]*orkstate.Snapshot
	runs      map[int64][]orkstate.Run // by workflow id
	tasks     map[int64][]orkstate.Task
	logs      map[int64]string
	jobs      map[int64][]orkstate.DeferredJob
}

func newDocStore(d *Document) *docStore {
	s := &docStore{wfTasks: map[int64][]orkstate.WorkflowTask{}, snapshots: map[int64]*orkstate.Snapshot{},
		runs: map[int64][]orkstate.Run{}, tasks: map[int64][]orkstate.Task{}, logs: map[int64]string{},
		jobs: map[int64][]orkstate.DeferredJob{}, limits: map[int64]*orkstate.WorkflowLimits{}}
	for _, k := range d.ConcurrencyKeys {
		s.keys = append(s.keys, orkstate.ConcurrencyKey{Key: k.Key, Slots: k.Slots})
	}
	var ids idSeq
	now := time.Now().UTC()
	for _, w := range d.Workflows {
		wf := orkstate.Workflow{ID: ids.next(), Name: w.Name, Description: w.Description, JobName: w.JobName,
			Region: w.Region, Project: w.Project, ExecutorType: w.ExecutorType, TaskParams: jsonIn(w.TaskParams),
			Schedule: w.Schedule, ScheduleEnabled: w.ScheduleEnabled, LastScheduledAt: w.LastScheduledAt,
			NextScheduledAt: w.NextScheduledAt, CreatedAt: now, UpdatedAt: now}
		s.limits[wf.ID] = &orkstate.WorkflowLimits{Priority: w.Priority, MaxActiveRuns: w.MaxActiveRuns,
			MaxTasksInFlight: w.MaxTasksInFlight, Fair: w.Fair}
		for i, t := range w.Tasks {
			s.wfTasks[wf.ID] = append(s.wfTasks[wf.ID], orkstate.WorkflowTask{ID: ids.next(), WorkflowID: wf.ID,
				TaskIndex: i, TaskSpec: specIn(t), CreatedAt: now})
		}
		byHash := map[string]int64{}
		for _, sn := range w.Snapshots {
			id := ids.next()
			byHash[sn.ContentHash] = id
			s.snapshots[id] = &orkstate.Snapshot{ID: id, WorkflowID: wf.ID, ContentHash: sn.ContentHash,
				Tasks: specsIn(sn.Tasks), CreatedAt: now}
		}
		wf.CurrentSnapshotID = snapshotRef(byHash, w.CurrentSnapshot)
		for _, r := range w.Runs {
			in, err := runImport(r, wf.ID, snapshotRef(byHash, r.Snapshot), &ids)
			if err != nil {
				continue // Validate refused the document already
			}
			s.runs[wf.ID] = append(s.runs[wf.ID], in.Run)
			s.tasks[in.Run.ID] = in.Tasks
			for id, log := range in.Logs {
				s.logs[id] = log
			}
			for _, j := range in.Jobs {
				s.jobs[j.TaskID] = append(s.jobs[j.TaskID], j)
			}
		}
		s.workflows = append(s.workflows, wf)
	}
	return s
}

func (s *docStore) ListWorkflows(context.Context) ([]orkstate.Workflow, error) {
	out := append([]orkstate.Workflow(nil), s.workflows...)
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

func (s *docStore) ConcurrencyKeys(context.Context) ([]orkstate.ConcurrencyKey, error) {
	return s.keys, nil
}

func (s *docStore) GetWorkflowLimits(_ context.Context, id int64) (*orkstate.WorkflowLimits, error) {
	if l, ok := s.limits[id]; ok {
		c := *l
		return &c, nil
	}
	return nil, fmt.Errorf("workflow %d: %w", id, orkstate.ErrNotFound)
}

func (s *docStore) ListWorkflowTasks(_ context.Context, id int64) ([]orkstate.WorkflowTask, error) {
	return s.wfTasks[id], nil
}

func (s *docStore) GetSnapshot(_ context.Context, id int64) (*orkstate.Snapshot, error) {
	if sn, ok := s.snapshots[id]; ok {
		return sn, nil
	}
	return nil, fmt.Errorf("snapshot %d: %w", id, orkstate.ErrNotFound)
}

func (s *docStore) ListRuns(_ context.Context, workflowID int64) ([]orkstate.Run, error) {
	runs := append([]orkstate.Run(nil), s.runs[workflowID]...)
	sort.Slice(runs, func(a, b int) bool { return runs[a].ID > runs[b].ID }) // newest first, as the contract says
	return runs, nil
}

func (s *docStore) ListTasks(_ context.Context, runID int64) ([]orkstate.Task, error) {
	return s.tasks[runID], nil
}

func (s *docStore) TaskLog(_ context.Context, taskID int64) (string, error) {
	return s.logs[taskID], nil
}

func (s *docStore) DeferredJobsForTask(_ context.Context, taskID int64) ([]orkstate.DeferredJob, error) {
	return s.jobs[taskID], nil
}

// idSeq hands out the document-position ids of a docStore.
type idSeq int64

func (s *idSeq) next() int64 { *s++; return int64(*s) }

func snapshotRef(byHash map[string]int64, hash string) *int64 {
	if hash == "" {
		return nil
	}
	id, ok := byHash[hash]
	if !ok {
		return nil
	}
	return &id
}

// runImport converts a document run into the RunImport storecopy will build from
// it, with ids drawn from ids. It refuses what RunImport.Validate does not look
// at: missing creation times.
func runImport(r Run, workflowID int64, snapshotID *int64, ids *idSeq) (orkstate.RunImport, error) {
	if ids == nil {
		ids = new(idSeq)
	}
	if r.CreatedAt.IsZero() {
		return orkstate.RunImport{}, orkstate.Invalid("created_at", nil, "missing")
	}
	in := orkstate.RunImport{Logs: map[int64]string{}, Run: orkstate.Run{ID: ids.next(), WorkflowID: workflowID,
		SnapshotID: snapshotID, Status: orkstate.RunStatus(r.Status), TriggeredBy: r.TriggeredBy, Error: r.Error,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}}
	for i, t := range r.Tasks {
		if t.CreatedAt.IsZero() {
			return in, fmt.Errorf("tasks[%d] %q: %w", i, t.Name, orkstate.Invalid("created_at", nil, "missing"))
		}
		k := orkstate.Task{ID: ids.next(), RunID: in.Run.ID, TaskIndex: t.Index, TaskName: t.Name,
			ExecutorType: t.ExecutorType, DependsOn: strs(t.DependsOn), Status: orkstate.TaskStatus(t.Status),
			ExecutionName: t.ExecutionName, Params: jsonIn(t.Params), Output: jsonIn(t.Output), Error: t.Error,
			Attempts: t.Attempts, MaxRetries: t.MaxRetries, TimeoutSeconds: t.TimeoutSeconds, RetryAt: t.RetryAt,
			ClaimedBy: t.ClaimedBy, LeaseExpiresAt: t.LeaseExpiresAt, CreatedAt: t.CreatedAt,
			DispatchedAt: t.DispatchedAt, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt,
			Priority: t.Priority, PriorityOverride: t.PriorityOverride, ConcurrencyKey: t.ConcurrencyKey}
		in.Tasks = append(in.Tasks, k)
		if t.Log != "" {
			in.Logs[k.ID] = t.Log
		}
		for n, j := range t.DeferredJobs {
			if j.CreatedAt.IsZero() {
				return in, fmt.Errorf("tasks[%d] %q: deferred_jobs[%d]: %w", i, t.Name, n, orkstate.Invalid("created_at", nil, "missing"))
			}
			if j.Attempts < 0 { // RunImport.Validate checks tasks' attempts, not jobs'
				return in, fmt.Errorf("tasks[%d] %q: deferred_jobs[%d]: %w", i, t.Name, n, orkstate.Invalid("attempts", j.Attempts, "must not be negative"))
			}
			in.Jobs = append(in.Jobs, orkstate.DeferredJob{ID: ids.next(), TaskID: k.ID, ServiceType: j.ServiceType,
				JobID: j.JobID, JobData: jsonIn(j.JobData), Status: orkstate.DeferredJobStatus(j.Status), Error: j.Error,
				Attempts: j.Attempts, ClaimedBy: j.ClaimedBy, LeaseExpiresAt: j.LeaseExpiresAt, NextPollAt: j.NextPollAt,
				CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, LastPolledAt: j.LastPolledAt, FinishedAt: j.FinishedAt})
		}
	}
	return in, nil
}

func specIn(t TaskSpec) orkstate.TaskSpec {
	return orkstate.TaskSpec{Name: t.Name, ExecutorType: t.ExecutorType, DependsOn: strs(t.DependsOn),
		Params: jsonIn(t.Params), Signature: jsonIn(t.Signature), MaxRetries: t.MaxRetries, TimeoutSeconds: t.TimeoutSeconds,
		Priority: t.Priority, ConcurrencyKey: t.ConcurrencyKey}
}

func specsIn(ts []TaskSpec) []orkstate.TaskSpec {
	out := make([]orkstate.TaskSpec, len(ts))
	for i, t := range ts {
		out[i] = specIn(t)
	}
	return out
}

// jsonIn maps the document's null to "no value", as a store returns it.
func jsonIn(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}
