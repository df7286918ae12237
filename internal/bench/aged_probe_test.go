package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate/pgstore"
)

// TestAgedProbe takes the aged scenario apart (issue 15): claims and e2e on a fresh
// install and on an aged one, with no purge, with the aged install's own purge beside
// them (paced as the bench paces it, and flat out), and with a purge of another aged
// install beside the fresh one (the same CPU and WAL competition, no table shared).
// The variants alternate within each round, so the load of the shared machine falls
// on all of them alike. Skipped unless ORK_AGED_PROBE names the history size:
//
//	ORK_AGED_PROBE=300000 ORK_AGED_ROUNDS=3 go test ./internal/bench -run TestAgedProbe -v -timeout 60m
//
// It switches autovacuum on for its duration (restored afterwards). Not part of
// make test; the numbers go to docs/architecture.md, "Retention".
func TestAgedProbe(t *testing.T) {
	history, _ := strconv.Atoi(os.Getenv("ORK_AGED_PROBE"))
	if history <= 0 {
		t.Skip("set ORK_AGED_PROBE to a history size (e.g. 300000) to take the aged scenario apart")
	}
	rounds := envInt("ORK_AGED_ROUNDS", 3)
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@localhost:5432/postgres?sslmode=disable"
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sz := FullSizes()
	sz.ClaimTasks = envInt("ORK_AGED_CLAIMS", 50_000)
	sz.E2ERuns = envInt("ORK_AGED_E2E", 300)
	r := &runner{pool: pool, sizes: sz, progress: os.Stderr, start: time.Now()}
	restore, err := r.autovacuumOn(ctx, "aged probe")
	if err != nil {
		t.Fatal(err)
	}
	defer restore()

	type inst struct {
		s    *pgstore.Store
		f    fixture
		drop func()
	}
	mk := func(aged bool) inst {
		s, drop, err := r.install(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f := fixture{pool: pool, schema: s.Schema(), aged: aged}
		if aged {
			t0 := time.Now()
			if err := agedHistory(ctx, f, history); err != nil {
				drop()
				t.Fatal(err)
			}
			r.logf("history of %d tasks in %s: %.1fs", history, s.Schema(), time.Since(t0).Seconds())
		}
		return inst{s, f, drop}
	}
	fresh, aged, other := mk(false), mk(true), mk(true)
	defer fresh.drop()
	defer aged.drop()
	defer other.drop()

	pace := os.Getenv("ORK_AGED_PACE") // the new pacing's PurgeParams, as "rate=N" (tasks/s)
	type variant struct {
		name   string
		on     inst
		purge  *inst
		params pgstore.PurgeParams
	}
	paced := pgstore.PurgeParams{OlderThan: purgeBesideAge, Pause: 100 * time.Millisecond}
	variants := []variant{
		{name: "fresh", on: fresh},
		{name: "aged", on: aged},
		{name: "aged+own purge paced 100ms", on: aged, purge: &aged, params: paced},
		{name: "fresh+other purge paced 100ms", on: fresh, purge: &other, params: paced},
	}
	if pace != "" {
		p := paced
		p.Pause = 0
		for _, kv := range strings.Split(pace, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "rate":
				p.MaxRate, _ = strconv.ParseFloat(v, 64)
			case "batch":
				p.BatchSize, _ = strconv.Atoi(v)
			case "pause":
				p.Pause, _ = time.ParseDuration(v)
			}
		}
		variants = append(variants, variant{name: "aged+own purge " + pace, on: aged, purge: &aged, params: p},
			variant{name: "fresh+other purge " + pace, on: fresh, purge: &other, params: p})
	}
	variants = append(variants, variant{name: "aged+own purge flat out", on: aged, purge: &aged, params: pgstore.PurgeParams{OlderThan: purgeBesideAge}})
	if only := os.Getenv("ORK_AGED_ONLY"); only != "" {
		variants = slices.DeleteFunc(variants, func(v variant) bool { return !strings.Contains(only, v.name) })
	}
	type figures struct{ claims, e2e, purgeRate, cpuPerK []float64 }
	got := map[string]*figures{}
	for round := 0; round < rounds; round++ {
		if round > 0 {
			// what is left of the history becomes old enough to purge again
			for _, in := range []inst{aged, other} {
				if _, err := pool.Exec(ctx, in.f.sql(`update {ork}.runs set finished_at = finished_at - interval '31 days'
					where status in ('success', 'failed', 'cancelled') and finished_at >= now() - interval '30 days'`)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, v := range variants {
			fg := got[v.name]
			if fg == nil {
				fg = &figures{}
				got[v.name] = fg
			}
			var pr *probePurge
			if v.purge != nil {
				pr = startProbePurge(ctx, t, url, v.purge.s.Schema(), v.params)
			}
			if _, err := v.on.f.chains(ctx, max(1, sz.ClaimTasks/1000), min(1000, sz.ClaimTasks), 1, "pending", 0); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			ids, _, err := claimAll(ctx, v.on.s, 4, sz.ClaimBatch)
			if err != nil {
				t.Fatal(err)
			}
			claims := float64(sz.ClaimTasks) / time.Since(t0).Seconds()
			if d, l := dupsAndLosses(sz.ClaimTasks, ids); d+l > 0 {
				t.Fatalf("%s: %d duplicates, %d lost", v.name, d, l)
			}
			smp, _, err := r.orkstateE2EOn(ctx, v.on.s, chainsShape(), sz.E2ERuns, failurePlan{}, false)
			if err != nil {
				t.Fatal(err)
			}
			fg.claims = append(fg.claims, claims)
			fg.e2e = append(fg.e2e, float64(smp.items)/smp.secs)
			line := fmt.Sprintf("round %d %-34s claims %7.0f/s e2e %6.0f/s", round, v.name, claims, float64(smp.items)/smp.secs)
			if pr != nil {
				rate, cpu, batches, running := pr.stop(t)
				fg.purgeRate = append(fg.purgeRate, rate)
				fg.cpuPerK = append(fg.cpuPerK, cpu)
				line += fmt.Sprintf("  purge %6.0f tasks/s, %5.1f ms CPU per 1,000 tasks, %d batches, running throughout: %v", rate, cpu, batches, running)
			}
			r.logf("%s", line)
		}
	}
	base := got[variants[0].name]
	for _, v := range variants {
		fg := got[v.name]
		line := fmt.Sprintf("%-34s claims %7.0f/s (%.2f×) e2e %6.0f/s (%.2f×)", v.name, median(fg.claims), median(fg.claims)/median(base.claims),
			median(fg.e2e), median(fg.e2e)/median(base.e2e))
		if len(fg.purgeRate) > 0 {
			line += fmt.Sprintf("  purge %.0f tasks/s, %.1f ms CPU/1,000 tasks", median(fg.purgeRate), median(fg.cpuPerK))
		}
		t.Log(line)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// probePurge is a purge on a connection of its own, so its backend's CPU time can be
// read from /proc (the server runs on this machine).
type probePurge struct {
	pool    *pgxpool.Pool
	pid     int
	cpu0    float64
	t0      time.Time
	res     pgstore.PurgeResult
	running bool
	done    chan error
	cancel  context.CancelFunc
}

func startProbePurge(ctx context.Context, t *testing.T, url, schema string, p pgstore.PurgeParams) *probePurge {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = 1, 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	pr := &probePurge{pool: pool, done: make(chan error, 1), running: true}
	if err := pool.QueryRow(ctx, "select pg_backend_pid()").Scan(&pr.pid); err != nil {
		t.Fatal(err)
	}
	pr.cpu0 = backendCPU(pr.pid)
	pr.t0 = time.Now()
	ctx, pr.cancel = context.WithCancel(ctx)
	go func() {
		res, err := s.PurgeRuns(ctx, p)
		pr.res = res
		pr.done <- err
	}()
	return pr
}

// stop ends the purge and returns its rate, its backend's CPU per 1,000 tasks, its
// batches and whether it was still running (had history left) when stopped.
func (pr *probePurge) stop(t *testing.T) (rate, cpuPerK float64, batches int, running bool) {
	secs := time.Since(pr.t0).Seconds()
	cpu := backendCPU(pr.pid) - pr.cpu0
	select {
	case err := <-pr.done:
		if err != nil {
			t.Fatal(err)
		}
		running = false
	default:
		pr.cancel()
		<-pr.done
		running = true
	}
	pr.pool.Close()
	if pr.res.Tasks > 0 {
		cpuPerK = cpu * 1000 / float64(pr.res.Tasks) * 1000
	}
	return float64(pr.res.Tasks) / secs, cpuPerK, pr.res.Batches, running
}

// backendCPU is a server process's user+system CPU in seconds (/proc/<pid>/stat).
func backendCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// TestAgedScenario runs the bench's aged scenario itself at a custom history size and
// prints its results (quick sizes otherwise; ORK_AGED_FULL=1 for full ones). Skipped
// unless ORK_AGED_SCENARIO names the history size:
//
//	ORK_AGED_SCENARIO=200000 go test ./internal/bench -run TestAgedScenario -v -timeout 60m
func TestAgedScenario(t *testing.T) {
	history, _ := strconv.Atoi(os.Getenv("ORK_AGED_SCENARIO"))
	if history <= 0 {
		t.Skip("set ORK_AGED_SCENARIO to a history size to run the aged scenario at it")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@localhost:5432/postgres?sslmode=disable"
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sz := QuickSizes()
	if os.Getenv("ORK_AGED_FULL") != "" {
		sz = FullSizes()
	}
	sz.AgedTasks = history
	sz.Reps = envInt("ORK_AGED_REPS", sz.Reps)
	rep, err := Run(context.Background(), &Config{Pool: pool, Sizes: &sz, Only: []string{"aged"}, Progress: os.Stderr, Mode: "custom"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		t.Logf("%-28s %8.0f %s/s (%.0f–%.0f) ÷ fresh %.2f  p50 %.1f ms p99 %.1f ms  %s %s", r.Variant, r.Throughput, r.Unit,
			r.ThroughputMin, r.ThroughputMax, r.Ratios["÷ fresh"], r.P50Ms, r.P99Ms, r.Note, r.Error)
		if r.Error != "" || r.Duplicates+r.Losses > 0 {
			t.Errorf("%s: %s (dups %d, lost %d)", r.Variant, r.Error, r.Duplicates, r.Losses)
		}
	}
}
