package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// planNode is the part of an EXPLAIN (FORMAT JSON) node the lock-order check reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	Operation    string     `json:"Operation"`
	Relation     string     `json:"Relation Name"`
	Index        string     `json:"Index Name"`
	Relationship string     `json:"Parent Relationship"`
	Plans        []planNode `json:"Plans"`
}

// shape renders a plan tree as "Node[relation](children)", the form the expected
// shapes below are written in. Scans name their relation, index scans their index.
// Memoize and Materialize only cache their child's rows (which of them the planner
// puts over a nested loop's inner side depends on the table's statistics), so they
// are left out.
func (n planNode) shape() string {
	if (n.NodeType == "Memoize" || n.NodeType == "Materialize") && len(n.Plans) == 1 {
		return n.Plans[0].shape()
	}
	var b strings.Builder
	b.WriteString(n.NodeType)
	if n.Operation != "" && n.NodeType == "ModifyTable" {
		b.WriteString(" " + n.Operation)
	}
	switch {
	case n.Index != "":
		b.WriteString("[" + n.Relation + "." + n.Index + "]")
	case n.Relation != "":
		b.WriteString("[" + n.Relation + "]")
	}
	if len(n.Plans) > 0 {
		parts := make([]string, len(n.Plans))
		for i, c := range n.Plans {
			parts[i] = c.shape()
		}
		b.WriteString("(" + strings.Join(parts, ", ") + ")")
	}
	return b.String()
}

// find returns the first node (depth first) for which ok is true.
func (n planNode) find(ok func(planNode) bool) (planNode, bool) {
	if ok(n) {
		return n, true
	}
	for _, c := range n.Plans {
		if f, found := c.find(ok); found {
			return f, true
		}
	}
	return planNode{}, false
}

// lockOrderShapes are the plans under which the statements that lock tasks inside
// _apply_task_changes visit, and so lock, the tasks in id order, keyed by the
// statement's first line. The UPDATE of the reported tasks (the general one, and the
// one for a batch of successes only: "a" below) and the FOR NO KEY UPDATE
// of the successes' dependents (issue 14: it replaced their decrement, so a dependent
// is locked, not rewritten; the decrement of a join's count in task_deps_unmet, and
// of an older package's count on the task row, follows on tasks it already holds, and
// a count apart is written only under its task's lock, so their order does not matter
// and they are not checked): a
// nested loop whose outer side is the id-sorted input and whose inner side reads tasks
// by primary key; a nested loop returns rows in its outer side's order, and the UPDATE
// and LockRows lock them as they come. _finish_dependents (called by it, so under its settings):
// FOR NO KEY UPDATE over a primary-key scan, which returns ids in key order.
//
// When a PostgreSQL upgrade or an edit of apply_task_changes.sql changes one of
// these, do not just paste the new shape: check that the new plan still reads the
// sorted input on the outer side and probes tasks by key on the inner side (no hash or
// merge join, no seq or bitmap scan of tasks), then run
// TestConcurrentOverlappingReports with -count=50 before accepting it.
var lockOrderShapes = map[string]struct{ node, shape string }{
	"with input as (": {"ModifyTable", "ModifyTable Update[tasks](" +
		"Nested Loop(Subquery Scan(Sort(Function Scan)), Index Scan[tasks.tasks_pkey]))"},
	"with success_input as (": {"ModifyTable", "ModifyTable Update[tasks](" +
		"Nested Loop(Subquery Scan(Sort(Function Scan)), Index Scan[tasks.tasks_pkey]))"},
	"with dec as (": {"LockRows", "LockRows(" +
		"Nested Loop(Subquery Scan(Group(Sort(Function Scan))), Index Scan[tasks.tasks_pkey]))"},
	"with recursive down(id) as (": {"LockRows", "LockRows(CTE Scan, Index Scan[tasks.tasks_pkey])"},
}

// TestLockOrderPlans checks the plans _apply_task_changes really runs (auto_explain
// of its nested statements, so under its own SET clauses and generic plans) against
// lockOrderShapes. The function's deadlock freedom depends on these shapes, and
// enable_hashjoin = off and its siblings are cost penalties, not prohibitions: a
// planner change must fail here, not deadlock in production.
func TestLockOrderPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	_, tasks := startRun(t, s, []orkstate.TaskSpec{
		{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"a"}},
		{Name: "d", DependsOn: []string{"b", "c"}},
	})
	id := map[string]int64{}
	for _, tk := range tasks {
		id[tk.TaskName] = tk.ID
	}
	// Plans depend on the table's size: on a near-empty tasks table a full scan of
	// its primary key as the outer side is cheapest. The shapes checked are those of
	// a working install, so the check runs beside 20,000 other tasks, analyzed.
	big, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "lock-order-bulk", TaskParams: []byte(`{"task_count": 20000}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRun(ctx, big.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartPendingRuns(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, "analyze "+s.Schema()+".tasks"); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var notices []string
	cfg, err := pgx.ParseConfig(testdb.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, q := range []string{
		"load 'auto_explain'",
		"set local auto_explain.log_min_duration = 0",
		"set local auto_explain.log_nested_statements = on",
		"set local auto_explain.log_format = json",
		"set local auto_explain.log_level = notice",
		"set local client_min_messages = notice",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v (auto_explain ships with PostgreSQL's contrib modules)", q, err)
		}
	}
	apply := fmt.Sprintf(`select * from %s_api._apply_task_changes(array[1], $1::bigint[], $2::text[],
		array[null]::text[], array[null]::text[], array[null]::jsonb[], array[null]::integer[], now())`, s.Schema())
	// a succeeds: its dependents are locked (the dec statement; b and c are derived).
	// b fails for good: d, counted apart, is finished as a dependent (_finish_dependents).
	for _, r := range []struct {
		task   string
		status string
	}{{"a", "success"}, {"b", "failed"}} {
		if _, err := tx.Exec(ctx, apply, []int64{id[r.task]}, []string{r.status}); err != nil {
			t.Fatalf("apply %s %s: %v", r.task, r.status, err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, msg := range notices {
		i := strings.Index(msg, "{")
		if !strings.HasPrefix(msg, "duration:") || i < 0 {
			continue
		}
		var p struct {
			Query string   `json:"Query Text"`
			Plan  planNode `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(msg[i:]), &p); err != nil {
			t.Fatalf("auto_explain plan: %v\n%s", err, msg)
		}
		first := strings.TrimSpace(strings.SplitN(strings.TrimSpace(p.Query), "\n", 2)[0])
		want, checked := lockOrderShapes[first]
		if !checked {
			continue
		}
		seen[first] = true
		target, ok := p.Plan.find(func(n planNode) bool {
			return n.NodeType == want.node && (n.Relation == "tasks" || n.NodeType == "LockRows")
		})
		if !ok {
			t.Errorf("statement %q: no %s of tasks in its plan:\n%s", first, want.node, p.Plan.shape())
			continue
		}
		for _, bad := range []string{"Hash Join", "Merge Join", "Seq Scan[tasks]", "Bitmap Heap Scan[tasks]"} {
			if strings.Contains(p.Plan.shape(), bad) {
				t.Errorf("statement %q uses %s: tasks are no longer locked in id order\n%s", first, bad, p.Plan.shape())
			}
		}
		if target.shape() != want.shape {
			t.Errorf("statement %q: the plan that locks tasks changed shape (see lockOrderShapes)\n got: %s\nwant: %s",
				first, target.shape(), want.shape)
		}
		t.Logf("%s\n%s", first, p.Plan.shape())
	}
	for first := range lockOrderShapes {
		if !seen[first] {
			t.Errorf("no plan seen for the statement starting %q: did apply_task_changes.sql change?", first)
		}
	}
}
