package triggerer

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/orkstate/orkstate"
)

// Tracker polls the jobs of one external service (BigQuery, Cloud Run, an HTTP
// endpoint, ...). A Tracker is called from many goroutines at once and must be
// safe for concurrent use.
type Tracker interface {
	// ServiceType is the deferred jobs' service_type this Tracker polls. It is
	// unique within a Registry.
	ServiceType() string

	// Poll asks the service about one job and reports what it found:
	//
	//   - orkstate.PollRunning: not finished; it is polled again after the poll interval.
	//   - orkstate.PollCompleted: finished well; the deferred job completes.
	//   - orkstate.PollFailed: finished badly; errMsg says why and becomes the
	//     error of the deferred job and of its task.
	//
	// A non-nil err means the question could not be answered (network error,
	// unparseable answer, the poll timeout): River retries the poll with backoff,
	// and only when the attempts run out does the deferred job fail, with err.
	// Report a failure that retrying cannot fix (bad job data) as PollFailed.
	//
	// ctx carries the poll timeout; a Tracker must return promptly once it is done.
	Poll(ctx context.Context, jobID string, jobData json.RawMessage) (status orkstate.PollResult, errMsg string, err error)
}

// Registry maps service types to Trackers. It is safe for concurrent use, so
// trackers may be registered while a Triggerer runs.
type Registry struct {
	mu       sync.RWMutex
	trackers map[string]Tracker
}

// NewRegistry returns a Registry holding trackers; an empty or repeated service
// type is an error naming it.
func NewRegistry(trackers ...Tracker) (*Registry, error) {
	r := &Registry{trackers: make(map[string]Tracker, len(trackers))}
	for _, t := range trackers {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds t. An empty service type, or one already registered, is an error
// and changes nothing.
func (r *Registry) Register(t Tracker) error {
	if t == nil {
		return orkstate.Invalid("tracker", nil, "must not be nil")
	}
	st := t.ServiceType()
	if st == "" {
		return orkstate.Invalid("tracker service type", st, "must not be empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.trackers[st]; ok {
		return fmt.Errorf("triggerer: %w: a tracker for service type %q is already registered", orkstate.ErrConflict, st)
	}
	r.trackers[st] = t
	return nil
}

// Lookup returns the Tracker for serviceType and whether there is one.
func (r *Registry) Lookup(serviceType string) (Tracker, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.trackers[serviceType]
	return t, ok
}

// ServiceTypes lists the registered service types in order.
func (r *Registry) ServiceTypes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.trackers))
	for st := range r.trackers {
		out = append(out, st)
	}
	sort.Strings(out)
	return out
}

// TrackerFunc adapts a function to a Tracker.
type TrackerFunc struct {
	Type string
	Func func(ctx context.Context, jobID string, jobData json.RawMessage) (orkstate.PollResult, string, error)
}

// ServiceType returns f.Type.
func (f TrackerFunc) ServiceType() string { return f.Type }

// Poll calls f.Func.
func (f TrackerFunc) Poll(ctx context.Context, jobID string, jobData json.RawMessage) (orkstate.PollResult, string, error) {
	return f.Func(ctx, jobID, jobData)
}
