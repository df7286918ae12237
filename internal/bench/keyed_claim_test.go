package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestKeyedClaimCost takes apart what a claim of 1,000 and the report of its tasks
// (success) cost with three priorities and four keys whose slots never bind, beside
// the same on plain tasks (issue 13's ≥ 0.8× target; the priorities scenario times
// them). Two installs of ORK_KEYED_CLAIM ready tasks each (plain; keyed as the
// scenario places them); each repetition, the two alternating, runs in a
// transaction it rolls back: a claim of 1,000 (unrecorded: it pays the session's
// first lookups), a second claim of 1,000 and the report of its tasks, both
// explained (EXPLAIN (ANALYZE, BUFFERS, WAL): the counts include the function's own
// statements and do not depend on other sessions), with the backend's CPU
// (/proc/<pid>/schedstat; run as root on the database's machine). Medians per
// variant. Run by hand:
//
//	ORK_KEYED_CLAIM=20000 go test ./internal/bench -run TestKeyedClaimCost -v
func TestKeyedClaimCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ORK_KEYED_CLAIM"))
	if n <= 0 {
		t.Skip("ORK_KEYED_CLAIM=<ready tasks> runs it")
	}
	reps := 9
	if r, _ := strconv.Atoi(os.Getenv("ORK_KEYED_CLAIM_REPS")); r > 0 {
		reps = r
	}
	const batch = 1000
	ctx := context.Background()
	type install struct {
		name string
		f    fixture
	}
	var ins []install
	for _, keyed := range []bool{false, true} {
		name, f := keyedClaimInstall(t, n, keyed)
		pool := f.pool
		if !keyed {
			if _, err := pool.Exec(ctx, f.sql(`vacuum analyze {ork}.tasks, {ork}.task_queue`)); err != nil {
				t.Fatal(err)
			}
		}
		ins = append(ins, install{name, f})
	}
	type cost struct{ ms, cpu, hit, rec, bytes, fpi float64 }
	// what[v][0]: the claim; what[v][1]: the report
	what := make([][2][]cost, len(ins))
	explain := func(tx pgx.Tx, cpu func() int64, q string, args ...any) cost {
		before := cpu()
		var plan []map[string]any
		if err := tx.QueryRow(ctx, `explain (analyze, buffers, wal, format json) `+q, args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		after := cpu()
		top := plan[0]["Plan"].(map[string]any)
		num := func(k string) float64 { v, _ := top[k].(float64); return v }
		return cost{ms: num("Actual Total Time"), cpu: float64(after-before) / 1e6, hit: num("Shared Hit Blocks"),
			rec: num("WAL Records"), bytes: num("WAL Bytes"), fpi: num("WAL FPI")}
	}
	for rep := range reps {
		for k := range ins {
			v := (k + rep) % len(ins)
			f := ins[v].f
			func() {
				conn, err := f.pool.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Release()
				var pid int
				if err := conn.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
					t.Fatal(err)
				}
				cpu := schedCPU(t, pid)
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = tx.Rollback(ctx) }()
				if _, err := tx.Exec(ctx, f.sql(`select count(*) from {ork}_api.claim_tasks('c1', $1)`), batch); err != nil {
					t.Fatal(err)
				}
				what[v][0] = append(what[v][0], explain(tx, cpu, f.sql(`select * from {ork}_api.claim_tasks('c2', $1)`), batch))
				var ids []int64
				var statuses []string
				rows, err := tx.Query(ctx, f.sql(`select id from {ork}.tasks where status = 'dispatched' and claimed_by = 'c2' order by id`))
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var id int64
					if err := rows.Scan(&id); err != nil {
						t.Fatal(err)
					}
					ids, statuses = append(ids, id), append(statuses, "success")
				}
				if rows.Err() != nil || len(ids) != batch {
					t.Fatalf("%s: the second claim took %d tasks (%v)", ins[v].name, len(ids), rows.Err())
				}
				what[v][1] = append(what[v][1], explain(tx, cpu, f.sql(`select * from {ork}_api.set_task_states($1, $2)`), ids, statuses))
			}()
		}
	}
	med := func(cs []cost, get func(cost) float64) float64 {
		xs := make([]float64, len(cs))
		for i, c := range cs {
			xs[i] = get(c)
		}
		sort.Float64s(xs)
		return xs[len(xs)/2]
	}
	for v, in := range ins {
		for w, op := range []string{"claim of 1,000", "report of its 1,000 (success)"} {
			cs := what[v][w]
			t.Logf("%-18s %-30s median of %d: %6.1f ms, backend CPU %6.1f ms, %6.0f buffers hit, %5.0f WAL records, %7.0f WAL bytes, %3.0f FPI",
				in.name, op, len(cs), med(cs, func(c cost) float64 { return c.ms }), med(cs, func(c cost) float64 { return c.cpu }),
				med(cs, func(c cost) float64 { return c.hit }), med(cs, func(c cost) float64 { return c.rec }),
				med(cs, func(c cost) float64 { return c.bytes }), med(cs, func(c cost) float64 { return c.fpi }))
		}
	}
	// per repetition ratios keyed ÷ plain (the pair measured back to back)
	var claimCPU, reportCPU []float64
	for r := range reps {
		claimCPU = append(claimCPU, what[1][0][r].cpu/what[0][0][r].cpu)
		reportCPU = append(reportCPU, what[1][1][r].cpu/what[0][1][r].cpu)
	}
	sort.Float64s(claimCPU)
	sort.Float64s(reportCPU)
	t.Logf("keyed ÷ plain backend CPU, median of the repetitions' ratios: claim %.2f×, report %.2f×",
		claimCPU[len(claimCPU)/2], reportCPU[len(reportCPU)/2])
}

// TestKeyedClaimDrain claims ORK_KEYED_DRAIN ready tasks to the end in committed
// claims of 1,000, as the priorities scenario does, from two installs (plain; three
// priorities and four keys whose slots never bind) in turn, batch by batch, so each
// pair of claims meets the shared machine's load at the same moment, and reports the
// backend CPU (/proc/<pid>/schedstat; run as root on the database's machine) of the
// keyed claims ÷ the plain ones: in all, and the median of the pairs. Run by hand:
//
//	ORK_KEYED_DRAIN=30000 go test ./internal/bench -run TestKeyedClaimDrain -v
func TestKeyedClaimDrain(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ORK_KEYED_DRAIN"))
	if n <= 0 {
		t.Skip("ORK_KEYED_DRAIN=<ready tasks> runs it")
	}
	const batch = 1000
	ctx := context.Background()
	type install struct {
		name  string
		f     fixture
		claim func() (int, error)
		cpu   func() int64
		cpus  []float64
	}
	var ins []*install
	for _, keyed := range []bool{false, true} {
		name, f := keyedClaimInstall(t, n, keyed)
		pool := f.pool
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Release)
		var pid int
		if err := conn.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, &install{name: name, f: f, cpu: schedCPU(t, pid), claim: func() (int, error) {
			var got int
			err := conn.QueryRow(ctx, f.sql(`select count(*) from {ork}_api.claim_tasks('drain', $1)`), batch).Scan(&got)
			return got, err
		}})
	}
	for b := 0; b < n/batch; b++ {
		for k := range ins {
			in := ins[(b+k)%len(ins)]
			before := in.cpu()
			got, err := in.claim()
			if err != nil || got != batch {
				t.Fatalf("%s: claim %d took %d tasks (%v)", in.name, b, got, err)
			}
			in.cpus = append(in.cpus, float64(in.cpu()-before)/1e6)
		}
	}
	var total [2]float64
	var ratios []float64
	for b := range ins[0].cpus {
		total[0] += ins[0].cpus[b]
		total[1] += ins[1].cpus[b]
		ratios = append(ratios, ins[1].cpus[b]/ins[0].cpus[b])
	}
	sort.Float64s(ratios)
	t.Logf("backend CPU per claim of %d, %d claims each: plain %.1f ms, keyed %.1f ms; keyed ÷ plain %.2f× in all, median of the pairs %.2f×",
		batch, len(ratios), total[0]/float64(len(ratios)), total[1]/float64(len(ratios)), total[1]/total[0], ratios[len(ratios)/2])
}

// keyedClaimInstall makes an install of n ready chain roots: plain, or keyed as the
// priorities scenario places them (three priorities, four keys whose slots never bind).
func keyedClaimInstall(t *testing.T, n int, keyed bool) (string, fixture) {
	t.Helper()
	ctx := context.Background()
	pool, schema := testdb.Schema(t)
	s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{pool: pool, schema: schema}
	perRun := min(1000, n)
	first, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !keyed {
		return "plain", f
	}
	for k := range 4 {
		if err := s.SetConcurrencyKey(ctx, fmt.Sprintf("k%d", k), 1_000_000); err != nil {
			t.Fatal(err)
		}
	}
	if err := placeInKeys(ctx, f, first, n, `'k' || (t.id % 4)`, `(t.id % 3)::smallint`); err != nil {
		t.Fatal(err)
	}
	return "priorities+4 keys", f
}
