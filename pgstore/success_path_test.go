package pgstore_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// A batch of successes only takes its own statement in _apply_task_changes (issue
// 14); a batch with any other status takes the general one. Both must leave a task,
// its dependent, the queue and the deadlines exactly alike: a1 succeeds in a batch of
// successes, a2 (its twin) beside a running report of x, and the rows are compared
// column by column (times by whether they are set).
func TestSuccessBatchMatchesGeneralPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	_, tasks := startRun(t, s, []orkstate.TaskSpec{
		{Name: "a1", TimeoutSeconds: 60, MaxRetries: 2, ExecutorType: "e"},
		{Name: "a2", TimeoutSeconds: 60, MaxRetries: 2, ExecutorType: "e"},
		{Name: "b1", DependsOn: []string{"a1"}, ExecutorType: "e"},
		{Name: "b2", DependsOn: []string{"a2"}, ExecutorType: "e"},
		{Name: "x", ExecutorType: "e"},
	})
	id := map[string]int64{}
	for _, tk := range tasks {
		id[tk.TaskName] = tk.ID
	}
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "c", Limit: 10})
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claim: %d tasks, %v", len(claimed), err)
	}
	running := func(name string) orkstate.TaskUpdate {
		return orkstate.TaskUpdate{TaskID: id[name], Status: orkstate.TaskRunning, ExecutionName: "exec-" + name[:1], Attempt: 1}
	}
	if _, err := s.SetTaskStates(ctx, []orkstate.TaskUpdate{running("a1"), running("a2")}); err != nil {
		t.Fatal(err)
	}
	success := func(name string) orkstate.TaskUpdate {
		return orkstate.TaskUpdate{TaskID: id[name], Status: orkstate.TaskSuccess, Output: json.RawMessage(`{"v": 1}`), Attempt: 1}
	}
	for _, batch := range [][]orkstate.TaskUpdate{{success("a1")}, {success("a2"), running("x")}} {
		out, err := s.SetTaskStates(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			if o.Outcome != orkstate.OutcomeApplied {
				t.Fatalf("task %d: %s", o.TaskID, o.Outcome)
			}
		}
	}
	// a task's row and what the sweep tables hold for it, times as set or not (the
	// twins differ in their dependencies' and dependents' names and ids only)
	state := func(name string) string {
		t.Helper()
		var st string
		err := s.Pool().QueryRow(ctx, `
			select jsonb_build_object(
				'row', (select jsonb_object_agg(e.key, case when e.key like '%\_at' then to_jsonb(e.value <> 'null') else e.value end)
				        from jsonb_each(to_jsonb(t) - 'id' - 'task_name' - 'task_index' - 'depends_on' - 'downstream') e),
				'queued', exists (select 1 from `+s.Schema()+`.task_queue q where q.task_id = t.id),
				'deadline', exists (select 1 from `+s.Schema()+`.task_deadlines d where d.task_id = t.id),
				'unmet', `+s.Schema()+`_api.task_unmet_deps(t.id, t.run_id, t.depends_on, t.unmet_deps))::text
			from `+s.Schema()+`.tasks t where t.id = $1`, id[name]).Scan(&st)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, pair := range [][2]string{{"a1", "a2"}, {"b1", "b2"}} {
		one, two := state(pair[0]), state(pair[1])
		if one != two {
			t.Errorf("%s (batch of successes) and %s (general statement) differ:\n%s\n%s", pair[0], pair[1], one, two)
		}
	}
}
