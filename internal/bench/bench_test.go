package bench_test

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate/internal/bench"
	"github.com/orkstate/orkstate/internal/testdb"
)

// TestSmoke runs a few scenarios (orkstate, the floor, the bare UPDATE, ork-v1's report path, its calibration
// and the failure paths on both) at trivial sizes so the harness keeps compiling and working; it checks
// correctness (no duplicates, nothing lost), never speed.
func TestSmoke(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sizes := bench.TinySizes()
	sizes.FailureRuns, sizes.FailureV1Runs = 4, 4
	rep, err := bench.Run(ctx, &bench.Config{Pool: testdb.Pool(t), Sizes: &sizes, Only: []string{"batch_status", "calibration", "failures"}, Mode: "smoke"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) == 0 {
		t.Fatal("no results")
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Errorf("%s/%s/%s: %s", r.Scenario, r.Variant, r.System, r.Error)
		}
		if r.Losses != 0 {
			t.Errorf("%s/%s/%s: lost %d", r.Scenario, r.Variant, r.System, r.Losses)
		}
		if r.Note != "" && strings.Contains(r.Note, "not finished") {
			t.Errorf("%s/%s/%s: %s", r.Scenario, r.Variant, r.System, r.Note)
		}
		if r.System != bench.SystemOrkV1 && r.Duplicates != 0 {
			t.Errorf("%s/%s/%s: %d duplicates", r.Scenario, r.Variant, r.System, r.Duplicates)
		}
	}
	dir := t.TempDir()
	if _, err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
}

var update = flag.Bool("update", false, "rewrite README.md's benchmark table from internal/bench/results")

// TestREADMEMatchesResults fails when the README's benchmark table is not the one
// internal/bench/results/{quick,full}.json generate; -update rewrites it.
func TestREADMEMatchesResults(t *testing.T) {
	quick, err := bench.LoadReport("results/quick.json")
	if err != nil {
		t.Fatal(err)
	}
	full, err := bench.LoadReport("results/full.json")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := bench.ReplaceReadmeTable(string(readme), bench.ReadmeTable(quick, full))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("../../README.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != string(readme) {
		t.Fatal("README.md's benchmark table differs from internal/bench/results: run `go test ./internal/bench -run TestREADMEMatchesResults -update` (make bench does)")
	}
}
