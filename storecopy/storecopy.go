// Package storecopy copies the contents of one orkstate.Store into another —
// SQLite to Postgres when a local setup grows up, or back — through the Store
// contract, so it works between any two backends.
//
// What is copied: concurrency keys with their slots (set in the destination first;
// a key it has already gets the source's slots), workflows (fields, priority,
// limits and fairness, compiled tasks, schedule and its last/next fire times,
// current snapshot), the snapshots runs use, runs (trigger, status, error), their
// tasks (DAG, params, priority and its override, concurrency key, status, execution
// name, output, error), task logs and deferred jobs (with their status). Ids are new
// in the destination; the Result maps old ids to new ones.
//
// When the destination implements orkstate.RunImporter (pgstore and sqlitecompat
// do), each run is inserted as it is, in one transaction: statuses, attempts,
// claims and leases (a dispatched task stays dispatched to its claimer), retry_at
// (a failed task waiting for its retry keeps its time), errors, outputs, deferred
// jobs with their attempts, leases and poll times, and every timestamp of runs,
// tasks and jobs, to the microsecond, and each task's priority. Tasks in flight hold
// their slots in the destination, so ConcurrencyKeys counts them as the source did.
// Runs are imported in source id order, so id order is kept. What remains
// approximate: a workflow's max tasks in flight and fairness reach every copied run
// (in the source, runs started before the workflow's first limit, or before it was
// made fair, were not under them); a log arrives as one chunk stamped with
// the time of the copy, and workflows, compiled tasks and snapshots are created
// anew (their created/updated times are those of the copy).
//
// Otherwise state is rebuilt by replaying it through the state machine, and some
// of it cannot be carried over:
//   - timestamps (created/started/finished/dispatched, retry_at) are those of the copy;
//   - attempts start from 0, and claims and leases are not copied: a dispatched task
//     arrives pending, to be claimed again;
//   - a task without a priority of its own takes its workflow's present one (in the
//     source, a task that was ready kept the priority it had then);
//   - a failed task that still had retries left arrives pending with a retry scheduled
//     (the retry rule applies to the replayed failure);
//   - runs are created in the destination in the order their snapshot allows, so id
//     order across runs of one workflow may differ from the source.
//
// Copy into an empty destination: workflow names must be free there.
package storecopy

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	"github.com/orkstate/orkstate"
)

// Result maps source ids to destination ids.
type Result struct {
	Workflows map[int64]int64
	Snapshots map[int64]int64
	Runs      map[int64]int64
	Tasks     map[int64]int64
	Jobs      map[int64]int64
}

// Copy copies every workflow of src, with its runs and their tasks, logs and
// deferred jobs, into dst. It stops at the first error; what it copied until then
// stays in dst.
func Copy(ctx context.Context, src, dst orkstate.Store) (*Result, error) {
	res := &Result{Workflows: map[int64]int64{}, Snapshots: map[int64]int64{}, Runs: map[int64]int64{},
		Tasks: map[int64]int64{}, Jobs: map[int64]int64{}}
	if err := copyKeys(ctx, src, dst); err != nil {
		return res, err
	}
	wfs, err := src.ListWorkflows(ctx)
	if err != nil {
		return res, fmt.Errorf("storecopy: list workflows: %w", err)
	}
	for _, wf := range wfs {
		if err := copyWorkflow(ctx, src, dst, wf, res); err != nil {
			return res, fmt.Errorf("storecopy: workflow %q: %w", wf.Name, err)
		}
	}
	return res, nil
}

// copyKeys sets every concurrency key of src in dst with its slots, before any run
// that names one arrives. A key without a slot count (a Store that reports Slots 0;
// pgstore made such keys before schema version 9) cannot be set through the
// contract and stops the copy before it writes.
func copyKeys(ctx context.Context, src, dst orkstate.Store) error {
	keys, err := src.ConcurrencyKeys(ctx)
	if err != nil {
		return fmt.Errorf("storecopy: list concurrency keys: %w", err)
	}
	for _, k := range keys {
		if k.Slots < 1 {
			return fmt.Errorf("storecopy: %w", orkstate.Invalid("slots", k.Slots,
				fmt.Sprintf("concurrency key %q has no slot count, which SetConcurrencyKey cannot set: give it slots first", k.Key)))
		}
	}
	for _, k := range keys {
		if err := dst.SetConcurrencyKey(ctx, k.Key, k.Slots); err != nil {
			return fmt.Errorf("storecopy: concurrency key %q: %w", k.Key, err)
		}
	}
	return nil
}

func copyWorkflow(ctx context.Context, src, dst orkstate.Store, wf orkstate.Workflow, res *Result) error {
	nw, err := dst.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: wf.Name, Description: wf.Description, JobName: wf.JobName,
		Region: wf.Region, Project: wf.Project, ExecutorType: wf.ExecutorType, TaskParams: wf.TaskParams})
	if err != nil {
		return err
	}
	res.Workflows[wf.ID] = nw.ID
	// Limits before any run arrives: runs are placed in the workflow's pool and fair
	// turns as they are imported or started.
	lim, err := src.GetWorkflowLimits(ctx, wf.ID)
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if !reflect.DeepEqual(*lim, orkstate.WorkflowLimits{}) {
		if err := dst.SetWorkflowLimits(ctx, nw.ID, *lim); err != nil {
			return fmt.Errorf("limits: %w", err)
		}
	}
	wts, err := src.ListWorkflowTasks(ctx, wf.ID)
	if err != nil {
		return err
	}
	if len(wts) > 0 {
		specs := make([]orkstate.TaskSpec, len(wts))
		for i, w := range wts {
			specs[i] = w.TaskSpec
		}
		if _, err := dst.ReplaceWorkflowTasks(ctx, nw.ID, specs); err != nil {
			return err
		}
	}
	snapshot := func(id *int64) (int64, error) {
		if id == nil {
			return 0, nil
		}
		if n, ok := res.Snapshots[*id]; ok {
			return n, nil
		}
		sn, err := src.GetSnapshot(ctx, *id)
		if err != nil {
			return 0, err
		}
		c, err := dst.CreateSnapshot(ctx, nw.ID, sn.Tasks)
		if err != nil {
			return 0, err
		}
		res.Snapshots[*id] = c.ID
		return c.ID, nil
	}

	runs, err := src.ListRuns(ctx, wf.ID)
	if err != nil {
		return err
	}
	imp, lossless := dst.(orkstate.RunImporter)
	// Oldest first; when replaying, runs without a snapshot before any snapshot is
	// made current, since the contract cannot make "no snapshot" current again.
	sort.SliceStable(runs, func(i, j int) bool {
		a, b := runs[i].SnapshotID == nil, runs[j].SnapshotID == nil
		if a != b && !lossless {
			return a
		}
		return runs[i].ID < runs[j].ID
	})
	for _, r := range runs {
		if lossless {
			in := r
			in.WorkflowID = nw.ID
			if r.SnapshotID != nil {
				sid, err := snapshot(r.SnapshotID)
				if err != nil {
					return err
				}
				in.SnapshotID = &sid
			}
			if err := importRun(ctx, src, imp, in, r.ID, res); err != nil {
				return fmt.Errorf("run %d: %w", r.ID, err)
			}
			continue
		}
		if r.SnapshotID != nil {
			sid, err := snapshot(r.SnapshotID)
			if err != nil {
				return err
			}
			if err := dst.SetCurrentSnapshot(ctx, nw.ID, sid); err != nil {
				return err
			}
		}
		if err := copyRun(ctx, src, dst, nw.ID, r, res); err != nil {
			return fmt.Errorf("run %d: %w", r.ID, err)
		}
	}
	if wf.CurrentSnapshotID != nil {
		sid, err := snapshot(wf.CurrentSnapshotID)
		if err != nil {
			return err
		}
		if err := dst.SetCurrentSnapshot(ctx, nw.ID, sid); err != nil {
			return err
		}
	}
	if wf.Schedule != "" {
		if err := dst.SetSchedule(ctx, nw.ID, wf.Schedule, wf.ScheduleEnabled, wf.UpdatedAt); err != nil {
			return err
		}
		next := wf.NextScheduledAt
		if !wf.ScheduleEnabled {
			next = nil
		}
		if err := dst.SetScheduleTimes(ctx, nw.ID, wf.LastScheduledAt, next); err != nil {
			return err
		}
	}
	return nil
}

// importRun copies one run through dst's RunImporter: the rows as they are.
func importRun(ctx context.Context, src orkstate.Store, dst orkstate.RunImporter, r orkstate.Run, srcID int64, res *Result) error {
	tasks, err := src.ListTasks(ctx, srcID)
	if err != nil {
		return err
	}
	in := orkstate.RunImport{Run: r, Tasks: tasks, Logs: map[int64]string{}}
	for _, k := range tasks {
		log, err := src.TaskLog(ctx, k.ID)
		if err != nil {
			return err
		}
		if log != "" {
			in.Logs[k.ID] = log
		}
		jobs, err := src.DeferredJobsForTask(ctx, k.ID)
		if err != nil {
			return err
		}
		in.Jobs = append(in.Jobs, jobs...)
	}
	out, err := dst.ImportRun(ctx, in)
	if err != nil {
		return err
	}
	res.Runs[srcID] = out.RunID
	for o, n := range out.Tasks {
		res.Tasks[o] = n
	}
	for o, n := range out.Jobs {
		res.Jobs[o] = n
	}
	return nil
}

// copyRun replays one run through the Store contract (the fallback).
func copyRun(ctx context.Context, src, dst orkstate.Store, wfID int64, r orkstate.Run, res *Result) error {
	nr, err := dst.CreateRun(ctx, wfID, r.TriggeredBy)
	if err != nil {
		return err
	}
	res.Runs[r.ID] = nr.ID
	tasks, err := src.ListTasks(ctx, r.ID)
	if err != nil {
		return err
	}
	if len(tasks) > 0 {
		in := make([]orkstate.NewTask, len(tasks))
		for i, k := range tasks {
			in[i] = orkstate.NewTask{TaskIndex: k.TaskIndex, TaskName: k.TaskName, ExecutorType: k.ExecutorType,
				DependsOn: k.DependsOn, Params: k.Params, MaxRetries: k.MaxRetries, TimeoutSeconds: k.TimeoutSeconds,
				Priority: k.PriorityOverride, ConcurrencyKey: k.ConcurrencyKey}
		}
		created, err := dst.CreateDAGTasks(ctx, nr.ID, in)
		if err != nil {
			return err
		}
		byIndex := map[int]int64{}
		for _, c := range created {
			byIndex[c.TaskIndex] = c.ID
		}
		for _, k := range tasks {
			res.Tasks[k.ID] = byIndex[k.TaskIndex]
		}
	}
	// Logs and deferred jobs while every task is still pending.
	jobsByTask := map[int64][]orkstate.DeferredJob{}
	for _, k := range tasks {
		nid := res.Tasks[k.ID]
		log, err := src.TaskLog(ctx, k.ID)
		if err != nil {
			return err
		}
		if log != "" {
			if err := dst.AppendTaskLog(ctx, nid, log); err != nil {
				return err
			}
		}
		jobs, err := src.DeferredJobsForTask(ctx, k.ID)
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			continue
		}
		in := make([]orkstate.NewDeferredJob, len(jobs))
		for i, j := range jobs {
			in[i] = orkstate.NewDeferredJob{ServiceType: j.ServiceType, JobID: j.JobID, JobData: j.JobData}
		}
		created, err := dst.CreateDeferredJobs(ctx, nid, in)
		if err != nil {
			return err
		}
		for i, j := range jobs {
			res.Jobs[j.ID] = created[i].ID
		}
		jobsByTask[k.ID] = jobs
	}
	// Statuses, upstream first (index order need not be topological). Job
	// outcomes go first, as they happened: completing a task's last job succeeds
	// it, failing one fails it; the task's own report then finds it in place.
	for _, k := range topo(tasks) {
		nid := res.Tasks[k.ID]
		if k.Output != nil {
			if err := dst.SetTaskOutput(ctx, nid, k.Output); err != nil {
				return err
			}
		}
		for _, j := range jobsByTask[k.ID] {
			nj := res.Jobs[j.ID]
			var err error
			switch j.Status {
			case orkstate.DeferredPolling, orkstate.DeferredCancelled:
				err = dst.UpdateDeferredJobStatus(ctx, nj, j.Status, j.Error)
			case orkstate.DeferredCompleted:
				err = dst.CompleteDeferredJob(ctx, nj)
			case orkstate.DeferredFailed:
				err = dst.FailDeferredJob(ctx, nj, j.Error)
			}
			if err != nil {
				return fmt.Errorf("deferred job %d: %w", j.ID, err)
			}
		}
		if k.Status == orkstate.TaskPending || k.Status == orkstate.TaskDispatched {
			continue // a claim cannot be copied: dispatched tasks arrive pending
		}
		u := orkstate.TaskUpdate{TaskID: nid, Status: k.Status, ExecutionName: k.ExecutionName, Error: k.Error}
		if _, err := dst.SetTaskStates(ctx, []orkstate.TaskUpdate{u}); err != nil {
			return err
		}
	}
	cur, err := dst.GetRun(ctx, nr.ID)
	if err != nil {
		return err
	}
	if cur.Status == r.Status || cur.Status.IsTerminal() {
		return nil
	}
	switch r.Status {
	case orkstate.RunCancelled:
		return dst.CancelRun(ctx, nr.ID)
	case orkstate.RunSuccess, orkstate.RunFailed:
		return dst.UpdateRunStatus(ctx, nr.ID, r.Status, r.Error)
	case orkstate.RunPaused:
		if cur.Status == orkstate.RunRunning {
			return dst.PauseRun(ctx, nr.ID)
		}
	case orkstate.RunRunning:
		if cur.Status == orkstate.RunPending {
			return dst.UpdateRunStatus(ctx, nr.ID, orkstate.RunRunning, "")
		}
	}
	return nil
}

// topo orders a run's tasks so that every task follows its dependencies (ties by index).
func topo(tasks []orkstate.Task) []orkstate.Task {
	byName := map[string]int{}
	for i, k := range tasks {
		byName[k.TaskName] = i
	}
	done := make([]bool, len(tasks))
	out := make([]orkstate.Task, 0, len(tasks))
	var visit func(i int, depth int)
	visit = func(i, depth int) {
		if done[i] || depth > len(tasks) {
			return
		}
		done[i] = true
		for _, d := range tasks[i].DependsOn {
			if j, ok := byName[d]; ok {
				visit(j, depth+1)
			}
		}
		out = append(out, tasks[i])
	}
	for i := range tasks {
		visit(i, 0)
	}
	return out
}
