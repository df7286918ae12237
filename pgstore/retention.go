package pgstore

import (
	"context"
	"time"

	"github.com/orkstate/orkstate"
)

// DefaultPurgeBatch is the number of tasks one purge batch deletes when
// PurgeParams.BatchSize is zero.
const DefaultPurgeBatch = 1000

// PurgeParams says what PurgeRuns removes and how.
type PurgeParams struct {
	// BatchSize bounds one batch, in tasks (1 … 10,000): each batch is one
	// transaction, so it also bounds how long a batch holds its locks. Defaults
	// to DefaultPurgeBatch.
	BatchSize int
	// Pause is how long to wait between batches, to leave the server's CPU and
	// disk to the hot paths while a large backlog is purged (measured on 2 cores:
	// an unpaced purge of 600,000 tasks, at ~9,600 tasks/s, cut the workers' e2e
	// rate to 0.55–1.06× of a fresh install's). Must not be negative. Defaults to 0.
	Pause time.Duration
	// OlderThan is the retention period: runs that finished longer ago than
	// this go. Must not be negative; zero purges every finished run.
	OlderThan time.Duration
	// Progress, when set, is called after each batch with the totals so far.
	Progress func(PurgeResult)
	// Vacuum runs a plain VACUUM (skip_locked) of the purged tables after the last
	// batch, so the space is reused at once instead of at autovacuum's next round
	// (measured: 400,000 tasks of churn purged every 20,000 left the tables 7.9×
	// the size of one wave with autovacuum alone, 1.65× with this; docs/architecture.md).
	// It needs the tables' owner (others get a warning, not an error) and is
	// skipped on a Store bound to a transaction. Defaults to false.
	Vacuum bool
}

// PurgeResult counts what a purge deleted.
type PurgeResult struct {
	Batches      int
	Runs         int64
	Tasks        int64
	LogChunks    int64
	DeferredJobs int64
	Leases       int64
}

func (r *PurgeResult) add(b PurgeResult) {
	r.Batches += b.Batches
	r.Runs += b.Runs
	r.Tasks += b.Tasks
	r.LogChunks += b.LogChunks
	r.DeferredJobs += b.DeferredJobs
	r.Leases += b.Leases
}

func (r PurgeResult) empty() bool { return r.Runs == 0 && r.Tasks == 0 && r.Leases == 0 }

// PurgeRuns deletes the history older than p.OlderThan: finished runs with their
// tasks, log chunks, deferred jobs, deadline rows and stale lease rows, in batches
// of <schema>_api.purge_runs until one deletes nothing. A run is kept while
// anything live refers to it (an unfinished task, a pending or polling deferred
// job, a lock someone holds on it); docs/operations.md says when to run it.
//
// On the pool each batch commits on its own, so a cancelled context or a killed
// process loses at most the batch in progress, and calling PurgeRuns again goes
// on where it stopped. Several purgers at once take disjoint runs. On a Store
// bound to a transaction (WithTx) every batch runs in that transaction and holds
// its locks until the caller commits.
func (s *Store) PurgeRuns(ctx context.Context, p PurgeParams) (PurgeResult, error) {
	if p.OlderThan < 0 {
		return PurgeResult{}, orkstate.Invalid("older_than", p.OlderThan, "must not be negative")
	}
	if p.Pause < 0 {
		return PurgeResult{}, orkstate.Invalid("pause", p.Pause, "must not be negative")
	}
	if p.BatchSize == 0 {
		p.BatchSize = DefaultPurgeBatch
	}
	if p.BatchSize < 1 || p.BatchSize > 10000 {
		return PurgeResult{}, orkstate.Invalid("batch_size", p.BatchSize, "must be between 1 and 10000")
	}
	var total PurgeResult
	for {
		b, err := s.purgeBatch(ctx, p.OlderThan, p.BatchSize)
		if err != nil {
			return total, err
		}
		if b.empty() {
			if p.Vacuum && total.Batches > 0 {
				return total, s.vacuumPurged(ctx)
			}
			return total, nil
		}
		total.add(b)
		if p.Progress != nil {
			p.Progress(total)
		}
		if p.Pause > 0 {
			select {
			case <-ctx.Done():
				return total, ctx.Err()
			case <-time.After(p.Pause):
			}
		}
	}
}

// purgeBatch runs one purge_runs call: one transaction on the pool.
func (s *Store) purgeBatch(ctx context.Context, olderThan time.Duration, limit int) (PurgeResult, error) {
	b := PurgeResult{Batches: 1}
	err := s.db.QueryRow(ctx, s.sql(`select * from {api}.purge_runs($1, $2)`), olderThan, limit).
		Scan(&b.Runs, &b.Tasks, &b.LogChunks, &b.DeferredJobs, &b.Leases)
	if err != nil {
		return PurgeResult{}, wrap(err, "pgstore: purge runs")
	}
	return b, nil
}

// vacuumPurged vacuums the tables a purge deletes from (VACUUM cannot run in a
// transaction: on a Store bound to one it does nothing).
func (s *Store) vacuumPurged(ctx context.Context) error {
	if s.db != dbtx(s.pool) {
		return nil
	}
	_, err := s.pool.Exec(ctx, s.sql(`vacuum (skip_locked) {ork}.runs, {ork}.tasks, {ork}.task_queue, {ork}.task_leases,
		{ork}.task_deadlines, {ork}.task_logs, {ork}.task_log_sizes, {ork}.deferred_jobs`))
	return wrap(err, "pgstore: vacuum after purge")
}
