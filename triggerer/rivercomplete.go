package triggerer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
)

// completeRiverJobsTx completes running River jobs inside tx and merges each one's
// output into its metadata, in one statement: what River's JobCompleteTx does for
// one job (the same pilot call, JobSetStateIfRunningMany, with the same
// parameters), for a whole group.
//
// Why not JobCompleteTx once per job: it is one round trip per job inside the
// group's transaction, which holds the run's and tasks' locks. Measured with
// TestMeasureThroughput (5,000 jobs completed at their first poll, 1,000
// workers, River's own no-op jobs in the same process; a shared 2-core machine
// at load 10-20, so only the ratios mean much): one JobCompleteTx per job
// 396-462 jobs/s (0.07-0.12 of River), one statement per group 1,170-3,240
// jobs/s (0.3-0.65); before grouping 103-129 jobs/s (0.02-0.04).
//
// River marks Client.Driver and Client.Pilot "API is not stable":
// go.mod pins River, and TestEndToEnd, TestTrackerSaysFailed and
// TestKilledTriggerer check the River job's state and output, so an upgrade that
// changes them fails the tests. On a River upgrade compare with River's
// job_complete_tx.go.
//
// It returns, per input position, whether that job is now completed: false for
// a job that was not running any more (rescued, cancelled and finalised, or
// deleted), which the caller must not finish.
func (t *Triggerer) completeRiverJobsTx(ctx context.Context, tx pgx.Tx, ids []int64, outputs []PollOutput) ([]bool, error) {
	n := len(ids)
	now := time.Now().UTC().Truncate(time.Microsecond) // what timestamptz keeps
	p := &riverdriver.JobSetStateIfRunningManyParams{
		ID:              ids,
		Attempt:         make([]*int, n),
		ErrData:         make([][]byte, n),
		FinalizedAt:     make([]*time.Time, n),
		MetadataDoMerge: make([]bool, n),
		MetadataUpdates: make([][]byte, n),
		ScheduledAt:     make([]*time.Time, n),
		Schema:          t.cfg.Schema,
		State:           make([]rivertype.JobState, n),
	}
	for i := range ids {
		meta, err := json.Marshal(map[string]any{rivertype.MetadataKeyOutput: outputs[i]})
		if err != nil {
			return nil, fmt.Errorf("output of river job %d: %w", ids[i], err)
		}
		p.FinalizedAt[i] = &now
		p.MetadataDoMerge[i] = true
		p.MetadataUpdates[i] = meta
		p.State[i] = rivertype.JobStateCompleted
	}
	rows, err := t.client.Pilot().JobSetStateIfRunningMany(ctx, t.client.Driver().UnwrapExecutor(tx), p)
	if err != nil {
		return nil, err
	}
	completed := make(map[int64]bool, len(rows))
	for _, r := range rows {
		// A job that was not running comes back too (its metadata merged), in
		// its own state; finalized_at tells ours apart from an older completion.
		completed[r.ID] = r.State == rivertype.JobStateCompleted && r.FinalizedAt != nil && r.FinalizedAt.Equal(now)
	}
	ok := make([]bool, n)
	for i, id := range ids {
		ok[i] = completed[id]
	}
	return ok, nil
}
