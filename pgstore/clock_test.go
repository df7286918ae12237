package pgstore_test

import (
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// The time-dependent functions take a trailing p_now. Left out or NULL it is the
// database's now(), so the call forms from before it (psql's, cron's) keep working,
// and a Store without Config.Now runs at the database's time as it always did.
// storetest covers the clock itself (its leases end only because it moves Config.Now).
func TestTimeParameterDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t) // no Config.Now
	r := b.run(t, b.workflow(t, "time").ID)
	ts, err := b.s.CreateTasks(b.ctx, r.ID, 2, "x", nil)
	noErr(t, err)
	c, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1, Lease: time.Minute})
	noErr(t, err)
	if len(c) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(c))
	}

	due := func(what, q string, want int, args ...any) {
		t.Helper()
		if got := b.count(t, q, args...); got != want {
			t.Errorf("%s: %d rows, want %d", what, got, want)
		}
	}
	due("expire_task_leases(limit)", `select count(*) from {ork}_api.expire_task_leases(10)`, 0)
	due("expire_task_leases(limit, null)", `select count(*) from {ork}_api.expire_task_leases(10, null)`, 0)
	due("fail_timed_out_tasks(limit)", `select count(*) from {ork}_api.fail_timed_out_tasks(10)`, 0)
	out, err := b.s.ExpireTaskLeases(b.ctx, 10)
	noErr(t, err)
	if len(out) != 0 {
		t.Errorf("a Store without a clock expired a lease a minute early: %v", out)
	}
	due("expire_task_leases(limit, now() + 2 min)",
		`select count(*) from {ork}_api.expire_task_leases(10, now() + interval '2 minutes')`, 1)

	// Without a clock, a lease ends at the database's time: a 1 ms lease is expired
	// by the Store's sweep within a few tries.
	_, err = b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "c", Limit: 1, Lease: time.Millisecond})
	noErr(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err = b.s.ExpireTaskLeases(b.ctx, 10)
		noErr(t, err)
		if len(out) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(out) != 1 {
		t.Errorf("a 1 ms lease did not end at the database's time: %v", out)
	}

	js, err := b.s.CreateDeferredJobs(b.ctx, ts[1].ID, []orkstate.NewDeferredJob{{ServiceType: "s", JobID: "j"}})
	noErr(t, err)
	id := js[0].ID
	due("claim_deferred_jobs(claimer, limit)", `select count(*) from {ork}_api.claim_deferred_jobs('c', 10)`, 1)
	due("claim_deferred_jobs(claimer, limit, lease)",
		`select count(*) from {ork}_api.claim_deferred_jobs('c', 10, interval '1 minute')`, 0)
	due("claim_deferred_jobs(claimer, limit, lease, now() + 2 min)",
		`select count(*) from {ork}_api.claim_deferred_jobs('c', 10, interval '1 minute', now() + interval '2 minutes')`, 1)
	due("report_deferred_polls(ids, results)",
		`select count(*) from {ork}_api.report_deferred_polls(array[$1::bigint], array['running']) where outcome = 'applied'`, 1, id)
	due("report_deferred_polls(ids, results, errors, after, attempts)",
		`select count(*) from {ork}_api.report_deferred_polls(array[$1::bigint], array['running'], null, array[interval '1 hour'], null)
		 where outcome = 'applied'`, 1, id)
	due("next poll an hour after the database's now", `select count(*) from {ork}.deferred_jobs
		where id = $1 and next_poll_at between now() + interval '59 minutes' and now() + interval '61 minutes'`, 1, id)
	got, err := b.s.ClaimDeferredJobs(b.ctx, orkstate.DeferredClaimParams{Claimer: "c", Limit: 10})
	noErr(t, err)
	if len(got) != 0 {
		t.Errorf("a Store without a clock claimed a job due in an hour: %v", got)
	}
}

// With Config.Now, the schedule calls given a zero now run at the clock's time.
func TestClockSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Date(2031, 5, 1, 10, 30, 0, 0, time.UTC)
	s, err := pgstore.New(b.s.Pool(), &pgstore.Config{Schema: b.s.Schema(), Now: func() time.Time { return at }})
	noErr(t, err)
	wf := b.workflow(t, "scheduled")
	noErr(t, s.SetSchedule(b.ctx, wf.ID, "@hourly", true, time.Time{}))
	w, err := s.GetWorkflow(b.ctx, wf.ID)
	noErr(t, err)
	if w.NextScheduledAt == nil || !w.NextScheduledAt.Equal(at.Add(30*time.Minute)) {
		t.Fatalf("next fire time %v, want %v (the hour after the clock's time)", w.NextScheduledAt, at.Add(30*time.Minute))
	}
	at = at.Add(time.Hour)
	runs, err := s.FireDueSchedules(b.ctx, time.Time{}, 10)
	noErr(t, err)
	if len(runs) != 1 {
		t.Fatalf("fired %d runs at the clock's time, want 1", len(runs))
	}
	w, err = s.GetWorkflow(b.ctx, wf.ID)
	noErr(t, err)
	if !w.NextScheduledAt.Equal(time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("next fire time %v, want 12:00 (the hour after the clock's 11:30)", w.NextScheduledAt)
	}
}

// The claim and the state machine run at the time they are handed: a report stamps
// the retry time from its p_now, a claim takes the retry only at a p_now past it and
// stamps the dispatch and the lease from it, and neither reads the database's time
// when handed one (the times here are years ahead of it).
func TestClaimAndReportsAtTheGivenTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.run(t, b.workflow(t, "at").ID)
	_, err := b.s.CreateDAGTasks(b.ctx, r.ID, []orkstate.NewTask{{TaskName: "a", MaxRetries: 1}})
	noErr(t, err)
	at := time.Date(2031, 5, 1, 10, 0, 0, 0, time.UTC)
	claim := `select count(*) from {ork}_api.claim_tasks('c', 10, null, interval '1 minute', $1)
		where dispatched_at = $1 and lease_expires_at = $1::timestamptz + interval '1 minute'`
	if got := b.count(t, claim, at); got != 1 {
		t.Fatalf("claimed %d at %v, want 1 stamped at that time", got, at)
	}
	b.exec(t, `select * from {ork}_api.set_task_states(array[(select id from {ork}.tasks where task_name = 'a')],
		array['failed'], null, null, null, null, $1)`, at)
	if got := b.count(t, `select count(*) from {ork}.tasks where retry_at = $1::timestamptz + interval '1 second'`, at); got != 1 {
		t.Fatalf("retry_at is not the report's time + 1 s")
	}
	if got := b.count(t, `select count(*) from {ork}_api.claim_tasks('c', 10)`); got != 0 {
		t.Fatalf("a claim at the database's time took a retry due in 2031")
	}
	if got := b.count(t, `select count(*) from {ork}_api.claim_tasks('c', 10, null, interval '1 minute', $1)`,
		at.Add(500*time.Millisecond)); got != 0 {
		t.Fatalf("a claim half a second after the failure took a retry due after 1 s")
	}
	s, err := pgstore.New(b.s.Pool(), &pgstore.Config{Schema: b.s.Schema(), Now: func() time.Time { return at.Add(2 * time.Second) }})
	noErr(t, err)
	d, err := s.DispatchableTasks(b.ctx, 10)
	noErr(t, err)
	if len(d) != 1 {
		t.Fatalf("DispatchableTasks at the clock's time past the retry: %d tasks, want 1", len(d))
	}
	c, err := s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "c", Limit: 10, Lease: time.Minute})
	noErr(t, err)
	if len(c) != 1 || !c[0].DispatchedAt.Equal(at.Add(2*time.Second)) {
		t.Fatalf("claim at the clock's time: %+v, want the retry dispatched at %v", c, at.Add(2*time.Second))
	}
}
