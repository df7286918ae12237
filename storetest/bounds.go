package storetest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// testBounds: bounds, error shapes and run starts that both stores must agree on
// (issue 11 items 6, 8, 14, 15, 16).
func (s *suite) testBounds(t *testing.T) {
	s.test(t, "BadPendingRunFailsAlone", func(t *testing.T, b *bundle) {
		// A legacy task_count out of range used to fail every start_pending_runs call.
		huge := b.workflow(func(w *orkstate.NewWorkflow) { w.TaskParams = raw(`{"task_count": 1e10}`) })
		negative := b.workflow(func(w *orkstate.NewWorkflow) { w.TaskParams = raw(`{"task_count": -4}`) })
		good := b.workflow(func(w *orkstate.NewWorkflow) { w.TaskParams = raw(`{"task_count": 2}`) })
		r1, r2, r3 := b.run(huge), b.run(negative), b.run(good)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "runs started", len(started), 3)
		for r, want := range map[*orkstate.Run]string{
			r1: "task_params.task_count must be between 0 and 100000, got 10000000000",
			r2: "task_params.task_count must be between 0 and 100000, got -4",
		} {
			got := b.getRun(r.ID)
			equal(t, "bad run status", got.Status, orkstate.RunFailed)
			equal(t, "bad run error", got.Error, want)
		}
		equal(t, "good run status", b.runStatus(r3.ID), orkstate.RunRunning)
		equal(t, "good run tasks", len(b.listTasks(r3.ID)), 2)
		again, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns again", err)
		equal(t, "nothing left to start", len(again), 0)
	})

	s.test(t, "DAGWorkflowWithoutDAGFails", func(t *testing.T, b *bundle) {
		wf := b.workflow(func(w *orkstate.NewWorkflow) { w.ExecutorType = orkstate.DAGExecutorType })
		r := b.run(wf)
		started, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "runs started", len(started), 1)
		equal(t, "started status", started[0].Status, orkstate.RunFailed)
		got := b.getRun(r.ID)
		equal(t, "run status", got.Status, orkstate.RunFailed)
		equal(t, "run error", got.Error, orkstate.MissingDAGError(wf.Name))
		equal(t, "no tasks", len(b.listTasks(r.ID)), 0)

		// With compiled tasks the same workflow starts.
		_, err = b.store.ReplaceWorkflowTasks(b.ctx, wf.ID, []orkstate.TaskSpec{{Name: "a", ExecutorType: "process"}})
		noErr(t, "ReplaceWorkflowTasks", err)
		r2 := b.run(wf)
		_, err = b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		equal(t, "run with tasks", b.runStatus(r2.ID), orkstate.RunRunning)
	})

	s.test(t, "LegacyTasksGetTheirOwnParams", func(t *testing.T, b *bundle) {
		wf := b.workflow(func(w *orkstate.NewWorkflow) { w.TaskParams = raw(`{"task_count": 2, "image": "x"}`) })
		r := b.run(wf)
		_, err := b.store.StartPendingRuns(b.ctx, 10)
		noErr(t, "StartPendingRuns", err)
		ts := b.listTasks(r.ID)
		equal(t, "tasks", len(ts), 2)
		for i, k := range ts {
			var p struct {
				TaskIndex    int    `json:"task_index"`
				RunID        int64  `json:"run_id"`
				WorkflowName string `json:"workflow_name"`
			}
			noErr(t, "params decode", json.Unmarshal(k.Params, &p))
			equal(t, "params.task_index", p.TaskIndex, i)
			equal(t, "params.run_id", p.RunID, r.ID)
			equal(t, "params.workflow_name", p.WorkflowName, wf.Name)
			jsonEqual(t, "params", k.Params, orkstate.LegacyTaskParams(i, r.ID, wf.Name))
		}
	})

	s.test(t, "HostileTextIsAValidationError", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		c := b.claimTask(a)
		job := b.job(a)
		wf := b.getRun(r.ID).WorkflowID
		nul, badUTF8, long := "a\x00b", "a\xffb", strings.Repeat("n", 10_000)
		nulJSON := raw(`{"k": "a\u0000b"}`)
		cases := map[string]func() error{
			"workflow name NUL":   func() error { _, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: nul}); return err },
			"workflow name UTF-8": func() error { _, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: badUTF8}); return err },
			"workflow name 10 KB": func() error { _, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: long}); return err },
			"description NUL": func() error {
				_, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "d", Description: nul})
				return err
			},
			"task_params \\u0000": func() error {
				_, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "p", TaskParams: nulJSON})
				return err
			},
			"task_params bad UTF-8": func() error {
				_, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "u", TaskParams: raw("{\"k\": \"\xff\"}")})
				return err
			},
			"lookup name NUL": func() error { _, err := b.store.GetWorkflowByName(b.ctx, nul); return err },
			"search NUL": func() error {
				_, err := b.store.ListWorkflowsPage(b.ctx, orkstate.WorkflowListQuery{Search: nul})
				return err
			},
			"run search NUL": func() error {
				_, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{WorkflowName: nul})
				return err
			},
			"compiled task name 10 KB": func() error {
				_, err := b.store.ReplaceWorkflowTasks(b.ctx, wf, []orkstate.TaskSpec{{Name: long}})
				return err
			},
			"snapshot params \\u0000": func() error {
				_, err := b.store.CreateSnapshot(b.ctx, wf, []orkstate.TaskSpec{{Name: "s", Params: nulJSON}})
				return err
			},
			"snapshot dependency 10 KB": func() error {
				_, err := b.store.CreateSnapshot(b.ctx, wf, []orkstate.TaskSpec{{Name: "s", DependsOn: []string{long}}})
				return err
			},
			"task name NUL": func() error {
				_, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskIndex: 5, TaskName: nul}})
				return err
			},
			"task name 10 KB": func() error {
				_, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskIndex: 5, TaskName: long}})
				return err
			},
			"executor type 10 KB": func() error {
				_, err := b.store.CreateTasks(b.ctx, r.ID, 1, long, nil)
				return err
			},
			"task params \\u0000": func() error {
				_, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskIndex: 5, TaskName: "z", Params: nulJSON}})
				return err
			},
			"report error NUL": func() error {
				_, err := b.store.SetTaskStates(b.ctx, []orkstate.TaskUpdate{{TaskID: a, Status: orkstate.TaskRunning, Attempt: c.Attempt, Error: nul}})
				return err
			},
			"report execution name UTF-8": func() error {
				_, err := b.store.SetTaskStates(b.ctx, []orkstate.TaskUpdate{{TaskID: a, Status: orkstate.TaskRunning, Attempt: c.Attempt, ExecutionName: badUTF8}})
				return err
			},
			"report output \\u0000": func() error {
				_, err := b.store.SetTaskStates(b.ctx, []orkstate.TaskUpdate{{TaskID: a, Status: orkstate.TaskSuccess, Attempt: c.Attempt, Output: nulJSON}})
				return err
			},
			"set output \\u0000": func() error { return b.store.SetTaskOutput(b.ctx, a, nulJSON) },
			"run error NUL":      func() error { return b.store.UpdateRunStatus(b.ctx, r.ID, orkstate.RunFailed, nul) },
			"triggered_by NUL":   func() error { _, err := b.store.CreateRun(b.ctx, wf, nul); return err },
			"log chunk NUL":      func() error { return b.store.AppendTaskLog(b.ctx, a, nul) },
			"claimer 10 KB": func() error {
				_, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: long, Limit: 1})
				return err
			},
			"deferred job_id NUL": func() error {
				_, err := b.store.CreateDeferredJobs(b.ctx, a, []orkstate.NewDeferredJob{{ServiceType: "s", JobID: nul}})
				return err
			},
			"deferred job_data \\u0000": func() error {
				_, err := b.store.CreateDeferredJobs(b.ctx, a, []orkstate.NewDeferredJob{{ServiceType: "s", JobID: "j", JobData: nulJSON}})
				return err
			},
			"poll error NUL": func() error {
				_, err := b.store.ReportDeferredPolls(b.ctx, []orkstate.DeferredPollReport{{JobID: job.ID, Result: orkstate.PollFailed, Error: nul}})
				return err
			},
			"job status error NUL": func() error { return b.store.FailDeferredJob(b.ctx, job.ID, nul) },
		}
		before := b.listTasks(r.ID)
		wfsBefore, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		for what, call := range cases {
			isValidation(t, what, call())
		}
		deepEqual(t, "tasks after the refused calls", b.listTasks(r.ID), before)
		wfsAfter, err := b.store.ListWorkflows(b.ctx)
		noErr(t, "ListWorkflows", err)
		deepEqual(t, "workflows after the refused calls", workflowIDs(wfsAfter), workflowIDs(wfsBefore))
		equal(t, "run status", b.runStatus(r.ID), orkstate.RunRunning)
		equal(t, "job status", b.getJob(job.ID).Status, orkstate.DeferredPending)

		// An escaped backslash before u0000 is text, not a NUL: accepted.
		_, err = b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "escaped", TaskParams: raw(`{"k": "\\u0000"}`)})
		noErr(t, `task_params with "\\u0000"`, err)
		// The longest name allowed is accepted, in characters of up to 4 bytes each.
		_, err = b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: strings.Repeat("😀", orkstate.MaxNameLength)})
		noErr(t, "a name of MaxNameLength 4-byte characters", err)
	})

	s.test(t, "BoundsAreEnforced", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"))
		a := ts.id("a")
		job := b.job(a)
		wf := b.getRun(r.ID).WorkflowID
		const ages = 200 * 365 * 24 * time.Hour // about the longest time.Duration there is
		cases := map[string]func() error{
			"task lease 200 years": func() error {
				_, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 1, Lease: ages})
				return err
			},
			"task lease just over MaxLease": func() error {
				_, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 1, Lease: orkstate.MaxLease + time.Second})
				return err
			},
			"deferred lease 200 years": func() error {
				_, err := b.store.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: claimer, Limit: 1, Lease: ages})
				return err
			},
			"next poll in 200 years": func() error {
				_, err := b.store.ReportDeferredPolls(b.ctx, []orkstate.DeferredPollReport{{JobID: job.ID, Result: orkstate.PollRunning, NextPollAfter: ages}})
				return err
			},
			"attempt over int32": func() error {
				_, err := b.store.SetTaskStates(b.ctx, []orkstate.TaskUpdate{{TaskID: a, Status: orkstate.TaskRunning, Attempt: 7 << 32}})
				return err
			},
			"max_retries over cap": func() error {
				_, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskIndex: 5, TaskName: "m", MaxRetries: orkstate.MaxTaskRetries + 1}})
				return err
			},
			"timeout over cap": func() error {
				_, err := b.store.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskIndex: 5, TaskName: "m", TimeoutSeconds: orkstate.MaxTimeoutSeconds + 1}})
				return err
			},
			"count over MaxTaskCount": func() error {
				_, err := b.store.CreateTasks(b.ctx, r.ID, orkstate.MaxTaskCount+1, "x", nil)
				return err
			},
			"blank claimer": func() error {
				_, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "  ", Limit: 1})
				return err
			},
		}
		for _, expr := range []string{"* * * * * *", "*/10 * * * * *", "0,30 * * * * *", "@every 1s", "@every 1ms", "@every 59s"} {
			cases["schedule "+expr] = func() error { return b.store.SetSchedule(b.ctx, wf, expr, true, time.Now()) }
			cases["new workflow with schedule "+expr] = func() error {
				_, err := b.store.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: b.uniq("s"), Schedule: expr})
				return err
			}
		}
		for what, call := range cases {
			isValidation(t, what, call())
		}
		equal(t, "task untouched", b.taskStatus(a), orkstate.TaskPending)
		equal(t, "job untouched", b.getJob(job.ID).Status, orkstate.DeferredPending)
		isNil(t, "no schedule set", b.getWorkflow(wf).NextScheduledAt)
		for _, expr := range []string{"*/5 * * * *", "0 * * * * *", "30 15 * * * *", "@every 5m", "@hourly"} {
			noErr(t, "schedule "+expr, b.store.SetSchedule(b.ctx, wf, expr, true, time.Now()))
		}
		got, err := b.store.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 1, Lease: orkstate.MaxLease})
		noErr(t, "a lease of MaxLease", err)
		equal(t, "claimed", len(got), 1)
	})

	s.test(t, "StatusesInAnyCase", func(t *testing.T, b *bundle) {
		r, ts := b.dagRun(nt("a"), nt("b"))
		a, bb := ts.id("a"), ts.id("b")
		c := b.claimTask(a)
		out := b.report(orkstate.TaskUpdate{TaskID: a, Status: "RUNNING", Attempt: c.Attempt})
		equal(t, "RUNNING outcome", out[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "RUNNING reported status", out[0].Status, orkstate.TaskRunning)
		equal(t, "stored status", b.taskStatus(a), orkstate.TaskRunning)
		o, err := b.store.UpdateTaskStatus(b.ctx, orkstate.TaskUpdate{TaskID: bb, Status: "Paused"})
		noErr(t, "UpdateTaskStatus Paused", err)
		equal(t, "Paused outcome", o.Outcome, orkstate.OutcomeApplied)
		equal(t, "b stored", b.taskStatus(bb), orkstate.TaskPaused)

		noErr(t, "UpdateRunStatus PAUSED", b.store.UpdateRunStatus(b.ctx, r.ID, "PAUSED", ""))
		equal(t, "run", b.runStatus(r.ID), orkstate.RunPaused)
		page, err := b.store.ListRunsPage(b.ctx, orkstate.RunListQuery{Status: "PAUSED"})
		noErr(t, "ListRunsPage PAUSED", err)
		deepEqual(t, "paused runs", summaryIDs(page.Runs), []int64{r.ID})
		noErr(t, "UpdateRunStatus Running", b.store.UpdateRunStatus(b.ctx, r.ID, "Running", ""))

		j1, j2 := b.job(a), b.job(a)
		noErr(t, "UpdateDeferredJobStatus CANCELLED", b.store.UpdateDeferredJobStatus(b.ctx, j1.ID, "CANCELLED", ""))
		equal(t, "job 1", b.getJob(j1.ID).Status, orkstate.DeferredCancelled)
		polls, err := b.store.ReportDeferredPolls(b.ctx, []orkstate.DeferredPollReport{{JobID: j2.ID, Result: "Running"}})
		noErr(t, "ReportDeferredPolls Running", err)
		equal(t, "poll outcome", polls[0].Outcome, orkstate.OutcomeApplied)
		equal(t, "job 2", b.getJob(j2.ID).Status, orkstate.DeferredPolling)
	})
}
