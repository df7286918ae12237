package storetest

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func (s *suite) testStore(t *testing.T) {
	s.test(t, "MigrateTwice", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		noErr(t, "Migrate on a migrated store", b.store.Migrate(b.ctx))
		noErr(t, "Migrate again", b.store.Migrate(b.ctx))
		got := b.getWorkflow(wf.ID)
		equal(t, "workflow kept across Migrate", got.Name, wf.Name)
		caps := b.store.Capabilities()
		equal(t, "capabilities are stable", caps, b.caps)
		b.store.Close() // the last call of this test: newStore's cleanup must tolerate it
	})

	s.test(t, "EmptyStore", func(t *testing.T, b *bundle) {
		ws, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		equal(t, "workflows in a new store", len(ws), 0)
		rs, err := b.store.ListRuns(b.ctx, 0)
		noErr(t, "ListRuns", err)
		equal(t, "runs in a new store", len(rs), 0)
		ps, err := b.store.PendingTasks(b.ctx, 10)
		noErr(t, "PendingTasks", err)
		equal(t, "pending tasks in a new store", len(ps), 0)
		cs, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 10})
		noErr(t, "ClaimTasks", err)
		equal(t, "claims in a new store", len(cs), 0)
		js, err := b.store.PendingDeferredJobs(b.ctx, 10)
		noErr(t, "PendingDeferredJobs", err)
		equal(t, "deferred jobs in a new store", len(js), 0)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "runs started in a new store", len(started), 0)
	})
}

func (s *suite) testWorkflows(t *testing.T) {
	s.test(t, "CreateGet", func(t *testing.T, b *bundle) {
		before := time.Now()
		w, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{
			Name: "etl", Description: "nightly", JobName: "etl-job", Region: "us-east1",
			Project: "p1", ExecutorType: "cloudrun", TaskParams: raw(`{"task_count": 4, "x": [1, 2]}`),
		})
		noErr(t, "CreateWorkflow", err)
		isTrue(t, "id > 0", w.ID > 0)
		for _, got := range []*orkstate.Workflow{w, b.getWorkflow(w.ID)} {
			equal(t, "Name", got.Name, "etl")
			equal(t, "Description", got.Description, "nightly")
			equal(t, "JobName", got.JobName, "etl-job")
			equal(t, "Region", got.Region, "us-east1")
			equal(t, "Project", got.Project, "p1")
			equal(t, "ExecutorType", got.ExecutorType, "cloudrun")
			jsonEqual(t, "TaskParams", got.TaskParams, raw(`{"x":[1,2],"task_count":4}`))
			equal(t, "Schedule", got.Schedule, "")
			equal(t, "ScheduleEnabled", got.ScheduleEnabled, false)
			isNil(t, "NextScheduledAt", got.NextScheduledAt)
			isNil(t, "LastScheduledAt", got.LastScheduledAt)
			isNil(t, "CurrentSnapshotID", got.CurrentSnapshotID)
			between(t, "CreatedAt", &got.CreatedAt, before, time.Now(), time.Second)
		}
		byName, err := b.store.GetWorkflowByName(b.ctx, "etl")
		noErr(t, "GetWorkflowByName", err)
		equal(t, "GetWorkflowByName id", byName.ID, w.ID)
	})

	s.test(t, "CreateWithSchedule", func(t *testing.T, b *bundle) {
		before := time.Now()
		w := b.workflow(func(n *orkstate.NewWorkflow) { n.Schedule = "*/5 * * * *" })
		got := b.getWorkflow(w.ID)
		equal(t, "Schedule", got.Schedule, "*/5 * * * *")
		equal(t, "ScheduleEnabled", got.ScheduleEnabled, true)
		lo, _ := orkstate.NextFireTime("*/5 * * * *", before.Add(-time.Second))
		hi, _ := orkstate.NextFireTime("*/5 * * * *", time.Now())
		between(t, "NextScheduledAt", got.NextScheduledAt, lo, hi, 0)
	})

	s.test(t, "QuotedName", func(t *testing.T, b *bundle) {
		for _, name := range []string{`it's "quoted"`, `x'); drop table workflows; --`, `back\slash`, "ünïcødé ✓", `100%_done`} {
			w := b.workflow(named(name))
			got, err := b.store.GetWorkflowByName(b.ctx, name)
			noErr(t, "GetWorkflowByName "+name, err)
			equal(t, "id by name "+name, got.ID, w.ID)
			equal(t, "name round trip", got.Name, name)
		}
		ws, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		equal(t, "workflow count", len(ws), 5)
	})

	s.test(t, "DuplicateName", func(t *testing.T, b *bundle) {
		w := b.workflow(named("dup"))
		_, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "dup", Description: "second"})
		errIs(t, "CreateWorkflow with a taken name", err, orkstate.ErrConflict)
		ws, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		equal(t, "workflow count", len(ws), 1)
		equal(t, "the first one stays", b.getWorkflow(w.ID).Description, "a test workflow")
	})

	s.test(t, "BadInput", func(t *testing.T, b *bundle) {
		cases := map[string]orkstate.NewWorkflow{
			"empty name":       {Name: ""},
			"invalid JSON":     {Name: "j", TaskParams: raw(`{"task_count": 3`)},
			"invalid schedule": {Name: "s", Schedule: "61 * * * *"},
			"garbage schedule": {Name: "g", Schedule: "every tuesday"},
		}
		for what, in := range cases {
			_, err := b.store.CreateWorkflow(b.ctx, in)
			isValidation(t, "CreateWorkflow with "+what, err)
		}
		ws, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		equal(t, "workflows after bad input", len(ws), 0)
	})

	s.test(t, "NotFound", func(t *testing.T, b *bundle) {
		b.workflow()
		_, err := b.store.GetWorkflow(b.ctx, unknownID)
		errIs(t, "GetWorkflow", err, orkstate.ErrNotFound)
		_, err = b.store.GetWorkflowByName(b.ctx, "nope")
		errIs(t, "GetWorkflowByName", err, orkstate.ErrNotFound)
		errIs(t, "DeleteWorkflow", b.store.DeleteWorkflow(b.ctx, unknownID), orkstate.ErrNotFound)
		_, err = b.store.CreateRun(b.ctx, unknownID, "test")
		errIs(t, "CreateRun", err, orkstate.ErrNotFound)
		_, err = b.store.ReplaceWorkflowTasks(b.ctx, unknownID, []orkstate.TaskSpec{{Name: "a"}})
		errIs(t, "ReplaceWorkflowTasks", err, orkstate.ErrNotFound)
		_, err = b.store.CreateSnapshot(b.ctx, unknownID, []orkstate.TaskSpec{{Name: "a"}})
		errIs(t, "CreateSnapshot", err, orkstate.ErrNotFound)
		errIs(t, "SetSchedule", b.store.SetSchedule(b.ctx, unknownID, "@hourly", true, time.Now()), orkstate.ErrNotFound)
		errIs(t, "SetScheduleTimes", b.store.SetScheduleTimes(b.ctx, unknownID, nil, nil), orkstate.ErrNotFound)
	})

	s.test(t, "GetByIDs", func(t *testing.T, b *bundle) {
		w1, w2, w3 := b.workflow(), b.workflow(), b.workflow()
		got, err := b.store.GetWorkflowsByIDs(b.ctx, []int64{w3.ID, unknownID, w1.ID})
		noErr(t, "GetWorkflowsByIDs", err)
		deepEqual(t, "ids in id order, unknown left out", workflowIDs(got), []int64{w1.ID, w3.ID})
		equal(t, "name", got[1].Name, w3.Name)
		got, err = b.store.GetWorkflowsByIDs(b.ctx, nil)
		noErr(t, "GetWorkflowsByIDs(nil)", err)
		equal(t, "no ids, no workflows", len(got), 0)
		got, err = b.store.GetWorkflowsByIDs(b.ctx, []int64{unknownID})
		noErr(t, "GetWorkflowsByIDs(unknown)", err)
		equal(t, "only unknown ids", len(got), 0)
		_ = w2
	})

	s.test(t, "ListOrderedByName", func(t *testing.T, b *bundle) {
		for _, n := range []string{"charlie", "alpha", "delta", "bravo"} {
			b.workflow(named(n))
		}
		ws, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		deepEqual(t, "names", workflowNames(ws), []string{"alpha", "bravo", "charlie", "delta"})
	})

	s.test(t, "DeleteCascades", func(t *testing.T, b *bundle) {
		keepWF := b.workflow()
		_, keepTasks := b.legacyRun(1)

		wf := b.workflow()
		_, err := b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}})
		noErr(t, "ReplaceWorkflowTasks", err)
		snap, err := b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a"}})
		noErr(t, "CreateSnapshot", err)
		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, wf.ID, snap.ID))
		r1 := b.run(wf)
		ts := b.addTasks(r1.ID, nt("a"), nt("b", "a"))
		noErr(t, "AppendTaskLog", b.store.AppendTaskLog(b.ctx, ts.id("a"), "hello"))
		j := b.job(ts.id("a"))
		r2 := b.run(wf)

		noErr(t, "DeleteWorkflow", b.store.DeleteWorkflow(b.ctx, wf.ID))

		_, err = b.store.GetWorkflow(b.ctx, wf.ID)
		errIs(t, "deleted workflow", err, orkstate.ErrNotFound)
		for _, id := range []int64{r1.ID, r2.ID} {
			_, err = b.store.GetRun(b.ctx, id)
			errIs(t, "run of deleted workflow", err, orkstate.ErrNotFound)
		}
		for _, id := range []int64{ts.id("a"), ts.id("b")} {
			_, err = b.store.GetTask(b.ctx, id)
			errIs(t, "task of deleted workflow", err, orkstate.ErrNotFound)
		}
		_, err = b.store.TaskLog(b.ctx, ts.id("a"))
		errIs(t, "log of deleted task", err, orkstate.ErrNotFound)
		_, err = b.store.GetDeferredJob(b.ctx, j.ID)
		errIs(t, "deferred job of deleted task", err, orkstate.ErrNotFound)
		_, err = b.store.GetSnapshot(b.ctx, snap.ID)
		errIs(t, "snapshot of deleted workflow", err, orkstate.ErrNotFound)
		rs, err := b.store.ListRuns(b.ctx, 0)
		noErr(t, "ListRuns", err)
		equal(t, "runs left", len(rs), 1)
		pj, err := b.store.PendingDeferredJobs(b.ctx, 10)
		noErr(t, "PendingDeferredJobs", err)
		equal(t, "deferred jobs left", len(pj), 0)

		// The other workflow and its run are untouched.
		equal(t, "other workflow", b.getWorkflow(keepWF.ID).Name, keepWF.Name)
		equal(t, "other task", b.taskStatus(keepTasks[0].ID), orkstate.TaskPending)
		errIs(t, "DeleteWorkflow twice", b.store.DeleteWorkflow(b.ctx, wf.ID), orkstate.ErrNotFound)
	})
}

func (s *suite) testWorkflowPages(t *testing.T) {
	s.test(t, "DefaultLimitAndTotal", func(t *testing.T, b *bundle) {
		for i := 0; i < 55; i++ {
			b.workflow(named(fmt.Sprintf("wf-%03d", i)))
		}
		p, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{})
		noErr(t, "ListWorkflowsPage", err)
		equal(t, "default page size", len(p.Workflows), orkstate.DefaultPageLimit)
		equal(t, "total", p.Total, 55)
		equal(t, "first", p.Workflows[0].Name, "wf-000")
		equal(t, "last of page", p.Workflows[49].Name, "wf-049")

		p, err = b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: 10, Offset: 50})
		noErr(t, "ListWorkflowsPage offset 50", err)
		deepEqual(t, "tail page", workflowNames(p.Workflows), []string{"wf-050", "wf-051", "wf-052", "wf-053", "wf-054"})
		equal(t, "total with offset", p.Total, 55)

		p, err = b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: 10, Offset: 100})
		noErr(t, "ListWorkflowsPage past the end", err)
		equal(t, "page past the end", len(p.Workflows), 0)
		equal(t, "total past the end", p.Total, 55)

		p, err = b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: orkstate.MaxPageLimit})
		noErr(t, "ListWorkflowsPage at the max limit", err)
		equal(t, "max limit page", len(p.Workflows), 55)
	})

	s.test(t, "PagesConcatenate", func(t *testing.T, b *bundle) {
		var want []string
		for i := 0; i < 23; i++ {
			n := fmt.Sprintf("n%02d-%c", (i*7)%23, 'a'+rune(i%26))
			want = append(want, n)
			b.workflow(named(n))
		}
		sort.Strings(want)
		var got []string
		for off := 0; off < 30; off += 5 {
			p, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: 5, Offset: off})
			noErr(t, "ListWorkflowsPage", err)
			equal(t, "total", p.Total, 23)
			got = append(got, workflowNames(p.Workflows)...)
		}
		deepEqual(t, "pages in name order", got, want)
	})

	s.test(t, "BadBounds", func(t *testing.T, b *bundle) {
		b.workflow()
		_, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: -1})
		isValidation(t, "negative limit", err)
		_, err = b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Offset: -1})
		isValidation(t, "negative offset", err)
		// Above the maximum: the doc says "max 1,000"; either a validation error or a
		// page capped at 1,000 honours it.
		p, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Limit: orkstate.MaxPageLimit + 1})
		if err != nil {
			isValidation(t, "limit above the maximum", err)
		} else {
			isTrue(t, "page within the maximum", len(p.Workflows) <= orkstate.MaxPageLimit)
		}
	})

	s.test(t, "SearchLiteral", func(t *testing.T, b *bundle) {
		names := []string{
			"100%_done", "100x_done", "100%xdone", "1000done",
			"a_b", "axb", `back\slash`, "backslash", `it's`, "its",
			"Nightly-ETL", "nightly-report", "weekly",
		}
		for _, n := range names {
			b.workflow(named(n))
		}
		cases := []struct {
			search string
			want   []string
		}{
			{"%", []string{"100%_done", "100%xdone"}},
			{"_", []string{"100%_done", "100x_done", "a_b"}},
			{"%_", []string{"100%_done"}},
			{"a_b", []string{"a_b"}},
			{`\`, []string{`back\slash`}},
			{`k\s`, []string{`back\slash`}},
			{`'`, []string{`it's`}},
			{"NIGHTLY", []string{"Nightly-ETL", "nightly-report"}},
			{"etl", []string{"Nightly-ETL"}},
			{"", names},
			{"nothing-like-this", nil},
		}
		for _, c := range cases {
			p, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Search: c.search})
			noErr(t, "search "+c.search, err)
			want := append([]string(nil), c.want...)
			sort.Strings(want)
			strs(t, fmt.Sprintf("search %q", c.search), workflowNames(p.Workflows), want)
			equal(t, fmt.Sprintf("total for %q", c.search), p.Total, len(want))
		}
		p, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Search: "_", Limit: 1, Offset: 1})
		noErr(t, "search page", err)
		strs(t, "second match of _", workflowNames(p.Workflows), []string{"100x_done"})
		equal(t, "total of a search page", p.Total, 3)
	})
}

func (s *suite) testWorkflowTasks(t *testing.T) {
	dag := []orkstate.TaskSpec{
		{Name: "extract", ExecutorType: "cloudrun", Params: raw(`{"src":"s3"}`), MaxRetries: 2, TimeoutSeconds: 30},
		{Name: "transform", ExecutorType: "dataproc", DependsOn: []string{"extract"}, Signature: raw(`{"v":1}`)},
		{Name: "load", ExecutorType: "bigquery", DependsOn: []string{"transform", "extract"}},
	}

	s.test(t, "ReplaceList", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		got, err := b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, dag)
		noErr(t, "ReplaceWorkflowTasks", err)
		listed, err := b.store.ListWorkflowTasks(b.ctx, wf.ID)
		noErr(t, "ListWorkflowTasks", err)
		for _, ws := range [][]orkstate.WorkflowTask{got, listed} {
			equal(t, "count", len(ws), 3)
			for i, w := range ws {
				equal(t, "index", w.TaskIndex, i)
				equal(t, "workflow id", w.WorkflowID, wf.ID)
				equal(t, "name", w.Name, dag[i].Name)
				equal(t, "executor type", w.ExecutorType, dag[i].ExecutorType)
				strs(t, "depends_on of "+w.Name, w.DependsOn, dag[i].DependsOn)
				jsonEqual(t, "params of "+w.Name, w.Params, dag[i].Params)
				jsonEqual(t, "signature of "+w.Name, w.Signature, dag[i].Signature)
				equal(t, "max retries of "+w.Name, w.MaxRetries, dag[i].MaxRetries)
				equal(t, "timeout of "+w.Name, w.TimeoutSeconds, dag[i].TimeoutSeconds)
			}
		}

		// Replacing drops what is not in the new DAG.
		got, err = b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "only"}})
		noErr(t, "ReplaceWorkflowTasks again", err)
		equal(t, "replaced count", len(got), 1)
		listed, err = b.store.ListWorkflowTasks(b.ctx, wf.ID)
		noErr(t, "ListWorkflowTasks", err)
		equal(t, "listed after replace", len(listed), 1)
		equal(t, "listed name", listed[0].Name, "only")

		// An empty DAG is a valid replacement: it clears the compiled tasks.
		got, err = b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, nil)
		noErr(t, "ReplaceWorkflowTasks(nil)", err)
		equal(t, "empty replace", len(got), 0)
		listed, err = b.store.ListWorkflowTasks(b.ctx, wf.ID)
		noErr(t, "ListWorkflowTasks", err)
		equal(t, "listed after empty replace", len(listed), 0)
	})

	s.test(t, "InvalidKeepsOld", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		_, err := b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, dag)
		noErr(t, "ReplaceWorkflowTasks", err)
		bad := map[string][]orkstate.TaskSpec{
			"unknown dependency": {{Name: "a"}, {Name: "b", DependsOn: []string{"ghost"}}},
			"cycle":              {{Name: "a", DependsOn: []string{"c"}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"b"}}},
			"self cycle":         {{Name: "a", DependsOn: []string{"a"}}},
			"duplicate name":     {{Name: "a"}, {Name: "a"}},
			"empty name":         {{Name: ""}},
			"invalid JSON":       {{Name: "a", Params: raw(`{"x":`)}},
			"negative retries":   {{Name: "a", MaxRetries: -1}},
		}
		for what, specs := range bad {
			_, err := b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, specs)
			isValidation(t, "ReplaceWorkflowTasks with "+what, err)
			listed, err := b.store.ListWorkflowTasks(b.ctx, wf.ID)
			noErr(t, "ListWorkflowTasks", err)
			equal(t, "tasks kept after "+what, len(listed), 3)
			equal(t, "first kept after "+what, listed[0].Name, "extract")
		}
		_, err = b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"ghost"}}})
		contains(t, "unknown dependency error names it", err.Error(), "ghost")
	})
}

func (s *suite) testSnapshots(t *testing.T) {
	specs := []orkstate.TaskSpec{{Name: "a", ExecutorType: "e"}, {Name: "b", DependsOn: []string{"a"}, MaxRetries: 1}}

	s.test(t, "CreateByHash", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		s1, err := b.store.CreateSnapshot(b.ctx, wf.ID, specs)
		noErr(t, "CreateSnapshot", err)
		hash, _ := orkstate.ContentHash(specs)
		equal(t, "content hash", s1.ContentHash, hash)
		equal(t, "workflow id", s1.WorkflowID, wf.ID)
		equal(t, "task count", len(s1.Tasks), 2)

		s2, err := b.store.CreateSnapshot(b.ctx, wf.ID, specs)
		noErr(t, "CreateSnapshot same DAG", err)
		equal(t, "same DAG, same snapshot", s2.ID, s1.ID)

		s3, err := b.store.CreateSnapshot(b.ctx, wf.ID, specs[:1])
		noErr(t, "CreateSnapshot other DAG", err)
		isTrue(t, "other DAG, new snapshot", s3.ID != s1.ID)

		// A second workflow with the same DAG has its own snapshot.
		wf2 := b.workflow()
		s4, err := b.store.CreateSnapshot(b.ctx, wf2.ID, specs)
		noErr(t, "CreateSnapshot other workflow", err)
		isTrue(t, "other workflow, new snapshot", s4.ID != s1.ID)
		equal(t, "its workflow", s4.WorkflowID, wf2.ID)

		isNil(t, "CreateSnapshot does not make it current", b.getWorkflow(wf.ID).CurrentSnapshotID)

		got, err := b.store.GetSnapshot(b.ctx, s1.ID)
		noErr(t, "GetSnapshot", err)
		equal(t, "hash", got.ContentHash, hash)
		equal(t, "tasks", len(got.Tasks), 2)
		equal(t, "task 0", got.Tasks[0].Name, "a")
		equal(t, "task 0 executor", got.Tasks[0].ExecutorType, "e")
		strs(t, "task 1 deps", got.Tasks[1].DependsOn, []string{"a"})
		equal(t, "task 1 retries", got.Tasks[1].MaxRetries, 1)

		_, err = b.store.GetSnapshot(b.ctx, unknownID)
		errIs(t, "GetSnapshot unknown", err, orkstate.ErrNotFound)
	})

	s.test(t, "InvalidDAG", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		_, err := b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a", DependsOn: []string{"b"}}, {Name: "b", DependsOn: []string{"a"}}})
		isValidation(t, "cycle", err)
		_, err = b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a", DependsOn: []string{"zz"}}})
		isValidation(t, "unknown dependency", err)
		// Nothing was stored: a valid snapshot gets the first fresh id path and
		// the workflow still has no current snapshot.
		isNil(t, "no current snapshot", b.getWorkflow(wf.ID).CurrentSnapshotID)
	})

	s.test(t, "SetCurrent", func(t *testing.T, b *bundle) {
		wf, other := b.workflow(), b.workflow()
		s1, err := b.store.CreateSnapshot(b.ctx, wf.ID, specs)
		noErr(t, "CreateSnapshot", err)
		sOther, err := b.store.CreateSnapshot(b.ctx, other.ID, specs[:1])
		noErr(t, "CreateSnapshot other", err)

		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, wf.ID, s1.ID))
		cur := b.getWorkflow(wf.ID).CurrentSnapshotID
		notNil(t, "current snapshot", cur)
		equal(t, "current snapshot", *cur, s1.ID)

		err = b.store.SetCurrentSnapshot(b.ctx, wf.ID, sOther.ID)
		isTrue(t, "another workflow's snapshot is refused", err != nil)
		equal(t, "current unchanged", *b.getWorkflow(wf.ID).CurrentSnapshotID, s1.ID)

		errIs(t, "unknown snapshot", b.store.SetCurrentSnapshot(b.ctx, wf.ID, unknownID), orkstate.ErrNotFound)
		errIs(t, "unknown workflow", b.store.SetCurrentSnapshot(b.ctx, unknownID, s1.ID), orkstate.ErrNotFound)
		equal(t, "current still unchanged", *b.getWorkflow(wf.ID).CurrentSnapshotID, s1.ID)
	})

	s.test(t, "RunCapturesSnapshot", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		r0, err := b.store.CreateRun(b.ctx, wf.ID, "manual")
		noErr(t, "CreateRun", err)
		isNil(t, "no snapshot, none captured", r0.SnapshotID)

		s1, err := b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "one"}})
		noErr(t, "CreateSnapshot", err)
		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, wf.ID, s1.ID))
		r1, err := b.store.CreateRun(b.ctx, wf.ID, "manual")
		noErr(t, "CreateRun", err)
		s2, err := b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "two-a"}, {Name: "two-b"}})
		noErr(t, "CreateSnapshot", err)
		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, wf.ID, s2.ID))
		r2, err := b.store.CreateRun(b.ctx, wf.ID, "manual")
		noErr(t, "CreateRun", err)

		notNil(t, "r1 snapshot", r1.SnapshotID)
		equal(t, "r1 keeps the snapshot current at its creation", *b.getRun(r1.ID).SnapshotID, s1.ID)
		equal(t, "r2 snapshot", *b.getRun(r2.ID).SnapshotID, s2.ID)

		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "runs started", len(started), 3)
		var names []string
		for _, tk := range b.listTasks(r1.ID) {
			names = append(names, tk.TaskName)
		}
		strs(t, "r1 tasks from s1", names, []string{"one"})
		names = nil
		for _, tk := range b.listTasks(r2.ID) {
			names = append(names, tk.TaskName)
		}
		strs(t, "r2 tasks from s2", names, []string{"two-a", "two-b"})
		equal(t, "r0 falls back to legacy tasks", len(b.listTasks(r0.ID)), 3)
	})
}
