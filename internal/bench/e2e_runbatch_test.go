package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/orkstate/orkstate/internal/testdb"
)

// TestE2ERunBatches measures what creating the e2e scenario's runs with CreateRuns
// (runs worth 1,000 tasks per call, as River's jobs go in 1,000 per InsertMany) is
// worth against one CreateRun per run, beside River's no-op jobs, the drives
// alternating in each round (a fresh install each, as the bench's). Besides the
// rate it reports the CPU per task of the drive's backends (/proc/<pid>/schedstat:
// run it on the database's machine) and of this process, and where the schedulers'
// time went. Run by hand:
//
//	ORK_E2E_RUNBATCH=100 go test ./internal/bench -run TestE2ERunBatches -v
//
// (runs per drive; ORK_E2E_RUNBATCH_ROUNDS rounds, default 5; ORK_E2E_RUNBATCH_SIZES
// the runs per call to compare, default "1,10": 1 is one CreateRun per run;
// ORK_E2E_RUNBATCH_FK=1 adds each on an install with the tasks.run_id foreign key).
func TestE2ERunBatches(t *testing.T) {
	runs := envInt("ORK_E2E_RUNBATCH", 0)
	if runs <= 0 {
		t.Skip("ORK_E2E_RUNBATCH=<runs per drive> runs it")
	}
	rounds := envInt("ORK_E2E_RUNBATCH_ROUNDS", 5)
	var sizes []int
	for _, f := range strings.Split(cmp.Or(os.Getenv("ORK_E2E_RUNBATCH_SIZES"), "1,10"), ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			t.Fatalf("ORK_E2E_RUNBATCH_SIZES: %q", f)
		}
		sizes = append(sizes, n)
	}
	ctx := context.Background()
	url := testdb.URL()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	const app = "ork_e2e_runbatch"
	cfg.MaxConns = 32 // as the bench command's pool
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	r := &runner{pool: pool, sizes: QuickSizes(), progress: os.Stderr, start: time.Now()}

	// backendCPU reads the CPU time (ns) of each of this pool's backends.
	backendCPU := func() map[int]int64 {
		rows, err := pool.Query(ctx, `select pid from pg_stat_activity where application_name = $1`, app)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int]int64{}
		for rows.Next() {
			var pid int
			if err := rows.Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if ns, err := procCPU(pid); err == nil {
				out[pid] = ns
			}
		}
		return out
	}
	selfCPU := func() int64 { return int64(processCPU()) }

	type result struct {
		rate, create, serverUs, clientUs float64
		o                                *e2eOutcome
	}
	type drive struct {
		name string
		run  func() (result, error)
	}
	var drives []drive
	// With ORK_E2E_RUNBATCH_FK=1 every size is also driven on an install given back
	// the tasks.run_id foreign key that migration 010 replaced (its schema before).
	fks := []bool{false}
	if os.Getenv("ORK_E2E_RUNBATCH_FK") == "1" {
		fks = append(fks, true)
	}
	for _, shape := range []dagShape{chainsShape(), fanShape()} {
		for _, b := range sizes {
			for _, fk := range fks {
				name := fmt.Sprintf("%s, %d per call", shape.name, b)
				if fk {
					name += ", run FK"
				}
				drives = append(drives, drive{name, func() (result, error) {
					s, drop, err := r.install(ctx)
					if err != nil {
						return result{}, err
					}
					defer drop()
					if fk {
						q := strings.ReplaceAll(`drop trigger tasks_forget_deleted_runs on {ork}.runs;
						alter table {ork}.tasks add constraint tasks_run_id_fkey foreign key (run_id)
							references {ork}.runs(id) on delete cascade`, "{ork}", s.Schema())
						if _, err := pool.Exec(ctx, q); err != nil {
							return result{}, err
						}
					}
					b0, c0 := backendCPU(), selfCPU()
					smp, o, err := r.orkstateE2EOn(ctx, s, shape, runs, failurePlan{runBatch: b}, false)
					if err != nil {
						return result{}, err
					}
					b1, c1 := backendCPU(), selfCPU()
					if smp.dups > 0 || smp.lost > 0 || smp.note != "" {
						return result{}, fmt.Errorf("dups %d lost %d %s", smp.dups, smp.lost, smp.note)
					}
					var server int64
					for pid, ns := range b1 {
						server += ns - b0[pid]
					}
					return result{rate: float64(o.tasks) / o.secs, create: o.createSecs,
						serverUs: float64(server) / 1e3 / float64(o.tasks), clientUs: float64(c1-c0) / 1e3 / float64(o.tasks), o: o}, nil
				}})
			}
		}
	}
	// River's CPU is that of a drive less that of a drive of no job (its schema,
	// migration, client start and stop), measured next to it.
	drives = append(drives, drive{"River no-op jobs", func() (result, error) {
		cpu := func(n int) (*sample, int64, int64, error) {
			b0, c0 := backendCPU(), selfCPU()
			smp, err := runRiverNoop(ctx, r, n)
			b1, c1 := backendCPU(), selfCPU()
			var server int64
			for pid, ns := range b1 {
				server += ns - b0[pid]
			}
			return smp, server, c1 - c0, err
		}
		_, s0, c0, err := cpu(0)
		if err != nil {
			return result{}, err
		}
		smp, s1, c1, err := cpu(runs * 100)
		if err != nil {
			return result{}, err
		}
		return result{rate: float64(smp.items) / smp.secs,
			serverUs: float64(s1-s0) / 1e3 / float64(smp.items), clientUs: float64(c1-c0) / 1e3 / float64(smp.items)}, nil
	}})
	res := make([][]result, len(drives))
	for round := 0; round < rounds; round++ {
		for k := range drives {
			i := (k + round) % len(drives)
			x, err := drives[i].run()
			if err != nil {
				t.Fatalf("%s: %v", drives[i].name, err)
			}
			res[i] = append(res[i], x)
			line := fmt.Sprintf("round %d  %-28s %6.0f tasks/s", round, drives[i].name, x.rate)
			if o := x.o; o != nil {
				line += fmt.Sprintf("  CPU/task server %5.1f µs client %5.1f µs  runs created in %.2fs;"+
					" schedulers: start %.2fs in %d calls (%d started runs, %.2fs), report+claim %.2fs; drive %.2fs",
					x.serverUs, x.clientUs, x.create, o.startSecs, o.startCalls, o.startHits, o.startHitSecs, o.loopSecs, o.secs)
			}
			if x.o == nil {
				line += fmt.Sprintf("  CPU/job server %5.1f µs client %5.1f µs", x.serverUs, x.clientUs)
			}
			t.Log(line)
		}
	}
	river := res[len(drives)-1]
	med := func(i int, f func(result) float64) (float64, string) {
		var v []float64
		for _, x := range res[i] {
			v = append(v, f(x))
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		var parts []string
		for _, x := range v {
			parts = append(parts, fmt.Sprintf("%.2f", x))
		}
		return s[(len(s)-1)/2], strings.Join(parts, " ")
	}
	for i, d := range drives {
		rate, _ := med(i, func(x result) float64 { return x.rate })
		k := 0
		xr, ratios := med(i, func(x result) float64 { k++; return x.rate / river[k-1].rate })
		line := fmt.Sprintf("%-28s median %6.0f tasks/s, × River per round %s (median %.2f)", d.name, rate, ratios, xr)
		sv, _ := med(i, func(x result) float64 { return x.serverUs })
		cl, _ := med(i, func(x result) float64 { return x.clientUs })
		line += fmt.Sprintf("; CPU per item: server %.1f µs, client %.1f µs", sv, cl)
		if i != len(drives)-1 {
			cr, _ := med(i, func(x result) float64 { return x.create })
			line += fmt.Sprintf("; runs created in %.2fs", cr)
		}
		t.Log(line)
	}
}
