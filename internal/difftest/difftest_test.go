package difftest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// TestStoresAgree runs the same random calls against pgstore and sqlitecompat and
// compares every result and the whole visible state after each call.
func TestStoresAgree(t *testing.T) {
	t.Parallel()
	steps := defaultSteps
	if v, err := strconv.Atoi(os.Getenv("DIFFTEST_STEPS")); err == nil && v > 0 {
		steps = v
	}
	seeds := defaultSeeds
	if v, err := strconv.ParseUint(os.Getenv("DIFFTEST_SEED"), 10, 64); err == nil {
		seeds = []uint64{v}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, seed)
			for h.step = 1; h.step <= steps; h.step++ {
				h.randomStep()
				h.compare()
				if t.Failed() {
					return
				}
			}
		})
	}
}

// harness drives both stores. Index 0 is pgstore, 1 sqlitecompat.
type harness struct {
	t      *testing.T
	ctx    context.Context
	stores [2]orkstate.Store
	rng    *rand.Rand
	step   int
	vnow   time.Time // the schedules' clock, passed explicitly to both stores
	// slowest is the longest a step or a capture took, both stores together.
	slowest time.Duration
	trail   []string // the calls so far, printed on a mismatch
	ids     [2]idMap // each store's ids behind the shared handles, from the last compare
	last    view     // the state both stores agreed on at the last compare
}

var storeNames = [2]string{"pgstore", "sqlitecompat"}

func newHarness(t *testing.T, seed uint64) *harness {
	sq, err := sqlitecompat.Open(context.Background(), filepath.Join(t.TempDir(), "ork.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sq.Close)
	h := &harness{t: t, ctx: context.Background(), stores: [2]orkstate.Store{testdb.Store(t), sq},
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), vnow: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.compare()
	return h
}

// ---- the visible state, without ids and timestamps

type view struct {
	Workflows    []wfView
	Runs         []runView
	Dispatchable []taskRef
	PendingRuns  []int
	Due          []string
	WorkflowPage pageView
	RunPage      pageView
}

type wfView struct {
	Name, Description, ExecutorType, TaskParams, Schedule string
	Enabled                                               bool
	Last, Next                                            string // exact: set from the test's clock
	Snapshot                                              string // content hash
	Tasks                                                 []orkstate.TaskSpec
}

type runView struct {
	Workflow, Snapshot, Status, TriggeredBy, Error string
	Started, Finished                              bool
	Stats                                          orkstate.TaskStats
	Tasks                                          []taskView
}

type taskView struct {
	Index                                            int
	Name, ExecutorType, Status, ExecutionName, Error string
	DependsOn                                        []string
	Params, Output                                   string
	Attempts, MaxRetries, Timeout, UnmetDeps         int
	ClaimedBy                                        string
	RetryAt, Lease, Dispatched, Started, Finished    bool
	Log                                              string
	Upstream                                         map[string]string
	Jobs                                             []jobView
}

type jobView struct {
	ServiceType, JobID, Data, Status, Error, ClaimedBy string
	Attempts                                           int
	Lease, Started, Polled, Finished                   bool
}

type pageView struct {
	Items []string
	Total int
}

// taskRef names a task by its run's position (id order) and its index.
type taskRef struct{ Run, Index int }

// idMap is one store's ids behind the handles ops use.
type idMap struct {
	workflows map[string]int64
	runs      []int64
	tasks     map[taskRef]int64
	jobs      map[taskRef][]int64
}

func canon(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return "invalid:" + string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func fmtTime(p *time.Time) string {
	if p == nil {
		return ""
	}
	return p.UTC().Format(time.RFC3339Nano)
}

// capture reads everything a caller can see of store i.
func (h *harness) capture(i int) (view, idMap) {
	s, ctx := h.stores[i], h.ctx
	must := func(what string, err error) {
		if err != nil {
			h.t.Fatalf("step %d: %s: %s: %v", h.step, storeNames[i], what, err)
		}
	}
	ids := idMap{workflows: map[string]int64{}, tasks: map[taskRef]int64{}, jobs: map[taskRef][]int64{}}
	var v view
	snapHash := func(id *int64) string {
		if id == nil {
			return ""
		}
		sn, err := s.GetSnapshot(ctx, *id)
		must("GetSnapshot", err)
		return sn.ContentHash
	}
	wfs, err := s.ListWorkflows(ctx)
	must("ListWorkflows", err)
	wfName := map[int64]string{}
	for _, w := range wfs {
		ids.workflows[w.Name] = w.ID
		wfName[w.ID] = w.Name
		wts, err := s.ListWorkflowTasks(ctx, w.ID)
		must("ListWorkflowTasks", err)
		specs := []orkstate.TaskSpec{}
		for _, wt := range wts {
			sp := wt.TaskSpec
			sp.Params, sp.Signature = json.RawMessage(canon(sp.Params)), json.RawMessage(canon(sp.Signature))
			specs = append(specs, sp)
		}
		v.Workflows = append(v.Workflows, wfView{Name: w.Name, Description: w.Description, ExecutorType: w.ExecutorType,
			TaskParams: canon(w.TaskParams), Schedule: w.Schedule, Enabled: w.ScheduleEnabled,
			Last: fmtTime(w.LastScheduledAt), Next: fmtTime(w.NextScheduledAt), Snapshot: snapHash(w.CurrentSnapshotID), Tasks: specs})
	}
	runs, err := s.ListRuns(ctx, 0)
	must("ListRuns", err)
	sort.Slice(runs, func(a, b int) bool { return runs[a].ID < runs[b].ID })
	runPos := map[int64]int{}
	taskPos := map[int64]taskRef{}
	for k, r := range runs {
		ids.runs = append(ids.runs, r.ID)
		runPos[r.ID] = k
		st, err := s.RunTaskStats(ctx, r.ID)
		must("RunTaskStats", err)
		rv := runView{Workflow: wfName[r.WorkflowID], Snapshot: snapHash(r.SnapshotID), Status: string(r.Status),
			TriggeredBy: r.TriggeredBy, Error: r.Error, Started: r.StartedAt != nil, Finished: r.FinishedAt != nil, Stats: *st}
		ts, err := s.ListTasks(ctx, r.ID)
		must("ListTasks", err)
		for _, k2 := range ts {
			ref := taskRef{k, k2.TaskIndex}
			ids.tasks[ref] = k2.ID
			taskPos[k2.ID] = ref
			log, err := s.TaskLog(ctx, k2.ID)
			must("TaskLog", err)
			up, err := s.UpstreamOutputs(ctx, k2.ID)
			must("UpstreamOutputs", err)
			ups := map[string]string{}
			for name, o := range up {
				ups[name] = canon(o)
			}
			tv := taskView{Index: k2.TaskIndex, Name: k2.TaskName, ExecutorType: k2.ExecutorType, Status: string(k2.Status),
				ExecutionName: k2.ExecutionName, Error: k2.Error, DependsOn: k2.DependsOn, Params: canon(k2.Params),
				Output: canon(k2.Output), Attempts: k2.Attempts, MaxRetries: k2.MaxRetries, Timeout: k2.TimeoutSeconds,
				UnmetDeps: k2.UnmetDeps, ClaimedBy: k2.ClaimedBy, RetryAt: k2.RetryAt != nil, Lease: k2.LeaseExpiresAt != nil,
				Dispatched: k2.DispatchedAt != nil, Started: k2.StartedAt != nil, Finished: k2.FinishedAt != nil, Log: log, Upstream: ups}
			js, err := s.DeferredJobsForTask(ctx, k2.ID)
			must("DeferredJobsForTask", err)
			for _, j := range js {
				ids.jobs[ref] = append(ids.jobs[ref], j.ID)
				tv.Jobs = append(tv.Jobs, jobView{ServiceType: j.ServiceType, JobID: j.JobID, Data: canon(j.JobData),
					Status: string(j.Status), Error: j.Error, ClaimedBy: j.ClaimedBy, Attempts: j.Attempts,
					Lease: j.LeaseExpiresAt != nil, Started: j.StartedAt != nil, Polled: j.LastPolledAt != nil, Finished: j.FinishedAt != nil})
			}
			rv.Tasks = append(rv.Tasks, tv)
		}
		v.Runs = append(v.Runs, rv)
	}
	disp, err := s.DispatchableTasks(ctx, 1000)
	must("DispatchableTasks", err)
	for _, k := range disp {
		v.Dispatchable = append(v.Dispatchable, taskPos[k.ID])
	}
	pend, err := s.PendingRuns(ctx, 100)
	must("PendingRuns", err)
	for _, r := range pend {
		v.PendingRuns = append(v.PendingRuns, runPos[r.ID])
	}
	due, err := s.DueWorkflows(ctx, h.vnow, 100)
	must("DueWorkflows", err)
	for _, w := range due {
		v.Due = append(v.Due, w.Name)
	}
	wp, err := s.ListWorkflowsPage(ctx, orkstate.WorkflowListQuery{Search: "É", Limit: 2, Offset: 0})
	must("ListWorkflowsPage", err)
	v.WorkflowPage.Total = wp.Total
	for _, w := range wp.Workflows {
		v.WorkflowPage.Items = append(v.WorkflowPage.Items, w.Name)
	}
	rp, err := s.ListRunsPage(ctx, orkstate.RunListQuery{WorkflowName: "é", Limit: 3, Offset: 1})
	must("ListRunsPage", err)
	v.RunPage.Total = rp.Total
	for _, r := range rp.Runs {
		v.RunPage.Items = append(v.RunPage.Items, fmt.Sprintf("%d %s %+v", runPos[r.ID], r.Status, r.Stats))
	}
	return v, ids
}

// compare captures both stores and fails on any difference.
func (h *harness) compare() {
	h.t.Helper()
	var pv, sv view
	var pids, sids idMap
	for try := 0; ; try++ {
		h.settle(false)
		start := time.Now()
		pv, pids = h.capture(0)
		sv, sids = h.capture(1)
		end := time.Now()
		h.slowest = max(h.slowest, end.Sub(start))
		// A task that came due during the captures may be due in one and not yet in
		// the other: capture again once it is due in both.
		crossed := false
		for _, at := range h.dueTimes(false) {
			crossed = crossed || (at.After(start.Add(-10*time.Millisecond)) && at.Before(end.Add(10*time.Millisecond)))
		}
		if !crossed || try == 3 {
			break
		}
	}
	if !reflect.DeepEqual(pv, sv) {
		h.fail("state", pv, sv)
		return
	}
	h.last, h.ids = pv, [2]idMap{pids, sids}
}

// same fails unless both stores gave equal results for the step's call.
func (h *harness) same(what string, pg, sq any) {
	h.t.Helper()
	if !reflect.DeepEqual(pg, sq) {
		h.fail(what, pg, sq)
	}
}

func (h *harness) fail(what string, pg, sq any) {
	h.t.Helper()
	pj, _ := json.MarshalIndent(pg, "", " ")
	sj, _ := json.MarshalIndent(sq, "", " ")
	pl, sl := strings.Split(string(pj), "\n"), strings.Split(string(sj), "\n")
	diff := ""
	for k := 0; k < max(len(pl), len(sl)); k++ {
		var a, b string
		if k < len(pl) {
			a = pl[k]
		}
		if k < len(sl) {
			b = sl[k]
		}
		if a != b {
			lo := max(0, k-8)
			diff = fmt.Sprintf("first difference at line %d:\n--- pgstore\n%s\n--- sqlitecompat\n%s",
				k, strings.Join(pl[lo:min(len(pl), k+4)], "\n"), strings.Join(sl[lo:min(len(sl), k+4)], "\n"))
			break
		}
	}
	if dir := os.Getenv("DIFFTEST_DUMP"); dir != "" { // whole states, for a diff tool
		_ = os.WriteFile(filepath.Join(dir, "pgstore.json"), pj, 0o600)
		_ = os.WriteFile(filepath.Join(dir, "sqlitecompat.json"), sj, 0o600)
	}
	trail := h.trail
	if len(trail) > 15 {
		trail = trail[len(trail)-15:]
	}
	h.t.Errorf("step %d: the stores disagree on %s\n%s\nlast calls:\n  %s", h.step, what, diff, strings.Join(trail, "\n  "))
}

// ---- results, without ids

func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case orkstate.IsValidation(err):
		return "validation"
	case errors.Is(err, orkstate.ErrNotFound):
		return "not found"
	case errors.Is(err, orkstate.ErrInvalidTransition):
		return "invalid transition"
	case errors.Is(err, orkstate.ErrConflict):
		return "conflict"
	case errors.Is(err, orkstate.ErrStale):
		return "stale"
	}
	return "other: " + err.Error() // a raw error is a bug in either store
}

// both runs fn on each store with its own ids and compares the normalized results.
func (h *harness) both(what string, fn func(i int, ids idMap) any) {
	h.t.Helper()
	h.trail = append(h.trail, what)
	var out [2]any
	start := time.Now()
	for i := range h.stores {
		out[i] = fn(i, h.ids[i])
	}
	h.slowest = max(h.slowest, time.Since(start))
	h.same("the result of "+what, out[0], out[1])
}

func (ids idMap) runPos(id int64) int {
	for k, r := range ids.runs {
		if r == id {
			return k
		}
	}
	return -1 // a run created by this call: compare its state, not its position
}

func (ids idMap) taskRefOf(id int64) taskRef {
	for ref, t := range ids.tasks {
		if t == id {
			return ref
		}
	}
	return taskRef{-1, -1}
}

func outcomes(ids idMap, out []orkstate.TaskOutcome) []string {
	s := make([]string, len(out))
	for k, o := range out {
		s[k] = fmt.Sprintf("%v %s %s", ids.taskRefOf(o.TaskID), o.Outcome, o.Status)
	}
	return s
}

// ---- the calls

// pick returns a random element index of n, or -1 when n is 0.
func (h *harness) pick(n int) int {
	if n == 0 {
		return -1
	}
	return h.rng.IntN(n)
}

func (h *harness) chance(p float64) bool { return h.rng.Float64() < p }

var wfNames = []string{"étl", "Étude", "ingest", "report-É", "cron"}

func (h *harness) someTask() (taskRef, bool) {
	refs := make([]taskRef, 0, len(h.ids[0].tasks))
	for ref := range h.ids[0].tasks {
		refs = append(refs, ref)
	}
	if len(refs) == 0 {
		return taskRef{}, false
	}
	sort.Slice(refs, func(a, b int) bool {
		return refs[a].Run < refs[b].Run || (refs[a].Run == refs[b].Run && refs[a].Index < refs[b].Index)
	})
	return refs[h.rng.IntN(len(refs))], true
}

func (h *harness) someJob() (taskRef, int, bool) {
	var refs []taskRef
	for ref, js := range h.ids[0].jobs {
		if len(js) > 0 {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return taskRef{}, 0, false
	}
	sort.Slice(refs, func(a, b int) bool {
		return refs[a].Run < refs[b].Run || (refs[a].Run == refs[b].Run && refs[a].Index < refs[b].Index)
	})
	ref := refs[h.rng.IntN(len(refs))]
	return ref, h.rng.IntN(len(h.ids[0].jobs[ref])), true
}

// taskOf returns the id of ref in store i, or an unknown id.
func taskOf(ids idMap, ref taskRef, ok bool) int64 {
	if !ok {
		return 987654321
	}
	return ids.tasks[ref]
}

// someDAG is a small random DAG over a few names, sometimes with an unknown
// dependency or a cycle (which both stores must refuse alike).
func (h *harness) someDAG() []orkstate.TaskSpec {
	n := 1 + h.rng.IntN(4)
	specs := make([]orkstate.TaskSpec, n)
	for k := range specs {
		specs[k] = orkstate.TaskSpec{Name: fmt.Sprintf("t%d", k), ExecutorType: []string{"process", "bq"}[h.rng.IntN(2)],
			DependsOn: []string{}, MaxRetries: h.rng.IntN(2)}
		if k > 0 && h.chance(0.6) {
			specs[k].DependsOn = append(specs[k].DependsOn, fmt.Sprintf("t%d", h.rng.IntN(k)))
		}
		if h.chance(0.3) {
			specs[k].Params = json.RawMessage(fmt.Sprintf(`{"n": %d}`, k))
		}
	}
	switch {
	case h.chance(0.05):
		specs[0].DependsOn = []string{"missing"}
	case n > 1 && h.chance(0.05):
		specs[0].DependsOn = []string{specs[n-1].Name}
		specs[n-1].DependsOn = []string{specs[0].Name}
	}
	return specs
}

// dueTimes lists the retry_at (and, with leases, lease expiry) of both stores'
// tasks: what makes a task due by the clock alone. Only pending tasks have a
// retry_at, only dispatched ones a lease.
func (h *harness) dueTimes(leases bool) []time.Time {
	var out []time.Time
	for _, s := range h.stores {
		pending, err := s.PendingTasks(h.ctx, 10000)
		if err != nil {
			h.t.Fatal(err)
		}
		running, err := s.RunningTasks(h.ctx, 10000)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, k := range append(pending, running...) {
			if k.RetryAt != nil {
				out = append(out, *k.RetryAt)
			}
			if leases && k.LeaseExpiresAt != nil {
				out = append(out, *k.LeaseExpiresAt)
			}
		}
	}
	return out
}

// settle waits until no due time lies close to now, so that the two stores,
// running a call a few milliseconds apart, see the same tasks as due. The window is
// at least twice the longest step or capture so far: on a loaded machine the
// stores' halves of one step can lie far apart.
func (h *harness) settle(leases bool) {
	window := min(max(100*time.Millisecond, 2*h.slowest), time.Second)
	now := time.Now()
	var wait time.Duration
	for _, at := range h.dueTimes(leases) {
		if d := at.Sub(now); d > -window && d < window {
			wait = max(wait, d+window)
		}
	}
	time.Sleep(wait)
}

func (h *harness) randomStep() {
	ctx := h.ctx
	switch op := h.rng.IntN(100); {
	case op < 6:
		name := wfNames[h.rng.IntN(len(wfNames))]
		in := orkstate.NewWorkflow{Name: name, Description: "d", ExecutorType: []string{"cloudrun", "dag"}[h.rng.IntN(2)]}
		if h.chance(0.6) {
			in.TaskParams = json.RawMessage(fmt.Sprintf(`{"task_count": %d}`, h.rng.IntN(4)))
		}
		h.both(fmt.Sprintf("CreateWorkflow(%q, %s, %s)", in.Name, in.ExecutorType, in.TaskParams), func(i int, _ idMap) any {
			_, err := h.stores[i].CreateWorkflow(ctx, in)
			return errClass(err)
		})
	case op < 10:
		name, specs := wfNames[h.rng.IntN(len(wfNames))], h.someDAG()
		h.both(fmt.Sprintf("ReplaceWorkflowTasks(%q, %d specs)", name, len(specs)), func(i int, ids idMap) any {
			_, err := h.stores[i].ReplaceWorkflowTasks(ctx, ids.workflows[name], specs)
			return errClass(err)
		})
	case op < 13:
		name, specs := wfNames[h.rng.IntN(len(wfNames))], h.someDAG()
		h.both(fmt.Sprintf("CreateSnapshot+SetCurrentSnapshot(%q)", name), func(i int, ids idMap) any {
			sn, err := h.stores[i].CreateSnapshot(ctx, ids.workflows[name], specs)
			if err != nil {
				return errClass(err)
			}
			return []string{sn.ContentHash, errClass(h.stores[i].SetCurrentSnapshot(ctx, ids.workflows[name], sn.ID))}
		})
	case op < 22:
		if len(h.ids[0].runs) >= 10 {
			return
		}
		if h.chance(0.3) {
			// A batch, all or nothing: one deleted or never-created workflow among
			// its items fails the call in both stores and creates no run.
			names := make([]string, 1+h.rng.IntN(3))
			for k := range names {
				names[k] = wfNames[h.rng.IntN(len(wfNames))]
			}
			h.both(fmt.Sprintf("CreateRuns(%q)", names), func(i int, ids idMap) any {
				in := make([]orkstate.NewRun, len(names))
				for k, n := range names {
					in[k] = orkstate.NewRun{WorkflowID: ids.workflows[n], TriggeredBy: "batch"}
				}
				out, err := h.stores[i].CreateRuns(ctx, in)
				return []any{errClass(err), len(out)}
			})
			return
		}
		name := wfNames[h.rng.IntN(len(wfNames))]
		h.both(fmt.Sprintf("CreateRun(%q)", name), func(i int, ids idMap) any {
			_, err := h.stores[i].CreateRun(ctx, ids.workflows[name], "manual")
			return errClass(err)
		})
	case op < 28:
		limit := 1 + h.rng.IntN(3)
		h.both(fmt.Sprintf("StartPendingRuns(%d)", limit), func(i int, ids idMap) any {
			out, err := h.stores[i].StartPendingRuns(ctx, limit)
			res := []string{errClass(err)}
			for _, r := range out {
				res = append(res, fmt.Sprintf("%d %s %d %q", ids.runPos(r.RunID), r.Status, r.TasksCreated, r.Error))
			}
			return res
		})
	case op < 32:
		run := h.pick(len(h.ids[0].runs))
		if run < 0 {
			return
		}
		var nts []orkstate.NewTask
		for k, sp := range h.someDAG() {
			nts = append(nts, orkstate.NewTask{TaskIndex: k + h.rng.IntN(2)*3, TaskName: sp.Name, ExecutorType: sp.ExecutorType,
				DependsOn: sp.DependsOn, Params: sp.Params, MaxRetries: sp.MaxRetries})
		}
		h.both(fmt.Sprintf("CreateDAGTasks(run %d, %d tasks)", run, len(nts)), func(i int, ids idMap) any {
			out, err := h.stores[i].CreateDAGTasks(ctx, ids.runs[run], nts)
			res := []string{errClass(err)}
			for _, k := range out {
				res = append(res, fmt.Sprintf("%d %s %s", k.TaskIndex, k.TaskName, k.Status))
			}
			return res
		})
	case op < 35:
		run, count := h.pick(len(h.ids[0].runs)), h.rng.IntN(3)
		if run < 0 {
			return
		}
		h.both(fmt.Sprintf("CreateTasks(run %d, %d)", run, count), func(i int, ids idMap) any {
			out, err := h.stores[i].CreateTasks(ctx, ids.runs[run], count, "legacy", json.RawMessage(`{"x": 1}`))
			return []any{errClass(err), len(out)}
		})
	case op < 47:
		h.settle(false)
		p := orkstate.ClaimParams{Claimer: "c" + fmt.Sprint(h.rng.IntN(2)), Limit: 1 + h.rng.IntN(4)}
		if h.chance(0.3) {
			p.Lease = time.Millisecond // expired by the next sweep
		}
		if h.chance(0.3) {
			p.ExecutorTypes = []string{"bq"}
		}
		h.both(fmt.Sprintf("ClaimTasks(%+v)", p), func(i int, ids idMap) any {
			out, err := h.stores[i].ClaimTasks(ctx, p)
			res := []string{errClass(err)}
			for _, c := range out {
				ups := []string{}
				for name, o := range c.UpstreamOutputs {
					ups = append(ups, name+"="+canon(o))
				}
				sort.Strings(ups)
				res = append(res, fmt.Sprintf("%v attempt %d %s %s %v", ids.taskRefOf(c.ID), c.Attempt, c.WorkflowName, c.Status, ups))
			}
			return res
		})
	case op < 65:
		n := 1 + h.rng.IntN(3)
		type rep struct {
			ref     taskRef
			ok      bool
			status  orkstate.TaskStatus
			attempt int // -1: the task's current attempt
			errMsg  string
			output  string
		}
		reps := make([]rep, n)
		statuses := []orkstate.TaskStatus{"running", "success", "failed", "cancelled", "pending", "paused", "SUCCESS", "dispatched"}
		for k := range reps {
			reps[k].ref, reps[k].ok = h.someTask()
			reps[k].status = statuses[h.rng.IntN(len(statuses))]
			switch h.rng.IntN(4) {
			case 0:
				reps[k].attempt = 0
			case 1:
				reps[k].attempt = 1 + h.rng.IntN(2)
			default:
				reps[k].attempt = -1
			}
			if h.chance(0.4) {
				reps[k].errMsg = "e" + fmt.Sprint(h.rng.IntN(3))
			}
			if h.chance(0.3) {
				reps[k].output = fmt.Sprintf(`{"rows": %d}`, h.rng.IntN(100))
			}
		}
		h.settle(false)
		h.both(fmt.Sprintf("SetTaskStates(%+v)", reps), func(i int, ids idMap) any {
			us := make([]orkstate.TaskUpdate, n)
			for k, r := range reps {
				us[k] = orkstate.TaskUpdate{TaskID: taskOf(ids, r.ref, r.ok), Status: r.status, Attempt: r.attempt,
					Error: r.errMsg, ExecutionName: r.errMsg}
				if r.output != "" {
					us[k].Output = json.RawMessage(r.output)
				}
				if r.attempt < 0 {
					us[k].Attempt = 0
					if k2, err := h.stores[i].GetTask(ctx, us[k].TaskID); err == nil {
						us[k].Attempt = k2.Attempts
					}
				}
			}
			out, err := h.stores[i].SetTaskStates(ctx, us)
			return []any{errClass(err), outcomes(ids, out)}
		})
	case op < 68:
		h.settle(true)
		h.both("ExpireTaskLeases(1000)", func(i int, ids idMap) any {
			// A large limit: pgstore's limit counts lease rows (one per claim call), not
			// tasks, and a task in two rows comes back twice, the second time ignored.
			out, err := h.stores[i].ExpireTaskLeases(ctx, 1000)
			var applied []orkstate.TaskOutcome
			for _, o := range out {
				if o.Outcome != orkstate.OutcomeIgnored {
					applied = append(applied, o)
				}
			}
			return []any{errClass(err), outcomes(ids, applied)}
		})
	case op < 71:
		ref, ok := h.someTask()
		h.both(fmt.Sprintf("RetryTask(%v)", ref), func(i int, ids idMap) any {
			return errClass(h.stores[i].RetryTask(ctx, taskOf(ids, ref, ok)))
		})
	case op < 78:
		run := h.pick(len(h.ids[0].runs))
		if run < 0 {
			return
		}
		ops := []string{"pause", "resume", "cancel", "running", "paused", "success", "failed", "cancelled", "pending", "FAILED"}
		what := ops[h.rng.IntN(len(ops))]
		msg := []string{"", "operator says"}[h.rng.IntN(2)]
		h.both(fmt.Sprintf("run %d: %s %q", run, what, msg), func(i int, ids idMap) any {
			s, id := h.stores[i], ids.runs[run]
			switch what {
			case "pause":
				return errClass(s.PauseRun(ctx, id))
			case "resume":
				return errClass(s.ResumeRun(ctx, id))
			case "cancel":
				return errClass(s.CancelRun(ctx, id))
			}
			return errClass(s.UpdateRunStatus(ctx, id, orkstate.RunStatus(what), msg))
		})
	case op < 82:
		ref, ok := h.someTask()
		n := 1 + h.rng.IntN(2)
		jobs := make([]orkstate.NewDeferredJob, n)
		for k := range jobs {
			jobs[k] = orkstate.NewDeferredJob{ServiceType: "bigquery", JobID: fmt.Sprintf("job-%d-%d", h.step, k), JobData: json.RawMessage(`{"loc": "EU"}`)}
		}
		h.both(fmt.Sprintf("CreateDeferredJobs(%v, %d)", ref, n), func(i int, ids idMap) any {
			out, err := h.stores[i].CreateDeferredJobs(ctx, taskOf(ids, ref, ok), jobs)
			return []any{errClass(err), len(out)}
		})
	case op < 85:
		limit := 1 + h.rng.IntN(3)
		h.both(fmt.Sprintf("ClaimDeferredJobs(%d)", limit), func(i int, ids idMap) any {
			out, err := h.stores[i].ClaimDeferredJobs(ctx, orkstate.DeferredClaimParams{Claimer: "p", Limit: limit})
			res := []string{errClass(err)}
			for _, j := range out {
				res = append(res, fmt.Sprintf("%s %s %d", j.JobID, j.Status, j.Attempts))
			}
			return res
		})
	case op < 90:
		ref, k, ok := h.someJob()
		if !ok {
			return
		}
		results := []orkstate.PollResult{"running", "completed", "failed", "COMPLETED"}
		res := results[h.rng.IntN(len(results))]
		single := h.chance(0.3)
		h.both(fmt.Sprintf("poll report %v job %d: %s (single %v)", ref, k, res, single), func(i int, ids idMap) any {
			id := ids.jobs[ref][k]
			if single {
				return errClass(h.stores[i].UpdateDeferredJobStatus(ctx, id, orkstate.DeferredJobStatus(res), "remote error"))
			}
			out, err := h.stores[i].ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{{JobID: id, Result: res, Error: "remote error"}})
			r := []string{errClass(err)}
			for _, o := range out {
				r = append(r, fmt.Sprintf("%s %s %s", o.Outcome, o.Status, o.TaskStatus))
			}
			return r
		})
	case op < 93:
		ref, ok := h.someTask()
		chunk := fmt.Sprintf("line %d\n", h.step)
		h.both(fmt.Sprintf("AppendTaskLog(%v)", ref), func(i int, ids idMap) any {
			return errClass(h.stores[i].AppendTaskLog(ctx, taskOf(ids, ref, ok), chunk))
		})
	case op < 96:
		name := wfNames[h.rng.IntN(len(wfNames))]
		expr := []string{"*/5 * * * *", "0 * * * * *", "", "@hourly", "* * * * * *"}[h.rng.IntN(5)]
		enabled := h.chance(0.7)
		now := h.vnow
		h.both(fmt.Sprintf("SetSchedule(%q, %q, %v, %s)", name, expr, enabled, now), func(i int, ids idMap) any {
			return errClass(h.stores[i].SetSchedule(ctx, ids.workflows[name], expr, enabled, now))
		})
	case op < 97:
		h.vnow = h.vnow.Add(time.Duration(1+h.rng.IntN(20)) * time.Minute)
		now := h.vnow
		h.both(fmt.Sprintf("FireDueSchedules(%s)", now), func(i int, ids idMap) any {
			out, err := h.stores[i].FireDueSchedules(ctx, now, 3)
			return []any{errClass(err), len(out)}
		})
	default:
		h.rareStep()
	}
}

// rareStep is one of the calls a scheduler makes seldom, or bad input.
func (h *harness) rareStep() {
	ctx := h.ctx
	ref, ok := h.someTask()
	switch h.rng.IntN(9) {
	case 0:
		name := wfNames[h.rng.IntN(len(wfNames))]
		h.both(fmt.Sprintf("DeleteWorkflow(%q)", name), func(i int, ids idMap) any {
			return errClass(h.stores[i].DeleteWorkflow(ctx, ids.workflows[name]))
		})
	case 1:
		h.both(fmt.Sprintf("FailDependentTasks(%v)", ref), func(i int, ids idMap) any {
			n, err := h.stores[i].FailDependentTasks(ctx, taskOf(ids, ref, ok))
			return []any{errClass(err), n}
		})
	case 2:
		h.both(fmt.Sprintf("CancelDeferredJobsForTask(%v)", ref), func(i int, ids idMap) any {
			n, err := h.stores[i].CancelDeferredJobsForTask(ctx, taskOf(ids, ref, ok))
			return []any{errClass(err), n}
		})
	case 3:
		jref, k, jok := h.someJob()
		if !jok {
			return
		}
		h.both(fmt.Sprintf("MarkDeferredJobPolled(%v job %d)", jref, k), func(i int, ids idMap) any {
			return errClass(h.stores[i].MarkDeferredJobPolled(ctx, ids.jobs[jref][k]))
		})
	case 4:
		out := json.RawMessage(fmt.Sprintf(`{"set": %d}`, h.step))
		h.both(fmt.Sprintf("SetTaskOutput(%v)", ref), func(i int, ids idMap) any {
			return errClass(h.stores[i].SetTaskOutput(ctx, taskOf(ids, ref, ok), out))
		})
	case 5:
		h.settle(false)
		h.both("FailTimedOutTasks(10)", func(i int, ids idMap) any {
			out, err := h.stores[i].FailTimedOutTasks(ctx, 10)
			return []any{errClass(err), outcomes(ids, out)}
		})
	case 6:
		st := []orkstate.TaskStatus{"Running", "cancelled", "bogus"}[h.rng.IntN(3)]
		h.both(fmt.Sprintf("UpdateTaskStatus(%v, %s)", ref, st), func(i int, ids idMap) any {
			o, err := h.stores[i].UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: taskOf(ids, ref, ok), Status: st})
			if o == nil {
				return []any{errClass(err)}
			}
			return []any{errClass(err), o.Outcome, o.Status}
		})
	case 7:
		bad := []string{"a\x00b", strings.Repeat("x", 600), "\xff"}[h.rng.IntN(3)]
		h.both(fmt.Sprintf("hostile input %q", bad), func(i int, ids idMap) any {
			s := h.stores[i]
			_, e1 := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: bad})
			_, e2 := s.CreateDAGTasks(ctx, 987654321, []orkstate.NewTask{{TaskName: bad}})
			_, e3 := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: bad, Limit: 1})
			return []string{errClass(e1), errClass(e2), errClass(e3)}
		})
	default:
		name := wfNames[h.rng.IntN(len(wfNames))]
		h.both(fmt.Sprintf("GetWorkflowByName(%q)", name), func(i int, ids idMap) any {
			w, err := h.stores[i].GetWorkflowByName(ctx, name)
			if err != nil {
				return errClass(err)
			}
			return w.Name
		})
	}
}
