package pgstore_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// While a snapshot is held, the queue rows claims delete stay in task_queue and in the
// claim's index, and every claim's scan steps over them; rotate_task_queue truncates
// the table under its lock and puts the ready rows back. Issue 14.
func TestRotateTaskQueueUnderHeldSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n, claim = 2000, 1500
	specs := make([]orkstate.TaskSpec, n)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%d", i)}
	}
	startRun(t, b.s, specs)

	// A session that holds its snapshot, as a long report or a forgotten session does.
	conn, err := pgx.ConnectConfig(b.ctx, b.s.Pool().Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(b.ctx)
	if _, err := conn.Exec(b.ctx, "begin isolation level repeatable read"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(b.ctx, "select 1"); err != nil {
		t.Fatal(err)
	}

	claimed := map[int64]bool{}
	for len(claimed) < claim {
		got, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "c", Limit: min(500, claim-len(claimed))})
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range got {
			claimed[ct.ID] = true
		}
	}

	// The claim's scan to its first ready row: past 1,500 dead entries now.
	before := b.claimScanBuffers(t)
	rotate := func(minDead int64) (bool, int) {
		t.Helper()
		var rotated bool
		var dead int64
		var carried int
		if err := b.s.Pool().QueryRow(b.ctx, fmt.Sprintf(`select * from %s_api.rotate_task_queue($1)`, b.s.Schema()), minDead).
			Scan(&rotated, &dead, &carried); err != nil {
			t.Fatal(err)
		}
		return rotated, carried
	}
	if rotated, _ := rotate(1 << 40); rotated {
		t.Fatal("rotated with fewer dead rows than asked for")
	}
	rotated, carried := rotate(0)
	if !rotated || carried != n-claim {
		t.Fatalf("rotate_task_queue(0): rotated %v, carried %d rows; want true, %d", rotated, carried, n-claim)
	}
	after := b.claimScanBuffers(t)
	t.Logf("claim scan to the first ready row, snapshot held: %d buffers before the rotation, %d after", before, after)
	if after > 5 || before < 4*after {
		t.Fatalf("claim scan read %d buffers before the rotation and %d after: want a few after, at most a quarter of before", before, after)
	}

	// Nothing ready was lost or duplicated: the rest is claimed exactly once.
	for {
		got, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "c", Limit: 300})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		for _, ct := range got {
			if claimed[ct.ID] {
				t.Fatalf("task %d claimed twice", ct.ID)
			}
			claimed[ct.ID] = true
		}
	}
	if len(claimed) != n {
		t.Fatalf("claimed %d tasks in all, want %d", len(claimed), n)
	}
}

// claimScanBuffers is what the claim's candidate scan reads to reach its first ready
// row (EXPLAIN (ANALYZE, BUFFERS), no lock taken).
func (b *testBundle) claimScanBuffers(t *testing.T) int64 {
	t.Helper()
	tx, err := b.s.Pool().Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	if _, err := tx.Exec(b.ctx, "set local enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := tx.QueryRow(b.ctx, fmt.Sprintf(`explain (analyze, buffers, format json)
		select q.task_id from %s.task_queue q
		where q.slot_group = 0 and (q.ready_at is null or q.ready_at <= now())
		order by q.priority desc, q.task_id limit 1`, b.s.Schema())).Scan(&out); err != nil {
		t.Fatal(err)
	}
	var plan []struct {
		Plan struct {
			Hit  int64 `json:"Shared Hit Blocks"`
			Read int64 `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(out, &plan); err != nil || len(plan) == 0 {
		t.Fatalf("explain: %v %s", err, out)
	}
	return plan[0].Plan.Hit + plan[0].Plan.Read
}
