package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// t0 is a fixed clock for schedule tests: a Tuesday, 10:02:30 UTC.
var t0 = time.Date(2031, 3, 4, 10, 2, 30, 0, time.UTC)

func mustNext(t testing.TB, expr string, after time.Time) time.Time {
	t.Helper()
	n, err := orkstate.NextFireTime(expr, after)
	noErr(t, "NextFireTime "+expr, err)
	return n
}

func (s *suite) testSchedules(t *testing.T) {
	s.test(t, "SetSchedule", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		cases := []struct{ expr, name string }{
			{"*/5 * * * *", "5 fields"},
			{"30 */5 * * * *", "6 fields, seconds first"},
			{"@hourly", "descriptor"},
			{"0 9 * * 1-5", "weekdays"},
		}
		for _, c := range cases {
			noErr(t, "SetSchedule "+c.name, b.store.SetSchedule(b.ctx, wf.ID, c.expr, true, t0))
			got := b.getWorkflow(wf.ID)
			equal(t, c.name+" expr", got.Schedule, c.expr)
			equal(t, c.name+" enabled", got.ScheduleEnabled, true)
			sameTime(t, c.name+" next", got.NextScheduledAt, mustNext(t, c.expr, t0))
		}
		sameTime(t, "5 fields fire at 10:05:00", ptr(mustNext(t, "*/5 * * * *", t0)), time.Date(2031, 3, 4, 10, 5, 0, 0, time.UTC))
		sameTime(t, "6 fields fire at 10:05:30", ptr(mustNext(t, "30 */5 * * * *", t0)), time.Date(2031, 3, 4, 10, 5, 30, 0, time.UTC))
	})

	s.test(t, "InvalidRefused", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		noErr(t, "SetSchedule", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", true, t0))
		for _, expr := range []string{"61 * * * *", "* * * *", "every minute", "* * * * * * *", "'; drop table x; --"} {
			isValidation(t, "SetSchedule "+expr, b.store.SetSchedule(b.ctx, wf.ID, expr, true, t0))
			got := b.getWorkflow(wf.ID)
			equal(t, "expr unchanged after "+expr, got.Schedule, "*/5 * * * *")
			equal(t, "still enabled", got.ScheduleEnabled, true)
			sameTime(t, "next unchanged", got.NextScheduledAt, mustNext(t, "*/5 * * * *", t0))
		}
		isValidation(t, "invalid expression, even disabled", b.store.SetSchedule(b.ctx, wf.ID, "61 * * * *", false, t0))
		equal(t, "expr unchanged", b.getWorkflow(wf.ID).Schedule, "*/5 * * * *")
	})

	s.test(t, "DisableEnableClear", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		noErr(t, "SetSchedule disabled", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", false, t0))
		got := b.getWorkflow(wf.ID)
		equal(t, "expr stored", got.Schedule, "*/5 * * * *")
		equal(t, "disabled", got.ScheduleEnabled, false)
		isNil(t, "no next when disabled", got.NextScheduledAt)

		later := t0.Add(17 * time.Minute)
		noErr(t, "re-enable", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", true, later))
		got = b.getWorkflow(wf.ID)
		equal(t, "enabled", got.ScheduleEnabled, true)
		sameTime(t, "next recomputed from the new now", got.NextScheduledAt, mustNext(t, "*/5 * * * *", later))

		noErr(t, "change expression", b.store.SetSchedule(b.ctx, wf.ID, "0 * * * *", true, later))
		sameTime(t, "next of the new expression", b.getWorkflow(wf.ID).NextScheduledAt, mustNext(t, "0 * * * *", later))

		noErr(t, "clear", b.store.SetSchedule(b.ctx, wf.ID, "", true, later))
		got = b.getWorkflow(wf.ID)
		equal(t, "cleared expr", got.Schedule, "")
		equal(t, "cleared disables", got.ScheduleEnabled, false)
		isNil(t, "cleared next", got.NextScheduledAt)
	})

	s.test(t, "SetScheduleTimes", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		noErr(t, "SetSchedule", b.store.SetSchedule(b.ctx, wf.ID, "@hourly", true, t0))
		last, next := t0.Add(-time.Hour).Add(123456*time.Microsecond), t0.Add(time.Hour)
		noErr(t, "SetScheduleTimes", b.store.SetScheduleTimes(b.ctx, wf.ID, &last, &next))
		got := b.getWorkflow(wf.ID)
		sameTime(t, "last (microseconds kept)", got.LastScheduledAt, last)
		sameTime(t, "next", got.NextScheduledAt, next)
		noErr(t, "SetScheduleTimes(nil, nil)", b.store.SetScheduleTimes(b.ctx, wf.ID, nil, nil))
		got = b.getWorkflow(wf.ID)
		isNil(t, "last cleared", got.LastScheduledAt)
		isNil(t, "next cleared", got.NextScheduledAt)
	})

	s.test(t, "DueWorkflows", func(t *testing.T, b *bundle) {
		due1, due2, future, disabled, none := b.workflow(), b.workflow(), b.workflow(), b.workflow(), b.workflow()
		noErr(t, "due1", b.store.SetSchedule(b.ctx, due1.ID, "*/5 * * * *", true, t0))                          // 10:05
		noErr(t, "due2", b.store.SetSchedule(b.ctx, due2.ID, "*/10 * * * *", true, t0))                         // 10:10
		noErr(t, "future", b.store.SetSchedule(b.ctx, future.ID, "0 12 * * *", true, t0))                       // 12:00
		noErr(t, "disabled", b.store.SetSchedule(b.ctx, disabled.ID, "*/5 * * * *", false, t0))                 // none
		noErr(t, "disabled times", b.store.SetScheduleTimes(b.ctx, disabled.ID, nil, ptr(t0.Add(time.Minute)))) // next set but disabled
		_ = none
		now := time.Date(2031, 3, 4, 10, 10, 0, 0, time.UTC)
		got, err := b.store.DueWorkflows(b.ctx, now, 10)
		noErr(t, "DueWorkflows", err)
		ids := workflowIDs(got)
		equal(t, "due count", len(ids), 2)
		isTrue(t, "due1 due", containsID(ids, due1.ID))
		isTrue(t, "due2 due at exactly now", containsID(ids, due2.ID))
		got, err = b.store.DueWorkflows(b.ctx, now, 1)
		noErr(t, "DueWorkflows(1)", err)
		equal(t, "limit 1", len(got), 1)
		got, err = b.store.DueWorkflows(b.ctx, t0, 10)
		noErr(t, "DueWorkflows(t0)", err)
		equal(t, "nothing due at t0", len(got), 0)
		for _, lim := range []int{0, -1} {
			_, err = b.store.DueWorkflows(b.ctx, now, lim)
			isValidation(t, fmt.Sprintf("DueWorkflows(%d)", lim), err)
			_, err = b.store.FireDueSchedules(b.ctx, now, lim)
			isValidation(t, fmt.Sprintf("FireDueSchedules(%d)", lim), err)
		}
		rs, err := b.store.ListRuns(b.ctx, 0)
		noErr(t, "ListRuns", err)
		equal(t, "no runs fired by bad input", len(rs), 0)
	})

	s.test(t, "Fire", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		noErr(t, "SetSchedule", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", true, t0))
		fire1 := time.Date(2031, 3, 4, 10, 5, 0, 0, time.UTC)

		got, err := b.store.FireDueSchedules(b.ctx, fire1.Add(-time.Second), 10)
		noErr(t, "FireDueSchedules before due", err)
		equal(t, "nothing fired early", len(got), 0)

		got, err = b.store.FireDueSchedules(b.ctx, fire1, 10)
		noErr(t, "FireDueSchedules", err)
		equal(t, "one run", len(got), 1)
		equal(t, "run workflow", got[0].WorkflowID, wf.ID)
		equal(t, "run status", got[0].Status, orkstate.RunPending)
		equal(t, "triggered by", got[0].TriggeredBy, "schedule")
		equal(t, "stored run", b.getRun(got[0].ID).TriggeredBy, "schedule")
		w := b.getWorkflow(wf.ID)
		sameTime(t, "last = fire time", w.LastScheduledAt, fire1)
		sameTime(t, "next advanced", w.NextScheduledAt, time.Date(2031, 3, 4, 10, 10, 0, 0, time.UTC))

		got, err = b.store.FireDueSchedules(b.ctx, fire1, 10)
		noErr(t, "FireDueSchedules again", err)
		equal(t, "no second run for one fire time", len(got), 0)

		// Missed fires are not replayed: one run, next after now.
		late := time.Date(2031, 3, 4, 10, 27, 10, 0, time.UTC)
		got, err = b.store.FireDueSchedules(b.ctx, late, 10)
		noErr(t, "FireDueSchedules late", err)
		equal(t, "one run for missed fires", len(got), 1)
		w = b.getWorkflow(wf.ID)
		sameTime(t, "last = the missed fire time", w.LastScheduledAt, time.Date(2031, 3, 4, 10, 10, 0, 0, time.UTC))
		sameTime(t, "next after now", w.NextScheduledAt, time.Date(2031, 3, 4, 10, 30, 0, 0, time.UTC))

		rs, err := b.store.ListRuns(b.ctx, wf.ID)
		noErr(t, "ListRuns", err)
		equal(t, "runs in total", len(rs), 2)

		// A disabled schedule does not fire.
		noErr(t, "disable", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", false, late))
		got, err = b.store.FireDueSchedules(b.ctx, late.Add(time.Hour), 10)
		noErr(t, "FireDueSchedules disabled", err)
		equal(t, "disabled never fires", len(got), 0)
	})

	s.test(t, "FireSixFields", func(t *testing.T, b *bundle) {
		wf := b.workflow()
		noErr(t, "SetSchedule", b.store.SetSchedule(b.ctx, wf.ID, "15 * * * * *", true, t0)) // second 15 of every minute
		first := time.Date(2031, 3, 4, 10, 3, 15, 0, time.UTC)
		sameTime(t, "next", b.getWorkflow(wf.ID).NextScheduledAt, first)
		got, err := b.store.FireDueSchedules(b.ctx, first.Add(time.Second), 10)
		noErr(t, "FireDueSchedules", err)
		equal(t, "fired", len(got), 1)
		sameTime(t, "next advanced", b.getWorkflow(wf.ID).NextScheduledAt, first.Add(time.Minute))
	})

	s.test(t, "FireRace", func(t *testing.T, b *bundle) {
		requireCapability(t, "ConcurrentClaimers", b.caps.ConcurrentClaimers)
		const nWF, nSched = 10, 8
		var wfs []int64
		for i := 0; i < nWF; i++ {
			wf := b.workflow()
			noErr(t, "SetSchedule", b.store.SetSchedule(b.ctx, wf.ID, "*/5 * * * *", true, t0))
			wfs = append(wfs, wf.ID)
		}
		fire := time.Date(2031, 3, 4, 10, 5, 0, 0, time.UTC)
		results := make([][]orkstate.Run, nSched)
		errs := make([]error, nSched)
		parallel(nSched, func(i int) {
			for round := 0; round < 3; round++ {
				rs, err := b.store.FireDueSchedules(b.ctx, fire, 3)
				if err != nil {
					errs[i] = err
					return
				}
				results[i] = append(results[i], rs...)
			}
		})
		for i, err := range errs {
			noErr(t, fmt.Sprintf("scheduler %d", i), err)
		}
		perWF := map[int64]int{}
		for _, rs := range results {
			for _, r := range rs {
				perWF[r.WorkflowID]++
			}
		}
		// Whatever the interleaving, each workflow fired once; schedulers that
		// found nothing left do not matter, but some rounds may have needed a
		// final sweep to reach workflows beyond the limits.
		rest, err := b.store.FireDueSchedules(b.ctx, fire, 100)
		noErr(t, "final sweep", err)
		for _, r := range rest {
			perWF[r.WorkflowID]++
		}
		for _, id := range wfs {
			equal(t, fmt.Sprintf("runs returned for workflow %d", id), perWF[id], 1)
			rs, err := b.store.ListRuns(b.ctx, id)
			noErr(t, "ListRuns", err)
			equal(t, fmt.Sprintf("runs stored for workflow %d", id), len(rs), 1)
			sameTime(t, "next advanced", b.getWorkflow(id).NextScheduledAt, time.Date(2031, 3, 4, 10, 10, 0, 0, time.UTC))
		}
	})
}
