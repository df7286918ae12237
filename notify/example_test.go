package notify_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// Example_schedulerLoop is a scheduler: it starts pending runs, claims
// dispatchable tasks, dispatches them, reports their results, and sleeps on a
// Waker until a notification says tasks became ready or the fallback poll comes.
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
// claim means more may be waiting, and the Waker would only add latency.
func schedule(ctx context.Context, s orkstate.Store, w orkstate.Waker) error {
	const batch = 100
	var swept time.Time
	for {
		// The sweeps: tasks whose claimer died (lease ended) go back to pending, tasks
		// past their timeout fail under the retry rule. Any scheduler may run them; a
		// sweep with nothing due is one index probe, so every second is cheap.
		if time.Since(swept) >= time.Second {
			if _, err := s.ExpireTaskLeases(ctx, batch); err != nil {
				return err
			}
			if _, err := s.FailTimedOutTasks(ctx, batch); err != nil {
				return err
			}
			swept = time.Now()
		}
		// New runs announce nothing (only their tasks do, once started), so the
		// poll is what finds them; a run started here sends tasks_ready itself.
		started, err := s.StartPendingRuns(ctx, batch)
		if err != nil {
			return err
		}
		claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{
			Claimer: "example-scheduler",
			Limit:   batch,
			Lease:   time.Minute,
		})
		if err != nil {
			return err
		}
		reports := make([]orkstate.TaskUpdate, 0, len(claimed))
		for _, t := range claimed {
			reports = append(reports, dispatch(ctx, t))
		}
		if len(reports) > 0 {
			// One statement for the whole batch; the tasks it makes dispatchable
			// notify tasks_ready once, which wakes this loop (or a peer's).
			outcomes, err := s.SetTaskStates(ctx, reports)
			if err != nil {
				return err
			}
			for _, o := range outcomes {
				if o.Outcome == orkstate.OutcomeStale {
					log.Printf("task %d: lease lost to another scheduler", o.TaskID)
				}
			}
		}
		if len(claimed) == batch || len(started) == batch {
			continue
		}
		if _, err := w.Wait(ctx); err != nil {
			return err
		}
	}
}

// dispatch stands for handing the task to its executor; here every task succeeds.
func dispatch(_ context.Context, t orkstate.ClaimedTask) orkstate.TaskUpdate {
	return orkstate.TaskUpdate{TaskID: t.ID, Status: orkstate.TaskSuccess, Attempt: t.Attempt}
}
