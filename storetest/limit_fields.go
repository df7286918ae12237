package storetest

import (
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// A task's priority, its override and its key, as reads report them and as
// ImportRun keeps them (docs/semantics.md, "Importing runs").
func (s *suite) testLimitFields(t *testing.T) {
	s.test(t, "TasksReportPriorityAndKey", func(t *testing.T, b *bundle) {
		noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "gpu", 3))
		wf := b.workflow()
		b.setLimits(wf.ID, orkstate.WorkflowLimits{Priority: 4})
		r := b.run(wf)
		ts := b.addTasks(r.ID, prioTask("own", ptr(-2), "gpu"), prioTask("follows", nil, ""))
		for _, c := range []struct {
			name     string
			priority int
			override *int
			key      string
		}{{"own", -2, ptr(-2), "gpu"}, {"follows", 4, nil, ""}} {
			k, err := b.store.GetTask(b.ctx, ts.id(c.name))
			noErr(t, "GetTask", err)
			equal(t, c.name+" priority", k.Priority, c.priority)
			deepEqual(t, c.name+" priority override", k.PriorityOverride, c.override)
			equal(t, c.name+" key", k.ConcurrencyKey, c.key)
		}
		list, err := b.store.ListTasks(b.ctx, r.ID)
		noErr(t, "ListTasks", err)
		equal(t, "ListTasks: own's key", list[0].ConcurrencyKey, "gpu")
		equal(t, "ListTasks: follows' priority", list[1].Priority, 4)
	})

	s.test(t, "ImportRunKeepsPriorityKeyAndSlots", func(t *testing.T, b *bundle) {
		imp, ok := b.store.(orkstate.RunImporter)
		if !ok {
			t.Skip("the store does not implement RunImporter")
		}
		noErr(t, "SetConcurrencyKey", b.store.SetConcurrencyKey(b.ctx, "gpu", 1))
		wf := b.workflow()
		now := time.Now().UTC().Truncate(time.Microsecond)
		lease := now.Add(time.Hour)
		run := orkstate.Run{WorkflowID: wf.ID, Status: orkstate.RunRunning, CreatedAt: now, StartedAt: &now}
		tasks := []orkstate.Task{
			{ID: 1, TaskIndex: 0, TaskName: "busy", ExecutorType: "p", Status: orkstate.TaskDispatched, Attempts: 1,
				ClaimedBy: "elsewhere", LeaseExpiresAt: &lease, DispatchedAt: &now, CreatedAt: now,
				Priority: 9, PriorityOverride: ptr(9), ConcurrencyKey: "gpu"},
			{ID: 2, TaskIndex: 1, TaskName: "waiting", ExecutorType: "p", Status: orkstate.TaskPending, CreatedAt: now,
				Priority: 6, ConcurrencyKey: "gpu"},
			{ID: 3, TaskIndex: 2, TaskName: "free", ExecutorType: "p", Status: orkstate.TaskPending, CreatedAt: now,
				Priority: -1},
		}
		// Refused, and nothing written: an unknown key, a priority out of bounds, one
		// that differs from its override.
		for what, edit := range map[string]func(k *orkstate.Task){
			"unknown key":         func(k *orkstate.Task) { k.ConcurrencyKey = "nope" },
			"absurd priority":     func(k *orkstate.Task) { k.Priority = 5000 },
			"override differs":    func(k *orkstate.Task) { k.PriorityOverride = ptr(1) },
			"key with spaces":     func(k *orkstate.Task) { k.ConcurrencyKey = " gpu " },
			"absurd override too": func(k *orkstate.Task) { k.Priority, k.PriorityOverride = -2000, ptr(-2000) },
		} {
			bad := append([]orkstate.Task(nil), tasks...)
			edit(&bad[2])
			_, err := imp.ImportRun(b.ctx, orkstate.RunImport{Run: run, Tasks: bad})
			isValidation(t, "ImportRun with "+what, err)
		}
		runs, err := b.store.ListRuns(b.ctx, wf.ID)
		noErr(t, "ListRuns", err)
		equal(t, "runs after refused imports", len(runs), 0)

		out, err := imp.ImportRun(b.ctx, orkstate.RunImport{Run: run, Tasks: tasks})
		noErr(t, "ImportRun", err)
		for _, want := range tasks {
			k, err := b.store.GetTask(b.ctx, out.Tasks[want.ID])
			noErr(t, "GetTask", err)
			equal(t, want.TaskName+" priority", k.Priority, want.Priority)
			deepEqual(t, want.TaskName+" priority override", k.PriorityOverride, want.PriorityOverride)
			equal(t, want.TaskName+" key", k.ConcurrencyKey, want.ConcurrencyKey)
		}
		// busy holds gpu's one slot: waiting (priority 6) stays, free goes.
		equal(t, "gpu in flight after the import", b.keyInFlight("gpu"), 1)
		deepEqual(t, "claimed after the import", claimedIDs(b.claimN(10)), []int64{out.Tasks[3]})
		// busy's claimer reports a failure: the slot is given back, and waiting goes.
		b.reportOK(orkstate.TaskUpdate{TaskID: out.Tasks[1], Status: orkstate.TaskFailed, Attempt: 1}, orkstate.OutcomeApplied)
		equal(t, "gpu in flight after busy failed", b.keyInFlight("gpu"), 0)
		deepEqual(t, "claimed after busy failed", claimedIDs(b.claimN(10)), []int64{out.Tasks[2]})
	})
}
