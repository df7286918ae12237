package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
)

// set_task_states called from SQL with arrays that do not start at index 1 (and a
// repeated id, which takes the rounds path that subscripts the arrays) used to pair
// reports with the wrong rows. Issue 11, item 9.
func TestSetTaskStatesShiftedArraysFromSQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, tasks := startRun(t, b.s, []orkstate.TaskSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}})
	a, bb, c := tasks[0].ID, tasks[1].ID, tasks[2].ID

	q := strings.NewReplacer("{api}", b.s.Schema()+"_api").Replace(fmt.Sprintf(`
		select ord, task_id, outcome, status from {api}.set_task_states(
			'[0:3]={%d,%d,%d,%d}'::bigint[],
			'[0:3]={running,success,cancelled,running}'::text[],
			p_errors => '[5:8]={e1,e2,e3,e4}'::text[],
			p_outputs => array[null, '{"x":1}', null, null]::jsonb[])`, a, a, bb, c))
	rows, err := b.s.Pool().Query(b.ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ord int
		var id int64
		var outcome, status string
		if err := rows.Scan(&ord, &id, &outcome, &status); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%d:%s:%s", ord, id, outcome, status))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("1:%d:applied:running", a), fmt.Sprintf("3:%d:applied:cancelled", bb), fmt.Sprintf("4:%d:applied:running", c),
		fmt.Sprintf("2:%d:applied:success", a),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("outcomes\n got  %v\n want %v", got, want)
	}
	for id, want := range map[int64]string{a: "success e2 {\"x\": 1}", bb: "cancelled e3 <nil>", c: "running e4 <nil>"} {
		var st, e string
		var out *string
		if err := b.s.Pool().QueryRow(b.ctx, fmt.Sprintf(`select status, error, output::text from %s.tasks where id = $1`, b.s.Schema()), id).
			Scan(&st, &e, &out); err != nil {
			t.Fatal(err)
		}
		o := "<nil>"
		if out != nil {
			o = *out
		}
		if g := st + " " + e + " " + o; g != want {
			t.Errorf("task %d is %q, want %q", id, g, want)
		}
	}

	// Two dimensions are refused, naming the rule, and change nothing.
	_, err = b.s.Pool().Exec(b.ctx, strings.NewReplacer("{api}", b.s.Schema()+"_api").Replace(fmt.Sprintf(
		`select * from {api}.set_task_states('{{%d},{%d}}'::bigint[], '{{success},{success}}'::text[])`, c, c)))
	if err == nil || !strings.Contains(err.Error(), "one-dimensional") {
		t.Fatalf("two-dimensional arrays: %v, want an error saying one-dimensional", err)
	}
	if st := b.count(t, fmt.Sprintf(`select count(*) from {ork}.tasks where id = %d and status = 'running'`, c)); st != 1 {
		t.Fatal("the refused call changed the task")
	}
}

// A killed claimer's tasks come back within lease + sweep interval + 2 s although
// thousands of one-task claims' lease rows fell due before theirs and a claimer keeps
// making more. The sweep used to read 200 lease rows per call, so once-a-second
// sweeps fell behind such claims and the killed claimer's tasks waited for the
// backlog (33 s with an 8 s lease in the chaos run). Issue 11, item 12.
func TestLeaseSweepKeepsUpWithSmallClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const (
		backlog  = 3000
		killed   = 5
		lease    = time.Second
		interval = time.Second
	)
	specs := make([]orkstate.TaskSpec, backlog+killed+1000)
	for i := range specs {
		specs[i] = orkstate.TaskSpec{Name: fmt.Sprintf("t%04d", i)}
	}
	startRun(t, b.s, specs)

	// The backlog: one-task claims, all finished, whose lease rows fall due before
	// the killed claimer's.
	b.exec(t, `do $$ begin
		for i in 1..3000 loop perform {api}.claim_tasks('busy', 1, null, interval '1 second'); end loop;
	end $$`)
	b.exec(t, `select count(*) from {api}.set_task_states(
		array(select id from {ork}.tasks where status = 'dispatched' order by id),
		array(select 'success' from {ork}.tasks where status = 'dispatched'))`)
	if n := b.count(t, `select count(*) from {ork}.task_leases`); n != backlog {
		t.Fatalf("%d lease rows, want %d", n, backlog)
	}

	var lost []int64
	for range killed {
		c, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "killed", Limit: 1, Lease: lease})
		if err != nil || len(c) != 1 {
			t.Fatalf("claim: %v %v", c, err)
		}
		lost = append(lost, c[0].ID)
	}
	killedAt := time.Now()

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	var g errgroup.Group
	g.Go(func() error { // a claimer that keeps claiming one task at a time
		for ctx.Err() == nil {
			c, err := b.s.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "busy", Limit: 1, Lease: lease})
			if err != nil {
				return ignoreCancel(ctx, err)
			}
			if len(c) == 0 {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if _, err := b.s.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: c[0].ID, Status: orkstate.TaskSuccess, Attempt: c[0].Attempt}}); err != nil {
				return ignoreCancel(ctx, err)
			}
		}
		return nil
	})
	g.Go(func() error { // the scheduler loop's sweep: one call per interval
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(interval):
			}
			if _, err := b.s.ExpireTaskLeases(ctx, 100); err != nil {
				return ignoreCancel(ctx, err)
			}
		}
	})

	bound := lease + interval + 2*time.Second
	for {
		back := b.count(t, `select count(*) from {ork}.tasks where id = any($1) and not (status = 'dispatched' and claimed_by = 'killed')`, lost)
		if back == killed {
			t.Logf("killed claimer's tasks back after %v (bound %v)", time.Since(killedAt).Round(time.Millisecond), bound)
			break
		}
		if time.Since(killedAt) > bound {
			t.Fatalf("%d of %d killed claimer's tasks back after %v, want all within %v", back, killed, time.Since(killedAt), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// ignoreCancel is err unless ctx ended (then the error is the test's own doing).
func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
