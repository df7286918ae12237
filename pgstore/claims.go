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
	rows, err := s.db.Query(ctx, s.sql(`select * from {api}.claim_tasks($1, $2, $3, $4)`), p.Claimer, p.Limit, types, p.Lease)
	if err != nil {
		return nil, wrap(err, "pgstore: claim tasks")
	}
	claimed := make([]orkstate.ClaimedTask, 0, min(p.Limit, 256))
	var c orkstate.ClaimedTask
	var lease, dispatched time.Time
	var upstream []byte
	var override *int
	// Scanned by position: claim_tasks' row, which leaves out what every claimed task
	// has in common (filled in below).
	_, err = pgx.ForEachRow(rows, []any{&c.ID, &c.RunID, &c.TaskIndex, &c.TaskName, &c.ExecutorType, &c.DependsOn,
		&c.ExecutionName, &c.Params, &c.Output, &c.Error, &c.Attempt, &c.MaxRetries, &c.TimeoutSeconds,
		&lease, &c.CreatedAt, &dispatched, &c.WorkflowID, &c.WorkflowName, &c.JobName, &c.Project, &c.Region,
		&upstream, &c.Priority, &override, &c.ConcurrencyKey}, func() error {
		k, l, d := c, lease, dispatched
		if override != nil {
			o := *override
			k.PriorityOverride = &o
		}
		k.Status, k.ClaimedBy, k.Attempts = orkstate.TaskDispatched, p.Claimer, c.Attempt
		k.LeaseExpiresAt, k.DispatchedAt = &l, &d
		if string(upstream) == "{}" { // no dependencies: spare the decoder
			k.UpstreamOutputs = map[string]json.RawMessage{}
		} else if err := json.Unmarshal(upstream, &k.UpstreamOutputs); err != nil {
			return fmt.Errorf("upstream outputs of task %d: %w", c.ID, err)
		} else {
			for name, o := range k.UpstreamOutputs {
				if string(o) == "null" { // no output: nil, as UpstreamOutputs and sqlitecompat give it
					k.UpstreamOutputs[name] = nil
				}
			}
		}
		claimed = append(claimed, k)
		// Empty slices and maps for the next row, so no two tasks share one.
		c = orkstate.ClaimedTask{}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "pgstore: claim tasks")
	}
	return claimed, nil
}
