package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// wakePollInterval is the polling the NOTIFY wake-up is compared with (and what a
// loop without LISTEN — PgBouncer in transaction mode — would use).
const wakePollInterval = 50 * time.Millisecond

// runWakeup: how long from the commit that makes a task ready until an idle
// scheduler has claimed it, woken by NOTIFY, and woken by polling alone.
func runWakeup(ctx context.Context, r *runner) error {
	const sc = "wakeup"
	s, drop, err := r.install(ctx)
	if err != nil {
		return err
	}
	defer drop()
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "bench_wakeup", ExecutorType: "noop",
		TaskParams: json.RawMessage(`{"task_count": 1}`)})
	if err != nil {
		return err
	}
	l, err := notify.NewListener(r.pool, &notify.ListenerConfig{Schema: s.Schema(), Logger: discardLogger()})
	if err != nil {
		return err
	}
	if err := l.Start(ctx); err != nil {
		return err
	}
	defer l.Stop()
	for _, mode := range []struct {
		variant  string
		listener *notify.Listener
		poll     time.Duration
	}{
		{"NOTIFY", l, time.Second},
		{fmt.Sprintf("polling every %s", wakePollInterval), nil, wakePollInterval},
	} {
		lat, lost, err := wakeSamples(ctx, s, wf.ID, mode.listener, mode.poll, r.sizes.WakeSamples)
		if err != nil {
			r.add(Result{Scenario: sc, Variant: mode.variant, System: SystemOrkstate, Error: err.Error()})
			continue
		}
		p50, p99 := percentiles(lat)
		r.add(Result{Scenario: sc, Variant: mode.variant, System: SystemOrkstate, Items: len(lat), Unit: "wake-ups",
			P50Ms: p50, P99Ms: p99, LatencyOf: "run start committed → task claimed", Losses: lost,
			Note: "latency only; idle scheduler, one task at a time"})
	}
	return nil
}

// wakeSamples starts one single-task run at a time, at random moments, and measures
// how long an idle scheduler loop on a Waker takes to claim its task.
func wakeSamples(ctx context.Context, s *pgstore.Store, wfID int64, l *notify.Listener, poll time.Duration, samples int) ([]time.Duration, int, error) {
	w, err := notify.NewWaker(l, &notify.WakerConfig{PollInterval: poll})
	if err != nil {
		return nil, 0, err
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	claimedAt := make(chan time.Time, 16)
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Wait(ctx); err != nil {
				return
			}
			got, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "wakeup", Limit: 10})
			if err != nil {
				if ctx.Err() == nil {
					errc <- err
				}
				return
			}
			now := time.Now()
			for range got {
				claimedAt <- now
			}
		}
	}()
	var lat []time.Duration
	lost := 0
	for i := 0; i < samples; i++ {
		// an idle spell of random length, so a sample lands anywhere in a poll period
		time.Sleep(20*time.Millisecond + rand.N(wakePollInterval))
		if _, err := s.CreateRun(ctx, wfID, "bench"); err != nil {
			return nil, 0, err
		}
		t0 := time.Now()
		if _, err := s.StartPendingRuns(ctx, 1); err != nil {
			return nil, 0, err
		}
		select {
		case t := <-claimedAt:
			lat = append(lat, t.Sub(t0))
		case err := <-errc:
			return nil, 0, err
		case <-time.After(5 * time.Second):
			lost++
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return lat, lost, nil
}
