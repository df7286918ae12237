package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestE2ERunBatches measures what creating the e2e scenario's runs with CreateRuns
// (runs worth 1,000 tasks per call, as River's jobs go in 1,000 per InsertMany) is
// worth against one CreateRun per run, beside River's no-op jobs, the drives
// alternating in each round (a fresh install each, as the bench's). Run by hand:
//
//	ORK_E2E_RUNBATCH=100 go test ./internal/bench -run TestE2ERunBatches -v
//
// (runs per drive; ORK_E2E_RUNBATCH_ROUNDS rounds, default 5; ORK_E2E_RUNBATCH_SIZES
// the runs per call to compare, default "1,10": 1 is one CreateRun per run).
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
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@localhost:5432/postgres?sslmode=disable"
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 32 // as the bench command's pool
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	r := &runner{pool: pool, sizes: QuickSizes(), progress: os.Stderr, start: time.Now()}

	type drive struct {
		name string
		run  func() (rate, create float64, err error)
	}
	var drives []drive
	for _, shape := range []dagShape{chainsShape(), fanShape()} {
		for _, b := range sizes {
			drives = append(drives, drive{fmt.Sprintf("%s, %d per call", shape.name, b), func() (float64, float64, error) {
				smp, o, err := r.runOrkstateE2E(ctx, shape, runs, failurePlan{runBatch: b})
				if err != nil {
					return 0, 0, err
				}
				if smp.dups > 0 || smp.lost > 0 || smp.note != "" {
					return 0, 0, fmt.Errorf("dups %d lost %d %s", smp.dups, smp.lost, smp.note)
				}
				return float64(o.tasks) / o.secs, o.createSecs, nil
			}})
		}
	}
	drives = append(drives, drive{"River no-op jobs", func() (float64, float64, error) {
		smp, err := runRiverNoop(ctx, r, runs*100)
		if err != nil {
			return 0, 0, err
		}
		return float64(smp.items) / smp.secs, 0, nil
	}})
	rates := make([][]float64, len(drives))
	creates := make([][]float64, len(drives))
	for round := 0; round < rounds; round++ {
		for k := range drives {
			i := (k + round) % len(drives)
			rate, create, err := drives[i].run()
			if err != nil {
				t.Fatalf("%s: %v", drives[i].name, err)
			}
			rates[i] = append(rates[i], rate)
			creates[i] = append(creates[i], create)
			t.Logf("round %d  %-28s %8.0f tasks/s  runs created in %.2fs", round, drives[i].name, rate, create)
		}
	}
	river := rates[len(drives)-1]
	for i, d := range drives {
		var ratios []float64
		for k := range rates[i] {
			ratios = append(ratios, rates[i][k]/river[k])
		}
		t.Logf("%-28s median %8.0f tasks/s (%s)  × River per round %s  creation median %.2fs",
			d.name, median(rates[i]), fmtList(rates[i], "%.0f"), fmtList(ratios, "%.2f"), median(creates[i]))
	}
}

func fmtList(xs []float64, f string) string {
	var p []string
	for _, x := range xs {
		p = append(p, fmt.Sprintf(f, x))
	}
	return strings.Join(p, " ")
}
