package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func (s *suite) testCreateTasks(t *testing.T) {
	s.test(t, "Legacy", func(t *testing.T, b *bundle) {
		r := b.run()
		before := time.Now()
		ts, err := b.store.CreateTasks(b.ctx, r.ID, 3, "cloudrun", raw(`{"a":1}`))
		noErr(t, "CreateTasks", err)
		equal(t, "count", len(ts), 3)
		for i, tk := range ts {
			equal(t, "run", tk.RunID, r.ID)
			equal(t, "index", tk.TaskIndex, i)
			equal(t, "name", tk.TaskName, fmt.Sprintf("task_%d", i))
			equal(t, "executor", tk.ExecutorType, "cloudrun")
			jsonEqual(t, "params", tk.Params, raw(`{"a":1}`))
			equal(t, "status", tk.Status, orkstate.TaskPending)
			equal(t, "attempts", tk.Attempts, 0)
			equal(t, "unmet", tk.UnmetDeps, 0)
			strs(t, "deps", tk.DependsOn, nil)
		}
		got := b.getRun(r.ID)
		equal(t, "run moved to running", got.Status, orkstate.RunRunning)
		between(t, "run started at", got.StartedAt, before, time.Now(), time.Second)

		// Idempotent per index: asking for 5 keeps the first 3 and adds 2.
		again, err := b.store.CreateTasks(b.ctx, r.ID, 5, "cloudrun", nil)
		noErr(t, "CreateTasks again", err)
		equal(t, "count", len(again), 5)
		deepEqual(t, "first three are the same rows", tasksIDs(again[:3]), tasksIDs(ts))
		equal(t, "stored", len(b.listTasks(r.ID)), 5)
		equal(t, "last name", again[4].TaskName, "task_4")
	})

	s.test(t, "LegacyBadInput", func(t *testing.T, b *bundle) {
		r := b.run()
		_, err := b.store.CreateTasks(b.ctx, r.ID, -1, "e", nil)
		isValidation(t, "negative count", err)
		_, err = b.store.CreateTasks(b.ctx, r.ID, 2, "e", raw(`{"a":`))
		isValidation(t, "invalid JSON params", err)
		equal(t, "no tasks", len(b.listTasks(r.ID)), 0)
		equal(t, "run still pending", b.runStatus(r.ID), orkstate.RunPending)
		_, err = b.store.CreateTasks(b.ctx, unknownID, 2, "e", nil)
		errIs(t, "unknown run", err, orkstate.ErrNotFound)
	})

	s.test(t, "DAG", func(t *testing.T, b *bundle) {
		r := b.run()
		ts, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{
			{TaskIndex: 2, TaskName: "c", ExecutorType: "e", DependsOn: []string{"a", "b"}, MaxRetries: 3, TimeoutSeconds: 9},
			{TaskIndex: 0, TaskName: "a", ExecutorType: "e", Params: raw(`{"p":"a"}`)},
			{TaskIndex: 1, TaskName: "b", ExecutorType: "e", DependsOn: []string{"a"}},
		})
		noErr(t, "CreateDAGTasks", err)
		equal(t, "count", len(ts), 3)
		for i, n := range []string{"a", "b", "c"} {
			equal(t, "index order", ts[i].TaskName, n)
			equal(t, "index", ts[i].TaskIndex, i)
			equal(t, "status", ts[i].Status, orkstate.TaskPending)
		}
		equal(t, "a unmet", ts[0].UnmetDeps, 0)
		equal(t, "b unmet", ts[1].UnmetDeps, 1)
		equal(t, "c unmet", ts[2].UnmetDeps, 2)
		strs(t, "c deps", ts[2].DependsOn, []string{"a", "b"})
		equal(t, "c retries", ts[2].MaxRetries, 3)
		equal(t, "c timeout", ts[2].TimeoutSeconds, 9)
		jsonEqual(t, "a params", ts[0].Params, raw(`{"p":"a"}`))
		equal(t, "run running", b.runStatus(r.ID), orkstate.RunRunning)
		deepEqual(t, "listed", tasksIDs(b.listTasks(r.ID)), tasksIDs(ts))
	})

	s.test(t, "DAGIdempotent", func(t *testing.T, b *bundle) {
		r := b.run()
		first := b.addTasks(r.ID, nt("a"), nt("b", "a"))
		// Same index, other name; same name, other index; and one new task that
		// depends on a task created by the earlier call.
		got, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{
			{TaskIndex: 0, TaskName: "renamed", ExecutorType: "e"},
			{TaskIndex: 7, TaskName: "b", ExecutorType: "e"},
			{TaskIndex: 2, TaskName: "c", ExecutorType: "e", DependsOn: []string{"b"}},
		})
		noErr(t, "CreateDAGTasks again", err)
		var gotNames []string
		for _, g := range got {
			gotNames = append(gotNames, fmt.Sprintf("%d:%s", g.TaskIndex, g.TaskName))
		}
		strs(t, "one row per input, in index order", gotNames, []string{"0:a", "1:b", "2:c"})
		equal(t, "existing (run,index) returned", got[0].ID, first.id("a"))
		equal(t, "existing (run,name) returned", got[1].ID, first.id("b"))
		equal(t, "new task unmet (b not done)", got[2].UnmetDeps, 1)
		equal(t, "stored", len(b.listTasks(r.ID)), 3)

		// A dependency that already succeeded does not count as unmet.
		b.succeed(first.id("a"))
		more := b.addTasks(r.ID, orkstate.NewTask{TaskIndex: 3, TaskName: "d", DependsOn: []string{"a"}})
		equal(t, "d unmet (a succeeded)", more["d"].UnmetDeps, 0)
		isTrue(t, "d dispatchable", containsID(b.dispatchable(), more.id("d")))
	})

	s.test(t, "DAGBadInputCreatesNothing", func(t *testing.T, b *bundle) {
		r := b.run()
		cases := map[string][]orkstate.NewTask{
			"unknown dependency": {{TaskIndex: 0, TaskName: "a"}, {TaskIndex: 1, TaskName: "b", DependsOn: []string{"ghost"}}},
			"cycle":              {{TaskIndex: 0, TaskName: "a", DependsOn: []string{"b"}}, {TaskIndex: 1, TaskName: "b", DependsOn: []string{"a"}}},
			"self dependency":    {{TaskIndex: 0, TaskName: "a", DependsOn: []string{"a"}}},
			"duplicate names":    {{TaskIndex: 0, TaskName: "a"}, {TaskIndex: 1, TaskName: "a"}},
			"empty name":         {{TaskIndex: 0, TaskName: ""}},
			"negative index":     {{TaskIndex: -1, TaskName: "a"}},
			"negative retries":   {{TaskIndex: 0, TaskName: "a", MaxRetries: -1}},
			"negative timeout":   {{TaskIndex: 0, TaskName: "a", TimeoutSeconds: -1}},
			"invalid JSON":       {{TaskIndex: 0, TaskName: "a", Params: raw(`{"x"}`)}},
		}
		for what, in := range cases {
			_, err := b.store.CreateDAGTasks(b.ctx, r.ID, in)
			isValidation(t, "CreateDAGTasks with "+what, err)
			equal(t, "tasks after "+what, len(b.listTasks(r.ID)), 0)
			equal(t, "run after "+what, b.runStatus(r.ID), orkstate.RunPending)
		}
		_, err := b.store.CreateDAGTasks(b.ctx, r.ID, cases["unknown dependency"])
		contains(t, "error names the task", err.Error(), "b")
		contains(t, "error names the dependency", err.Error(), "ghost")
	})

	s.test(t, "DAGEmptyInput", func(t *testing.T, b *bundle) {
		r := b.run()
		got, err := b.store.CreateDAGTasks(b.ctx, r.ID, nil)
		noErr(t, "CreateDAGTasks(nil)", err)
		equal(t, "no tasks returned", len(got), 0)
		equal(t, "no tasks stored", len(b.listTasks(r.ID)), 0)
	})

	s.test(t, "DAGRunStates", func(t *testing.T, b *bundle) {
		_, err := b.store.CreateDAGTasks(b.ctx, unknownID, []orkstate.NewTask{{TaskName: "a"}})
		errIs(t, "unknown run", err, orkstate.ErrNotFound)
		for _, end := range []orkstate.RunStatus{orkstate.RunSuccess, orkstate.RunFailed, orkstate.RunCancelled} {
			r := b.run()
			if end == orkstate.RunCancelled {
				noErr(t, "CancelRun", b.store.CancelRun(b.ctx, r.ID))
			} else {
				noErr(t, "UpdateRunStatus", b.store.UpdateRunStatus(b.ctx, r.ID, end, ""))
			}
			_, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskName: "a"}})
			errIs(t, "CreateDAGTasks on a "+string(end)+" run", err, orkstate.ErrInvalidTransition)
			_, err = b.store.CreateTasks(b.ctx, r.ID, 1, "e", nil)
			errIs(t, "CreateTasks on a "+string(end)+" run", err, orkstate.ErrInvalidTransition)
			equal(t, "no tasks", len(b.listTasks(r.ID)), 0)
			equal(t, "run unchanged", b.runStatus(r.ID), end)
		}
	})
}

func (s *suite) testTaskReads(t *testing.T) {
	s.test(t, "NotFound", func(t *testing.T, b *bundle) {
		b.legacyRun(1)
		_, err := b.store.GetTask(b.ctx, unknownID)
		errIs(t, "GetTask", err, orkstate.ErrNotFound)
		_, err = b.store.UpstreamOutputs(b.ctx, unknownID)
		errIs(t, "UpstreamOutputs", err, orkstate.ErrNotFound)
		_, err = b.store.TaskRetryInfo(b.ctx, unknownID)
		errIs(t, "TaskRetryInfo", err, orkstate.ErrNotFound)
		_, err = b.store.TaskIdentity(b.ctx, unknownID)
		errIs(t, "TaskIdentity", err, orkstate.ErrNotFound)
		errIs(t, "SetTaskOutput", b.store.SetTaskOutput(b.ctx, unknownID, raw(`{}`)), orkstate.ErrNotFound)
		errIs(t, "RetryTask", b.store.RetryTask(b.ctx, unknownID), orkstate.ErrNotFound)
		_, err = b.store.FailDependentTasks(b.ctx, unknownID)
		errIs(t, "FailDependentTasks", err, orkstate.ErrNotFound)
		errIs(t, "AppendTaskLog", b.store.AppendTaskLog(b.ctx, unknownID, "x"), orkstate.ErrNotFound)
		_, err = b.store.TaskLog(b.ctx, unknownID)
		errIs(t, "TaskLog", err, orkstate.ErrNotFound)
		_, err = b.store.UpdateTaskStatus(b.ctx, upd(unknownID, orkstate.TaskRunning, 0))
		errIs(t, "UpdateTaskStatus", err, orkstate.ErrNotFound)
		_, err = b.store.CreateDeferredJobs(b.ctx, unknownID, []orkstate.NewDeferredJob{{ServiceType: "s", JobID: "j"}})
		errIs(t, "CreateDeferredJobs", err, orkstate.ErrNotFound)
		_, err = b.store.CancelDeferredJobsForTask(b.ctx, unknownID)
		errIs(t, "CancelDeferredJobsForTask", err, orkstate.ErrNotFound)
	})

	s.test(t, "PendingRunningLists", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("t0"), nt("t1"), nt("t2"), nt("t3"), nt("t4"), nt("t5"))
		b.drive(ts.id("t1"), orkstate.TaskDispatched)
		b.drive(ts.id("t2"), orkstate.TaskRunning)
		b.drive(ts.id("t3"), orkstate.TaskSuccess)
		b.drive(ts.id("t5"), orkstate.TaskPaused)

		p, err := b.store.PendingTasks(b.ctx, 10)
		noErr(t, "PendingTasks", err)
		deepEqual(t, "pending in id order", tasksIDs(p), []int64{ts.id("t0"), ts.id("t4")})
		p, err = b.store.PendingTasks(b.ctx, 1)
		noErr(t, "PendingTasks(1)", err)
		deepEqual(t, "pending limit 1", tasksIDs(p), []int64{ts.id("t0")})

		rn, err := b.store.RunningTasks(b.ctx, 10)
		noErr(t, "RunningTasks", err)
		deepEqual(t, "dispatched and running, id order", tasksIDs(rn), []int64{ts.id("t1"), ts.id("t2")})
		rn, err = b.store.RunningTasks(b.ctx, 1)
		noErr(t, "RunningTasks(1)", err)
		deepEqual(t, "running limit 1", tasksIDs(rn), []int64{ts.id("t1")})

		for _, lim := range []int{0, -1} {
			_, err = b.store.PendingTasks(b.ctx, lim)
			isValidation(t, fmt.Sprintf("PendingTasks(%d)", lim), err)
			_, err = b.store.RunningTasks(b.ctx, lim)
			isValidation(t, fmt.Sprintf("RunningTasks(%d)", lim), err)
			_, err = b.store.DispatchableTasks(b.ctx, lim)
			isValidation(t, fmt.Sprintf("DispatchableTasks(%d)", lim), err)
		}
	})

	s.test(t, "Dispatchable", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c"), nt("d"), withRetries(nt("e"), 3), nt("f"))
		b.drive(ts.id("c"), orkstate.TaskPaused)
		b.drive(ts.id("d"), orkstate.TaskDispatched)
		b.fail(ts.id("e"), "boom", orkstate.OutcomeRetrying) // retry_at in the future
		got, err := b.store.DispatchableTasks(b.ctx, 10)
		noErr(t, "DispatchableTasks", err)
		deepEqual(t, "only ready tasks, id order", tasksIDs(got), []int64{ts.id("a"), ts.id("f")})
		got, err = b.store.DispatchableTasks(b.ctx, 1)
		noErr(t, "DispatchableTasks(1)", err)
		deepEqual(t, "limit 1", tasksIDs(got), []int64{ts.id("a")})
		equal(t, "listing claims nothing", b.taskStatus(ts.id("a")), orkstate.TaskPending)
	})

	s.test(t, "Outputs", func(t *testing.T, b *bundle) {
		_, ts := b.dagRun(nt("a"), nt("b"), nt("c", "a", "b"), nt("lone"))
		noErr(t, "SetTaskOutput", b.store.SetTaskOutput(b.ctx, ts.id("a"), raw(`{"rows": 10}`)))
		jsonEqual(t, "stored output", b.getTask(ts.id("a")).Output, raw(`{"rows":10}`))
		noErr(t, "SetTaskOutput replaces", b.store.SetTaskOutput(b.ctx, ts.id("a"), raw(`{"rows": 12}`)))
		isValidation(t, "invalid JSON output", b.store.SetTaskOutput(b.ctx, ts.id("a"), raw(`{"rows":`)))
		jsonEqual(t, "output after bad input", b.getTask(ts.id("a")).Output, raw(`{"rows":12}`))

		up, err := b.store.UpstreamOutputs(b.ctx, ts.id("c"))
		noErr(t, "UpstreamOutputs", err)
		equal(t, "one entry per dependency", len(up), 2)
		jsonEqual(t, "a's output", up["a"], raw(`{"rows":12}`))
		jsonEqual(t, "b stored none", up["b"], nil)
		_, hasB := up["b"]
		isTrue(t, "b is named even without output", hasB)

		up, err = b.store.UpstreamOutputs(b.ctx, ts.id("lone"))
		noErr(t, "UpstreamOutputs without deps", err)
		equal(t, "no deps, no outputs", len(up), 0)
	})

	s.test(t, "RetryInfoIdentity", func(t *testing.T, b *bundle) {
		wf := b.workflow(named("ident-wf"))
		r := b.run(wf)
		ts := b.addTasks(r.ID, nt("x"), withTimeout(withRetries(nt("y"), 4), 30))
		info, err := b.store.TaskRetryInfo(b.ctx, ts.id("y"))
		noErr(t, "TaskRetryInfo", err)
		deepEqual(t, "retry info", *info, orkstate.RetryInfo{Attempts: 0, MaxRetries: 4, TimeoutSeconds: 30})

		before := time.Now()
		b.fail(ts.id("y"), "boom", orkstate.OutcomeRetrying)
		info, err = b.store.TaskRetryInfo(b.ctx, ts.id("y"))
		noErr(t, "TaskRetryInfo", err)
		equal(t, "attempts", info.Attempts, 1)
		between(t, "retry at", info.RetryAt, before.Add(orkstate.RetryBackoff(1)), time.Now().Add(orkstate.RetryBackoff(1)), 250*time.Millisecond)

		id, err := b.store.TaskIdentity(b.ctx, ts.id("y"))
		noErr(t, "TaskIdentity", err)
		deepEqual(t, "identity", *id, orkstate.TaskIdentity{
			TaskID: ts.id("y"), RunID: r.ID, TaskIndex: 1, TaskName: "y", WorkflowID: wf.ID, WorkflowName: "ident-wf",
		})
	})
}
