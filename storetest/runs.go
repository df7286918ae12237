package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func (s *suite) testRuns(t *testing.T) {
	s.test(t, "CreateGet", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		before := time.Now()
		r, err := b.store.CreateRun(b.ctx, wf.ID, "api")
		noErr(t, "CreateRun", err)
		for _, got := range []*orkstate.Run{r, b.getRun(r.ID)} {
			isTrue(t, "id > 0", got.ID > 0)
			equal(t, "workflow id", got.WorkflowID, wf.ID)
			equal(t, "status", got.Status, orkstate.RunPending)
			equal(t, "triggered by", got.TriggeredBy, "api")
			equal(t, "error", got.Error, "")
			between(t, "created at", &got.CreatedAt, before, time.Now(), time.Second)
			isNil(t, "started at", got.StartedAt)
			isNil(t, "finished at", got.FinishedAt)
		}
		_, err = b.store.GetRun(b.ctx, unknownID)
		errIs(t, "GetRun unknown", err, orkstate.ErrNotFound)
	})

	s.test(t, "CreateRunsIsNCreateRuns", func(t *testing.T, b *bundle) {
		// A workflow with a snapshot of two tasks, one with none (legacy tasks).
		dag := b.workflow()
		snap, err := b.store.CreateSnapshot(b.ctx, dag.ID, []orkstate.TaskSpec{
			{Name: "a", ExecutorType: "e", DependsOn: []string{}}, {Name: "b", ExecutorType: "e", DependsOn: []string{"a"}}})
		noErr(t, "CreateSnapshot", err)
		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, dag.ID, snap.ID))
		legacy := b.workflow()
		in := []orkstate.NewRun{nr(dag.ID, "api"), nr(legacy.ID, ""), nr(dag.ID, "batch")}

		var one []orkstate.Run
		for _, n := range in {
			r, err := b.store.CreateRun(b.ctx, n.WorkflowID, n.TriggeredBy)
			noErr(t, "CreateRun", err)
			one = append(one, *r)
		}
		before := time.Now()
		many, err := b.store.CreateRuns(b.ctx, in)
		noErr(t, "CreateRuns", err)
		equal(t, "runs returned", len(many), len(in))
		for i, r := range many {
			if i > 0 {
				isTrue(t, "ids ascending in input order", r.ID > many[i-1].ID)
			}
			isTrue(t, "ids after the single calls'", r.ID > one[len(one)-1].ID)
			between(t, "created at", &r.CreatedAt, before, time.Now(), time.Second)
			deepEqual(t, "as GetRun returns it", *b.getRun(r.ID), r)
			// Everything but the id and the creation time is what CreateRun made.
			want := one[i]
			want.ID, want.CreatedAt = r.ID, r.CreatedAt
			deepEqual(t, fmt.Sprintf("run %d as CreateRun made it", i), r, want)
		}
		isNil(t, "legacy run has no snapshot", many[1].SnapshotID)
		notNil(t, "dag run captured the snapshot", many[0].SnapshotID)

		// They start as the single calls' runs do.
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "started", len(started), 2*len(in))
		for i := range in {
			equal(t, fmt.Sprintf("run %d: status", i), started[len(in)+i].Status, started[i].Status)
			equal(t, fmt.Sprintf("run %d: tasks created", i), started[len(in)+i].TasksCreated, started[i].TasksCreated)
			equal(t, fmt.Sprintf("run %d: tasks listed", i), len(b.listTasks(many[i].ID)), len(b.listTasks(one[i].ID)))
		}
		equal(t, "dag run's tasks", started[3].TasksCreated, 2)

		got, err := b.store.CreateRuns(b.ctx, nil)
		noErr(t, "CreateRuns(nil)", err)
		equal(t, "CreateRuns(nil) runs", len(got), 0)
		all, err := b.store.ListRuns(b.ctx, 0)
		noErr(t, "ListRuns", err)
		equal(t, "runs in all", len(all), 2*len(in))
	})

	s.test(t, "CreateRunsAllOrNothing", func(t *testing.T, b *bundle) {
		w1, w2, gone := b.workflow(), b.workflow(), b.workflow()
		noErr(t, "DeleteWorkflow", b.store.DeleteWorkflow(b.ctx, gone.ID))
		nul := "a\x00b"
		for _, c := range []struct {
			name string
			in   []orkstate.NewRun
			item string
			want error // nil: a validation error
		}{
			{"unknown workflow", []orkstate.NewRun{nr(w1.ID, "x"), nr(unknownID, "x"), nr(w2.ID, "x")}, "run 1", orkstate.ErrNotFound},
			{"deleted workflow", []orkstate.NewRun{nr(w1.ID, "x"), nr(w2.ID, "x"), nr(w1.ID, "x"), nr(gone.ID, "x")}, "run 3", orkstate.ErrNotFound},
			{"first of two unknown", []orkstate.NewRun{nr(gone.ID, "x"), nr(unknownID, "x")}, "run 0", orkstate.ErrNotFound},
			{"NUL in triggered_by", []orkstate.NewRun{nr(w1.ID, "x"), nr(w2.ID, "x"), nr(w1.ID, nul)}, "run 2", nil},
			{"triggered_by too long", []orkstate.NewRun{nr(w1.ID, strings.Repeat("x", orkstate.MaxNameLength+1))}, "run 0", nil},
		} {
			out, err := b.store.CreateRuns(b.ctx, c.in)
			if c.want == nil {
				isValidation(t, c.name, err)
			} else {
				errIs(t, c.name, err, c.want)
			}
			if err != nil {
				contains(t, c.name+": the error names the item", err.Error(), c.item)
			}
			equal(t, c.name+": runs returned", len(out), 0)
			all, err := b.store.ListRuns(b.ctx, 0)
			noErr(t, "ListRuns", err)
			equal(t, c.name+": runs created", len(all), 0)
		}
		// The same items without the bad one go in.
		out, err := b.store.CreateRuns(b.ctx, []orkstate.NewRun{nr(w1.ID, "x"), nr(w2.ID, "x")})
		noErr(t, "CreateRuns", err)
		deepEqual(t, "workflows", []int64{out[0].WorkflowID, out[1].WorkflowID}, []int64{w1.ID, w2.ID})
	})

	s.test(t, "ListNewestFirst", func(t *testing.T, b *bundle) {
		w1, w2 := b.workflow(), b.workflow()
		a := b.run(w1)
		c := b.run(w2)
		d := b.run(w1)
		all, err := b.store.ListRuns(b.ctx, 0)
		noErr(t, "ListRuns(0)", err)
		deepEqual(t, "all runs newest first", runIDs(all), []int64{d.ID, c.ID, a.ID})
		one, err := b.store.ListRuns(b.ctx, w1.ID)
		noErr(t, "ListRuns(w1)", err)
		deepEqual(t, "w1 runs newest first", runIDs(one), []int64{d.ID, a.ID})
	})

	s.test(t, "PendingRuns", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		r1, r2, r3 := b.run(wf), b.run(wf), b.run(wf)
		_, err := b.store.CreateTasks(b.ctx, r2.ID, 1, "e", nil) // r2 becomes running
		noErr(t, "CreateTasks", err)
		got, err := b.store.PendingRuns(b.ctx, 10)
		noErr(t, "PendingRuns", err)
		deepEqual(t, "pending runs oldest first", runIDs(got), []int64{r1.ID, r3.ID})
		got, err = b.store.PendingRuns(b.ctx, 1)
		noErr(t, "PendingRuns(1)", err)
		deepEqual(t, "limit 1", runIDs(got), []int64{r1.ID})
		for _, lim := range []int{0, -1} {
			_, err = b.store.PendingRuns(b.ctx, lim)
			isValidation(t, fmt.Sprintf("PendingRuns(%d)", lim), err)
		}
	})

	s.test(t, "UpdateRunStatus", func(t *testing.T, b *bundle) {
		r := b.run()
		errIs(t, "unknown run", b.store.UpdateRunStatus(b.ctx, unknownID, orkstate.RunRunning, ""), orkstate.ErrNotFound)
		isValidation(t, "bogus status", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunStatus("bogus"), ""))
		isValidation(t, "empty status", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunStatus(""), ""))
		equal(t, "status after bad input", b.runStatus(r.ID), orkstate.RunPending)

		noErr(t, "pending → running", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunRunning, ""))
		equal(t, "status", b.runStatus(r.ID), orkstate.RunRunning)
		noErr(t, "running → paused", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunPaused, ""))
		equal(t, "status", b.runStatus(r.ID), orkstate.RunPaused)
		noErr(t, "paused → running", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunRunning, ""))
		noErr(t, "running → failed", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunFailed, "operator says no"))
		got := b.getRun(r.ID)
		equal(t, "status", got.Status, orkstate.RunFailed)
		equal(t, "error", got.Error, "operator says no")
		notNil(t, "finished at", got.FinishedAt)

		for _, st := range orkstate.RunStatuses {
			errIs(t, "terminal run → "+string(st), b.store.UpdateRunStatus(b.ctx, r.ID, st, "x"), orkstate.ErrInvalidTransition)
		}
		got = b.getRun(r.ID)
		equal(t, "terminal status kept", got.Status, orkstate.RunFailed)
		equal(t, "terminal error kept", got.Error, "operator says no")

		r2 := b.run()
		noErr(t, "pending → success", b.store.UpdateRunStatus(b.ctx, r2.ID, orkstate.RunSuccess, ""))
		equal(t, "status", b.runStatus(r2.ID), orkstate.RunSuccess)
	})

	s.test(t, "UpdateRunStatusCancelled", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b", "a"))
		noErr(t, "UpdateRunStatus cancelled", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunCancelled, ""))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunCancelled)
		equal(t, "a", b.taskStatus(ts.id("a")), orkstate.TaskCancelled)
		equal(t, "b", b.taskStatus(ts.id("b")), orkstate.TaskCancelled)
	})

	s.test(t, "UpdateRunStatusStartsRun", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		_, err := b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, []orkstate.TaskSpec{
			{Name: "a", ExecutorType: "ea"},
			{Name: "b", ExecutorType: "eb", DependsOn: []string{"a"}},
		})
		noErr(t, "ReplaceWorkflowTasks", err)
		r := b.run(wf)
		before := time.Now()
		noErr(t, "pending → running", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunRunning, ""))
		got := b.getRun(r.ID)
		equal(t, "run status", got.Status, orkstate.RunRunning)
		between(t, "started at", got.StartedAt, before, time.Now(), time.Second)
		ts := b.listTasks(r.ID)
		equal(t, "tasks created", len(ts), 2)
		equal(t, "a name", ts[0].TaskName, "a")
		equal(t, "b name", ts[1].TaskName, "b")
		equal(t, "b unmet", ts[1].UnmetDeps, 1)
		deepEqual(t, "dispatchable", b.dispatchable(), []int64{ts[0].ID})
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "nothing left to start", len(started), 0)
		equal(t, "tasks not duplicated", len(b.listTasks(r.ID)), 2)
		errIs(t, "running → pending", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunPending, ""), orkstate.ErrInvalidTransition)
		equal(t, "still running", b.runStatus(r.ID), orkstate.RunRunning)

		// A run that cannot start fails, as StartPendingRuns would fail it.
		empty := b.workflow()
		snap, err := b.store.CreateSnapshot(b.ctx, empty.ID, []orkstate.TaskSpec{})
		noErr(t, "CreateSnapshot(empty)", err)
		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, empty.ID, snap.ID))
		rEmpty := b.run(empty)
		noErr(t, "pending → running, no tasks", b.store.UpdateRunStatus(b.ctx, rEmpty.ID, orkstate.RunRunning, ""))
		gotEmpty := b.getRun(rEmpty.ID)
		equal(t, "run without tasks", gotEmpty.Status, orkstate.RunFailed)
		contains(t, "its error", gotEmpty.Error, "no tasks")
		notNil(t, "its finished at", gotEmpty.FinishedAt)
	})

	s.test(t, "UpdateRunStatusVerdictCancelsTasks", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("pend"), nt("blocked", "pend"), nt("disp"), nt("run"), nt("ok"))
		b.drive(ts.id("ok"), orkstate.TaskSuccess)
		cd := b.claimTask(ts.id("disp"))
		b.drive(ts.id("run"), orkstate.TaskRunning)
		jobRun := b.job(ts.id("run"))

		noErr(t, "running → failed", b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunFailed, "no"))
		got := b.getRun(r.ID)
		equal(t, "run status", got.Status, orkstate.RunFailed)
		equal(t, "run error", got.Error, "no")
		notNil(t, "run finished at", got.FinishedAt)
		for _, n := range []string{"pend", "blocked", "disp", "run"} {
			tk := b.getTask(ts.id(n))
			equal(t, n+" status", tk.Status, orkstate.TaskCancelled)
			equal(t, n+" error", tk.Error, "run finished by operator")
			notNil(t, n+" finished at", tk.FinishedAt)
		}
		equal(t, "success kept", b.taskStatus(ts.id("ok")), orkstate.TaskSuccess)
		equal(t, "deferred job of the running task", b.getJob(jobRun.ID).Status, orkstate.DeferredCancelled)
		equal(t, "nothing dispatchable", len(b.dispatchable()), 0)
		st, err := b.store.RunTaskStats(b.ctx, r.ID)
		noErr(t, "RunTaskStats", err)
		deepEqual(t, "stats", *st, orkstate.TaskStats{Total: 5, Success: 1, Cancelled: 4})

		// A late report on a task of the finished run changes nothing.
		out := b.report(upd(ts.id("disp"), orkstate.TaskSuccess, cd.Attempt))
		equal(t, "late success on a cancelled task", out[0].Outcome, orkstate.OutcomeInvalid)
		got = b.getRun(r.ID)
		equal(t, "run still failed", got.Status, orkstate.RunFailed)
		equal(t, "run error kept", got.Error, "no")

		// success is a verdict too; a paused run's paused tasks are cancelled.
		r2, ts2 := b.dagRun(nt("a"), nt("b"))
		b.drive(ts2.id("a"), orkstate.TaskRunning)
		noErr(t, "PauseRun", b.store.PauseRun(b.ctx, r2.ID))
		noErr(t, "paused → success", b.store.UpdateRunStatus(b.ctx, r2.ID, orkstate.RunSuccess, ""))
		got = b.getRun(r2.ID)
		equal(t, "run 2 status", got.Status, orkstate.RunSuccess)
		equal(t, "run 2 error", got.Error, "")
		equal(t, "running a", b.taskStatus(ts2.id("a")), orkstate.TaskCancelled)
		equal(t, "paused b", b.taskStatus(ts2.id("b")), orkstate.TaskCancelled)
	})

	s.test(t, "RunTaskStats", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("p1"), nt("p2"), nt("blocked", "p1"), nt("paused"), nt("disp"), nt("run"), nt("ok"), nt("bad"), nt("off"))
		b.drive(ts.id("paused"), orkstate.TaskPaused)
		b.drive(ts.id("disp"), orkstate.TaskDispatched)
		b.drive(ts.id("run"), orkstate.TaskRunning)
		b.drive(ts.id("ok"), orkstate.TaskSuccess)
		b.drive(ts.id("bad"), orkstate.TaskFailed)
		b.drive(ts.id("off"), orkstate.TaskCancelled)
		st, err := b.store.RunTaskStats(b.ctx, r.ID)
		noErr(t, "RunTaskStats", err)
		deepEqual(t, "stats", *st, orkstate.TaskStats{Total: 9, Pending: 3, Paused: 1, Dispatched: 1, Running: 1, Success: 1, Failed: 1, Cancelled: 1})
		_, err = b.store.RunTaskStats(b.ctx, unknownID)
		errIs(t, "RunTaskStats unknown run", err, orkstate.ErrNotFound)
		empty := b.run()
		st, err = b.store.RunTaskStats(b.ctx, empty.ID)
		noErr(t, "RunTaskStats of a run without tasks", err)
		deepEqual(t, "empty stats", *st, orkstate.TaskStats{})
	})
}

func (s *suite) testRunPages(t *testing.T) {
	s.test(t, "FiltersAndTotals", func(t *testing.T, b *bundle) {
		etl := b.workflow(named("Nightly_ETL"))
		rep := b.workflow(named("report%daily"))
		other := b.workflow(named("NightlyXETL"))
		var etlRuns []int64
		for i := 0; i < 4; i++ {
			etlRuns = append(etlRuns, b.run(etl).ID)
		}
		repRun := b.run(rep)
		otherRun := b.run(other)
		// One etl run running with 2 tasks, one succeeded.
		ts, err := b.store.CreateTasks(b.ctx, etlRuns[1], 2, "e", nil)
		noErr(t, "CreateTasks", err)
		b.reportOK(upd(ts[0].ID, orkstate.TaskSuccess, 0), orkstate.OutcomeApplied)
		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, etlRuns[2]))

		p, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{})
		noErr(t, "ListRunsPage", err)
		equal(t, "total", p.Total, 6)
		deepEqual(t, "newest first", summaryIDs(p.Runs), []int64{otherRun.ID, repRun.ID, etlRuns[3], etlRuns[2], etlRuns[1], etlRuns[0]})
		equal(t, "workflow name", p.Runs[1].WorkflowName, "report%daily")
		st := p.Runs[4]
		equal(t, "summary status", st.Status, orkstate.RunRunning)
		deepEqual(t, "summary stats", st.Stats, orkstate.TaskStats{Total: 2, Pending: 1, Success: 1})

		p, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: "_etl"})
		noErr(t, "by name", err)
		deepEqual(t, "'_' is literal", summaryIDs(p.Runs), []int64{etlRuns[3], etlRuns[2], etlRuns[1], etlRuns[0]})
		equal(t, "total by name", p.Total, 4)

		p, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: "%"})
		noErr(t, "by %", err)
		deepEqual(t, "'%' is literal", summaryIDs(p.Runs), []int64{repRun.ID})

		p, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: "nightly"})
		noErr(t, "case-insensitive", err)
		equal(t, "case-insensitive total", p.Total, 5)

		p, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Status: orkstate.RunPending})
		noErr(t, "by status", err)
		deepEqual(t, "pending runs", summaryIDs(p.Runs), []int64{otherRun.ID, repRun.ID, etlRuns[3], etlRuns[0]})
		equal(t, "pending total", p.Total, 4)

		p, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Status: orkstate.RunPending, WorkflowName: "ETL", Limit: 1, Offset: 1})
		noErr(t, "status, name and page", err)
		deepEqual(t, "second pending etl-ish run", summaryIDs(p.Runs), []int64{etlRuns[3]})
		equal(t, "total ignores the page", p.Total, 3)

		p, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Offset: 10})
		noErr(t, "past the end", err)
		equal(t, "page past the end", len(p.Runs), 0)
		equal(t, "total past the end", p.Total, 6)
	})

	s.test(t, "DefaultLimit", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		for i := 0; i < 52; i++ {
			b.run(wf)
		}
		p, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{})
		noErr(t, "ListRunsPage", err)
		equal(t, "default page", len(p.Runs), orkstate.DefaultPageLimit)
		equal(t, "total", p.Total, 52)
	})

	s.test(t, "BadInput", func(t *testing.T, b *bundle) {
		b.run()
		_, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Limit: -5})
		isValidation(t, "negative limit", err)
		_, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Offset: -1})
		isValidation(t, "negative offset", err)
		_, err = b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Status: orkstate.RunStatus("bogus")})
		isValidation(t, "unknown status", err)
	})
}

func (s *suite) testRunControl(t *testing.T) {
	s.test(t, "CancelRun", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("pend"), nt("blocked", "pend"), nt("paused"), nt("disp"), nt("run"), nt("ok"), nt("bad"))
		b.drive(ts.id("paused"), orkstate.TaskPaused)
		b.drive(ts.id("disp"), orkstate.TaskDispatched)
		b.drive(ts.id("run"), orkstate.TaskRunning)
		b.drive(ts.id("ok"), orkstate.TaskSuccess)
		b.drive(ts.id("bad"), orkstate.TaskFailed)
		jobRun := b.job(ts.id("run"))
		jobPend := b.job(ts.id("pend"))

		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, r.ID))
		got := b.getRun(r.ID)
		equal(t, "run status", got.Status, orkstate.RunCancelled)
		notNil(t, "run finished at", got.FinishedAt)
		for _, n := range []string{"pend", "blocked", "paused", "disp", "run"} {
			tk := b.getTask(ts.id(n))
			equal(t, n+" cancelled", tk.Status, orkstate.TaskCancelled)
			notNil(t, n+" finished at", tk.FinishedAt)
		}
		equal(t, "success kept", b.taskStatus(ts.id("ok")), orkstate.TaskSuccess)
		equal(t, "failed kept", b.taskStatus(ts.id("bad")), orkstate.TaskFailed)
		equal(t, "deferred job of running task", b.getJob(jobRun.ID).Status, orkstate.DeferredCancelled)
		equal(t, "deferred job of pending task", b.getJob(jobPend.ID).Status, orkstate.DeferredCancelled)
		equal(t, "nothing dispatchable", len(b.dispatchable()), 0)

		errIs(t, "cancel twice", b.store.CancelRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)
		errIs(t, "cancel unknown", b.store.CancelRun(b.ctx, unknownID), orkstate.ErrNotFound)

		// A late report on a task of the cancelled run resurrects nothing.
		out := b.report(upd(ts.id("run"), orkstate.TaskSuccess, 0))
		equal(t, "late success on a cancelled task", out[0].Outcome, orkstate.OutcomeInvalid)
		equal(t, "run still cancelled", b.runStatus(r.ID), orkstate.RunCancelled)
	})

	s.test(t, "CancelPendingRun", func(t *testing.T, b *bundle) {
		r := b.run()
		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, r.ID))
		equal(t, "status", b.runStatus(r.ID), orkstate.RunCancelled)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "cancelled run is not started", len(started), 0)
		_, err = b.store.CreateTasks(b.ctx, r.ID, 1, "e", nil)
		errIs(t, "CreateTasks on a cancelled run", err, orkstate.ErrInvalidTransition)
	})

	s.test(t, "PauseResume", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b", "a"), nt("c"), nt("d"))
		b.drive(ts.id("c"), orkstate.TaskRunning)
		ca := b.claimTask(ts.id("a"))

		noErr(t, "PauseRun", b.store.PauseRun(b.ctx, r.ID))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunPaused)
		equal(t, "pending d paused", b.taskStatus(ts.id("d")), orkstate.TaskPaused)
		equal(t, "blocked b paused", b.taskStatus(ts.id("b")), orkstate.TaskPaused)
		equal(t, "dispatched a carries on", b.taskStatus(ts.id("a")), orkstate.TaskDispatched)
		equal(t, "running c carries on", b.taskStatus(ts.id("c")), orkstate.TaskRunning)
		equal(t, "nothing dispatchable", len(b.dispatchable()), 0)

		// Work in flight finishes; its dependent stays paused.
		b.reportOK(upd(ts.id("a"), orkstate.TaskSuccess, ca.Attempt), orkstate.OutcomeApplied)
		equal(t, "b still paused", b.taskStatus(ts.id("b")), orkstate.TaskPaused)
		equal(t, "still nothing dispatchable", len(b.dispatchable()), 0)
		cs, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 10})
		noErr(t, "ClaimTasks", err)
		equal(t, "claims in a paused run", len(cs), 0)

		// Tasks added to a paused run are paused.
		added := b.addTasks(r.ID, orkstate.NewTask{TaskIndex: 4, TaskName: "e"})
		equal(t, "new task of a paused run", added["e"].Status, orkstate.TaskPaused)

		errIs(t, "pause twice", b.store.PauseRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)
		noErr(t, "ResumeRun", b.store.ResumeRun(b.ctx, r.ID))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunRunning)
		equal(t, "b pending", b.taskStatus(ts.id("b")), orkstate.TaskPending)
		equal(t, "d pending", b.taskStatus(ts.id("d")), orkstate.TaskPending)
		deepEqual(t, "dispatchable after resume", b.dispatchable(), []int64{ts.id("b"), ts.id("d"), added.id("e")})
		errIs(t, "resume twice", b.store.ResumeRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)

		for _, n := range []string{"b", "d"} {
			b.succeed(ts.id(n))
		}
		b.succeed(added.id("e"))
		b.reportOK(upd(ts.id("c"), orkstate.TaskSuccess, 0), orkstate.OutcomeApplied)
		equal(t, "run finished", b.runStatus(r.ID), orkstate.RunSuccess)
		errIs(t, "pause a finished run", b.store.PauseRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)
		errIs(t, "resume a finished run", b.store.ResumeRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)
	})

	s.test(t, "PauseResumeRefusals", func(t *testing.T, b *bundle) {
		r := b.run()
		errIs(t, "pause a pending run", b.store.PauseRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)
		errIs(t, "resume a pending run", b.store.ResumeRun(b.ctx, r.ID), orkstate.ErrInvalidTransition)
		equal(t, "still pending", b.runStatus(r.ID), orkstate.RunPending)
		errIs(t, "pause unknown", b.store.PauseRun(b.ctx, unknownID), orkstate.ErrNotFound)
		errIs(t, "resume unknown", b.store.ResumeRun(b.ctx, unknownID), orkstate.ErrNotFound)
	})

	s.test(t, "CancelPausedRun", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b"))
		b.drive(ts.id("a"), orkstate.TaskRunning)
		noErr(t, "PauseRun", b.store.PauseRun(b.ctx, r.ID))
		noErr(t, "CancelRun", b.store.CancelRun(b.ctx, r.ID))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunCancelled)
		equal(t, "running task", b.taskStatus(ts.id("a")), orkstate.TaskCancelled)
		equal(t, "paused task", b.taskStatus(ts.id("b")), orkstate.TaskCancelled)
	})
}

func (s *suite) testStartPendingRuns(t *testing.T) {
	s.test(t, "FromCompiledTasks", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		_, err := b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, []orkstate.TaskSpec{
			{Name: "a", ExecutorType: "ea", Params: raw(`{"k":1}`), MaxRetries: 2, TimeoutSeconds: 60},
			{Name: "b", ExecutorType: "eb", DependsOn: []string{"a"}},
			{Name: "c", ExecutorType: "ec", DependsOn: []string{"a", "b"}},
		})
		noErr(t, "ReplaceWorkflowTasks", err)
		r := b.run(wf)
		before := time.Now()
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		deepEqual(t, "started", started, []orkstate.StartedRun{{RunID: r.ID, Status: orkstate.RunRunning, TasksCreated: 3}})
		got := b.getRun(r.ID)
		equal(t, "run status", got.Status, orkstate.RunRunning)
		between(t, "started at", got.StartedAt, before, time.Now(), time.Second)
		ts := b.listTasks(r.ID)
		equal(t, "tasks", len(ts), 3)
		equal(t, "a name", ts[0].TaskName, "a")
		equal(t, "a executor type", ts[0].ExecutorType, "ea")
		equal(t, "a max retries", ts[0].MaxRetries, 2)
		equal(t, "a timeout", ts[0].TimeoutSeconds, 60)
		jsonEqual(t, "a params", ts[0].Params, raw(`{"k":1}`))
		equal(t, "a unmet", ts[0].UnmetDeps, 0)
		equal(t, "b unmet", ts[1].UnmetDeps, 1)
		equal(t, "c unmet", ts[2].UnmetDeps, 2)
		strs(t, "c deps", ts[2].DependsOn, []string{"a", "b"})
		for _, tk := range ts {
			equal(t, tk.TaskName+" status", tk.Status, orkstate.TaskPending)
		}
		deepEqual(t, "dispatchable", b.dispatchable(), []int64{ts[0].ID})

		started, err = b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns again", err)
		equal(t, "nothing left to start", len(started), 0)
		equal(t, "tasks not duplicated", len(b.listTasks(r.ID)), 3)
	})

	s.test(t, "Legacy", func(t *testing.T, b *bundle) {
		def := b.workflow(func(n *orkstate.NewWorkflow) { n.ExecutorType = "k8s" })
		five := b.workflow(func(n *orkstate.NewWorkflow) { n.TaskParams = raw(`{"task_count": 5}`) })
		rDef, rFive := b.run(def), b.run(five)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		deepEqual(t, "started", started, []orkstate.StartedRun{
			{RunID: rDef.ID, Status: orkstate.RunRunning, TasksCreated: 3},
			{RunID: rFive.ID, Status: orkstate.RunRunning, TasksCreated: 5},
		})
		ts := b.listTasks(rDef.ID)
		equal(t, "default count", len(ts), 3)
		for i, tk := range ts {
			equal(t, "index", tk.TaskIndex, i)
			equal(t, "name", tk.TaskName, fmt.Sprintf("task_%d", i))
			equal(t, "executor type of the workflow", tk.ExecutorType, "k8s")
			equal(t, "no deps", tk.UnmetDeps, 0)
		}
		equal(t, "task_count 5", len(b.listTasks(rFive.ID)), 5)
	})

	s.test(t, "NoTasksFails", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		snap, err := b.store.CreateSnapshot(b.ctx, wf.ID, []orkstate.TaskSpec{})
		noErr(t, "CreateSnapshot(empty)", err)
		noErr(t, "SetCurrentSnapshot", b.store.SetCurrentSnapshot(b.ctx, wf.ID, snap.ID))
		rEmpty := b.run(wf)
		zero := b.workflow(func(n *orkstate.NewWorkflow) { n.TaskParams = raw(`{"task_count": 0}`) })
		rZero := b.run(zero)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "started count", len(started), 2)
		for i, id := range []int64{rEmpty.ID, rZero.ID} {
			what := []string{"empty snapshot", "task_count 0"}[i]
			t.Run(strings.ReplaceAll(what, " ", "_"), func(t *testing.T) {
				equal(t, what+": reported run", started[i].RunID, id)
				equal(t, what+": tasks created", len(b.listTasks(id)), 0)
				equal(t, what+": reported tasks", started[i].TasksCreated, 0)
				equal(t, what+": reported status", started[i].Status, orkstate.RunFailed)
				contains(t, what+": reported error", started[i].Error, "no tasks")
				got := b.getRun(id)
				equal(t, what+": run status", got.Status, orkstate.RunFailed)
				contains(t, what+": run error", got.Error, "no tasks")
				notNil(t, what+": finished at", got.FinishedAt)
			})
		}
	})

	s.test(t, "LimitOldestFirst", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		r1, r2, r3 := b.run(wf), b.run(wf), b.run(wf)
		started, err := b.store.StartPendingRuns(b.ctx, 2)
		noErr(t, "StartPendingRuns(2)", err)
		equal(t, "count", len(started), 2)
		equal(t, "first", started[0].RunID, r1.ID)
		equal(t, "second", started[1].RunID, r2.ID)
		equal(t, "third still pending", b.runStatus(r3.ID), orkstate.RunPending)
		for _, lim := range []int{0, -1} {
			_, err = b.store.StartPendingRuns(b.ctx, lim)
			isValidation(t, fmt.Sprintf("StartPendingRuns(%d)", lim), err)
		}
		equal(t, "third still pending after bad input", b.runStatus(r3.ID), orkstate.RunPending)
	})
}

// nr is one item of CreateRuns.
func nr(workflowID int64, triggeredBy string) orkstate.NewRun {
	return orkstate.NewRun{WorkflowID: workflowID, TriggeredBy: triggeredBy}
}
