package pgstore

import (
	"context"
	"time"

	"github.com/orkstate/orkstate"
)

// DefaultPurgeBatch is the number of tasks one purge batch deletes when
// PurgeParams.BatchSize is zero.
const DefaultPurgeBatch = orkstate.DefaultPurgeBatch

// PurgeParams says what PurgeRuns removes and how (the same for every store).
type PurgeParams = orkstate.PurgeParams

// PurgeResult counts what a purge deleted.
type PurgeResult = orkstate.PurgeResult

var _ orkstate.Purger = (*Store)(nil)

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
	p, err := p.Validate()
	if err != nil {
		return PurgeResult{}, err
	}
	var total PurgeResult
	for {
		start := time.Now()
		b, err := s.purgeBatch(ctx, p.OlderThan, p.BatchSize)
		if err != nil {
			return total, err
		}
		if b.Empty() {
			if p.Vacuum && total.Batches > 0 {
				return total, s.vacuumPurged(ctx)
			}
			return total, nil
		}
		total.Add(b)
		if p.Progress != nil {
			p.Progress(total)
		}
		if err := p.Wait(ctx, start, b); err != nil {
			return total, err
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
