package bench

import (
	"context"
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
		r.try("e2e", shape.name, SystemSQLite, func() error {
			dir, err := os.MkdirTemp("", "orkstate-bench-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			s, err := sqlitecompat.Open(ctx, filepath.Join(dir, "bench.db"), nil)
			if err != nil {
				return err
			}
			defer s.Close()
			waiters := func() (func(context.Context) error, func()) {
				w, err := s.Waker(&sqlitecompat.WakerConfig{PollInterval: 50 * time.Millisecond})
				if err != nil {
					return func(context.Context) error { return err }, func() {}
				}
				return func(ctx context.Context) error { _, err := w.Wait(ctx); return err }, w.Stop
			}
			o, err := driveE2E(ctx, s, waiters, shape, sz.E2ESQLite, sz.Schedulers, 1000)
			if err != nil {
				return err
			}
			res := e2eResult(SystemSQLite, shape.name, o, sz.Schedulers)
			res.Note += "; file in a temp dir"
			r.add(res)
			return nil
		})
	}
	return nil
}
