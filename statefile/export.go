package statefile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/orkstate/orkstate"
)

// Export reads the whole state of src into a Document. It reads through the
// Store contract, one run at a time, so a store that is being written to may give
// a document that mixes moments; export from a quiet store.
func Export(ctx context.Context, src orkstate.Store, progress Progress) (*Document, error) {
	wfs, err := src.ListWorkflows(ctx)
	if err != nil {
		return nil, fmt.Errorf("statefile: list workflows: %w", err)
	}
	runsOf := make([][]orkstate.Run, len(wfs))
	total := 0
	for i, wf := range wfs {
		runs, err := src.ListRuns(ctx, wf.ID)
		if err != nil {
			return nil, fmt.Errorf("statefile: runs of workflow %q: %w", wf.Name, err)
		}
		sort.Slice(runs, func(a, b int) bool { return runs[a].ID < runs[b].ID })
		runsOf[i] = runs
		total += len(runs)
	}
	keys, err := src.ConcurrencyKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("statefile: concurrency keys: %w", err)
	}
	doc := &Document{Format: Format, Version: Version, ConcurrencyKeys: make([]ConcurrencyKey, 0, len(keys)),
		Workflows: make([]Workflow, 0, len(wfs))}
	for _, k := range keys {
		doc.ConcurrencyKeys = append(doc.ConcurrencyKeys, ConcurrencyKey{Key: k.Key, Slots: k.Slots})
	}
	sort.Slice(doc.ConcurrencyKeys, func(a, b int) bool { return doc.ConcurrencyKeys[a].Key < doc.ConcurrencyKeys[b].Key })
	done := 0
	for i, wf := range wfs {
		w, err := exportWorkflow(ctx, src, wf, runsOf[i], func() {
			done++
			if progress != nil {
				progress(done, total)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("statefile: workflow %q: %w", wf.Name, err)
		}
		doc.Workflows = append(doc.Workflows, *w)
	}
	sort.Slice(doc.Workflows, func(a, b int) bool { return doc.Workflows[a].Name < doc.Workflows[b].Name })
	return doc, nil
}

func exportWorkflow(ctx context.Context, src orkstate.Store, wf orkstate.Workflow, runs []orkstate.Run, runDone func()) (*Workflow, error) {
	w := &Workflow{Name: wf.Name, Description: wf.Description, JobName: wf.JobName, Region: wf.Region,
		Project: wf.Project, ExecutorType: wf.ExecutorType, TaskParams: jsonOut(wf.TaskParams),
		Schedule: wf.Schedule, ScheduleEnabled: wf.ScheduleEnabled,
		LastScheduledAt: utc(wf.LastScheduledAt), NextScheduledAt: utc(wf.NextScheduledAt),
		Tasks: []TaskSpec{}, Snapshots: []Snapshot{}, Runs: make([]Run, 0, len(runs))}
	lim, err := src.GetWorkflowLimits(ctx, wf.ID)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	w.Priority, w.MaxActiveRuns, w.MaxTasksInFlight, w.Fair = lim.Priority, lim.MaxActiveRuns, lim.MaxTasksInFlight, lim.Fair
	wts, err := src.ListWorkflowTasks(ctx, wf.ID)
	if err != nil {
		return nil, err
	}
	for _, t := range wts {
		w.Tasks = append(w.Tasks, specOut(t.TaskSpec))
	}
	hashes := map[int64]string{}
	snapshot := func(id *int64) (string, error) {
		if id == nil {
			return "", nil
		}
		if h, ok := hashes[*id]; ok {
			return h, nil
		}
		sn, err := src.GetSnapshot(ctx, *id)
		if err != nil {
			return "", fmt.Errorf("snapshot %d: %w", *id, err)
		}
		s := Snapshot{ContentHash: sn.ContentHash, Tasks: make([]TaskSpec, len(sn.Tasks))}
		for i, t := range sn.Tasks {
			s.Tasks[i] = specOut(t)
		}
		hashes[*id] = sn.ContentHash
		w.Snapshots = append(w.Snapshots, s)
		return sn.ContentHash, nil
	}
	if w.CurrentSnapshot, err = snapshot(wf.CurrentSnapshotID); err != nil {
		return nil, err
	}
	for _, r := range runs {
		out, err := exportRun(ctx, src, r)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", r.ID, err)
		}
		if out.Snapshot, err = snapshot(r.SnapshotID); err != nil {
			return nil, fmt.Errorf("run %d: %w", r.ID, err)
		}
		w.Runs = append(w.Runs, *out)
		runDone()
	}
	sort.Slice(w.Snapshots, func(a, b int) bool { return w.Snapshots[a].ContentHash < w.Snapshots[b].ContentHash })
	return w, nil
}

func exportRun(ctx context.Context, src orkstate.Store, r orkstate.Run) (*Run, error) {
	tasks, err := src.ListTasks(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	// Id order is dispatch order; ImportRun keeps it by inserting in this order.
	sort.Slice(tasks, func(a, b int) bool { return tasks[a].ID < tasks[b].ID })
	out := &Run{Status: string(r.Status), TriggeredBy: r.TriggeredBy, Error: r.Error, CreatedAt: r.CreatedAt.UTC(),
		StartedAt: utc(r.StartedAt), FinishedAt: utc(r.FinishedAt), Tasks: make([]Task, 0, len(tasks))}
	for _, k := range tasks {
		log, err := src.TaskLog(ctx, k.ID)
		if err != nil {
			return nil, fmt.Errorf("log of task %d: %w", k.ID, err)
		}
		jobs, err := src.DeferredJobsForTask(ctx, k.ID)
		if err != nil {
			return nil, fmt.Errorf("deferred jobs of task %d: %w", k.ID, err)
		}
		sort.Slice(jobs, func(a, b int) bool { return jobs[a].ID < jobs[b].ID })
		t := Task{Index: k.TaskIndex, Name: k.TaskName, ExecutorType: k.ExecutorType, DependsOn: strs(k.DependsOn),
			Params: jsonOut(k.Params), Status: string(k.Status), ExecutionName: k.ExecutionName, Output: jsonOut(k.Output),
			Error: k.Error, Attempts: k.Attempts, MaxRetries: k.MaxRetries, TimeoutSeconds: k.TimeoutSeconds,
			RetryAt: utc(k.RetryAt), ClaimedBy: k.ClaimedBy, LeaseExpiresAt: utc(k.LeaseExpiresAt),
			CreatedAt: k.CreatedAt.UTC(), DispatchedAt: utc(k.DispatchedAt), StartedAt: utc(k.StartedAt),
			FinishedAt: utc(k.FinishedAt), Priority: k.Priority, PriorityOverride: k.PriorityOverride,
			ConcurrencyKey: k.ConcurrencyKey, Log: log, DeferredJobs: make([]DeferredJob, 0, len(jobs))}
		for _, j := range jobs {
			t.DeferredJobs = append(t.DeferredJobs, DeferredJob{ServiceType: j.ServiceType, JobID: j.JobID,
				JobData: jsonOut(j.JobData), Status: string(j.Status), Error: j.Error, Attempts: j.Attempts,
				ClaimedBy: j.ClaimedBy, LeaseExpiresAt: utc(j.LeaseExpiresAt), NextPollAt: utc(j.NextPollAt),
				CreatedAt: j.CreatedAt.UTC(), StartedAt: utc(j.StartedAt), LastPolledAt: utc(j.LastPolledAt),
				FinishedAt: utc(j.FinishedAt)})
		}
		out.Tasks = append(out.Tasks, t)
	}
	return out, nil
}

// Encode writes d as indented JSON followed by a newline. The same document always
// gives the same bytes: embedded JSON values have their keys sorted and are
// re-indented, times are UTC, and <, > and & are written as they are.
func (d *Document) Encode(w io.Writer) error {
	if d.ConcurrencyKeys == nil { // as Export writes none: []
		c := *d
		c.ConcurrencyKeys = []ConcurrencyKey{}
		d = &c
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("statefile: encode: %w", err)
	}
	return nil
}

func specOut(s orkstate.TaskSpec) TaskSpec {
	return TaskSpec{Name: s.Name, ExecutorType: s.ExecutorType, DependsOn: strs(s.DependsOn), Params: jsonOut(s.Params),
		Signature: jsonOut(s.Signature), MaxRetries: s.MaxRetries, TimeoutSeconds: s.TimeoutSeconds,
		Priority: s.Priority, ConcurrencyKey: s.ConcurrencyKey}
}

// jsonOut canonicalises an embedded JSON value (keys sorted, numbers as written),
// so that how a store keeps it (jsonb reorders keys and adds spaces, SQLite keeps
// the text) does not show in the document.
func jsonOut(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw // the encoder reports it
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return raw
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

func strs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
