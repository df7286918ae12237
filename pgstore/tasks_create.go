package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/orkstate/orkstate"
)

// taskSpec is one element of create_tasks' JSON argument.
type taskSpec struct {
	TaskIndex      int             `json:"task_index"`
	TaskName       string          `json:"task_name"`
	ExecutorType   string          `json:"executor_type"`
	DependsOn      []string        `json:"depends_on"`
	Params         json.RawMessage `json:"params,omitempty"`
	MaxRetries     int             `json:"max_retries"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	Priority       *int            `json:"priority,omitempty"`
	ConcurrencyKey string          `json:"concurrency_key,omitempty"`
}

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
	specs := make([]taskSpec, count)
	for i := range specs {
		specs[i] = taskSpec{TaskIndex: i, TaskName: "task_" + strconv.Itoa(i), ExecutorType: executorType, DependsOn: []string{}, Params: params}
	}
	return s.createTasks(ctx, runID, specs)
}

// CreateDAGTasks creates a run's tasks with their dependencies (see the interface).
func (s *Store) CreateDAGTasks(ctx context.Context, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	if err := orkstate.ValidateNewTasks(tasks); err != nil {
		return nil, err
	}
	specs := make([]taskSpec, len(tasks))
	for i, t := range tasks {
		deps := t.DependsOn
		if deps == nil {
			deps = []string{}
		}
		specs[i] = taskSpec{TaskIndex: t.TaskIndex, TaskName: t.TaskName, ExecutorType: t.ExecutorType,
			DependsOn: deps, Params: t.Params, MaxRetries: t.MaxRetries, TimeoutSeconds: t.TimeoutSeconds,
			Priority: t.Priority, ConcurrencyKey: t.ConcurrencyKey}
	}
	return s.createTasks(ctx, runID, specs)
}

func (s *Store) createTasks(ctx context.Context, runID int64, specs []taskSpec) ([]orkstate.Task, error) {
	body, err := json.Marshal(specs)
	if err != nil {
		return nil, fmt.Errorf("pgstore: encode tasks: %w", err)
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+taskColumns+` from {api}.create_tasks($1, $2)`), runID, string(body))
	if err != nil {
		return nil, wrap(err, "pgstore: create tasks of run %d", runID)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, wrap(err, "pgstore: create tasks of run %d", runID)
	}
	return tasks, nil
}
