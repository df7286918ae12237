package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/orkstate/orkstate/internal/testdb"
)

// TestOrkV1SchemaIsTheOriginals: ork-v1's tables carry exactly the indexes of the
// original's migrations 001–012 (none invented, none missing) and UUID keys.
func TestOrkV1SchemaIsTheOriginals(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &runner{pool: testdb.Pool(t), sizes: TinySizes()}
	v, drop, err := r.newOrkV1(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	rows, err := r.pool.Query(ctx, `select indexname from pg_indexes where schemaname = $1 order by 1`, v.schema)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	want := []string{
		"deferred_jobs_pkey", "idx_deferred_jobs_created_at", "idx_deferred_jobs_status", "idx_deferred_jobs_task_id",
		"idx_runs_status", "idx_runs_workflow_id",
		"idx_tasks_execution_name", "idx_tasks_executor_type", "idx_tasks_run_id", "idx_tasks_run_status",
		"idx_tasks_run_task_name", "idx_tasks_status", "idx_tasks_status_run_id",
		"idx_workflow_tasks_workflow_id", "idx_workflows_executor_type", "idx_workflows_next_scheduled",
		"runs_pkey", "tasks_pkey", "tasks_run_id_task_index_key",
		"workflow_tasks_pkey", "workflow_tasks_workflow_id_task_name_key", "workflows_name_key", "workflows_pkey",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ork-v1 indexes:\n got  %v\n want %v", got, want)
	}
	var idType string
	if err := r.pool.QueryRow(ctx, `select data_type from information_schema.columns
		where table_schema = $1 and table_name = 'tasks' and column_name = 'id'`, v.schema).Scan(&idType); err != nil {
		t.Fatal(err)
	}
	if idType != "uuid" {
		t.Errorf("tasks.id is %s, want uuid", idType)
	}
}
