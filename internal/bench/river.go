package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// The River baseline: n no-op jobs inserted with InsertMany and worked by one River
// client, in a schema of its own (River's Config.Schema), migrated by rivermigrate.

type noopArgs struct {
	I int `json:"i"`
}

func (noopArgs) Kind() string { return "orkstate_bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	worked *atomic.Int64
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error {
	w.worked.Add(1)
	return nil
}

// riverFetchCooldown is River's least wait between two fetches. River's default
// (100 ms) caps a client near 10 fetches a second; the baseline gets a short one
// so that it is River at its best, not at its defaults.
const riverFetchCooldown = 5 * time.Millisecond

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// riverSchema creates a schema holding River's tables.
func (r *runner) riverSchema(ctx context.Context) (string, func(), error) {
	schema := r.schemaName("benchriver")
	drop := func() { dropSchema(context.WithoutCancel(ctx), r.pool, schema) }
	if _, err := r.pool.Exec(ctx, "create schema "+schema); err != nil {
		return "", func() {}, err
	}
	m, err := rivermigrate.New(riverpgxv5.New(r.pool), &rivermigrate.Config{Schema: schema, Logger: discardLogger()})
	if err != nil {
		drop()
		return "", func() {}, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		drop()
		return "", func() {}, fmt.Errorf("river migrate: %w", err)
	}
	return schema, drop, nil
}

// runRiverNoop measures River on n no-op jobs: from the first InsertMany (inserts
// are on the clock, as orkstate's run creation is) until the last job's completion
// is reported (River reports it once it is recorded).
func runRiverNoop(ctx context.Context, r *runner, n int) (*sample, error) {
	smp := &sample{items: n}
	schema, drop, err := r.riverSchema(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	worked := &atomic.Int64{}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{worked: worked})
	client, err := river.NewClient(riverpgxv5.New(r.pool), &river.Config{
		Schema:        schema,
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: r.sizes.RiverWorkers}},
		Workers:       workers,
		FetchCooldown: riverFetchCooldown,
		Logger:        discardLogger(),
	})
	if err != nil {
		return nil, err
	}
	events, cancelSub := client.SubscribeConfig(&river.SubscribeConfig{ChanSize: n + 1000,
		Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed}})
	defer cancelSub()
	if err := client.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = client.Stop(sctx)
	}()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: noopArgs{I: i}}
	}
	m := r.startMeter(ctx)
	for off := 0; off < n; off += 1000 {
		if _, err := client.InsertMany(ctx, params[off:min(n, off+1000)]); err != nil {
			return nil, err
		}
	}
	completed := 0
	timeout := time.After(5 * time.Minute)
	for completed < n {
		select {
		case ev := <-events:
			if ev.Kind != river.EventKindJobCompleted {
				smp.lost++
			}
			completed++
		case <-timeout:
			return nil, fmt.Errorf("river: %d of %d jobs completed after 5 minutes", completed, n)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.stop(smp)
	smp.dups = max(0, int(worked.Load())-n)
	rows, err := r.pool.Query(ctx, fmt.Sprintf(`select (extract(epoch from finalized_at - created_at) * 1e6)::bigint from %s.river_job`, schema))
	if err != nil {
		return nil, err
	}
	us, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	for _, u := range us {
		smp.lat = append(smp.lat, time.Duration(u)*time.Microsecond)
	}
	smp.diskBytes, err = r.diskSize(ctx, schema)
	smp.diskItems = n
	return smp, err
}
