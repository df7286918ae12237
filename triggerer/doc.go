// Package triggerer polls deferred jobs through River (riverqueue/river) and
// finishes their tasks.
//
// A task that starts long work elsewhere (a BigQuery job, a Cloud Run execution,
// an HTTP-tracked job) reports deferred jobs instead of finishing. Each deferred
// job gets one River job, PollDeferredJobArgs, inserted in the same transaction
// (Triggerer.CreateDeferredJobsTx): there is never a deferred job without a
// poller, or a poller without its deferred job. Any number of triggerer
// processes share the polling; River's fetch (FOR UPDATE SKIP LOCKED) gives each
// River job to one of them at a time.
//
// # One poll
//
// The worker reads the deferred job, finds the Tracker registered for its
// service type and calls Tracker.Poll with Config.PollTimeout:
//
//   - running: the poll is recorded (ReportDeferredPolls: last_polled_at,
//     next_poll_at) and the River job snoozes for Config.PollInterval. Snoozes
//     use no attempt, so a job may run for days.
//   - completed or failed: ReportDeferredPolls finishes the deferred job and, by
//     the store's rules, its task (success once all its jobs completed; failed
//     under the retry rule; dependents unblocked or failed; the run completed) —
//     in one transaction with the River job's completion (see Grouped database
//     work). Either both happen or neither. The River job's output (PollOutput)
//     says how it ended.
//   - an error: River retries with its backoff (Config.River.RetryPolicy).
//     After Config.MaxAttempts the deferred job and its task fail with the last
//     error, again in one transaction with the River job's completion; the
//     River job ends completed, its output saying failed, and its errors list
//     holding the earlier attempts' errors. (Chosen over discarding the River job after a
//     separate commit so that the two rows never disagree.)
//   - no tracker for the service type: the deferred job and its task fail with an
//     error naming the service type, and the River job is cancelled with it.
//     Register the same trackers in every triggerer process: a process lacking
//     one fails that service's jobs.
//
// A deferred job that is already terminal is not polled: cancelled (its run or
// task was cancelled; the store cancels the deferred jobs) cancels the River job,
// completed or failed completes it. A poll that finds the job cancelled while it
// was polling stops the same way. Triggerer.CancelTaskJobsTx and CancelRunJobsTx,
// called in the transaction that cancels in the store, also cancel the River jobs
// at once and interrupt a poll in flight.
//
// # Grouped database work
//
// Polls that River hands out together share their database work. Their deferred
// jobs are read in one query; running polls are reported (last_polled_at,
// next_poll_at) in one report_deferred_polls call, and their snoozes go River's
// usual way; finished polls (completed, failed, failed after MaxAttempts) are
// committed in groups of up to 500: one statement, a transaction of its own sent
// in one round trip, runs report_deferred_polls for the group and then one
// UPDATE of river_job completing the group's River jobs (what River's
// JobCompleteTx does for one job: completed only while running, the PollOutput
// merged into the metadata; River's own completer batches the same way). Each
// deferred job still finishes in the same transaction as its River job, and
// each worker returns once its own result is durable. A group that fails is
// halved and retried down to single polls, so one poll that cannot be applied
// fails alone; a poll whose River job is no longer running (rescued) fails the
// group's statement, so nothing of it is applied; it leaves the group, which is
// committed without it. Groups have no timer: a new one waits 1 ms to gather a
// burst, then each flush takes what arrived meanwhile, at most two commits at
// once. A process killed mid-group
// loses only uncommitted groups; their River jobs are rescued by River and
// polled again (TestKilledTriggerer).
//
// # Connections
//
// River's SQL calls functions such as unnest unqualified, so under a search_path
// that includes public a function another role planted there could run with the
// triggerer's privileges. MigrateRiver and the Triggerer therefore open pools of
// their own, with Config.Pool's settings but search_path pinned to pg_catalog,
// the install schema and pg_temp (a startup parameter: a pooler that cannot
// honour it refuses the connection). River work in a caller's transaction
// (CreateDeferredJobsTx, EnqueueTx, CancelTaskJobsTx) pins it with a local
// set_config and restores the caller's path afterwards. The Triggerer's own
// connections also plan every statement generically (plan_cache_mode
// force_generic_plan): River's statements would otherwise be planned afresh on
// their first five executions on each connection. The Triggerer's pool
// holds at most 12 + MaxWorkers/20 connections (22 at most): workers share
// connections through the groups, so 1,000 workers need no more than 100 do.
// The commit groups keep two of them while the Triggerer runs (each for at most
// a minute before it goes back to the pool), so their statement is compiled and
// planned on two backends rather than on whichever the pool hands out. Stop and
// Close give them back; Close releases the pool.
//
// Reports carry no fencing token (DeferredPollReport.Attempt 0): River's
// job lock, not deferred_jobs.attempts, keeps pollers apart. A database should be
// polled either by triggerers or by the SQL claim (Store.ClaimDeferredJobs), not
// both: the SQL claim does not know about River's jobs.
//
// # River's tables
//
// River's tables live in the install schema (River's Config.Schema). Install them
// with MigrateRiver after pgstore.Migrate. A DBA who manages the schema with tern
// instead dumps River's SQL with River's CLI (go install
// github.com/riverqueue/river/cmd/river@v0.51.2; migrate-get only prints SQL)
// and makes one tern migration of it, with the schema as tern's template
// variable (River quotes the schema name it is given; the sed drops the quotes):
//
//	S=orkstate_river_tmpl   # any placeholder name, replaced below
//	for v in 2 3 4 5 6 7 8; do river migrate-get --version $v --up --schema $S; done > river.up.sql
//	for v in 8 7 6 5 4 3 2; do river migrate-get --version $v --down --schema $S; done > river.down.sql
//	{ sed -E "s/\"?$S\"?\./{{.schema}}./g" river.up.sql
//	  for i in river_job_args_index river_job_metadata_index; do
//	    echo "alter index {{.schema}}.$i set (gin_pending_list_limit = 1024);"; done
//	  echo '---- create above / drop below ----'
//	  sed -E "s/\"?$S\"?\./{{.schema}}./g" river.down.sql; } > sql/schema/00N_river.sql
//
// The two ALTER INDEX lines do what MigrateRiver does after River's migrations:
// they bound the pending lists of River's GIN indexes at 1 MB (PostgreSQL's default
// is 4 MB), because the statement that overflows a list merges all of it into the
// index, and at 4 MB that stalled a commit group for 35–55 ms every 12,000 or so
// triggered jobs. MigrateRiver sets the limit only on an index its role owns and
// where neither it nor fastupdate is set, so a DBA's own setting stays.
//
// Version 1 only creates river_migration, River's record of its own migrations,
// which tern replaces (River's later migrations tolerate its absence). Pick one
// owner: once River's SQL is applied through tern, do not call MigrateRiver (it
// would find no record and apply everything again). On a River upgrade, dump the
// new versions (see River's CHANGELOG) into a new tern migration the same way.
//
// # Transactions
//
// The methods that write take the caller's transaction as …Tx twins
// (CreateDeferredJobsTx, EnqueueTx, CancelTaskJobsTx, CancelRunJobsTx), where the
// stores bind one with WithTx, because a Triggerer is a River client: every such
// call writes both orkstate's rows and River's, and River's own API passes the
// transaction per call (InsertManyTx, JobCompleteTx) with no client bound to a tx
// to return. The twin without Tx (EnqueueTx has none) runs the Tx one in a
// transaction of its own, so each pair has one body.
//
// # Processes
//
// New builds a Triggerer; Start/Stop (or Run, which stops gracefully when its
// context is cancelled) run its River client, and Close releases its
// connections. A process that only creates or cancels deferred jobs uses a
// Triggerer it never starts.
//
// # HTTP tracker
//
// HTTPTracker polls URLs that whoever creates deferred jobs chooses. By default
// it connects to public addresses only (checked when dialling, after DNS) and
// refuses redirects to another origin; HTTPTrackerConfig opens both up.
package triggerer
