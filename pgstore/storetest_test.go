package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/storetest"
)

// TestStore runs the conformance suite against PostgreSQL, each subtest in an
// install of its own and with the suite's clock as Config.Now, in the three ways
// applications call pgstore:
//
//   - Pool: the Store on a pgxpool.Pool with pgx's default (extended protocol,
//     cached prepared statements).
//   - SimpleProtocol: the same on a pool in QueryExecModeSimpleProtocol, as PgBouncer
//     users in transaction pooling mode run it: no prepared statements, every
//     argument sent as text.
//   - WithTx: every call inside a transaction of the caller's (s.WithTx(tx)), which
//     commits when the call succeeds and rolls back when it fails: the savepoint
//     paths, no call leaving tx aborted, and no call reaching past tx to the pool.
func TestStore(t *testing.T) {
	t.Run("Pool", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T, now func() time.Time) orkstate.Store {
			s, err := pgstore.New(testdb.Pool(t), &pgstore.Config{Schema: testdb.Reused(t), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("SimpleProtocol", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T, now func() time.Time) orkstate.Store {
			s, err := pgstore.New(testdb.SimplePool(t), &pgstore.Config{Schema: testdb.Reused(t), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("WithTx", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T, now func() time.Time) orkstate.Store {
			s, err := pgstore.New(testdb.OwnPool(t), &pgstore.Config{Schema: testdb.Reused(t), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return &txStore{Store: s}
		},
			// A caller's transaction is one connection doing one thing at a time:
			// concurrent claimers and reporters are the pool's business (Pool and
			// SimpleProtocol run them), and a deadlock inside a caller's tx is the
			// caller's to retry.
			storetest.SkipGroup("Concurrency", "concurrent callers each use the pool, not one caller's transaction"))
	})
}

// txStore runs every call of the contract through Store.WithTx on a transaction of
// its own, committed when the call succeeds and rolled back when it fails, as an
// application does that changes its rows and orkstate's together. Every method of
// orkstate.Store is spelled out (none is promoted from the embedded Store), so a
// method added to the contract does not compile here until it goes through a tx.
//
// Calls are serialised (a caller's transactions on one connection are), which also
// keeps the count of pool acquisitions txCall checks to one call at a time.
type txStore struct {
	Store *pgstore.Store
	mu    sync.Mutex
}

var _ orkstate.Store = (*txStore)(nil)

func (s *txStore) do(ctx context.Context, fn func(st *pgstore.Store) error) error {
	_, err := txCall(ctx, s, func(st *pgstore.Store) (struct{}, error) { return struct{}{}, fn(st) })
	return err
}

// txCall runs fn on s's Store bound to a new transaction. A commit that fails (a
// call that left its tx aborted yet returned no error) is an error of the call, and
// so is a call that took a connection of the Store's pool besides the one its tx
// holds (the pool is the test's own, so the count is this call's).
func txCall[T any](ctx context.Context, s *txStore, fn func(st *pgstore.Store) (T, error)) (out T, err error) {
	var zero T
	s.mu.Lock()
	defer s.mu.Unlock()
	acquired := s.Store.Pool().Stat().AcquireCount()
	defer func() {
		if n := s.Store.Pool().Stat().AcquireCount() - acquired; n != 1 {
			out, err = zero, fmt.Errorf("the call took %d connections from the pool besides its tx's (err: %v)", n-1, err)
		}
	}()
	tx, err := s.Store.Pool().Begin(ctx)
	if err != nil {
		return zero, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	out, err = fn(s.Store.WithTx(tx))
	if err != nil {
		return out, err
	}
	if err := tx.Commit(ctx); err != nil {
		if errors.Is(err, pgx.ErrTxCommitRollback) {
			err = errors.New("the call succeeded but left its transaction aborted: " + err.Error())
		}
		return zero, err
	}
	return out, nil
}

func (s *txStore) Migrate(ctx context.Context) error   { return s.Store.Migrate(ctx) }
func (s *txStore) Capabilities() orkstate.Capabilities { return s.Store.Capabilities() }
func (s *txStore) Close()                              { s.Store.Close() }

func (s *txStore) CreateWorkflow(ctx context.Context, w orkstate.NewWorkflow) (*orkstate.Workflow, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Workflow, error) { return st.CreateWorkflow(ctx, w) })
}

func (s *txStore) GetWorkflow(ctx context.Context, id int64) (*orkstate.Workflow, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Workflow, error) { return st.GetWorkflow(ctx, id) })
}

func (s *txStore) GetWorkflowByName(ctx context.Context, name string) (*orkstate.Workflow, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Workflow, error) { return st.GetWorkflowByName(ctx, name) })
}

func (s *txStore) GetWorkflowsByIDs(ctx context.Context, ids []int64) ([]orkstate.Workflow, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Workflow, error) { return st.GetWorkflowsByIDs(ctx, ids) })
}

func (s *txStore) ListWorkflows(ctx context.Context) ([]orkstate.Workflow, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Workflow, error) { return st.ListWorkflows(ctx) })
}

func (s *txStore) ListWorkflowsPage(ctx context.Context, q orkstate.WorkflowListQuery) (*orkstate.WorkflowPage, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.WorkflowPage, error) { return st.ListWorkflowsPage(ctx, q) })
}

func (s *txStore) DeleteWorkflow(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.DeleteWorkflow(ctx, id) })
}

func (s *txStore) ReplaceWorkflowTasks(ctx context.Context, workflowID int64, tasks []orkstate.TaskSpec) ([]orkstate.WorkflowTask, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.WorkflowTask, error) {
		return st.ReplaceWorkflowTasks(ctx, workflowID, tasks)
	})
}

func (s *txStore) ListWorkflowTasks(ctx context.Context, workflowID int64) ([]orkstate.WorkflowTask, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.WorkflowTask, error) { return st.ListWorkflowTasks(ctx, workflowID) })
}

func (s *txStore) CreateSnapshot(ctx context.Context, workflowID int64, tasks []orkstate.TaskSpec) (*orkstate.Snapshot, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Snapshot, error) { return st.CreateSnapshot(ctx, workflowID, tasks) })
}

func (s *txStore) GetSnapshot(ctx context.Context, id int64) (*orkstate.Snapshot, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Snapshot, error) { return st.GetSnapshot(ctx, id) })
}

func (s *txStore) SetCurrentSnapshot(ctx context.Context, workflowID, snapshotID int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.SetCurrentSnapshot(ctx, workflowID, snapshotID) })
}

func (s *txStore) CreateRun(ctx context.Context, workflowID int64, triggeredBy string) (*orkstate.Run, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Run, error) { return st.CreateRun(ctx, workflowID, triggeredBy) })
}

func (s *txStore) CreateRuns(ctx context.Context, runs []orkstate.NewRun) ([]orkstate.Run, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Run, error) { return st.CreateRuns(ctx, runs) })
}

func (s *txStore) GetRun(ctx context.Context, id int64) (*orkstate.Run, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Run, error) { return st.GetRun(ctx, id) })
}

func (s *txStore) ListRuns(ctx context.Context, workflowID int64) ([]orkstate.Run, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Run, error) { return st.ListRuns(ctx, workflowID) })
}

func (s *txStore) ListRunsPage(ctx context.Context, q orkstate.RunListQuery) (*orkstate.RunPage, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.RunPage, error) { return st.ListRunsPage(ctx, q) })
}

func (s *txStore) PendingRuns(ctx context.Context, limit int) ([]orkstate.Run, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Run, error) { return st.PendingRuns(ctx, limit) })
}

func (s *txStore) UpdateRunStatus(ctx context.Context, id int64, status orkstate.RunStatus, errMsg string) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.UpdateRunStatus(ctx, id, status, errMsg) })
}

func (s *txStore) CancelRun(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.CancelRun(ctx, id) })
}

func (s *txStore) PauseRun(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.PauseRun(ctx, id) })
}

func (s *txStore) ResumeRun(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.ResumeRun(ctx, id) })
}

func (s *txStore) RunTaskStats(ctx context.Context, runID int64) (*orkstate.TaskStats, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.TaskStats, error) { return st.RunTaskStats(ctx, runID) })
}

func (s *txStore) StartPendingRuns(ctx context.Context, limit int) ([]orkstate.StartedRun, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.StartedRun, error) { return st.StartPendingRuns(ctx, limit) })
}

func (s *txStore) CreateTasks(ctx context.Context, runID int64, count int, executorType string, params json.RawMessage) ([]orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Task, error) {
		return st.CreateTasks(ctx, runID, count, executorType, params)
	})
}

func (s *txStore) CreateDAGTasks(ctx context.Context, runID int64, tasks []orkstate.NewTask) ([]orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Task, error) { return st.CreateDAGTasks(ctx, runID, tasks) })
}

func (s *txStore) GetTask(ctx context.Context, id int64) (*orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.Task, error) { return st.GetTask(ctx, id) })
}

func (s *txStore) ListTasks(ctx context.Context, runID int64) ([]orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Task, error) { return st.ListTasks(ctx, runID) })
}

func (s *txStore) PendingTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Task, error) { return st.PendingTasks(ctx, limit) })
}

func (s *txStore) RunningTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Task, error) { return st.RunningTasks(ctx, limit) })
}

func (s *txStore) DispatchableTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Task, error) { return st.DispatchableTasks(ctx, limit) })
}

func (s *txStore) UpdateTaskStatus(ctx context.Context, u orkstate.TaskUpdate) (*orkstate.TaskOutcome, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.TaskOutcome, error) { return st.UpdateTaskStatus(ctx, u) })
}

func (s *txStore) SetTaskStates(ctx context.Context, updates []orkstate.TaskUpdate) ([]orkstate.TaskOutcome, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.TaskOutcome, error) { return st.SetTaskStates(ctx, updates) })
}

func (s *txStore) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.ClaimedTask, error) { return st.ClaimTasks(ctx, p) })
}

func (s *txStore) ExpireTaskLeases(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.TaskOutcome, error) { return st.ExpireTaskLeases(ctx, limit) })
}

func (s *txStore) FailTimedOutTasks(ctx context.Context, limit int) ([]orkstate.TaskOutcome, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.TaskOutcome, error) { return st.FailTimedOutTasks(ctx, limit) })
}

func (s *txStore) RetryTask(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.RetryTask(ctx, id) })
}

func (s *txStore) FailDependentTasks(ctx context.Context, taskID int64) (int, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (int, error) { return st.FailDependentTasks(ctx, taskID) })
}

func (s *txStore) AppendTaskLog(ctx context.Context, taskID int64, chunk string) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.AppendTaskLog(ctx, taskID, chunk) })
}

func (s *txStore) TaskLog(ctx context.Context, taskID int64) (string, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (string, error) { return st.TaskLog(ctx, taskID) })
}

func (s *txStore) SetTaskOutput(ctx context.Context, taskID int64, output json.RawMessage) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.SetTaskOutput(ctx, taskID, output) })
}

func (s *txStore) UpstreamOutputs(ctx context.Context, taskID int64) (map[string]json.RawMessage, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (map[string]json.RawMessage, error) { return st.UpstreamOutputs(ctx, taskID) })
}

func (s *txStore) TaskRetryInfo(ctx context.Context, taskID int64) (*orkstate.RetryInfo, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.RetryInfo, error) { return st.TaskRetryInfo(ctx, taskID) })
}

func (s *txStore) TaskIdentity(ctx context.Context, taskID int64) (*orkstate.TaskIdentity, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.TaskIdentity, error) { return st.TaskIdentity(ctx, taskID) })
}

func (s *txStore) SetSchedule(ctx context.Context, workflowID int64, expr string, enabled bool, now time.Time) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.SetSchedule(ctx, workflowID, expr, enabled, now) })
}

func (s *txStore) SetScheduleTimes(ctx context.Context, workflowID int64, last, next *time.Time) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.SetScheduleTimes(ctx, workflowID, last, next) })
}

func (s *txStore) DueWorkflows(ctx context.Context, now time.Time, limit int) ([]orkstate.Workflow, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Workflow, error) { return st.DueWorkflows(ctx, now, limit) })
}

func (s *txStore) FireDueSchedules(ctx context.Context, now time.Time, limit int) ([]orkstate.Run, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.Run, error) { return st.FireDueSchedules(ctx, now, limit) })
}

func (s *txStore) CreateDeferredJobs(ctx context.Context, taskID int64, jobs []orkstate.NewDeferredJob) ([]orkstate.DeferredJob, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.DeferredJob, error) {
		return st.CreateDeferredJobs(ctx, taskID, jobs)
	})
}

func (s *txStore) GetDeferredJob(ctx context.Context, id int64) (*orkstate.DeferredJob, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (*orkstate.DeferredJob, error) { return st.GetDeferredJob(ctx, id) })
}

func (s *txStore) PendingDeferredJobs(ctx context.Context, limit int) ([]orkstate.DeferredJob, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.DeferredJob, error) { return st.PendingDeferredJobs(ctx, limit) })
}

func (s *txStore) DeferredJobsForTask(ctx context.Context, taskID int64) ([]orkstate.DeferredJob, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.DeferredJob, error) { return st.DeferredJobsForTask(ctx, taskID) })
}

func (s *txStore) UpdateDeferredJobStatus(ctx context.Context, id int64, status orkstate.DeferredJobStatus, errMsg string) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.UpdateDeferredJobStatus(ctx, id, status, errMsg) })
}

func (s *txStore) MarkDeferredJobPolled(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.MarkDeferredJobPolled(ctx, id) })
}

func (s *txStore) CompleteDeferredJob(ctx context.Context, id int64) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.CompleteDeferredJob(ctx, id) })
}

func (s *txStore) FailDeferredJob(ctx context.Context, id int64, errMsg string) error {
	return s.do(ctx, func(st *pgstore.Store) error { return st.FailDeferredJob(ctx, id, errMsg) })
}

func (s *txStore) CancelDeferredJobsForTask(ctx context.Context, taskID int64) (int, error) {
	return txCall(ctx, s, func(st *pgstore.Store) (int, error) { return st.CancelDeferredJobsForTask(ctx, taskID) })
}

func (s *txStore) ClaimDeferredJobs(ctx context.Context, p orkstate.DeferredClaimParams) ([]orkstate.DeferredJob, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.DeferredJob, error) { return st.ClaimDeferredJobs(ctx, p) })
}

func (s *txStore) ReportDeferredPolls(ctx context.Context, reports []orkstate.DeferredPollReport) ([]orkstate.DeferredOutcome, error) {
	return txCall(ctx, s, func(st *pgstore.Store) ([]orkstate.DeferredOutcome, error) {
		return st.ReportDeferredPolls(ctx, reports)
	})
}
