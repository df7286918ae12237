package orkstate

import (
	"context"
	"math"
	"time"
)

// DefaultPurgeBatch is the number of tasks one purge batch deletes when
// PurgeParams.BatchSize is zero.
const DefaultPurgeBatch = 1000

// Purger is implemented by the stores that delete old history: pgstore.Store and
// sqlitecompat.Store. It is not part of Store, so a Store of another kind need not
// have it; callers check for it (`orkstate purge` does).
type Purger interface {
	// PurgeRuns deletes the runs that finished (success, failed, cancelled) longer
	// ago than p.OlderThan, with their tasks, log chunks, log sizes, deferred jobs
	// and whatever else hangs off them, in batches of at most p.BatchSize tasks,
	// each committed on its own, until a batch deletes nothing. A run anything
	// live refers to stays: an unfinished task, a pending or polling deferred job.
	// A cancelled context or a killed process loses at most the batch in progress;
	// calling PurgeRuns again goes on where it stopped. It returns the totals
	// (with an error, those of the batches committed before it).
	PurgeRuns(ctx context.Context, p PurgeParams) (PurgeResult, error)
}

// PurgeParams says what PurgeRuns removes and how.
type PurgeParams struct {
	// BatchSize bounds one batch, in tasks (1 … 10,000): each batch is one
	// transaction, so it also bounds how long a batch holds its locks. Defaults
	// to DefaultPurgeBatch.
	BatchSize int
	// OlderThan is the retention period: runs that finished longer ago than
	// this go. Must not be negative; zero purges every finished run.
	OlderThan time.Duration
	// Pause is how long to wait between batches, to leave the server's CPU and
	// disk to the hot paths while a large backlog is purged (measured on 2 cores:
	// an unpaced purge of 600,000 tasks, at ~9,600 tasks/s, cut the workers' e2e
	// rate to 0.55–1.06× of a fresh install's). Must not be negative. Defaults to 0.
	Pause time.Duration
	// MaxRate caps the purge's pace in tasks per second: after a batch of n tasks
	// that took d, the next starts no sooner than n/MaxRate after the batch began
	// (and at least Pause after it ended). History ages at the rate tasks finish, so
	// a purge needs to go only a little faster than that: with MaxRate above the
	// install's sustained finish rate it keeps up, however long it runs, while
	// taking a bounded share of the server — one backend busy for at most
	// d × MaxRate / n of the time — instead of a core. Each batch still holds its
	// locks for one batch's length (BatchSize bounds it). Must not be negative;
	// 0 (the default) is no cap.
	MaxRate float64
	// Progress, when set, is called after each batch with the totals so far.
	Progress func(PurgeResult)
	// Vacuum makes the space of the purged rows reusable at once after the last
	// batch: on PostgreSQL a plain VACUUM (skip_locked) of the purged tables, so the
	// next inserts reuse the space instead of waiting for autovacuum's next round
	// (it needs the tables' owner: others get a warning, not an error; skipped on a
	// pgstore Store bound to a transaction); on SQLite an incremental vacuum of the
	// file's free pages where the file allows it (auto_vacuum = incremental), else
	// nothing (SQLite reuses freed pages by itself). Measured (the bench's churn
	// scenario, autovacuum on): the tables under a retention window ended 4.1× the
	// live rows' size without it, 1.6–2.3× with it (docs/architecture.md,
	// "Retention"). Defaults to false.
	Vacuum bool
}

// Validate applies the defaults and checks p, naming the field it refuses.
func (p PurgeParams) Validate() (PurgeParams, error) {
	if p.OlderThan < 0 {
		return p, Invalid("older_than", p.OlderThan, "must not be negative")
	}
	if p.Pause < 0 {
		return p, Invalid("pause", p.Pause, "must not be negative")
	}
	if p.MaxRate < 0 || math.IsNaN(p.MaxRate) || math.IsInf(p.MaxRate, 0) {
		return p, Invalid("max_rate", p.MaxRate, "must be a finite number of tasks per second, not negative")
	}
	if p.BatchSize == 0 {
		p.BatchSize = DefaultPurgeBatch
	}
	if p.BatchSize < 1 || p.BatchSize > 10000 {
		return p, Invalid("batch_size", p.BatchSize, "must be between 1 and 10000")
	}
	return p, nil
}

// PurgeResult counts what a purge deleted.
type PurgeResult struct {
	Batches      int
	Runs         int64
	Tasks        int64
	LogChunks    int64
	DeferredJobs int64
	// Leases counts PostgreSQL's lease rows (SQLite keeps leases on the task rows).
	Leases int64
}

// Add adds b's counts to r's.
func (r *PurgeResult) Add(b PurgeResult) {
	r.Batches += b.Batches
	r.Runs += b.Runs
	r.Tasks += b.Tasks
	r.LogChunks += b.LogChunks
	r.DeferredJobs += b.DeferredJobs
	r.Leases += b.Leases
}

// Empty reports whether r deleted nothing.
func (r PurgeResult) Empty() bool { return r.Runs == 0 && r.Tasks == 0 && r.Leases == 0 }

// Wait paces a purge between two batches, as p.Pause and p.MaxRate say: b is the
// batch that began at start and has just committed. It returns ctx's error when ctx
// ends first. Both stores' PurgeRuns call it.
func (p PurgeParams) Wait(ctx context.Context, start time.Time, b PurgeResult) error {
	wait := p.Pause
	if p.MaxRate > 0 {
		wait = max(wait, time.Until(start.Add(time.Duration(float64(b.Tasks)/p.MaxRate*float64(time.Second)))))
	}
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
