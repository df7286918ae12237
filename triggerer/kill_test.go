package triggerer

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
)

// killChildEnv names the install schema a TestKilledTriggererChild process polls.
const killChildEnv = "ORKSTATE_TRIGGERER_KILL_CHILD_SCHEMA"

// TestKilledTriggerer SIGKILLs a triggerer process while its groups of finished
// polls are being committed, lets a second triggerer finish the rest, and checks
// with a ledger (a row per terminal move of a deferred job, written by a trigger
// in the same transaction) that every deferred job finished exactly once, and
// that right after the kill no deferred job was finished without its River job
// completed, or the reverse.
func TestKilledTriggerer(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	const n = 2000
	ctx := context.Background()
	b := setup(t)
	ids := b.deferredFixture(t, n)
	_, err := b.pool.Exec(ctx, fmt.Sprintf(`
		create table %[1]s.finish_ledger (deferred_job_id bigint not null, status text not null);
		create function %[1]s.finish_ledger_record() returns trigger language plpgsql as $$
		begin
			insert into %[1]s.finish_ledger values (new.id, new.status);
			return null;
		end $$;
		create trigger deferred_jobs_finish_ledger after update of status on %[1]s.deferred_jobs
			for each row when (old.status in ('pending', 'polling') and new.status not in ('pending', 'polling'))
			execute function %[1]s.finish_ledger_record();`, b.schema))
	must(t, err, "ledger")

	enqueuer, err := New(b.config())
	must(t, err, "New")
	t.Cleanup(enqueuer.Close)
	for off := 0; off < n; off += 1000 {
		must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			return enqueuer.EnqueueTx(ctx, tx, ids[off:min(n, off+1000)]...)
		}), "EnqueueTx")
	}

	child := exec.Command(os.Args[0], "-test.run=^TestKilledTriggererChild$", "-test.count=1")
	// The child's connections carry an application_name, so that the parent can
	// wait for the database to notice they are gone.
	appName := "orkstate_killed_" + b.schema
	url := testdb.URL()
	if strings.Contains(url, "?") {
		url += "&application_name=" + appName
	} else {
		url += "?application_name=" + appName
	}
	child.Env = append(os.Environ(), killChildEnv+"="+b.schema, "DATABASE_URL="+url)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	must(t, child.Start(), "start child")
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	ledger := func() (rows, jobs int) {
		t.Helper()
		must(t, b.pool.QueryRow(ctx, "select count(*), count(distinct deferred_job_id) from "+b.schema+".finish_ledger").Scan(&rows, &jobs), "ledger count")
		return rows, jobs
	}
	waitFor(t, "the child to finish a quarter of the jobs", func() (bool, error) {
		_, jobs := ledger()
		return jobs >= n/4, nil
	})
	must(t, child.Process.Kill(), "SIGKILL child")
	_ = child.Wait()
	_, atKill := ledger()
	var held int
	must(t, b.pool.QueryRow(ctx, "select count(*) from "+b.schema+".river_job where state = 'running'").Scan(&held), "running count")
	if held == 0 {
		t.Fatal("no River job was running when the child was killed; nothing was in flight")
	}
	t.Logf("killed the child after %d of %d deferred jobs finished, %d River jobs held", atKill, n, held)
	if atKill >= n {
		t.Fatalf("the child finished all %d jobs before the kill; nothing was in flight", n)
	}

	// Finished together or not at all, also for the groups the kill cut off.
	var torn int
	must(t, b.pool.QueryRow(ctx, fmt.Sprintf(`
		select count(*) from %[1]s.deferred_jobs d
		join %[1]s.river_job r on r.kind = $1 and (r.args->>'deferred_job_id')::bigint = d.id
		where (d.status in ('pending', 'polling')) = (r.state = 'completed')`, b.schema), PollDeferredJobKind).Scan(&torn), "torn count")
	if torn != 0 {
		t.Errorf("after the kill, %d deferred jobs and their River jobs disagree (one finished, the other not)", torn)
	}

	// River's rescuer would make the dead process's running jobs available again
	// after RescueStuckJobsAfter (at least twice the work timeout, a minute here);
	// do it at once, but only once the dead process's statements have ended: one
	// that reached the server before the kill (a fetch, a commit) still runs to
	// its end.
	waitFor(t, "the killed process's connections to end", func() (bool, error) {
		var left int
		err := b.pool.QueryRow(ctx, "select count(*) from pg_stat_activity where application_name = $1", appName).Scan(&left)
		return left == 0, err
	})
	_, err = b.pool.Exec(ctx, "update "+b.schema+".river_job set state = 'available', scheduled_at = now() where state = 'running'")
	must(t, err, "rescue")

	b.start(t, b.measureConfig(completeAtOnce()))
	b.waitDeferredDone(t, time.Minute)

	rows, jobs := ledger()
	if rows != n || jobs != n {
		t.Errorf("ledger: %d terminal moves of %d deferred jobs; want each of %d exactly once", rows, jobs, n)
	}
	var notCompleted, riverNotCompleted, tasksNotDone int
	must(t, b.pool.QueryRow(ctx, fmt.Sprintf(`select
		(select count(*) from %[1]s.finish_ledger where status <> 'completed'),
		(select count(*) from %[1]s.river_job where kind = $1 and state <> 'completed'),
		(select count(*) from %[1]s.tasks where status <> 'success')`, b.schema), PollDeferredJobKind).
		Scan(&notCompleted, &riverNotCompleted, &tasksNotDone), "final counts")
	if notCompleted+riverNotCompleted+tasksNotDone != 0 {
		t.Errorf("%d deferred jobs not completed, %d River jobs not completed, %d tasks not succeeded",
			notCompleted, riverNotCompleted, tasksNotDone)
	}
}

// TestKilledTriggererChild is the process TestKilledTriggerer kills: a
// triggerer whose tracker completes each job after up to 5 ms, so that groups
// are being committed at any moment. It runs only when started by the parent.
func TestKilledTriggererChild(t *testing.T) {
	schema := os.Getenv(killChildEnv)
	if schema == "" {
		t.Skip("runs only as TestKilledTriggerer's child process")
	}
	tr, err := New(&Config{
		Pool:       testdb.Pool(t),
		Schema:     schema,
		MaxWorkers: 200,
		Logger:     (&testBundle{}).config().Logger,
		River:      &river.Config{FetchCooldown: 5 * time.Millisecond},
		Trackers: []Tracker{TrackerFunc{Type: fakeServiceType, Func: func(ctx context.Context, _ string, _ json.RawMessage) (orkstate.PollResult, string, error) {
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
			return orkstate.PollCompleted, "", nil
		}}},
	})
	must(t, err, "New")
	must(t, tr.Start(context.Background()), "Start")
	// The parent kills this process; should the parent be gone, stop on our own.
	time.Sleep(2 * time.Minute)
	t.Fatal("not killed within 2 minutes")
}
