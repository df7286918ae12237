package bench

import (
	"context"
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

// runWakeup: how long from the commit of a dependency's success until an idle
// scheduler has claimed the dependent it made ready, woken by NOTIFY, and woken by
// polling alone.
func runWakeup(ctx context.Context, r *runner) error {
	const sc = "wakeup"
	s, drop, err := r.install(ctx)
	if err != nil {
		return err
	}
	defer drop()
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "bench_wakeup", ExecutorType: "noop"})
	if err != nil {
		return err
	}
	if _, err := s.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{
		{Name: "upstream", ExecutorType: "noop"},
		{Name: "dependent", ExecutorType: "noop", DependsOn: []string{"upstream"}},
	}); err != nil {
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
		// The samples are split over the repetitions; the latencies pool them all.
		per := max(1, r.sizes.WakeSamples/max(1, r.sizes.Reps))
		r.measure(Result{Scenario: sc, Variant: mode.variant, System: SystemOrkstate, Unit: "wake-ups",
			LatencyOf: "dependency's success committed → dependent claimed", Note: "latency only; idle scheduler, one task at a time"},
			func(int) (*sample, error) {
				lat, lost, err := wakeSamples(ctx, s, wf.ID, mode.listener, mode.poll, per)
				// no throughput: the samples wait on purpose
				return &sample{items: len(lat), lat: lat, lost: lost}, err
			})
	}
	return nil
}

// wakeSamples runs one two-task chain at a time: an idle scheduler loop on a Waker
// claims the upstream task and hands it over; at a random moment the upstream's
// success is reported, and the sample is the time from that commit's acknowledgement
// until the loop has claimed the dependent.
func wakeSamples(ctx context.Context, s *pgstore.Store, wfID int64, l *notify.Listener, poll time.Duration, samples int) ([]time.Duration, int, error) {
	w, err := notify.NewWaker(l, &notify.WakerConfig{PollInterval: poll})
	if err != nil {
		return nil, 0, err
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type claim struct {
		task orkstate.ClaimedTask
		at   time.Time
	}
	claims := make(chan claim, 16)
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
			for _, t := range got {
				claims <- claim{t, now}
			}
		}
	}()
	var lat []time.Duration
	lost := 0
	next := func() (claim, bool, error) {
		select {
		case c := <-claims:
			return c, true, nil
		case err := <-errc:
			return claim{}, false, err
		case <-time.After(5 * time.Second):
			return claim{}, false, nil
		case <-ctx.Done():
			return claim{}, false, ctx.Err()
		}
	}
	for i := 0; i < samples; i++ {
		if _, err := s.CreateRun(ctx, wfID, "bench"); err != nil {
			return nil, 0, err
		}
		if _, err := s.StartPendingRuns(ctx, 1); err != nil {
			return nil, 0, err
		}
		up, ok, err := next()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			lost++
			continue
		}
		// an idle spell of random length, so a sample lands anywhere in a poll period
		time.Sleep(20*time.Millisecond + rand.N(wakePollInterval))
		if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: up.task.ID, Status: orkstate.TaskSuccess, Attempt: up.task.Attempt}); err != nil {
			return nil, 0, err
		}
		t0 := time.Now()
		dep, ok, err := next()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			lost++
			continue
		}
		lat = append(lat, dep.at.Sub(t0))
		if _, err := s.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: dep.task.ID, Status: orkstate.TaskSuccess, Attempt: dep.task.Attempt}); err != nil {
			return nil, 0, err
		}
	}
	return lat, lost, nil
}
