package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/orkstate/orkstate/internal/testdb"
)

// TestReportDeferredPollsCPU measures the server CPU that report_deferred_polls spends
// per job when every job of a batch completes on its first poll (each finishing its
// task): N deferred jobs on N running tasks, claimed, then reported in batches, the
// backend's CPU read from /proc/<pid>/schedstat around each call. Run by hand, as
// root on the database's machine: ORK_DEFERRED_CPU=5000 go test ./internal/bench
// -run TestReportDeferredPollsCPU -v. Each call's buffers (EXPLAIN's, which count the
// function's own statements) are summed too: they do not depend on the machine's load.
// ORK_DEFERRED_CPU_OLD=<path of another version's sql/functions/deferred_jobs.sql>
// installs that version's function beside this one, the batches alternating.
func TestReportDeferredPollsCPU(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ORK_DEFERRED_CPU"))
	if n <= 0 {
		t.Skip("ORK_DEFERRED_CPU=<jobs> runs it")
	}
	const batch = 500
	ctx := context.Background()
	pool, schema := testdb.Schema(t)
	f := fixture{pool: pool, schema: schema}
	if _, err := f.chains(ctx, max(1, n/1000), min(1000, n), 1, "running", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, f.sql(`insert into {ork}.deferred_jobs (task_id, service_type, job_id)
		select id, 'bench', 'job-' || id from {ork}.tasks order by id`)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, f.sql(`vacuum analyze {ork}.deferred_jobs`)); err != nil {
		t.Fatal(err)
	}
	// ORK_DEFERRED_CPU_OLD=<deferred_jobs.sql of another version>: its report_deferred_polls
	// is installed beside this one and the batches alternate between the two.
	fns := []string{"report_deferred_polls"}
	if old := os.Getenv("ORK_DEFERRED_CPU_OLD"); old != "" {
		b, err := os.ReadFile(old)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		start := strings.Index(src, "create function {{.schema}}_api.report_deferred_polls(")
		end := strings.Index(src[start:], "\n$$;") + start + len("\n$$;")
		src = strings.ReplaceAll(src[start:end], "report_deferred_polls(", "report_deferred_polls_old(")
		if _, err := pool.Exec(ctx, strings.ReplaceAll(src, "{{.schema}}", schema)); err != nil {
			t.Fatal(err)
		}
		fns = append(fns, "report_deferred_polls_old")
	}
	perFn := make([][]float64, len(fns))
	blocksFn := make([]float64, len(fns))
	jobsFn := make([]int, len(fns))
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	cpu := schedCPU(t, pid)
	batches := 0
	for {
		var ids []int64
		var attempts []int32
		rows, err := conn.Query(ctx, f.sql(`select id, attempts from {ork}_api.claim_deferred_jobs('cpu', $1)`), batch)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			var a int32
			if err := rows.Scan(&id, &a); err != nil {
				t.Fatal(err)
			}
			ids, attempts = append(ids, id), append(attempts, a)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		if len(ids) == 0 {
			break
		}
		results := make([]string, len(ids))
		for i := range results {
			results[i] = "completed"
		}
		k := batches % len(fns)
		batches++
		before := cpu()
		var plan []map[string]any
		if err := conn.QueryRow(ctx, f.sql(`explain (analyze, buffers, timing off, format json)
			select * from {ork}_api.`+fns[k]+`($1, $2, null, null, $3)`), ids, results, attempts).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		after := cpu()
		perFn[k] = append(perFn[k], float64(after-before)/1e3/float64(len(ids)))
		top := plan[0]["Plan"].(map[string]any)
		blocksFn[k] += top["Shared Hit Blocks"].(float64) + top["Shared Read Blocks"].(float64)
		jobsFn[k] += len(ids)
	}
	var done int
	if err := conn.QueryRow(ctx, f.sql(`select count(*) from {ork}.tasks where status = 'success'`)).Scan(&done); err != nil || done != n {
		t.Fatalf("%d of %d tasks succeeded (%v)", done, n, err)
	}
	for k, fn := range fns {
		perJob := perFn[k]
		sort.Float64s(perJob)
		t.Logf("%s per job, batches of %d: server CPU min %.1f µs, median %.1f µs, max %.1f µs (%d batches); %.1f buffers",
			fn, batch, perJob[0], perJob[len(perJob)/2], perJob[len(perJob)-1], len(perJob), blocksFn[k]/float64(jobsFn[k]))
	}
}

// schedCPU returns a reader of server process pid's CPU time in nanoseconds (run as
// root on the database's machine); it skips t when the file cannot be read. The
// by-hand measurements share it.
func schedCPU(t *testing.T, pid int) func() int64 {
	return func() int64 {
		ns, err := procCPU(pid)
		if err != nil {
			t.Skipf("schedstat: %v", err)
		}
		return ns
	}
}

// procCPU is process pid's CPU time in nanoseconds so far: the first field of
// /proc/<pid>/schedstat.
func procCPU(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
}
