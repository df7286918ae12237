package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/orkstate/orkstate/sqlitecompat"
)

// runSQLiteE2E: the end-to-end workload on sqlitecompat, a file in a temporary
// directory, schedulers woken in process.
func runSQLiteE2E(ctx context.Context, r *runner) error {
	sz := r.sizes
	for _, shape := range []dagShape{chainsShape(), fanShape()} {
		r.measure(Result{Scenario: "e2e", Variant: shape.name, System: SystemSQLite, Unit: "tasks",
			LatencyOf: "run created → finished", Note: fmt.Sprintf("%d schedulers; file in a temp dir", sz.Schedulers)},
			func(int) (*sample, error) {
				dir, err := os.MkdirTemp("", "orkstate-bench-*")
				if err != nil {
					return nil, err
				}
				defer os.RemoveAll(dir)
				s, err := sqlitecompat.Open(ctx, filepath.Join(dir, "bench.db"), nil)
				if err != nil {
					return nil, err
				}
				defer s.Close()
				waiters := func() (func(context.Context) error, func()) {
					w, err := s.Waker(&sqlitecompat.WakerConfig{PollInterval: 50 * time.Millisecond})
					if err != nil {
						return func(context.Context) error { return err }, func() {}
					}
					return func(ctx context.Context) error { _, err := w.Wait(ctx); return err }, w.Stop
				}
				o, err := driveE2E(ctx, s, waiters, shape, sz.E2ESQLite, sz.Schedulers, 1000, failurePlan{})
				if err != nil {
					return nil, err
				}
				return e2eSample(o), nil
			})
	}
	return nil
}
