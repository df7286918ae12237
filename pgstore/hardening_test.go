package pgstore_test

import (
	"fmt"
	"strings"
	"testing"

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
