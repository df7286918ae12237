package pgstore

import (
	"context"
	"fmt"

	"github.com/orkstate/orkstate"
)

var _ orkstate.ReportClaimer = (*Store)(nil)

// ReportAndClaim applies updates as SetTaskStates does and then claims as ClaimTasks
// does, in one statement (report_and_claim): one round trip and one commit for a
// scheduler loop instead of two. Bound to a caller's tx (WithTx) it runs in that
// transaction; else a deadlock of the report is retried, the whole call again.
func (s *Store) ReportAndClaim(ctx context.Context, updates []orkstate.TaskUpdate, p orkstate.ClaimParams) ([]orkstate.TaskOutcome, []orkstate.ClaimedTask, error) {
	updates, err := orkstate.NormalizeTaskUpdates(updates)
	if err != nil {
		return nil, nil, err
	}
	p, err = p.Normalize()
	if err != nil {
		return nil, nil, err
	}
	var types []string
	if len(p.ExecutorTypes) > 0 {
		types = p.ExecutorTypes
	}
	args := append(newReportArgs(updates), p.Claimer, p.Limit, types, p.Lease, s.now())
	var outcomes []outcomeRow
	var claimed []orkstate.ClaimedTask
	err = s.retryDeadlock(ctx, func() error {
		outcomes, claimed = make([]outcomeRow, 0, len(updates)), make([]orkstate.ClaimedTask, 0, min(p.Limit, 256))
		rows, err := s.db.Query(ctx, s.sql(`select * from {api}.report_and_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		// A report row: ord, task_id, outcome, status and 24 nulls; a claimed row: a
		// null ord, outcome 'claimed', status 'dispatched' and claim_tasks' row.
		var o outcomeRow
		var row claimRow
		reportDst := make([]any, 28)
		reportDst[0], reportDst[1], reportDst[2], reportDst[3] = &o.Ord, &o.TaskID, &o.Outcome, &o.Status
		claimDst := append([]any{nil, &row.c.ID, nil, nil}, row.targets()[1:]...)
		for rows.Next() {
			if rows.RawValues()[0] != nil {
				if err := rows.Scan(reportDst...); err != nil {
					return err
				}
				outcomes = append(outcomes, o)
				o = outcomeRow{}
				continue
			}
			if err := rows.Scan(claimDst...); err != nil {
				return err
			}
			k, err := row.task(p.Claimer)
			if err != nil {
				return err
			}
			claimed = append(claimed, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, nil, wrap(err, "pgstore: report and claim")
	}
	if len(outcomes) != len(updates) {
		return nil, nil, fmt.Errorf("pgstore: report and claim: %d outcomes for %d updates", len(outcomes), len(updates))
	}
	return sortedOutcomes(outcomes), claimed, nil
}
