package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// Defaults of the leases when a caller leaves them zero.
const (
	DefaultTaskLease     = orkstate.DefaultTaskLease
	DefaultDeferredLease = orkstate.DefaultDeferredLease
)

// ClaimTasks moves up to p.Limit dispatchable tasks to dispatched for p.Claimer.
func (s *Store) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	var types []string
	if len(p.ExecutorTypes) > 0 {
		types = p.ExecutorTypes
	}
	rows, err := s.db.Query(ctx, s.sql(`select * from {api}.claim_tasks($1, $2, $3, $4, $5)`), p.Claimer, p.Limit, types, p.Lease, s.now())
	if err != nil {
		return nil, wrap(err, "pgstore: claim tasks")
	}
	claimed := make([]orkstate.ClaimedTask, 0, min(p.Limit, 256))
	var row claimRow
	_, err = pgx.ForEachRow(rows, row.targets(), func() error {
		k, err := row.task(p.Claimer)
		claimed = append(claimed, k)
		return err
	})
	if err != nil {
		return nil, wrap(err, "pgstore: claim tasks")
	}
	return claimed, nil
}

// claimRow is claim_tasks' row, scanned by position. It leaves out what every
// claimed task has in common (task fills it in).
type claimRow struct {
	c                 orkstate.ClaimedTask
	lease, dispatched time.Time
	upstream          []byte
	override          *int
}

// targets are the scan destinations of claim_tasks' 25 columns.
func (r *claimRow) targets() []any {
	c := &r.c
	return []any{&c.ID, &c.RunID, &c.TaskIndex, &c.TaskName, &c.ExecutorType, &c.DependsOn,
		&c.ExecutionName, &c.Params, &c.Output, &c.Error, &c.Attempt, &c.MaxRetries, &c.TimeoutSeconds,
		&r.lease, &c.CreatedAt, &r.dispatched, &c.WorkflowID, &c.WorkflowName, &c.JobName, &c.Project, &c.Region,
		&r.upstream, &c.Priority, &r.override, &c.ConcurrencyKey}
}

// task returns the scanned row as a claimed task of claimer and clears r for the
// next row, so that no two tasks share a slice or map.
func (r *claimRow) task(claimer string) (orkstate.ClaimedTask, error) {
	k, l, d := r.c, r.lease, r.dispatched
	if r.override != nil {
		o := *r.override
		k.PriorityOverride = &o
	}
	r.c, r.override = orkstate.ClaimedTask{}, nil
	k.Status, k.ClaimedBy, k.Attempts = orkstate.TaskDispatched, claimer, k.Attempt
	k.LeaseExpiresAt, k.DispatchedAt = &l, &d
	if string(r.upstream) == "{}" { // no dependencies: spare the decoder
		k.UpstreamOutputs = map[string]json.RawMessage{}
	} else if err := json.Unmarshal(r.upstream, &k.UpstreamOutputs); err != nil {
		return k, fmt.Errorf("upstream outputs of task %d: %w", k.ID, err)
	} else {
		for name, o := range k.UpstreamOutputs {
			if string(o) == "null" { // no output: nil, as UpstreamOutputs and sqlitecompat give it
				k.UpstreamOutputs[name] = nil
			}
		}
	}
	return k, nil
}
