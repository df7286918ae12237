package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/orkstate/orkstate/internal/bench"
	"github.com/orkstate/orkstate/internal/testdb"
)

// TestPrioritiesSmoke runs the priorities scenario at trivial sizes: it must work and
// claim every task exactly once; speed is not checked.
//
// Not parallel: two runners of one process name their schemas alike (pid and a
// counter of their own), so one would drop the other's install.
func TestPrioritiesSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a loaded machine took over 1
	defer cancel()
	sizes := bench.TinySizes()
	rep, err := bench.Run(ctx, &bench.Config{Pool: testdb.Pool(t), Sizes: &sizes, Only: []string{"priorities"}, Mode: "smoke"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2+len(sizes.Blocked) {
		t.Fatalf("%d results, want %d", len(rep.Results), 2+len(sizes.Blocked))
	}
	for _, r := range rep.Results {
		if r.Error != "" || r.Losses != 0 || r.Duplicates != 0 {
			t.Errorf("%s/%s: error %q, lost %d, duplicates %d", r.Scenario, r.Variant, r.Error, r.Losses, r.Duplicates)
		}
	}
}
