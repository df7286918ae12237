package storetest

import (
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// Retention (orkstate.Purger, docs/operations.md "Retention"): a store that
// implements it removes finished runs whole and nothing live.
func (s *suite) testPurge(t *testing.T) {
	purger := func(t *testing.T, b *bundle) orkstate.Purger {
		t.Helper()
		p, ok := b.store.(orkstate.Purger)
		if !ok {
			t.Skip("store does not implement orkstate.Purger")
		}
		return p
	}

	s.test(t, "FinishedRunsGoLiveOnesStay", func(t *testing.T, b *bundle) {
		p := purger(t, b)
		// Finished: a DAG run with a log chunk and a completed deferred job, and a
		// failed one-task run.
		done, dts := b.dagRun(nt("a"), nt("b", "a"))
		b.drive(dts.id("a"), orkstate.TaskRunning)
		noErr(t, "AppendTaskLog", b.store.AppendTaskLog(b.ctx, dts.id("a"), "hello"))
		js, err := b.store.CreateDeferredJobs(b.ctx, dts.id("a"), []orkstate.NewDeferredJob{{ServiceType: "batch", JobID: "j1"}})
		noErr(t, "CreateDeferredJobs", err)
		noErr(t, "CompleteDeferredJob", b.store.CompleteDeferredJob(b.ctx, js[0].ID))
		// (its last deferred job done, the task succeeded)
		equal(t, "task a", b.taskStatus(dts.id("a")), orkstate.TaskSuccess)
		b.succeed(dts.id("b"))
		failed, fts := b.dagRun(nt("x"))
		b.drive(fts.id("x"), orkstate.TaskFailed)
		equal(t, "done run", b.runStatus(done.ID), orkstate.RunSuccess)
		equal(t, "failed run", b.runStatus(failed.ID), orkstate.RunFailed)
		// Live: a run whose first task is claimed, its second waiting on it.
		live, lts := b.dagRun(nt("a"), nt("b", "a"))
		claimed := b.claimTask(lts.id("a"))

		// Within the period nothing goes.
		got, err := p.PurgeRuns(b.ctx, orkstate.PurgeParams{OlderThan: time.Hour})
		noErr(t, "PurgeRuns(1h)", err)
		equal(t, "purged within the period", got, orkstate.PurgeResult{})

		var progress []orkstate.PurgeResult
		got, err = p.PurgeRuns(b.ctx, orkstate.PurgeParams{OlderThan: 0, BatchSize: 1,
			Progress: func(r orkstate.PurgeResult) { progress = append(progress, r) }})
		noErr(t, "PurgeRuns(0)", err)
		equal(t, "runs purged", got.Runs, int64(2))
		equal(t, "tasks purged", got.Tasks, int64(3))
		equal(t, "log chunks purged", got.LogChunks, int64(1))
		equal(t, "deferred jobs purged", got.DeferredJobs, int64(1))
		equal(t, "batches of one task", got.Batches, 3)
		equal(t, "progress calls", len(progress), got.Batches)
		equal(t, "last progress", progress[len(progress)-1], got)

		for _, id := range []int64{done.ID, failed.ID} {
			_, err := b.store.GetRun(b.ctx, id)
			errIs(t, "GetRun of a purged run", err, orkstate.ErrNotFound)
		}
		_, err = b.store.GetTask(b.ctx, dts.id("a"))
		errIs(t, "GetTask of a purged task", err, orkstate.ErrNotFound)
		_, err = b.store.GetDeferredJob(b.ctx, js[0].ID)
		errIs(t, "GetDeferredJob of a purged job", err, orkstate.ErrNotFound)

		// The live run is whole and finishes.
		equal(t, "live run's tasks", len(b.listTasks(live.ID)), 2)
		b.reportOK(orkstate.TaskUpdate{TaskID: claimed.ID, Status: orkstate.TaskSuccess, Attempt: claimed.Attempt}, orkstate.OutcomeApplied)
		b.succeed(lts.id("b"))
		equal(t, "live run", b.runStatus(live.ID), orkstate.RunSuccess)

		again, err := p.PurgeRuns(b.ctx, orkstate.PurgeParams{OlderThan: time.Hour})
		noErr(t, "PurgeRuns again", err)
		equal(t, "second purge", again, orkstate.PurgeResult{})
	})

	s.test(t, "BigRunInParts", func(t *testing.T, b *bundle) {
		// A run bigger than the batch goes a batch at a time; its row with the last.
		p := purger(t, b)
		r, ts := b.legacyRun(5)
		for _, task := range ts {
			b.drive(task.ID, orkstate.TaskSuccess)
		}
		equal(t, "run", b.runStatus(r.ID), orkstate.RunSuccess)
		got, err := p.PurgeRuns(b.ctx, orkstate.PurgeParams{BatchSize: 2})
		noErr(t, "PurgeRuns", err)
		equal(t, "purged", got, orkstate.PurgeResult{Batches: 3, Runs: 1, Tasks: 5})
		_, err = b.store.GetRun(b.ctx, r.ID)
		errIs(t, "GetRun", err, orkstate.ErrNotFound)
	})

	s.test(t, "MaxRatePaces", func(t *testing.T, b *bundle) {
		// MaxRate 20 tasks/s in batches of one task: each batch starts 50 ms after the
		// one before, so five take at least 200 ms (unpaced, a few).
		p := purger(t, b)
		_, ts := b.legacyRun(5)
		for _, task := range ts {
			b.drive(task.ID, orkstate.TaskSuccess)
		}
		t0 := time.Now()
		got, err := p.PurgeRuns(b.ctx, orkstate.PurgeParams{BatchSize: 1, MaxRate: 20})
		took := time.Since(t0)
		noErr(t, "PurgeRuns", err)
		equal(t, "purged", got, orkstate.PurgeResult{Batches: 5, Runs: 1, Tasks: 5})
		if took < 200*time.Millisecond {
			t.Fatalf("5 tasks at 20 tasks/s purged in %v; want at least 200ms", took)
		}
	})

	s.test(t, "BadParams", func(t *testing.T, b *bundle) {
		p := purger(t, b)
		r, ts := b.dagRun(nt("a"))
		b.succeed(ts.id("a"))
		for _, bad := range []orkstate.PurgeParams{{OlderThan: -time.Second}, {BatchSize: 10001}, {BatchSize: -1}, {Pause: -time.Second}, {MaxRate: -1}} {
			_, err := p.PurgeRuns(b.ctx, bad)
			isValidation(t, "PurgeRuns with bad params", err)
		}
		equal(t, "run kept", b.getRun(r.ID).ID, r.ID)
	})
}
