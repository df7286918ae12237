package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestServerSettings measures what the session-settable server settings that
// docs/operations.md discusses do to orkstate's work: e2e tasks/s and the WAL a
// batch of 1,000 successes writes, per setting. Skipped unless ORK_SETTINGS is set:
//
//	ORK_SETTINGS=1 go test -run TestServerSettings -v ./pgstore/
//
// The WAL figure is EXPLAIN (ANALYZE, WAL) of the report call — this backend's WAL
// only — the least of three batches, each right after a checkpoint.
func TestServerSettings(t *testing.T) {
	if os.Getenv("ORK_SETTINGS") == "" {
		t.Skip("set ORK_SETTINGS=1 to measure server settings")
	}
	ctx := context.Background()
	for _, c := range []struct{ name, param, value string }{
		{"defaults", "", ""},
		{"synchronous_commit=off", "synchronous_commit", "off"},
		{"wal_compression=pglz", "wal_compression", "pglz"},
		{"wal_compression=lz4", "wal_compression", "lz4"},
	} {
		cfg, err := pgxpool.ParseConfig(testdb.URL())
		noErr(t, err)
		cfg.MaxConns = 8
		if c.param != "" {
			cfg.ConnConfig.RuntimeParams[c.param] = c.value
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		noErr(t, err)
		_, schema := testdb.Schema(t)
		s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
		noErr(t, err)
		rate, lat := agedWorkload(t, s, 10, 2000, 4, nil)

		// WAL of one batch of 1,000 successes with a dependent each (propagation).
		var best int64 = -1
		for range 3 {
			specs := make([]orkstate.TaskSpec, 0, 2000)
			for i := range 1000 {
				specs = append(specs, orkstate.TaskSpec{Name: fmt.Sprint("a", i)},
					orkstate.TaskSpec{Name: fmt.Sprint("b", i), DependsOn: []string{fmt.Sprint("a", i)}})
			}
			startRun(t, s, specs)
			got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "wal", Limit: 1000})
			noErr(t, err)
			ids := make([]int64, len(got))
			attempts := make([]int32, len(got))
			statuses := make([]string, len(got))
			for i, c := range got {
				ids[i], attempts[i], statuses[i] = c.ID, int32(c.Attempt), "success"
			}
			_, err = pool.Exec(ctx, `checkpoint`) // full-page images follow a checkpoint, as they do in production
			noErr(t, err)
			// EXPLAIN's WAL figure counts this backend's WAL only, the function's statements included.
			var plan []map[string]any
			noErr(t, pool.QueryRow(ctx, `explain (analyze, wal, format json) select * from `+schema+
				`_api.set_task_states(p_task_ids => $1, p_statuses => $2, p_attempts => $3)`, ids, statuses, attempts).Scan(&plan))
			wal := int64(plan[0]["Plan"].(map[string]any)["WAL Bytes"].(float64))
			if best < 0 || wal < best {
				best = wal
			}
		}
		t.Logf("%-24s %6.0f tasks/s e2e, claim p50 %v; WAL per 1,000 successes after a checkpoint: %d kB",
			c.name, rate, pct(lat, 50).Round(100*time.Microsecond), best/1024)
		pool.Close()
	}
}
