package triggerer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// Defaults of Config.
const (
	DefaultMaxAttempts  = 10
	DefaultMaxWorkers   = 100
	DefaultPollInterval = 10 * time.Second
	DefaultPollTimeout  = 30 * time.Second
	DefaultQueue        = "orkstate_deferred"
	DefaultStopTimeout  = time.Minute

	// rescueStuckJobsAfterDefault is River's default of Config.RescueStuckJobsAfter.
	rescueStuckJobsAfterDefault = time.Hour
)

// PollDeferredJobKind is the River job kind of PollDeferredJobArgs.
const PollDeferredJobKind = "orkstate_poll_deferred_job"

// PollDeferredJobArgs is the River job that polls one deferred job until it
// ends. There is at most one such River job per deferred job: insertion is
// unique by DeferredJobID (River's default unique states, which include
// completed, so a finished deferred job is never polled again).
type PollDeferredJobArgs struct {
	DeferredJobID int64 `json:"deferred_job_id" river:"unique"`
}

// Kind is PollDeferredJobKind.
func (PollDeferredJobArgs) Kind() string { return PollDeferredJobKind }

// InsertOpts makes the job unique by deferred job id and puts it in DefaultQueue,
// also when someone inserts it with a plain River client. The Triggerer's own
// inserts override the queue and max attempts from its Config.
func (PollDeferredJobArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: DefaultQueue, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// Config configures a Triggerer. Fields are optional unless marked required.
type Config struct {
	// Logger receives the Triggerer's and River's logs. Defaults to slog.Default().
	Logger *slog.Logger

	// MaxAttempts is how many times a deferred job's poll may fail with a tracker
	// error (River's backoff between tries) before the deferred job and its task
	// fail. Snoozes between polls of a running job do not count. It is recorded
	// on each River job when it is inserted. Defaults to DefaultMaxAttempts (10).
	MaxAttempts int

	// MaxWorkers is how many polls this process runs at once. Workers share
	// their database work (reads, reports and commits are grouped), so the
	// connections a Triggerer needs hardly grow with MaxWorkers: it opens at most
	// 12 + MaxWorkers/20 (at most 22) of its own (see Pool). Defaults to 100.
	MaxWorkers int

	// Pool is the database. Required. For River, its workers and the calls that
	// open their own transaction, the Triggerer opens a pool of its own with
	// Pool's settings but search_path pinned to pg_catalog and Schema,
	// plan_cache_mode force_generic_plan, and at
	// most 12 + MaxWorkers/20 (at most 22) connections, opened as needed; Close
	// releases it. Pool itself serves only Store. Size the database's
	// max_connections for both.
	Pool *pgxpool.Pool

	// PollInterval is the wait between two polls of a running deferred job.
	// Defaults to 10 seconds.
	PollInterval time.Duration

	// PollTimeout bounds one Tracker.Poll; running out of it is a tracker error.
	// Defaults to 30 seconds.
	PollTimeout time.Duration

	// Queue is the River queue of the poll jobs. Defaults to DefaultQueue.
	Queue string

	// River, when not nil, is the base of the River client's config, for what this
	// Config does not say: fetch intervals, retry policy (the backoff between tracker
	// errors), job retention, client ID, TestOnly. Logger, MaxAttempts, Queues,
	// Schema and Workers are always set from this Config. Defaults to River's defaults.
	River *river.Config

	// Schema is the install schema; River's tables live in it too. Defaults to
	// pgstore.DefaultSchema.
	Schema string

	// StopTimeout is how long Run waits for polls in flight to finish after its
	// context is cancelled before it interrupts them (they are polled again later,
	// without using an attempt). Defaults to 1 minute.
	StopTimeout time.Duration

	// Trackers poll the deferred jobs, one per service type. A deferred job whose
	// service type has none fails. A process that only creates deferred jobs
	// needs none. More can be added through Registry.
	Trackers []Tracker
}

func (c *Config) withDefaults() *Config {
	out := *c
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.MaxAttempts == 0 {
		out.MaxAttempts = DefaultMaxAttempts
	}
	if out.MaxWorkers == 0 {
		out.MaxWorkers = DefaultMaxWorkers
	}
	if out.PollInterval == 0 {
		out.PollInterval = DefaultPollInterval
	}
	if out.PollTimeout == 0 {
		out.PollTimeout = DefaultPollTimeout
	}
	if out.Queue == "" {
		out.Queue = DefaultQueue
	}
	if out.Schema == "" {
		out.Schema = pgstore.DefaultSchema
	}
	if out.StopTimeout == 0 {
		out.StopTimeout = DefaultStopTimeout
	}
	return &out
}

// poolSize is the Triggerer's own pool size: River's producer, completer,
// notifier and maintenance take about six connections, the groups at most
// 2*maxReadsInFlight + maxCommitsInFlight, and the rare unbatched paths (a
// missing tracker) get a few more with more workers, at most 10.
func poolSize(c *Config) int32 {
	return int32(12 + min(c.MaxWorkers, 200)/20)
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil:
		return orkstate.Invalid("Pool", nil, "is required")
	case c.MaxAttempts < 1:
		return orkstate.Invalid("MaxAttempts", c.MaxAttempts, "must be at least 1")
	case c.MaxWorkers < 1 || c.MaxWorkers > river.QueueNumWorkersMax:
		return orkstate.Invalid("MaxWorkers", c.MaxWorkers, fmt.Sprintf("must be between 1 and %d", river.QueueNumWorkersMax))
	case c.PollInterval < 0:
		return orkstate.Invalid("PollInterval", c.PollInterval, "must not be negative")
	case c.PollTimeout < 0:
		return orkstate.Invalid("PollTimeout", c.PollTimeout, "must not be negative")
	case c.StopTimeout < 0:
		return orkstate.Invalid("StopTimeout", c.StopTimeout, "must not be negative")
	}
	return pgstore.ValidateSchemaName(c.Schema)
}

// Triggerer polls deferred jobs through River: every deferred job has one River
// job (PollDeferredJobArgs) that a worker of any Triggerer process on the
// database picks up, polls, snoozes while the job runs and completes together
// with the deferred job. See the package documentation.
//
// A Triggerer that is never started still creates deferred jobs with their River
// jobs (CreateDeferredJobsTx) and cancels them: an API process uses it that way.
type Triggerer struct {
	cfg      *Config
	store    *pgstore.Store // on cfg.Pool, for callers
	pool     *pgxpool.Pool  // River's and the workers' connections, search_path pinned
	work     *pgstore.Store // on pool
	groups   *groups
	registry *Registry
	client   *river.Client[pgx.Tx]
	logger   *slog.Logger
}

// New returns a Triggerer; it polls nothing until Start. River's tables must be
// installed in the schema (MigrateRiver).
func New(cfg *Config) (*Triggerer, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("triggerer: %w", err)
	}
	store, err := pgstore.New(cfg.Pool, &pgstore.Config{Schema: cfg.Schema})
	if err != nil {
		return nil, fmt.Errorf("triggerer: %w", err)
	}
	registry, err := NewRegistry(cfg.Trackers...)
	if err != nil {
		return nil, fmt.Errorf("triggerer: %w", err)
	}
	pool, err := pinnedPool(cfg.Pool, cfg.Schema, poolSize(cfg))
	if err != nil {
		return nil, fmt.Errorf("triggerer: %w", err)
	}
	work, err := pgstore.New(pool, &pgstore.Config{Schema: cfg.Schema})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("triggerer: %w", err)
	}
	t := &Triggerer{cfg: cfg, store: store, pool: pool, work: work, registry: registry, logger: cfg.Logger}
	t.groups = newGroups(t)

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely[PollDeferredJobArgs](workers, &pollWorker{t: t}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("triggerer: %w", err)
	}
	var rc river.Config
	if cfg.River != nil {
		rc = *cfg.River
	}
	rc.Logger = cfg.Logger
	rc.MaxAttempts = cfg.MaxAttempts
	rc.Queues = map[string]river.QueueConfig{cfg.Queue: {MaxWorkers: cfg.MaxWorkers}}
	rc.Schema = cfg.Schema
	rc.Workers = workers
	// A poll runs at most PollTimeout plus a little database work; River must not
	// rescue it as stuck before its own job timeout has passed.
	rescue := rc.RescueStuckJobsAfter
	if rescue == 0 {
		rescue = rescueStuckJobsAfterDefault
	}
	if least := 2 * workTimeout(cfg); rescue < least {
		rc.RescueStuckJobsAfter = least
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &rc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("triggerer: river client: %w", err)
	}
	t.client = client
	return t, nil
}

// Store is the pgstore.Store on Config.Pool and the install schema.
func (t *Triggerer) Store() *pgstore.Store { return t.store }

// Registry holds the trackers; registering one takes effect at the next poll.
func (t *Triggerer) Registry() *Registry { return t.registry }

// Client is the underlying River client (to subscribe to its events, list jobs, ...).
func (t *Triggerer) Client() *river.Client[pgx.Tx] { return t.client }

// Start starts polling and returns once the River client runs. Cancelling ctx is
// a hard stop: polls in flight are interrupted and rescheduled without using an
// attempt. For a graceful stop call Stop, or use Run.
func (t *Triggerer) Start(ctx context.Context) error {
	if err := t.client.Start(ctx); err != nil {
		return fmt.Errorf("triggerer: start: %w", err)
	}
	return nil
}

// Stop stops fetching polls and waits for those in flight to finish, or for ctx
// to be done (then it returns ctx's error and may be called again). It is safe to
// call when not started and more than once.
func (t *Triggerer) Stop(ctx context.Context) error {
	if err := t.client.Stop(ctx); err != nil {
		return fmt.Errorf("triggerer: stop: %w", err)
	}
	t.groups.commitConns.drain()
	return nil
}

// Close releases the Triggerer's own connections. Call it after Stop (or after
// the Run method returned); the Triggerer cannot be used afterwards. It is safe to
// call more than once.
func (t *Triggerer) Close() {
	t.groups.commitConns.close()
	t.pool.Close()
}

// Run starts a Triggerer and runs it until ctx is cancelled, then stops and
// closes it: polls in flight get cfg.StopTimeout to finish before they are
// interrupted. It returns nil after a clean stop.
func Run(ctx context.Context, cfg *Config) error {
	t, err := New(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.Run(ctx)
}

// Run runs t until ctx is cancelled, then stops it like the package's Run.
func (t *Triggerer) Run(ctx context.Context) error {
	// River's work contexts derive from Start's; detach them so that cancelling
	// ctx starts a graceful stop rather than interrupting every poll.
	if err := t.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.StopTimeout)
	defer cancel()
	defer t.groups.commitConns.drain()
	if err := t.client.Stop(stopCtx); err == nil {
		return nil
	}
	t.logger.WarnContext(ctx, "triggerer: polls still running after the stop timeout; interrupting them",
		slog.Duration("stop_timeout", t.cfg.StopTimeout))
	if err := t.client.StopAndCancel(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("triggerer: stop: %w", err)
	}
	return nil
}

// CreateDeferredJobsTx adds deferred jobs to an unfinished task
// (Store.CreateDeferredJobs) and inserts their River poll jobs, both inside tx:
// after a commit every new deferred job has its poller, and a rollback leaves
// neither. The River jobs become visible to triggerers when tx commits. On an
// error, roll tx back.
func (t *Triggerer) CreateDeferredJobsTx(ctx context.Context, tx pgx.Tx, taskID int64, jobs []orkstate.NewDeferredJob) ([]orkstate.DeferredJob, error) {
	var created []orkstate.DeferredJob
	err := withPinnedPath(ctx, tx, t.cfg.Schema, func() error {
		var err error
		created, err = t.store.WithTx(tx).CreateDeferredJobs(ctx, taskID, jobs)
		if err != nil {
			return fmt.Errorf("triggerer: create deferred jobs of task %d: %w", taskID, err)
		}
		ids := make([]int64, len(created))
		for i, dj := range created {
			ids[i] = dj.ID
		}
		return t.enqueueTx(ctx, tx, ids)
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

// CreateDeferredJobs is CreateDeferredJobsTx in a transaction of its own.
func (t *Triggerer) CreateDeferredJobs(ctx context.Context, taskID int64, jobs []orkstate.NewDeferredJob) ([]orkstate.DeferredJob, error) {
	var out []orkstate.DeferredJob
	err := t.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = t.CreateDeferredJobsTx(ctx, tx, taskID, jobs)
		return err
	})
	return out, err
}

// EnqueueTx inserts, inside tx, the River poll jobs of deferred jobs that exist
// already (created through the SQL API or by Store.CreateDeferredJobs directly).
// A deferred job that has a River job in a live or completed state is skipped, so
// enqueueing twice is harmless; one whose River job was cancelled or discarded
// gets a new one.
func (t *Triggerer) EnqueueTx(ctx context.Context, tx pgx.Tx, deferredJobIDs ...int64) error {
	if len(deferredJobIDs) == 0 {
		return nil
	}
	return withPinnedPath(ctx, tx, t.cfg.Schema, func() error { return t.enqueueTx(ctx, tx, deferredJobIDs) })
}

func (t *Triggerer) enqueueTx(ctx context.Context, tx pgx.Tx, deferredJobIDs []int64) error {
	params := make([]river.InsertManyParams, len(deferredJobIDs))
	for i, id := range deferredJobIDs {
		params[i] = river.InsertManyParams{
			Args: PollDeferredJobArgs{DeferredJobID: id},
			InsertOpts: &river.InsertOpts{
				MaxAttempts: t.cfg.MaxAttempts,
				Queue:       t.cfg.Queue,
				UniqueOpts:  river.UniqueOpts{ByArgs: true},
			},
		}
	}
	if _, err := t.client.InsertManyTx(ctx, tx, params); err != nil {
		return fmt.Errorf("triggerer: insert river jobs for deferred jobs %v: %w", deferredJobIDs, err)
	}
	return nil
}

// CancelTaskJobsTx cancels, inside tx, the River poll jobs of a task's deferred
// jobs and returns how many it cancelled. Call it in the transaction that
// cancels the task (or its deferred jobs) in the store. It is not needed for
// correctness — a worker that finds its deferred job cancelled stops on its own —
// but it stops waiting polls at once and interrupts one in flight (River cancels
// its context once tx commits).
func (t *Triggerer) CancelTaskJobsTx(ctx context.Context, tx pgx.Tx, taskID int64) (int, error) {
	jobs, err := t.store.WithTx(tx).DeferredJobsForTask(ctx, taskID)
	if err != nil {
		return 0, fmt.Errorf("triggerer: deferred jobs of task %d: %w", taskID, err)
	}
	var n int
	err = withPinnedPath(ctx, tx, t.cfg.Schema, func() error {
		n, err = t.cancelRiverJobsTx(ctx, tx, jobs)
		return err
	})
	return n, err
}

// CancelTaskJobs is CancelTaskJobsTx in a transaction of its own.
func (t *Triggerer) CancelTaskJobs(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := t.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		n, err = t.CancelTaskJobsTx(ctx, tx, taskID)
		return err
	})
	return n, err
}

// CancelRunJobsTx is CancelTaskJobsTx for every task of a run; call it in the
// transaction of Store.CancelRun. It reads the run's tasks and their deferred jobs
// one task at a time.
func (t *Triggerer) CancelRunJobsTx(ctx context.Context, tx pgx.Tx, runID int64) (int, error) {
	s := t.store.WithTx(tx)
	tasks, err := s.ListTasks(ctx, runID)
	if err != nil {
		return 0, fmt.Errorf("triggerer: tasks of run %d: %w", runID, err)
	}
	total := 0
	for _, task := range tasks {
		n, err := t.CancelTaskJobsTx(ctx, tx, task.ID)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// CancelRunJobs is CancelRunJobsTx in a transaction of its own.
func (t *Triggerer) CancelRunJobs(ctx context.Context, runID int64) (int, error) {
	var n int
	err := t.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		n, err = t.CancelRunJobsTx(ctx, tx, runID)
		return err
	})
	return n, err
}

// liveStates are the River job states in which a poll job may still run.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStatePending,
	rivertype.JobStateRetryable,
	rivertype.JobStateRunning,
	rivertype.JobStateScheduled,
}

// cancelRiverJobsTx cancels the live River jobs polling jobs. The lookup by args
// containment uses River's GIN index on river_job.args.
func (t *Triggerer) cancelRiverJobsTx(ctx context.Context, tx pgx.Tx, jobs []orkstate.DeferredJob) (int, error) {
	n := 0
	for _, dj := range jobs {
		params := river.NewJobListParams().
			Kinds(PollDeferredJobKind).
			States(liveStates...).
			Where("args @> @args", river.NamedArgs{"args": map[string]any{"deferred_job_id": dj.ID}})
		res, err := t.client.JobListTx(ctx, tx, params)
		if err != nil {
			return n, fmt.Errorf("triggerer: find river job of deferred job %d: %w", dj.ID, err)
		}
		for _, row := range res.Jobs {
			if _, err := t.client.JobCancelTx(ctx, tx, row.ID); err != nil && !errors.Is(err, rivertype.ErrNotFound) {
				return n, fmt.Errorf("triggerer: cancel river job %d of deferred job %d: %w", row.ID, dj.ID, err)
			}
			n++
		}
	}
	return n, nil
}

// inTx runs fn in a transaction on the Triggerer's pool and commits it when fn succeeds.
func (t *Triggerer) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := t.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("triggerer: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("triggerer: commit: %w", err)
	}
	return nil
}
