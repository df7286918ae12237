package bench

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// SystemGraphile is graphile-worker, the closest peer whose API is SQL functions.
const SystemGraphile = "graphile-worker"

// graphileVersion is the graphile-worker release the baseline installs.
const graphileVersion = "0.18.0"

//go:embed graphile.js
var graphileScript []byte

// graphileDir installs graphile-worker (once, into the user's cache directory) and
// returns the directory holding it and the script, or why it cannot.
func graphileDir(ctx context.Context) (string, string) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Sprintf("graphile-worker: skipped, %s is not on PATH", tool)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "orkstate-bench", "graphile-worker-"+graphileVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "graphile-worker")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", "graphile-worker: skipped, " + err.Error()
		}
		ictx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ictx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--silent",
			"graphile-worker@"+graphileVersion).CombinedOutput()
		if err != nil {
			return "", fmt.Sprintf("graphile-worker: skipped, npm install failed: %v %s", err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "graphile.js"), graphileScript, 0o644); err != nil {
		return "", "graphile-worker: skipped, " + err.Error()
	}
	return dir, ""
}

// runGraphile: n no-op jobs added with addJobs (batches of 1,000, on the clock) and
// drained by one graphile-worker runner with a local queue and batched completion,
// when node and npm are on the machine; otherwise the report says why not.
func runGraphile(ctx context.Context, r *runner) error {
	dir, why := graphileDir(ctx)
	if why != "" {
		r.logf("    %s", why)
		r.missing = append(r.missing, why)
		return nil
	}
	n := r.sizes.E2ERuns * 100
	r.measure(Result{Scenario: "e2e", Variant: "no-op jobs", System: SystemGraphile, Unit: "jobs",
		Note: "graphile-worker " + graphileVersion + ", concurrency 10, localQueue 1000, completeJobBatchDelay 0; its own clock: first addJobs → runner stopped (completions flushed)"},
		func(int) (*sample, error) {
			schema := r.schemaName("benchgw")
			defer dropSchema(context.WithoutCancel(ctx), r.pool, schema)
			cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "graphile.js"), schema, fmt.Sprint(n), "10")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "DATABASE_URL="+r.pool.Config().ConnString())
			var stderr strings.Builder
			cmd.Stderr = &stderr
			m := r.startMeter(ctx)
			out, err := cmd.Output()
			smp := &sample{items: n}
			m.stop(smp)
			smp.allocs = 0 // a node process: Go's allocations say nothing
			if err != nil {
				return nil, fmt.Errorf("graphile-worker: %v: %s", err, strings.TrimSpace(stderr.String()))
			}
			var res struct {
				Secs float64 `json:"secs"`
				Done int     `json:"done"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				return nil, fmt.Errorf("graphile-worker output %q: %w", out, err)
			}
			smp.secs = res.Secs
			var left int
			if err := r.pool.QueryRow(ctx, fmt.Sprintf("select count(*) from %s._private_jobs", schema)).Scan(&left); err != nil {
				return nil, err
			}
			smp.lost = max(0, n-res.Done) + left
			smp.dups = max(0, res.Done-n)
			return smp, nil
		})
	return nil
}
