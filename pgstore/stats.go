package pgstore

import (
	"context"
	"time"

	"github.com/orkstate/orkstate"
)

// DefaultStatsWindow is how far back Stats counts finished runs when asked for 0.
const DefaultStatsWindow = time.Hour

// Stats is one reading of <schema>_api.stats(): every figure comes from an index
// over live rows or a counter, so reading it costs the same whatever the history.
type Stats struct {
	// ReadyTasks could be claimed now; DelayedTasks wait for their retry time.
	ReadyTasks, DelayedTasks int64
	// OldestReadyAge is how long the head of the queue has been ready (from its
	// creation, or its retry time); zero when nothing is ready.
	OldestReadyAge time.Duration
	// TasksInFlight are dispatched or running; TasksUnfinished counts every task of
	// an unfinished run that has not finished (blocked, ready, paused, in flight).
	TasksInFlight, TasksUnfinished int64
	// LeasesDue are lease rows (one per claim batch) past their end that the lease
	// sweep has not dealt with; DeadlinesDue are tasks past their timeout not yet failed.
	LeasesDue, DeadlinesDue int64
	// Runs by status: the unfinished ones all, the finished ones within Window.
	RunsPending, RunsRunning, RunsPaused     int64
	RunsSucceeded, RunsFailed, RunsCancelled int64
	Window                                   time.Duration
	// RunsEstimate is the planner's estimate of all runs, history included (-1
	// before the first ANALYZE).
	RunsEstimate int64
	// DeferredJobsActive are pending or polling; DeferredJobsDue of them are due a poll.
	DeferredJobsActive, DeferredJobsDue int64
}

// Stats reads the install's figures; window is how far back finished runs are
// counted (0: DefaultStatsWindow).
func (s *Store) Stats(ctx context.Context, window time.Duration) (*Stats, error) {
	if window < 0 {
		return nil, orkstate.Invalid("window", window, "must not be negative")
	}
	if window == 0 {
		window = DefaultStatsWindow
	}
	st := Stats{Window: window}
	var age *time.Duration
	err := s.db.QueryRow(ctx, s.sql(`select * from {api}.stats($1)`), window).Scan(
		&st.ReadyTasks, &st.DelayedTasks, &age, &st.TasksInFlight, &st.TasksUnfinished,
		&st.LeasesDue, &st.DeadlinesDue, &st.RunsPending, &st.RunsRunning, &st.RunsPaused,
		&st.RunsSucceeded, &st.RunsFailed, &st.RunsCancelled, &st.RunsEstimate,
		&st.DeferredJobsActive, &st.DeferredJobsDue)
	if err != nil {
		return nil, wrap(err, "pgstore: stats")
	}
	if age != nil && *age > 0 {
		st.OldestReadyAge = *age
	}
	return &st, nil
}
