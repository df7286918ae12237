package notify_test

import (
	"context"
	"errors"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// Example_schedulerLoop is a scheduler: it starts pending runs, claims
// dispatchable tasks, dispatches them, reports their results (with the next claim,
// in one call), and sleeps on a Waker until a notification says tasks became ready
// or the fallback poll comes.
func Example_schedulerLoop() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(pool, &pgstore.Config{Schema: "ork"})
	if err != nil {
		log.Fatal(err)
	}

	// One connection of the pool becomes the listener's own. Behind PgBouncer in
	// transaction pooling, set ListenerConfig.ConnString to reach Postgres
	// directly, or skip the listener: NewWaker(nil, cfg) polls alone.
	listener, err := notify.NewListener(pool, &notify.ListenerConfig{Schema: "ork"})
	if err != nil {
		log.Fatal(err)
	}
	waker, err := notify.NewWaker(listener, &notify.WakerConfig{PollInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer waker.Close()
	if err := listener.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer listener.Stop()

	if err := schedule(ctx, store, waker); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// schedule is the loop. It only sleeps when a round found nothing to do: a full
// claim means more may be waiting, and the Waker would only add latency. A
// transient error (pgstore.IsTransient: a lost connection, a Postgres restart, a
// terminated backend, a deadlock) pauses the loop with a growing backoff and the
// round runs again; any other error ends it. A round's reports go with the next
// round's claim, and reports that could not be sent are kept for the round after:
// they carry their attempt, so one the database had applied before the connection
// died comes back as ignored.
func schedule(ctx context.Context, s orkstate.Store, w orkstate.Waker) error {
	var (
		swept   time.Time
		unsent  []orkstate.TaskUpdate
		failure int // consecutive transient failures
	)
	for {
		busy, err := round(ctx, s, &swept, &unsent)
		switch {
		case err == nil:
			failure = 0
		case pgstore.IsTransient(err):
			failure++
			pause := backoff(failure)
			log.Printf("scheduler: %v; again in %v", err, pause)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
			continue
		default:
			return err
		}
		if busy {
			continue
		}
		if _, err := w.Wait(ctx); err != nil {
			return err
		}
	}
}

// round is one pass of the loop: sweep, start runs, report the last round's results
// and claim the next batch (one call), dispatch it. It reports whether there is more
// to do at once: a full batch (more may be waiting) or results still to report.
func round(ctx context.Context, s orkstate.Store, swept *time.Time, unsent *[]orkstate.TaskUpdate) (bool, error) {
	const batch = 100
	// The sweeps: tasks whose claimer died (lease ended) go back to pending, tasks
	// past their timeout fail under the retry rule. Any scheduler may run them; a
	// sweep with nothing due is one index probe, so every second is cheap. A full
	// batch means more is due: the next round comes at once.
	var expired, timedOut []orkstate.TaskOutcome
	if time.Since(*swept) >= time.Second {
		var err error
		if expired, err = s.ExpireTaskLeases(ctx, batch); err != nil {
			return false, err
		}
		if timedOut, err = s.FailTimedOutTasks(ctx, batch); err != nil {
			return false, err
		}
		if len(expired) < batch && len(timedOut) < batch {
			*swept = time.Now()
		}
	}
	// New runs announce nothing (only their tasks do, once started), so the
	// poll is what finds them; a run started here sends tasks_ready itself.
	started, err := s.StartPendingRuns(ctx, batch)
	if err != nil {
		return false, err
	}
	claimed, err := reportAndClaim(ctx, s, *unsent, orkstate.ClaimParams{
		Claimer: "example-scheduler",
		Limit:   batch,
		Lease:   time.Minute,
	})
	if err != nil {
		return false, err // *unsent stays, for the next round
	}
	reports := make([]orkstate.TaskUpdate, 0, len(claimed))
	for _, t := range claimed {
		reports = append(reports, dispatch(ctx, t))
	}
	*unsent = reports
	full := len(claimed) == batch || len(started) == batch || len(expired) == batch || len(timedOut) == batch
	return full || len(reports) > 0, nil
}

// reportAndClaim sends the reports and claims the next batch: in one call and one
// transaction when the store can (orkstate.ReportClaimer: pgstore and sqlitecompat
// can), else in two. The tasks the reports make dispatchable notify tasks_ready once,
// which wakes this loop or a peer's — or are among the tasks this very call claims.
func reportAndClaim(ctx context.Context, s orkstate.Store, reports []orkstate.TaskUpdate, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	var outcomes []orkstate.TaskOutcome
	var claimed []orkstate.ClaimedTask
	var err error
	if rc, ok := s.(orkstate.ReportClaimer); ok {
		outcomes, claimed, err = rc.ReportAndClaim(ctx, reports, p)
	} else {
		if len(reports) > 0 {
			outcomes, err = s.SetTaskStates(ctx, reports)
		}
		if err == nil {
			// (should this claim fail, the reports are sent again: they come back ignored)
			claimed, err = s.ClaimTasks(ctx, p)
		}
	}
	if err != nil {
		return nil, err
	}
	for _, o := range outcomes {
		if o.Outcome == orkstate.OutcomeStale {
			log.Printf("task %d: lease lost to another scheduler", o.TaskID)
		}
	}
	return claimed, nil
}

// backoff is the pause after the nth consecutive transient failure: 100 ms,
// doubling up to 5 s, with jitter so that schedulers cut off together (a
// Postgres restart) do not come back in step.
func backoff(n int) time.Duration {
	d := 5 * time.Second
	if n < 7 {
		d = 100 * time.Millisecond << (n - 1)
	}
	return d/2 + rand.N(d/2)
}

// dispatch stands for handing the task to its executor; here every task succeeds.
func dispatch(_ context.Context, t orkstate.ClaimedTask) orkstate.TaskUpdate {
	return orkstate.TaskUpdate{TaskID: t.ID, Status: orkstate.TaskSuccess, Attempt: t.Attempt}
}
