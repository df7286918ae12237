package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestSetTaskStatesCPU measures the server CPU of a batch of successes with their
// propagation (batch_status's workload: chains of pending tasks, 1,000 per call, each
// success queueing its chain's next link), against the same-write floor (plain SQL
// doing the same writes, as the bench's floor does), alternating in one run. Each
// variant has its own install and its own one-connection pool, and the backend's CPU
// is read from /proc/<pid>/schedstat around each call (run as root on the database's
// machine). Run by hand: ORK_REPORT_CPU=20000 go test ./internal/bench -run
// TestSetTaskStatesCPU -v. ORK_REPORT_CPU_OLD=<another version's sql/functions
// directory> installs that package in a third install, measured in the same rotation,
// called as the client before issue 14's second round called it (arrays of nulls);
// ORK_REPORT_CPU_OLD_STORE=1 calls it through this client instead (the package's change
// alone). ORK_REPORT_CPU_DIRECT=1 adds _apply_task_changes called directly (what
// set_task_states adds around it); ORK_REPORT_EXPLAIN=1 (or analyze) logs every nested
// statement's plan and duration from the second level on (auto_explain).
func TestSetTaskStatesCPU(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ORK_REPORT_CPU"))
	if n <= 0 {
		t.Skip("ORK_REPORT_CPU=<tasks> runs it")
	}
	const batch = 1000
	ctx := context.Background()
	runs, perRun, links := chainLayout(n, batch)
	w := runs * perRun

	type variant struct {
		name  string
		f     fixture
		first int64
		call  func(ids []int64) error
		cpu   func() int64
		pid   int
		us    []float64
		wall  []float64
	}
	newVariant := func(name string) *variant {
		pool0, schema := testdb.Schema(t)
		cfg, err := pgxpool.ParseConfig(testdb.URL())
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns, cfg.MinConns = 1, 1
		cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if os.Getenv("ORK_REPORT_EXPLAIN") != "" {
				t.Logf("%s: %s", name, n.Message)
			}
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		f := fixture{pool: pool0, schema: schema}
		first, err := f.chains(ctx, runs, perRun, links, "pending", 0)
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		if err := pool.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return &variant{name: name, f: fixture{pool: pool, schema: schema}, first: first, cpu: schedCPU(t, pid), pid: pid}
	}
	storeCall := func(v *variant) {
		s, err := pgstore.New(v.f.pool, &pgstore.Config{Schema: v.f.schema})
		if err != nil {
			t.Fatal(err)
		}
		v.call = func(ids []int64) error {
			missed, err := reportSuccesses(ctx, s, ids)
			if missed > 0 {
				t.Fatalf("%s: %d of %d successes not applied", v.name, missed, len(ids))
			}
			return err
		}
	}

	vs := []*variant{newVariant("set_task_states")}
	storeCall(vs[0])
	if dir := os.Getenv("ORK_REPORT_CPU_OLD"); dir != "" {
		v := newVariant("set_task_states (old package)")
		code, err := migrate.LoadCodePackage(os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := v.f.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = migrate.InstallCodePackage(ctx, conn.Conn(), map[string]any{"schema": v.f.schema}, code)
		conn.Release()
		if err != nil {
			t.Fatal(err)
		}
		// as the client before this change called it: every optional array sent, full
		// of nulls (attempts of zeros)
		q := v.f.sql(`select * from {ork}_api.set_task_states($1, $2, $3, $4, $5, $6, $7)`)
		v.call = func(ids []int64) error {
			st := make([]string, len(ids))
			for i := range st {
				st[i] = "success"
			}
			nulls := make([]*string, len(ids))
			rows, err := v.f.pool.Query(ctx, q, ids, st, nulls, nulls, nulls, make([]int32, len(ids)), time.Now())
			if err != nil {
				return err
			}
			for rows.Next() {
				var ord int32
				var id int64
				var outcome, status string
				if err := rows.Scan(&ord, &id, &outcome, &status); err != nil {
					return err
				}
				if outcome != "applied" {
					t.Fatalf("%s: task %d %s", v.name, id, outcome)
				}
			}
			return rows.Err()
		}
		if os.Getenv("ORK_REPORT_CPU_OLD_STORE") != "" {
			storeCall(v)
		}
		vs = append(vs, v)
	}
	if os.Getenv("ORK_REPORT_CPU_DIRECT") != "" {
		// _apply_task_changes called directly: what set_task_states adds around it
		v := newVariant("_apply_task_changes")
		q := v.f.sql(`select * from {ork}_api._apply_task_changes($1, $2, $3, null, null, null, null, now())`)
		v.call = func(ids []int64) error {
			st := make([]string, len(ids))
			ords := make([]int32, len(ids))
			for i := range st {
				st[i], ords[i] = "success", int32(i+1)
			}
			rows, err := v.f.pool.Query(ctx, q, ords, ids, st)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}
		vs = append(vs, v)
	}
	floor := newVariant("floor")
	fw, err := floorWrites(ctx, fixture{pool: floor.f.pool, schema: floor.f.schema}, 1, links, w, floor.first)
	if err != nil {
		t.Fatal(err)
	}
	floor.call = func(ids []int64) error { _, err := fw.apply(ctx, ids); return err }
	vs = append(vs, floor)

	explain := os.Getenv("ORK_REPORT_EXPLAIN") != ""
	if f := os.Getenv("ORK_REPORT_PIDS"); f != "" {
		// for a profiler: the backends' pids, one line per variant, then a pause
		var b strings.Builder
		for _, v := range vs {
			fmt.Fprintf(&b, "%d %s\n", v.pid, v.name)
		}
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
	}
	for l := 0; l < links; l++ {
		for j := range vs {
			v := vs[(l+j)%len(vs)]
			ids := idRange(v.first+int64(l*w), w)
			if explain && l == 1 {
				// from the second level on, every statement's duration (auto_explain of
				// nested statements, not analyzed: the plan and the duration only)
				if _, err := v.f.pool.Exec(ctx, `load 'auto_explain'; set auto_explain.log_min_duration = 0;
					set auto_explain.log_nested_statements = on; set auto_explain.log_level = notice;
					set auto_explain.log_analyze = `+strconv.FormatBool(os.Getenv("ORK_REPORT_EXPLAIN") == "analyze")); err != nil {
					t.Fatal(err)
				}
			}
			before, t0 := v.cpu(), time.Now()
			if err := v.call(ids); err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
			v.wall = append(v.wall, float64(time.Since(t0).Microseconds())/float64(w))
			v.us = append(v.us, float64(v.cpu()-before)/1e3/float64(w))
		}
	}
	med := func(x []float64) float64 {
		y := append([]float64(nil), x...)
		sort.Float64s(y)
		return y[len(y)/2]
	}
	fl := med(floor.us)
	for _, v := range vs {
		t.Logf("%-32s server CPU per task: median %.2f µs (%.2f× the floor), wall median %.2f µs, %d calls of %d",
			v.name, med(v.us), med(v.us)/fl, med(v.wall), len(v.us), w)
	}
}
