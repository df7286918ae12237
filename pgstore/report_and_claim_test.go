package pgstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
)

// report_and_claim called from SQL, as a psql user or another language's client
// would: bad input on either side is refused with OK422 naming the argument, and
// nothing is reported or claimed; good input gives the report's rows, then the
// claimed tasks, the ones the report made ready among them.
func TestReportAndClaimSQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ts := startRun(t, b.s, []orkstate.TaskSpec{
		{Name: "a", DependsOn: []string{}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{}}})
	a := ts[0].ID
	got, err := b.s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "s", Limit: 1})
	noErr(t, err)
	if len(got) != 1 || got[0].ID != a {
		t.Fatalf("claimed %v, want task a (%d)", got, a)
	}
	api := b.s.Schema() + "_api"
	state := func() string {
		t.Helper()
		var s string
		q := fmt.Sprintf(`select string_agg(t.task_name || '=' || t.status, ' ' order by t.id)
			|| ' queued ' || (select count(*) from %[1]s.task_queue) || ' leases ' || (select count(*) from %[1]s.task_leases)
			from %[1]s.tasks t`, b.s.Schema())
		noErr(t, b.s.Pool().QueryRow(b.ctx, q).Scan(&s))
		return s
	}
	before := state()
	if want := "a=dispatched b=pending c=pending queued 1 leases 1"; before != want {
		t.Fatalf("state = %q, want %q", before, want)
	}
	cases := []struct {
		what, args, column string
	}{
		{"statuses of another length", `array[$1]::bigint[], array['success', 'success'], null, null, null, array[1], 's', 10`, "statuses"},
		{"an unknown status", `array[$1]::bigint[], array['finished'], null, null, null, array[1], 's', 10`, "statuses"},
		{"null task ids", `null, array['success'], null, null, null, array[1], 's', 10`, "task_ids"},
		{"a negative attempt", `array[$1]::bigint[], array['success'], null, null, null, array[-1], 's', 10`, "attempts"},
		{"no claimer", `array[$1]::bigint[], array['success'], null, null, null, array[1], ' ', 10`, "claimer"},
		{"a zero limit", `array[$1]::bigint[], array['success'], null, null, null, array[1], 's', 0`, "limit"},
		{"a lease of 25 hours", `array[$1]::bigint[], array['success'], null, null, null, array[1], 's', 10, null, '25 hours'`, "lease"},
	}
	for _, tc := range cases {
		args := []any{a}
		if tc.what == "null task ids" {
			args = nil
		}
		_, err := b.s.Pool().Exec(b.ctx, fmt.Sprintf(`select * from %s.report_and_claim(%s)`, api, tc.args), args...)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "OK422" || pgErr.ColumnName != tc.column {
			t.Fatalf("%s: error %v, want OK422 naming %s", tc.what, err, tc.column)
		}
		if now := state(); now != before {
			t.Fatalf("%s changed the state: %q, want %q", tc.what, now, before)
		}
	}

	rows, err := b.s.Pool().Query(b.ctx, fmt.Sprintf(`select ord, task_id, outcome, status, task_name, attempt
		from %s.report_and_claim(array[$1, $2]::bigint[], array['success', 'success'], null, null, null, array[1, 1], 's', 10)`, api), a, int64(1)<<40)
	noErr(t, err)
	var lines []string
	for rows.Next() {
		var ord, attempt *int32
		var id int64
		var outcome string
		var status, name *string
		noErr(t, rows.Scan(&ord, &id, &outcome, &status, &name, &attempt))
		line := fmt.Sprintf("%s %s %s", show(ord), outcome, show(status))
		if name != nil {
			line += fmt.Sprintf(" %s attempt %s", *name, show(attempt))
		}
		lines = append(lines, line)
	}
	noErr(t, rows.Err())
	want := fmt.Sprint([]string{"1 applied success", "2 not_found <nil>", "<nil> claimed dispatched b attempt 1", "<nil> claimed dispatched c attempt 1"})
	if fmt.Sprint(lines) != want {
		t.Fatalf("rows = %v, want %v", lines, want)
	}
	if now, want := state(), "a=success b=dispatched c=dispatched queued 0 leases 2"; now != want {
		t.Fatalf("state = %q, want %q", now, want)
	}
}

func show[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
