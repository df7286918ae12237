package storetest

import (
	"encoding/json"
	"fmt"

	"github.com/orkstate/orkstate"
)

// Fixture factories. They fail the test on any error: they build the state a test
// starts from, they are not what it checks.

const claimer = "claimer-1"

// workflow creates a workflow with a unique name; opts adjust the input.
func (b *bundle) workflow(opts ...func(*orkstate.NewWorkflow)) *orkstate.Workflow {
	b.t.Helper()
	in := orkstate.NewWorkflow{
		Name:         b.uniq("wf"),
		Description:  "a test workflow",
		JobName:      "job",
		Region:       "europe-west1",
		Project:      "proj",
		ExecutorType: "cloudrun",
	}
	for _, o := range opts {
		o(&in)
	}
	w, err := b.store.CreateWorkflow(b.ctx, in)
	noErr(b.t, "fixture CreateWorkflow", err)
	return w
}

func named(name string) func(*orkstate.NewWorkflow) {
	return func(w *orkstate.NewWorkflow) { w.Name = name }
}

// run creates a pending run of a new workflow (or of wf when given).
func (b *bundle) run(wf ...*orkstate.Workflow) *orkstate.Run {
	b.t.Helper()
	var w *orkstate.Workflow
	if len(wf) > 0 {
		w = wf[0]
	} else {
		w = b.workflow()
	}
	r, err := b.store.CreateRun(b.ctx, w.ID, "test")
	noErr(b.t, "fixture CreateRun", err)
	return r
}

// nt is a NewTask with dependencies; dagRun fills index and a unique executor type.
func nt(name string, deps ...string) orkstate.NewTask {
	return orkstate.NewTask{TaskIndex: -1, TaskName: name, DependsOn: deps}
}

// withRetries and withTimeout adjust an nt.
func withRetries(n orkstate.NewTask, r int) orkstate.NewTask { n.MaxRetries = r; return n }
func withTimeout(n orkstate.NewTask, s int) orkstate.NewTask { n.TimeoutSeconds = s; return n }

// tasks is a run's tasks by name.
type tasks map[string]orkstate.Task

func (ts tasks) id(name string) int64 {
	t, ok := ts[name]
	if !ok {
		panic("storetest: no fixture task " + name)
	}
	return t.ID
}

// dagRun creates a workflow, a run and its DAG tasks (a pending run becomes
// running). Tasks without an index get their position; tasks without an executor
// type get one unique in the store, so claimTask can claim exactly one task.
func (b *bundle) dagRun(specs ...orkstate.NewTask) (*orkstate.Run, tasks) {
	b.t.Helper()
	r := b.run()
	return r, b.addTasks(r.ID, specs...)
}

func (b *bundle) addTasks(runID int64, specs ...orkstate.NewTask) tasks {
	b.t.Helper()
	in := make([]orkstate.NewTask, len(specs))
	for i, s := range specs {
		if s.TaskIndex < 0 {
			s.TaskIndex = i
		}
		if s.ExecutorType == "" {
			s.ExecutorType = fmt.Sprintf("x%d-%s", b.next(), s.TaskName)
		}
		in[i] = s
	}
	created, err := b.store.CreateDAGTasks(b.ctx, runID, in)
	noErr(b.t, "fixture CreateDAGTasks", err)
	equal(b.t, "fixture CreateDAGTasks count", len(created), len(in))
	out := tasks{}
	for _, t := range created {
		out[t.TaskName] = t
	}
	return out
}

// legacyRun creates a run with n count-based tasks.
func (b *bundle) legacyRun(n int) (*orkstate.Run, []orkstate.Task) {
	b.t.Helper()
	r := b.run()
	ts, err := b.store.CreateTasks(b.ctx, r.ID, n, "legacy", nil)
	noErr(b.t, "fixture CreateTasks", err)
	equal(b.t, "fixture CreateTasks count", len(ts), n)
	return r, ts
}

func (b *bundle) getTask(id int64) *orkstate.Task {
	b.t.Helper()
	t, err := b.store.GetTask(b.ctx, id)
	noErr(b.t, fmt.Sprintf("GetTask(%d)", id), err)
	return t
}

func (b *bundle) getRun(id int64) *orkstate.Run {
	b.t.Helper()
	r, err := b.store.GetRun(b.ctx, id)
	noErr(b.t, fmt.Sprintf("GetRun(%d)", id), err)
	return r
}

func (b *bundle) getJob(id int64) *orkstate.DeferredJob {
	b.t.Helper()
	j, err := b.store.GetDeferredJob(b.ctx, id)
	noErr(b.t, fmt.Sprintf("GetDeferredJob(%d)", id), err)
	return j
}

func (b *bundle) getWorkflow(id int64) *orkstate.Workflow {
	b.t.Helper()
	w, err := b.store.GetWorkflow(b.ctx, id)
	noErr(b.t, fmt.Sprintf("GetWorkflow(%d)", id), err)
	return w
}

func (b *bundle) taskStatus(id int64) orkstate.TaskStatus {
	b.t.Helper()
	return b.getTask(id).Status
}

func (b *bundle) runStatus(id int64) orkstate.RunStatus {
	b.t.Helper()
	return b.getRun(id).Status
}

func (b *bundle) listTasks(runID int64) []orkstate.Task {
	b.t.Helper()
	ts, err := b.store.ListTasks(b.ctx, runID)
	noErr(b.t, "ListTasks", err)
	return ts
}

// claimTask claims exactly the task id (by its unique executor type) and returns the claim.
func (b *bundle) claimTask(id int64) orkstate.ClaimedTask {
	b.t.Helper()
	t := b.getTask(id)
	got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 1, ExecutorTypes: []string{t.ExecutorType}})
	noErr(b.t, "fixture ClaimTasks", err)
	if len(got) != 1 || got[0].ID != id {
		b.t.Fatalf("fixture claimTask(%d %s): got %v, want exactly that task", id, t.TaskName, claimedIDs(got))
	}
	return got[0]
}

// report applies updates and fails on a call error (not on an outcome).
func (b *bundle) report(us ...orkstate.TaskUpdate) []orkstate.TaskOutcome {
	b.t.Helper()
	out, err := b.store.SetTaskStates(b.ctx, us)
	noErr(b.t, "SetTaskStates", err)
	equal(b.t, "SetTaskStates outcome count", len(out), len(us))
	return out
}

// reportOK applies one update and requires the given outcome.
func (b *bundle) reportOK(u orkstate.TaskUpdate, want orkstate.Outcome) orkstate.TaskOutcome {
	b.t.Helper()
	out := b.report(u)
	equal(b.t, fmt.Sprintf("outcome of %s report on task %d", u.Status, u.TaskID), out[0].Outcome, want)
	return out[0]
}

func upd(id int64, st orkstate.TaskStatus, attempt int) orkstate.TaskUpdate {
	return orkstate.TaskUpdate{TaskID: id, Status: st, Attempt: attempt}
}

// succeed claims, starts and finishes task id successfully.
func (b *bundle) succeed(id int64) {
	b.t.Helper()
	c := b.claimTask(id)
	b.reportOK(upd(id, orkstate.TaskRunning, c.Attempt), orkstate.OutcomeApplied)
	b.reportOK(upd(id, orkstate.TaskSuccess, c.Attempt), orkstate.OutcomeApplied)
}

// fail claims, starts and fails task id with msg; want is the expected outcome.
func (b *bundle) fail(id int64, msg string, want orkstate.Outcome) orkstate.ClaimedTask {
	b.t.Helper()
	c := b.claimTask(id)
	b.reportOK(upd(id, orkstate.TaskRunning, c.Attempt), orkstate.OutcomeApplied)
	u := upd(id, orkstate.TaskFailed, c.Attempt)
	u.Error = msg
	b.reportOK(u, want)
	return c
}

// drive brings a fresh pending task into status st through the public calls.
func (b *bundle) drive(id int64, st orkstate.TaskStatus) {
	b.t.Helper()
	switch st {
	case orkstate.TaskPending:
	case orkstate.TaskPaused, orkstate.TaskCancelled:
		b.reportOK(upd(id, st, 0), orkstate.OutcomeApplied)
	case orkstate.TaskDispatched:
		b.claimTask(id)
	case orkstate.TaskRunning, orkstate.TaskSuccess, orkstate.TaskFailed:
		c := b.claimTask(id)
		b.reportOK(upd(id, orkstate.TaskRunning, c.Attempt), orkstate.OutcomeApplied)
		if st != orkstate.TaskRunning {
			b.reportOK(upd(id, st, c.Attempt), orkstate.OutcomeApplied)
		}
	default:
		b.t.Fatalf("drive: unknown status %q", st)
	}
	equal(b.t, fmt.Sprintf("task %d driven to", id), b.taskStatus(id), st)
}

// job creates one deferred job on task id.
func (b *bundle) job(taskID int64) *orkstate.DeferredJob {
	b.t.Helper()
	js, err := b.store.CreateDeferredJobs(b.ctx, taskID, []orkstate.NewDeferredJob{
		{ServiceType: "bigquery", JobID: b.uniq("bq-job"), JobData: json.RawMessage(`{"location":"EU"}`)},
	})
	noErr(b.t, "fixture CreateDeferredJobs", err)
	equal(b.t, "fixture CreateDeferredJobs count", len(js), 1)
	return &js[0]
}

// dispatchable returns the ids of what ClaimTasks would claim now.
func (b *bundle) dispatchable() []int64 {
	b.t.Helper()
	ts, err := b.store.DispatchableTasks(b.ctx, orkstate.MaxPageLimit)
	noErr(b.t, "DispatchableTasks", err)
	return tasksIDs(ts)
}

func containsID(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// unknownID is an id no test ever creates.
const unknownID int64 = 987654321

func ptr[T any](v T) *T { return &v }
