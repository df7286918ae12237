package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/storetest"
)

// bouncerURL is PGBOUNCER_URL: a PgBouncer in transaction pooling mode in front of
// the tests' PostgreSQL (DATABASE_URL). Without one the test is skipped, saying how
// to get one, except in CI (CI=true), where .ci/run starts one and a missing URL
// is a broken CI rather than a reason to pass.
func bouncerURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("PGBOUNCER_URL")
	if u != "" {
		return u
	}
	const how = "PGBOUNCER_URL is not set, so nothing runs through PgBouncer. Install pgbouncer " +
		"(apt-get install pgbouncer) and run make test, which starts one with .ci/pgbouncer; or " +
		"PGBOUNCER_URL=$(.ci/pgbouncer start) go test ./pgstore -run PgBouncer"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true, and .ci/run sets PGBOUNCER_URL: " + how)
	}
	t.Skip(how)
	return ""
}

var (
	bouncerOnce  sync.Once
	bouncerCheck error
	// bouncerPrepares: PgBouncer keeps protocol-level prepared statements across
	// server connections (1.21 and later, with max_prepared_statements above 0).
	bouncerPrepares bool
)

// requireTransactionPooling fails t unless url reaches a PgBouncer whose pool_mode
// is transaction, read from its admin console (the user must be in admin_users;
// .ci/pgbouncer puts it there), and notes whether it keeps prepared statements. A
// URL pointing at Postgres itself, or at a session pooler, would let every test
// here pass without showing anything.
func requireTransactionPooling(t *testing.T, url string) {
	t.Helper()
	bouncerOnce.Do(func() {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			bouncerCheck = err
			return
		}
		cfg.Database = "pgbouncer"
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // all the admin console speaks
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			bouncerCheck = fmt.Errorf("cannot reach PgBouncer's admin console (database pgbouncer, for users "+
				"in admin_users) at %s to check its pool_mode: %w", url, err)
			return
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "SHOW CONFIG")
		if err != nil {
			bouncerCheck = fmt.Errorf("SHOW CONFIG on PgBouncer's admin console: %w (is the user in admin_users?)", err)
			return
		}
		mode := ""
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				bouncerCheck = err
				return
			}
			if len(v) < 2 {
				continue
			}
			switch v[0] {
			case "pool_mode":
				mode = fmt.Sprint(v[1])
			case "max_prepared_statements":
				bouncerPrepares = fmt.Sprint(v[1]) != "0"
			}
		}
		if err := rows.Err(); err != nil {
			bouncerCheck = err
			return
		}
		if mode != "transaction" {
			bouncerCheck = fmt.Errorf("PgBouncer at %s has pool_mode %q, want transaction", url, mode)
		}
	})
	if bouncerCheck != nil {
		t.Fatal(bouncerCheck)
	}
}

// bouncerPool opens a pool through PgBouncer in the given pgx mode, closed when t
// ends. The simple protocol is asked for as docs/operations.md tells PgBouncer
// users to, in the connection string (default_query_exec_mode=simple_protocol).
func bouncerPool(t *testing.T, mode pgx.QueryExecMode, maxConns int32) *pgxpool.Pool {
	t.Helper()
	url := bouncerURL(t)
	requireTransactionPooling(t, url)
	if mode == pgx.QueryExecModeSimpleProtocol {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + "default_query_exec_mode=simple_protocol"
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if mode == pgx.QueryExecModeSimpleProtocol && cfg.ConnConfig.DefaultQueryExecMode != mode {
		t.Fatalf("default_query_exec_mode=simple_protocol in the URL gave mode %v", cfg.ConnConfig.DefaultQueryExecMode)
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.MaxConns = maxConns
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestPgBouncer runs orkstate as PgBouncer users in transaction pooling mode run it
// (PGBOUNCER_URL, which .ci/pgbouncer starts): installs are migrated straight on
// Postgres (DATABASE_URL; migrations need a session of their own), and the Store
// works on a pool through PgBouncer.
//
//   - Contract: the conformance suite through PgBouncer in pgx's simple protocol,
//     the mode docs/operations.md recommends there: the groups whose calls take
//     transactions and savepoints, run concurrently or notify (bouncerGroups); the
//     others send the same single statements TestStore/SimpleProtocol checks.
//     PGBOUNCER_CONTRACT=all runs every group (it passes; about 4× as long).
//   - ExecModes: which of pgx's other modes survive transaction pooling under
//     concurrent callers. QueryExecModeExec and QueryExecModeCacheDescribe do;
//     pgx's default (QueryExecModeCacheStatement, named prepared statements) and
//     QueryExecModeDescribeExec (an unnamed statement described in one round trip
//     and bound in the next, by then maybe on another server connection) do not
//     on PgBouncer before 1.21 (Debian 12 ships 1.18), and the test says so if that
//     ever changes.
//   - PollOnlyScheduler: scheduler loops with the poll-only Waker
//     (notify.NewWaker(nil, …)) complete a DAG through PgBouncer, and WaitForRun
//     sees the run finish.
//   - MigrateRefused: Migrate through PgBouncer is refused, creating nothing.
//   - PurgeAllRuns: the procedure that commits per batch works through PgBouncer.
//
// LISTEN does not work through transaction pooling (a Listener on such a pool
// starts, listens on one server connection and then hears nothing), and neither do
// Migrate and tern (they set search_path for the session and hold a session
// advisory lock, which would stay behind on a pooled server connection): see
// docs/operations.md, PgBouncer.
func TestPgBouncer(t *testing.T) {
	bouncerURL(t)
	t.Run("Contract", func(t *testing.T) {
		t.Parallel()
		pool := bouncerPool(t, pgx.QueryExecModeSimpleProtocol, 8)
		var opts []storetest.Option
		if os.Getenv("PGBOUNCER_CONTRACT") != "all" {
			for _, g := range bouncerSkippedGroups {
				opts = append(opts, storetest.SkipGroup(g, "its calls are single statements, which "+
					"TestStore/SimpleProtocol runs; PGBOUNCER_CONTRACT=all runs it through PgBouncer too"))
			}
		}
		storetest.Run(t, func(t *testing.T, now func() time.Time) orkstate.Store {
			schema := testdb.Reused(t)
			s, err := pgstore.New(pool, &pgstore.Config{Schema: schema, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			direct, err := pgstore.New(testdb.Pool(t), &pgstore.Config{Schema: schema, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return &bouncedStore{Store: s, direct: direct}
		}, opts...)
	})
	t.Run("MigrateRefused", func(t *testing.T) {
		t.Parallel()
		testBouncerMigrateRefused(t)
	})
	t.Run("ExecModes", func(t *testing.T) {
		t.Parallel()
		testBouncerExecModes(t)
	})
	t.Run("PollOnlyScheduler", func(t *testing.T) {
		t.Parallel()
		testBouncerPollOnlyScheduler(t)
	})
	t.Run("PurgeAllRuns", func(t *testing.T) {
		t.Parallel()
		testBouncerPurgeAllRuns(t)
	})
}

// The procedure purge_all_runs commits after every batch. Called on its own (not
// inside a transaction block, as anywhere) through PgBouncer, it is one statement:
// PgBouncer keeps the server connection until the CALL returns, so the commits
// inside it work as on a direct connection.
func testBouncerPurgeAllRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schema := testdb.Reused(t)
	direct := testdb.Pool(t)
	s, err := pgstore.New(direct, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	const runs = 4
	for i := range runs {
		if err := bouncerHotPath(ctx, s, fmt.Sprintf("purged-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var finished int
	if err := direct.QueryRow(ctx, `with aged as (update `+schema+`.runs set finished_at = now() - interval '2 hours'
		where status = 'success' returning 1) select count(*) from aged`).Scan(&finished); err != nil {
		t.Fatal(err)
	}
	if finished != runs {
		t.Fatalf("%d runs finished, want %d", finished, runs)
	}
	// One task per batch: a commit after each of the four runs.
	pool := bouncerPool(t, pgx.QueryExecModeSimpleProtocol, 1)
	if _, err := pool.Exec(ctx, `call `+schema+`_api.purge_all_runs('1 hour', 1)`); err != nil {
		t.Fatalf("purge_all_runs through PgBouncer: %v", err)
	}
	var left int
	if err := direct.QueryRow(ctx, `select count(*) from `+schema+`.runs`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d runs left after purge_all_runs through PgBouncer, want 0", left)
	}
}

// bouncerSkippedGroups are the storetest groups TestPgBouncer/Contract leaves to
// TestStore/SimpleProtocol, to keep make test short: their calls are single
// statements (reads, validation, one SQL function each), which behave behind
// transaction pooling as they do on a direct connection in the simple protocol.
// What runs is what transaction pooling can change: Store (Migrate beside a store
// on PgBouncer), WorkflowTasks and RunControl (their own transactions),
// StartPendingRuns, Claim, Lease and DAG (the hot path), Deferred (a transaction
// that notifies) and Concurrency (concurrent callers on whichever server
// connection is free, deadlock retries).
var bouncerSkippedGroups = []string{
	"Workflow", "WorkflowPage", "Snapshot", "Run", "RunPage", "CreateTasks", "TaskRead", "TaskReport",
	"Retry", "Log", "Schedule", "Limits", "Bounds", "Agreement", "Hardening",
}

// bouncedStore is a Store through PgBouncer that migrates straight on Postgres, as
// PgBouncer users must (Migrate refuses a pooled connection).
type bouncedStore struct {
	*pgstore.Store
	direct *pgstore.Store
}

func (s *bouncedStore) Migrate(ctx context.Context) error { return s.direct.Migrate(ctx) }

// Migrate through PgBouncer is refused before it locks or creates anything. It
// used to run: tern's session advisory lock and the session search_path then
// stayed behind on pooled server connections, where the lock made every later
// migration of the database wait until PgBouncer closed that connection (a storetest
// MigrateTwice through PgBouncer took 80 s instead of a second), and the other
// clients of the pool ran with search_path = pg_catalog, pg_temp.
func testBouncerMigrateRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := bouncerPool(t, pgx.QueryExecModeSimpleProtocol, 2)
	schema := testdb.SchemaName(t)
	direct := testdb.Pool(t)
	t.Cleanup(func() { testdb.Drop(t, direct, schema) }) // in case it was not refused
	err := pgstore.Migrate(ctx, pool, schema)
	if err == nil {
		t.Fatal("Migrate through PgBouncer in transaction pooling mode worked; want it refused")
	}
	if !strings.Contains(err.Error(), "connection pooler") || !strings.Contains(err.Error(), "straight to PostgreSQL") {
		t.Fatalf("Migrate through PgBouncer: %v; want the error to say a pooler is in the way and where to migrate", err)
	}
	t.Logf("refused: %v", err)
	var created bool
	if err := direct.QueryRow(ctx, `select to_regnamespace($1) is not null or to_regclass($2) is not null`,
		schema, pgstore.VersionTable(schema)).Scan(&created); err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatalf("the refused Migrate created %s or its version table", schema)
	}
	// A pool straight to Postgres with the same settings migrates.
	if err := pgstore.Migrate(ctx, direct, schema); err != nil {
		t.Fatalf("Migrate straight on Postgres: %v", err)
	}
}

func testBouncerExecModes(t *testing.T) {
	for _, m := range []struct {
		name  string
		mode  pgx.QueryExecMode
		works bool
	}{
		{"Exec", pgx.QueryExecModeExec, true},
		{"CacheDescribe", pgx.QueryExecModeCacheDescribe, true},
		{"CacheStatement", pgx.QueryExecModeCacheStatement, false},
		{"DescribeExec", pgx.QueryExecModeDescribeExec, false},
		{"SimpleProtocol", pgx.QueryExecModeSimpleProtocol, true},
	} {
		t.Run(m.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const callers = 6
			s, err := pgstore.New(bouncerPool(t, m.mode, callers), &pgstore.Config{Schema: testdb.Reused(t)})
			if err != nil {
				t.Fatal(err)
			}
			// Concurrent callers, so that PgBouncer hands each client connection
			// whichever server connection is free: one caller at a time would
			// mostly get the same server back and hide what does not work.
			var (
				mu    sync.Mutex
				calls int
				errs  []error
				wg    sync.WaitGroup
			)
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 6 {
						err := bouncerHotPath(ctx, s, fmt.Sprintf("%s-%d-%d", m.name, c, i))
						mu.Lock()
						calls++
						if err != nil {
							errs = append(errs, err)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			switch {
			case m.works && len(errs) > 0:
				t.Fatalf("%d of %d rounds failed through PgBouncer, the first: %v", len(errs), calls, errs[0])
			case !m.works && bouncerPrepares:
				// PgBouncer tracks prepared statements: whether these modes work
				// depends on its version and settings; say what happened.
				t.Logf("with max_prepared_statements set, %d of %d rounds failed (%v)", len(errs), calls, errors.Join(errs[:min(len(errs), 3)]...))
			case !m.works && len(errs) == 0:
				t.Fatalf("all %d rounds worked through PgBouncer: this mode works behind transaction pooling "+
					"now (PgBouncer ≥ 1.21 with max_prepared_statements?); update docs/operations.md and this test", calls)
			case !m.works:
				t.Logf("%d of %d rounds failed, as expected; the first: %v", len(errs), calls, errs[0])
			}
		})
	}
}

// bouncerHotPath is one round of a scheduler's calls: a workflow with a task, a
// run started, the task claimed and reported.
func bouncerHotPath(ctx context.Context, s *pgstore.Store, name string) error {
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: name})
	if err != nil {
		return err
	}
	if _, err := s.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{{Name: "a"}}); err != nil {
		return err
	}
	run, err := s.CreateRun(ctx, wf.ID, "test")
	if err != nil {
		return err
	}
	if _, err := s.StartPendingRuns(ctx, 100); err != nil {
		return err
	}
	claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: name, Limit: 10})
	if err != nil {
		return err
	}
	updates := make([]orkstate.TaskUpdate, 0, len(claimed))
	for _, c := range claimed {
		updates = append(updates, orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt})
	}
	if _, err := s.SetTaskStates(ctx, updates); err != nil {
		return err
	}
	_, err = s.GetRun(ctx, run.ID)
	return err
}

func testBouncerPollOnlyScheduler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	schema := testdb.Reused(t)
	pool := bouncerPool(t, pgx.QueryExecModeSimpleProtocol, 4)
	s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}

	// A diamond over three levels: a → (b1 … b4) → c → (d1, d2).
	specs := []orkstate.TaskSpec{{Name: "a"}}
	var bs []string
	for i := 1; i <= 4; i++ {
		b := fmt.Sprintf("b%d", i)
		bs = append(bs, b)
		specs = append(specs, orkstate.TaskSpec{Name: b, DependsOn: []string{"a"}})
	}
	specs = append(specs, orkstate.TaskSpec{Name: "c", DependsOn: bs},
		orkstate.TaskSpec{Name: "d1", DependsOn: []string{"c"}}, orkstate.TaskSpec{Name: "d2", DependsOn: []string{"c"}})
	wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "bounced"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplaceWorkflowTasks(ctx, wf.ID, specs); err != nil {
		t.Fatal(err)
	}

	waker, err := notify.NewWaker(nil, &notify.WakerConfig{
		PollInterval: 20 * time.Millisecond,
		RunStatus:    notify.StoreRunStatus(s),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer waker.Close()
	if !waker.PollOnly() {
		t.Fatal("NewWaker(nil, …) is not poll-only")
	}

	// Two scheduler loops share the work, each with its own poll-only Waker and
	// its own pool through PgBouncer, as two processes would.
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ran      = map[string]int{} // task name → successful reports
		loopErrs []error
	)
	for i := range 2 {
		claimer := fmt.Sprintf("bouncer-%d", i)
		ls, err := pgstore.New(bouncerPool(t, pgx.QueryExecModeSimpleProtocol, 2), &pgstore.Config{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		w, err := notify.NewWaker(nil, &notify.WakerConfig{PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := pollOnlyLoop(loopCtx, ls, w, claimer, func(name string) {
				mu.Lock()
				ran[name]++
				mu.Unlock()
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				loopErrs = append(loopErrs, fmt.Errorf("%s: %w", claimer, err))
				mu.Unlock()
				stopLoops()
			}
		}()
	}

	run, err := s.CreateRun(ctx, wf.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	status, err := waker.WaitForRun(ctx, run.ID)
	stopLoops()
	wg.Wait()
	if len(loopErrs) > 0 {
		t.Fatalf("a scheduler loop through PgBouncer failed: %v", loopErrs)
	}
	if err != nil {
		t.Fatalf("WaitForRun through PgBouncer: %v", err)
	}
	if status != orkstate.RunSuccess {
		t.Fatalf("run %d ended %s, want success", run.ID, status)
	}
	tasks, err := s.ListTasks(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != len(specs) {
		t.Fatalf("run has %d tasks, want %d", len(tasks), len(specs))
	}
	for _, k := range tasks {
		if k.Status != orkstate.TaskSuccess || k.Attempts != 1 || ran[k.TaskName] != 1 {
			t.Errorf("task %s: status %s, attempts %d, reported %d times; want success once", k.TaskName, k.Status, k.Attempts, ran[k.TaskName])
		}
	}
}

// pollOnlyLoop is a scheduler loop as PgBouncer users run it: no listener, so it
// sleeps on a poll-only Waker whenever a round finds nothing to do.
func pollOnlyLoop(ctx context.Context, s orkstate.Store, w orkstate.Waker, claimer string, done func(name string)) error {
	for {
		if _, err := s.ExpireTaskLeases(ctx, 100); err != nil {
			return err
		}
		started, err := s.StartPendingRuns(ctx, 10)
		if err != nil {
			return err
		}
		claimed, err := s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: claimer, Limit: 2, Lease: time.Minute})
		if err != nil {
			return err
		}
		updates := make([]orkstate.TaskUpdate, 0, len(claimed))
		for _, c := range claimed {
			updates = append(updates, orkstate.TaskUpdate{
				TaskID: c.ID, Status: orkstate.TaskSuccess, Attempt: c.Attempt,
				Output: []byte(fmt.Sprintf(`{"by":%q}`, claimer)),
			})
		}
		outcomes, err := s.SetTaskStates(ctx, updates)
		if err != nil {
			return err
		}
		for i, o := range outcomes {
			if o.Outcome != orkstate.OutcomeApplied {
				return fmt.Errorf("report of task %d: %s", o.TaskID, o.Outcome)
			}
			done(claimed[i].TaskName)
		}
		if len(claimed) > 0 || len(started) > 0 {
			continue
		}
		if _, err := w.Wait(ctx); err != nil {
			return err
		}
	}
}
