// Task logs, outputs and metadata: AppendTaskLog, TaskLog, SetTaskOutput, UpstreamOutputs, TaskRetryInfo, TaskIdentity.

package sqlitecompat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/orkstate/orkstate"
)

// AppendTaskLog appends a chunk in O(chunk); a log that would pass
// orkstate.MaxTaskLogBytes is refused with a validation error and nothing appended.
func (s *Store) AppendTaskLog(ctx context.Context, taskID int64, chunk string) error {
	if len(chunk) > orkstate.MaxTaskLogBytes {
		return orkstate.Invalid("chunk", fmt.Sprintf("%d bytes", len(chunk)), fmt.Sprintf("log would exceed %d bytes", orkstate.MaxTaskLogBytes))
	}
	if err := orkstate.ValidText("chunk", chunk); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		var size sql.NullInt64
		err := t.queryRow(`SELECT s.bytes FROM tasks t LEFT JOIN task_log_sizes s ON s.task_id = t.id WHERE t.id = ?`, taskID).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("task", taskID)
		}
		if err != nil {
			return err
		}
		if chunk == "" {
			return nil
		}
		if size.Int64+int64(len(chunk)) > orkstate.MaxTaskLogBytes {
			return orkstate.Invalid("chunk", fmt.Sprintf("%d bytes", len(chunk)),
				fmt.Sprintf("log of task %d would exceed %d bytes (has %d)", taskID, orkstate.MaxTaskLogBytes, size.Int64))
		}
		if _, err := t.exec(`INSERT INTO task_logs (task_id, chunk, created_at) VALUES (?, ?, ?)`, taskID, chunk, ts(t.now)); err != nil {
			return err
		}
		_, err = t.exec(`INSERT INTO task_log_sizes (task_id, bytes) VALUES (?, ?)
			ON CONFLICT (task_id) DO UPDATE SET bytes = bytes + excluded.bytes`, taskID, len(chunk))
		return err
	})
}

// TaskLog returns a task's log chunks concatenated in order.
func (s *Store) TaskLog(ctx context.Context, taskID int64) (string, error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := getTask(ctx, tx, taskID); err != nil {
		return "", err
	}
	rows, err := tx.QueryContext(ctx, `SELECT chunk FROM task_logs WHERE task_id = ? ORDER BY id`, taskID)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return "", err
		}
		b.WriteString(c)
	}
	return b.String(), rows.Err()
}

// SetTaskOutput replaces a task's output (nil clears it).
func (s *Store) SetTaskOutput(ctx context.Context, taskID int64, output json.RawMessage) error {
	if err := orkstate.ValidJSON("output", output); err != nil {
		return err
	}
	return s.write(ctx, func(t *txState) error {
		res, err := t.exec(`UPDATE tasks SET output = ? WHERE id = ?`, jsonArg(output), taskID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("task", taskID)
		}
		return nil
	})
}

// UpstreamOutputs maps each dependency name of the task to its output (nil when
// it stored none).
func (s *Store) UpstreamOutputs(ctx context.Context, taskID int64) (map[string]json.RawMessage, error) {
	if _, err := s.GetTask(ctx, taskID); err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	err := upstreamOutputs(ctx, s.rdb, []int64{taskID}, func(_ int64, name string, v json.RawMessage) { m[name] = v })
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (s *Store) TaskRetryInfo(ctx context.Context, taskID int64) (*orkstate.RetryInfo, error) {
	k, err := s.GetTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	return &orkstate.RetryInfo{Attempts: k.Attempts, MaxRetries: k.MaxRetries, TimeoutSeconds: k.TimeoutSeconds, RetryAt: k.RetryAt}, nil
}

func (s *Store) TaskIdentity(ctx context.Context, taskID int64) (*orkstate.TaskIdentity, error) {
	var id orkstate.TaskIdentity
	err := s.rdb.QueryRowContext(ctx, `SELECT t.id, t.run_id, t.task_index, t.task_name, w.id, w.name
		FROM tasks t JOIN runs r ON r.id = t.run_id JOIN workflows w ON w.id = r.workflow_id WHERE t.id = ?`, taskID).
		Scan(&id.TaskID, &id.RunID, &id.TaskIndex, &id.TaskName, &id.WorkflowID, &id.WorkflowName)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("task", taskID)
	}
	if err != nil {
		return nil, err
	}
	return &id, nil
}
