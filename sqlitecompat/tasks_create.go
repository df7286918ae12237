// Creating tasks: CreateTasks and CreateDAGTasks, as sql/functions/create_tasks.sql does.

package sqlitecompat

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/orkstate/orkstate"
)

// CreateTasks creates count legacy tasks task_0 … task_{count-1} without dependencies.
func (s *Store) CreateTasks(ctx context.Context, runID int64, count int, executorType string, params json.RawMessage) ([]orkstate.Task, error) {
	if err := orkstate.ValidateTaskCount(count); err != nil {
		return nil, err
	}
	if err := orkstate.ValidName("executor_type", executorType, false); err != nil {
		return nil, err
	}
	if err := orkstate.ValidJSON("params", params); err != nil {
		return nil, err
	}
	nts := make([]orkstate.NewTask, count)
	for i := range nts {
		nts[i] = orkstate.NewTask{TaskIndex: i, TaskName: fmt.Sprintf("task_%d", i), ExecutorType: executorType, Params: params}
	}
	return s.CreateDAGTasks(ctx, runID, nts)
}

// CreateDAGTasks creates a run's tasks with their dependencies; see docs/semantics.md.
func (s *Store) CreateDAGTasks(ctx context.Context, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	if err := orkstate.ValidateNewTasks(tasks); err != nil {
		return nil, err
	}
	var out []orkstate.Task
	err := s.write(ctx, func(t *txState) (err error) {
		out, err = createDAGTasks(t, runID, tasks)
		return err
	})
	return out, err
}

// dedupe returns the distinct dependency names, sorted (as create_tasks stores them).
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, d := range in {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func createDAGTasks(t *txState, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	st, err := lockRun(t, runID)
	if err != nil {
		return nil, err
	}
	if st.IsTerminal() {
		return nil, invalidTransition("run %d is %s", runID, st)
	}
	rows, err := t.query(`SELECT `+taskCols+` FROM tasks t WHERE t.run_id = ? ORDER BY t.task_index`, runID)
	existing, err := collect(rows, err, scanTask)
	if err != nil {
		return nil, err
	}
	byIndex := map[int]*orkstate.Task{}
	byName := map[string]*orkstate.Task{}
	for i := range existing {
		byIndex[existing[i].TaskIndex] = &existing[i]
		byName[existing[i].TaskName] = &existing[i]
	}
	wanted := map[int64]bool{}
	var fresh []orkstate.NewTask
	for _, k := range tasks {
		// As in pgstore, a spec names every existing task with its index or its name.
		e1, e2 := byIndex[k.TaskIndex], byName[k.TaskName]
		if e1 != nil {
			wanted[e1.ID] = true
		}
		if e2 != nil {
			wanted[e2.ID] = true
		}
		if e1 != nil || e2 != nil {
			continue
		}
		k.DependsOn = dedupe(k.DependsOn)
		fresh = append(fresh, k)
	}
	if err := checkKnownSpecs(tasks, fresh, byName); err != nil {
		return nil, err
	}
	if len(fresh) > 0 {
		specs := make([]orkstate.TaskSpec, 0, len(existing)+len(fresh))
		for _, e := range existing {
			specs = append(specs, orkstate.TaskSpec{Name: e.TaskName, DependsOn: e.DependsOn})
		}
		for _, k := range fresh {
			specs = append(specs, orkstate.TaskSpec{Name: k.TaskName, DependsOn: k.DependsOn})
		}
		if err := orkstate.ValidateDAG(specs); err != nil {
			return nil, err
		}
		status := orkstate.TaskPending
		if st == orkstate.RunPaused {
			status = orkstate.TaskPaused
		}
		// The workflow's priority, pool and fairness as they are now (slots.sql's
		// _place_run_tasks); a key must exist.
		var wfPriority, wfPool, fairRun int64
		if err := t.queryRow(`SELECT w.priority, w.task_pool, CASE WHEN w.fair <> 0 THEN r.id ELSE 0 END
				FROM runs r JOIN workflows w ON w.id = r.workflow_id WHERE r.id = ?`, runID).Scan(&wfPriority, &wfPool, &fairRun); err != nil {
			return nil, err
		}
		for _, k := range fresh {
			if k.ConcurrencyKey == "" {
				continue
			}
			var n int
			if err := t.queryRow(`SELECT count(*) FROM concurrency_keys WHERE key = ?`, k.ConcurrencyKey).Scan(&n); err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, orkstate.Invalid("concurrency_key", k.ConcurrencyKey, "unknown concurrency key: set its slots first")
			}
		}
		ready := false
		ids := make(map[string]int64, len(existing)+len(fresh))
		for _, e := range existing {
			ids[e.TaskName] = e.ID
		}
		for _, k := range fresh {
			unmet := 0
			for _, d := range k.DependsOn {
				if e := byName[d]; e == nil || e.Status != orkstate.TaskSuccess {
					unmet++
				}
			}
			var id int64
			prio := wfPriority
			if k.Priority != nil {
				prio = int64(*k.Priority)
			}
			if err := t.queryRow(`INSERT INTO tasks (run_id, task_index, task_name, executor_type, depends_on, status,
					params, max_retries, timeout_seconds, unmet_deps, created_at,
					priority, priority_override, concurrency_key, workflow_pool, fair_run)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, runID, k.TaskIndex, k.TaskName, k.ExecutorType,
				depsJSON(k.DependsOn), status, jsonArg(k.Params), k.MaxRetries, k.TimeoutSeconds, unmet, ts(t.now),
				prio, k.Priority, k.ConcurrencyKey, wfPool, fairRun).Scan(&id); err != nil {
				return nil, err
			}
			wanted[id] = true
			ids[k.TaskName] = id
			ready = ready || (unmet == 0 && status == orkstate.TaskPending)
		}
		for _, k := range fresh {
			for _, d := range k.DependsOn {
				if _, err := t.exec(`INSERT INTO task_deps (upstream_id, downstream_id) VALUES (?, ?)`, ids[d], ids[k.TaskName]); err != nil {
					return nil, err
				}
			}
		}
		// A new task whose dependency already failed or was cancelled finishes at once
		// (create_tasks does the same): it would never become ready.
		for _, want := range []orkstate.TaskStatus{orkstate.TaskFailed, orkstate.TaskCancelled} {
			done := map[int64]bool{}
			for _, k := range fresh {
				for _, d := range k.DependsOn {
					e := byName[d]
					if e == nil || e.Status != want || done[e.ID] {
						continue
					}
					done[e.ID] = true
					msg := "dependency failed"
					if want == orkstate.TaskCancelled {
						msg = "dependency cancelled"
					}
					if _, err := t.propagate(runID, e.ID, want, msg); err != nil {
						return nil, err
					}
				}
			}
		}
		if st == orkstate.RunPending {
			if _, err := t.exec(`UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?) WHERE id = ?`, ts(t.now), runID); err != nil {
				return nil, err
			}
		}
		if ready {
			t.signals |= kindTasksReady
		}
	}
	want := make([]int64, 0, len(wanted))
	for id := range wanted {
		want = append(want, id)
	}
	rows, err = t.query(`SELECT `+taskCols+` FROM tasks t WHERE t.id IN (SELECT value FROM json_each(?)) ORDER BY t.task_index`, idsJSON(want))
	return collect(rows, err, scanTask)
}

// checkKnownSpecs gives the specs the run already has (skipped by idempotency) the
// checks the new ones get: each dependency names a new task or one the run has, and
// the input as declared has no cycle.
func checkKnownSpecs(all, fresh []orkstate.NewTask, existing map[string]*orkstate.Task) error {
	if len(fresh) == len(all) {
		return nil // nothing skipped: the whole-DAG check covers the input
	}
	isFresh := make(map[string]bool, len(fresh))
	for _, k := range fresh {
		isFresh[k.TaskName] = true
	}
	inInput := make(map[string]bool, len(all))
	for _, k := range all {
		inInput[k.TaskName] = true
	}
	specs := make([]orkstate.TaskSpec, 0, len(all))
	for _, k := range all {
		var deps []string
		for _, d := range k.DependsOn {
			if !isFresh[d] && existing[d] == nil {
				return orkstate.Invalid("depends_on", d, fmt.Sprintf("task %q depends on unknown task %q", k.TaskName, d))
			}
			if inInput[d] {
				deps = append(deps, d)
			}
		}
		specs = append(specs, orkstate.TaskSpec{Name: k.TaskName, DependsOn: deps})
	}
	return orkstate.ValidateDAG(specs)
}

func idsJSON(ids []int64) string {
	if len(ids) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(ids)
	return string(b)
}
