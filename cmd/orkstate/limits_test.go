package main

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
)

func intPtr(n int) *int { return &n }

// TestStatusShowsLimits: status lists each concurrency key with its tasks in flight
// against its slots, and each workflow with limits with its active runs and tasks in
// flight against them; status --json carries the same (issue 13), on both stores.
func TestStatusShowsLimits(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		st := tg.store
		if err := st.SetConcurrencyKey(ctx, "gpu", 2); err != nil {
			t.Fatal(err)
		}
		w, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "keyed"})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetWorkflowLimits(ctx, w.ID, orkstate.WorkflowLimits{Priority: 5, MaxActiveRuns: intPtr(2), MaxTasksInFlight: intPtr(3)}); err != nil {
			t.Fatal(err)
		}
		// A workflow whose name contains the other's: its runs are not counted for it.
		other, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "keyed_too"})
		if err != nil {
			t.Fatal(err)
		}
		var first []orkstate.Task
		for _, wf := range []int64{w.ID, other.ID} {
			r, err := st.CreateRun(ctx, wf, "test")
			if err != nil {
				t.Fatal(err)
			}
			ts, err := st.CreateDAGTasks(ctx, r.ID, []orkstate.NewTask{
				{TaskIndex: 0, TaskName: "a", ConcurrencyKey: "gpu"}, {TaskIndex: 1, TaskName: "b", ConcurrencyKey: "gpu", Priority: intPtr(-3)},
				{TaskIndex: 2, TaskName: "c", ConcurrencyKey: "gpu"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = ts
			}
		}
		// task shows a task's priority and key.
		for _, c := range []struct {
			task orkstate.Task
			want []string
		}{
			{first[0], []string{"\npriority 5 (the workflow's)\n", "\nkey gpu\n"}},
			{first[1], []string{"\npriority -3 (its spec's)\n"}},
		} {
			// The table's column width aside.
			out := regexp.MustCompile(` +`).ReplaceAllString(cli(t, tg, "task", itoa(c.task.ID)), " ")
			for _, want := range c.want {
				if !strings.Contains(out, want) {
					t.Errorf("task %s lacks %q:\n%s", c.task.TaskName, want, out)
				}
			}
		}
		var tj struct {
			Task taskJSON `json:"task"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "task", itoa(first[1].ID), "--json")), &tj); err != nil {
			t.Fatal(err)
		}
		if tj.Task.Priority != -3 || tj.Task.PriorityOverride == nil || *tj.Task.PriorityOverride != -3 || tj.Task.ConcurrencyKey != "gpu" {
			t.Errorf("task --json: %+v", tj.Task)
		}
		if _, err := st.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1}); err != nil {
			t.Fatal(err)
		}
		out := cli(t, tg, "status")
		for _, want := range []string{"key gpu               1  in flight of 2 slots",
			"workflow keyed      priority 5, runs active 1 of 2, tasks in flight 1 of 3\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "keyed_too") {
			t.Errorf("status lists a workflow without limits:\n%s", out)
		}
		var got struct {
			Keys      []keyJSON           `json:"concurrency_keys"`
			Workflows []workflowLimitJSON `json:"workflow_limits"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "status", "--json")), &got); err != nil {
			t.Fatal(err)
		}
		wantKeys := []keyJSON{{Key: "gpu", Slots: 2, InFlight: 1}}
		wantWfs := []workflowLimitJSON{{Workflow: "keyed", Priority: 5, MaxActiveRuns: intPtr(2), ActiveRuns: 1,
			MaxTasksInFlight: intPtr(3), TasksInFlight: 1}}
		if !reflect.DeepEqual(got.Keys, wantKeys) || !reflect.DeepEqual(got.Workflows, wantWfs) {
			t.Errorf("status --json: %+v %+v", got.Keys, got.Workflows)
		}
	})
}

// TestKeysAndLimitsCommands: keys set and limits set what they say; bad input is
// refused with a message naming the value, and changes nothing.
func TestKeysAndLimitsCommands(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		st := tg.store
		if out := cli(t, tg, "keys"); out != "no concurrency keys\n" {
			t.Errorf("keys said %q", out)
		}
		if out := cli(t, tg, "keys", "set", "gpu", "4"); out != "KEY  IN FLIGHT  SLOTS\ngpu  0          4\n" {
			t.Errorf("keys set said %q", out)
		}
		fails(t, tg, exitInvalid, `invalid slots "0": must be between 1 and 1000000`, "keys", "set", "gpu", "0")
		fails(t, tg, exitInvalid, `invalid slots "-2"`, "keys", "set", "gpu", "--", "-2")
		fails(t, tg, exitUsage, `unknown shorthand flag: '2' in -2`, "keys", "set", "gpu", "-2") // a flag, without --
		fails(t, tg, exitInvalid, `invalid slots "2000000"`, "keys", "set", "gpu", "2000000")
		fails(t, tg, exitInvalid, `invalid slots "four": must be a whole number`, "keys", "set", "gpu", "four")
		fails(t, tg, exitInvalid, `invalid concurrency_key " gpu": must be 1 to 200 characters without surrounding spaces`, "keys", "set", " gpu", "3")
		fails(t, tg, exitUsage, "wants KEY SLOTS, got 1 argument(s)", "keys", "set", "gpu")
		keys, err := st.ConcurrencyKeys(ctx)
		if err != nil || !reflect.DeepEqual(keys, []orkstate.ConcurrencyKey{{Key: "gpu", Slots: 4}}) {
			t.Errorf("keys after refused changes: %+v %v", keys, err)
		}
		var kj struct {
			Keys []keyJSON `json:"concurrency_keys"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "keys", "--json")), &kj); err != nil || len(kj.Keys) != 1 || kj.Keys[0].Slots != 4 {
			t.Errorf("keys --json: %+v %v", kj, err)
		}

		wf, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "etl"})
		if err != nil {
			t.Fatal(err)
		}
		if out := cli(t, tg, "limits", "etl"); out != "etl: priority 0, runs active 0 of no limit, tasks in flight 0 of no limit\n" {
			t.Errorf("limits said %q", out)
		}
		if out := cli(t, tg, "limits", "etl", "--priority", "10", "--max-active-runs", "1"); out != "etl: priority 10, runs active 0 of 1, tasks in flight 0 of no limit\n" {
			t.Errorf("limits set said %q", out)
		}
		want := orkstate.WorkflowLimits{Priority: 10, MaxActiveRuns: intPtr(1)}
		check := func(what string) {
			t.Helper()
			l, err := st.GetWorkflowLimits(ctx, wf.ID)
			if err != nil || !reflect.DeepEqual(*l, want) {
				t.Errorf("%s: limits %+v %v, want %+v", what, l, err, want)
			}
		}
		check("after limits --priority 10 --max-active-runs 1")
		for _, c := range []struct {
			code int
			want string
			args []string
		}{
			{exitInvalid, `invalid max_tasks_in_flight "0": must be a whole number from 1 to 1000000, or none`, []string{"--max-tasks-in-flight", "0"}},
			{exitInvalid, `invalid max_active_runs "-1"`, []string{"--max-active-runs", "-1"}},
			{exitInvalid, `invalid max_active_runs "lots"`, []string{"--max-active-runs", "lots"}},
			// One bad flag among good ones: nothing changes.
			{exitInvalid, `invalid priority "5000": must be between -1000 and 1000`, []string{"--max-active-runs", "3", "--priority", "5000"}},
			{exitInvalid, `invalid priority "-1001"`, []string{"--priority", "-1001", "--fair"}},
			{exitUsage, `invalid argument "high" for "--priority"`, []string{"--priority", "high"}},
		} {
			fails(t, tg, c.code, c.want, append([]string{"limits", "etl"}, c.args...)...)
			check("after limits " + strings.Join(c.args, " "))
		}
		fails(t, tg, exitNotFound, `workflow "nope" not found`, "limits", "nope", "--priority", "3")
		fails(t, tg, exitUsage, "wants WORKFLOW, got 0 argument(s)", "limits")

		out := cli(t, tg, "limits", "etl", "--max-active-runs", "none", "--max-tasks-in-flight", "7", "--fair", "--json")
		var lj workflowLimitJSON
		if err := json.Unmarshal([]byte(out), &lj); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(lj, workflowLimitJSON{Workflow: "etl", Priority: 10, Fair: true, MaxTasksInFlight: intPtr(7)}) {
			t.Errorf("limits --json said %s", out)
		}
		want = orkstate.WorkflowLimits{Priority: 10, MaxTasksInFlight: intPtr(7), Fair: true}
		check("after limits --max-active-runs none --max-tasks-in-flight 7 --fair")
	})
}
