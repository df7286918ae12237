package pgstore_test

import (
	"context"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// TestReportDeferredPollsFinishesTasks: in one batch of reports across several tasks,
// a task succeeds only once every one of its jobs has completed (in this call or an
// earlier one; a repeated id counts once, a cancelled or still running job holds it
// back), and a failed job fails its task with the message of the lowest failing
// message.
func TestReportDeferredPollsFinishesTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	_, tasks := startRun(t, s, []orkstate.TaskSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}})
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "t", Limit: 10})
	if err != nil || len(claimed) != len(tasks) {
		t.Fatalf("ClaimTasks = %d tasks, %v; want %d", len(claimed), err, len(tasks))
	}
	id := map[string]int64{}
	for _, tk := range tasks {
		id[tk.TaskName] = tk.ID
	}
	jobs := map[string][]int64{}
	for name, n := range map[string]int{"a": 3, "b": 2, "c": 2, "d": 2, "e": 2} {
		var in []orkstate.NewDeferredJob
		for i := 0; i < n; i++ {
			in = append(in, orkstate.NewDeferredJob{ServiceType: "svc", JobID: name + string(rune('0'+i))})
		}
		js, err := s.CreateDeferredJobs(ctx, id[name], in)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			jobs[name] = append(jobs[name], j.ID)
		}
	}
	// d's second job is cancelled: d can never succeed through its jobs.
	if err := s.UpdateDeferredJobStatus(ctx, jobs["d"][1], orkstate.DeferredCancelled, ""); err != nil {
		t.Fatal(err)
	}
	// e's first job completes in an earlier call.
	if out, err := s.ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{{JobID: jobs["e"][0], Result: orkstate.PollCompleted}}); err != nil || out[0].TaskStatus != "" {
		t.Fatalf("first of e: %+v, %v; want applied, the task not finished", out, err)
	}
	rep := func(name string, i int, r orkstate.PollResult, msg string) orkstate.DeferredPollReport {
		return orkstate.DeferredPollReport{JobID: jobs[name][i], Result: r, Error: msg}
	}
	out, err := s.ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{
		rep("a", 0, orkstate.PollCompleted, ""), rep("a", 1, orkstate.PollCompleted, ""), rep("a", 1, orkstate.PollCompleted, ""),
		rep("b", 1, orkstate.PollFailed, "zeta"), rep("b", 0, orkstate.PollFailed, ""),
		rep("c", 0, orkstate.PollCompleted, ""), rep("c", 1, orkstate.PollRunning, ""),
		rep("d", 0, orkstate.PollCompleted, ""),
		rep("e", 1, orkstate.PollCompleted, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		outcome orkstate.Outcome
		task    orkstate.TaskStatus
	}{
		{"applied", ""}, {"applied", ""}, {"ignored", ""},
		{"applied", orkstate.TaskFailed}, {"applied", orkstate.TaskFailed},
		{"applied", ""}, {"applied", ""},
		{"applied", ""},
		{"applied", orkstate.TaskSuccess},
	}
	for i, w := range want {
		if out[i].Outcome != w.outcome || out[i].TaskStatus != w.task {
			t.Errorf("report %d: %+v, want outcome %s, task status %q", i, out[i], w.outcome, w.task)
		}
	}
	b, err := s.GetTask(ctx, id["b"])
	if err != nil {
		t.Fatal(err)
	}
	if wantErr := "deferred job b0 (svc) failed: no error given"; b.Error != wantErr {
		t.Errorf("b's error = %q, want %q", b.Error, wantErr)
	}
	for _, name := range []string{"a", "c", "d"} {
		if tk, err := s.GetTask(ctx, id[name]); err != nil || tk.Status.IsTerminal() {
			t.Errorf("task %s: %v, %v; want it unfinished", name, tk.Status, err)
		}
	}
	if tk, err := s.GetTask(ctx, id["e"]); err != nil || tk.Status != orkstate.TaskSuccess {
		t.Errorf("task e: %v, %v; want success", tk.Status, err)
	}
	// a's last job completes it.
	if out, err := s.ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{rep("a", 2, orkstate.PollCompleted, "")}); err != nil || out[0].TaskStatus != orkstate.TaskSuccess {
		t.Fatalf("last of a: %+v, %v; want the task succeeded", out, err)
	}
}
