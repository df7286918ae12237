package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// TestExportImportRoundTrip: the fixture imported and exported again gives the
// fixture's bytes, and export → import into an empty store → export gives the same
// bytes, on both stores.
func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		_, want := writeFixture(t)
		loaded(t, tg)
		first := filepath.Join(t.TempDir(), "first.json")
		if out := cli(t, tg, "export", "--out", first); out != "exported 2 workflows, 5 runs, 16 tasks, 1 deferred jobs to "+first+"\n" {
			t.Errorf("export said %q", out)
		}
		got, err := os.ReadFile(first)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the fixture exported differs from the fixture:\n%s", diffLines(string(want), string(got)))
		}
		again := targets[tg.name](t)
		cli(t, again, "import", first)
		second := cli(t, again, "export") // to stdout this time
		if second != string(got) {
			t.Errorf("export → import → export differs:\n%s", diffLines(string(got), second))
		}
	})
}

// TestPostgresFileSQLitePostgres: state made by real calls on PostgreSQL — claims
// with leases, a retry waiting, a timeout, a deferred job polled, logs — goes to a
// file, into SQLite, out to a file again and into a fresh PostgreSQL install, and
// every status, attempt, lease and timestamp arrives (the exports are equal), and
// copy does the same without the file.
func TestPostgresFileSQLitePostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := postgresTarget(t)
	st := pg.store
	wf, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "etl", TaskParams: json.RawMessage(`{"b": 1, "a": [1.50, "x"]}`), Schedule: "*/5 * * * *"})
	if err != nil {
		t.Fatal(err)
	}
	dag := []orkstate.TaskSpec{{Name: "a", MaxRetries: 3}, {Name: "b", DependsOn: []string{"a"}, TimeoutSeconds: 60},
		{Name: "c", DependsOn: []string{"a"}}, {Name: "d", DependsOn: []string{"b", "c"}}}
	sn, err := st.CreateSnapshot(ctx, wf.ID, dag)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetCurrentSnapshot(ctx, wf.ID, sn.ID); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := st.CreateRun(ctx, wf.ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.StartPendingRuns(ctx, 2); err != nil {
		t.Fatal(err)
	}
	claim := func(n int) []orkstate.ClaimedTask {
		c, err := st.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "s1", Limit: n, Lease: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	report := func(c orkstate.ClaimedTask, s orkstate.TaskStatus, errMsg string) {
		if _, err := st.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: c.ID, Status: s, Error: errMsg, Attempt: c.Attempt,
			ExecutionName: "exec-" + c.TaskName, Output: json.RawMessage(`{"n": 1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	as := claim(2) // both runs' a
	report(as[0], orkstate.TaskRunning, "")
	if err := st.AppendTaskLog(ctx, as[0].ID, "line 1\nline <2> & \"3\"\n"); err != nil {
		t.Fatal(err)
	}
	report(as[0], orkstate.TaskSuccess, "")
	report(as[1], orkstate.TaskFailed, "boom") // retrying, retry_at set
	bc := claim(2)                             // run 1's b and c
	report(bc[0], orkstate.TaskRunning, "")    // in flight with a timeout
	if _, err := st.CreateDeferredJobs(ctx, bc[0].ID, []orkstate.NewDeferredJob{{ServiceType: "http", JobID: "j1", JobData: json.RawMessage(`{"u":"x"}`)}}); err != nil {
		t.Fatal(err)
	}
	jobs, err := st.ClaimDeferredJobs(ctx, orkstate.DeferredClaimParams{Claimer: "t1", Limit: 1})
	if err != nil || len(jobs) != 1 {
		t.Fatal(jobs, err)
	}
	if _, err := st.ReportDeferredPolls(ctx, []orkstate.DeferredPollReport{{JobID: jobs[0].ID, Result: orkstate.PollRunning, Attempt: jobs[0].Attempts}}); err != nil {
		t.Fatal(err)
	}
	// bc[1] stays dispatched to s1 with its lease.

	exportOf := func(tg *target) string { return cli(t, tg, "export") }
	want := exportOf(pg)
	for _, s := range []string{`"status": "dispatched"`, `"status": "running"`, `"retry_at": "20`, `"lease_expires_at": "20`,
		`"status": "polling"`, `"claimed_by": "s1"`, `"attempts": 1`, `line <2> & \"3\"`} {
		if !strings.Contains(want, s) {
			t.Errorf("the export lacks %s:\n%s", s, want)
		}
	}
	dir := t.TempDir()
	file1 := filepath.Join(dir, "pg.json")
	cli(t, pg, "export", "--out", file1)
	lite := sqliteTarget(t)
	cli(t, lite, "import", file1)
	if got := exportOf(lite); got != want {
		t.Fatalf("PostgreSQL → file → SQLite lost something:\n%s", diffLines(want, got))
	}
	file2 := filepath.Join(dir, "sqlite.json")
	cli(t, lite, "export", "--out", file2)
	pg2 := postgresTarget(t)
	cli(t, pg2, "import", file2)
	if got := exportOf(pg2); got != want {
		t.Fatalf("… → file → PostgreSQL lost something:\n%s", diffLines(want, got))
	}

	// copy: the same without a file, SQLite into PostgreSQL.
	pg3 := postgresTarget(t)
	out := cli(t, nil, "copy", "--from", lite.flags[1], "--to", pg3.flags[1], "--schema", pg3.flags[3])
	if !strings.HasPrefix(out, "copied 1 workflows, 3 runs, 8 tasks, 1 deferred jobs from SQLite ") {
		t.Errorf("copy said %q", out)
	}
	if got := exportOf(pg3); got != want {
		t.Fatalf("copy SQLite → PostgreSQL lost something:\n%s", diffLines(want, got))
	}
	// A second copy into the same store is a conflict, and changes nothing.
	fails(t, nil, exitConflict, `workflow "etl" exists in the destination`, "copy", "--from", lite.flags[1], "--to", pg3.flags[1], "--schema", pg3.flags[3])
	if got := exportOf(pg3); got != want {
		t.Error("a refused copy changed the destination")
	}
	// The imported rows are live: the dispatched task's claimer can still report.
	if _, err := pg2.store.ExpireTaskLeases(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if got := exportOf(pg2); got != want {
		t.Error("a lease an hour long expired in the copy")
	}
}

// TestImportRefuses: a truncated or edited file is refused with a message naming
// the problem, and nothing is imported.
func TestImportRefuses(t *testing.T) {
	t.Parallel()
	_, good := writeFixture(t)
	text := string(good)
	// editNth replaces the nth occurrence (from 1) of old.
	editNth := func(n int, old, new string) string {
		at := 0
		for i := 0; i < n; i++ {
			j := strings.Index(text[at:], old)
			if j < 0 {
				t.Fatalf("fixture has no occurrence %d of %q", n, old)
			}
			at += j + len(old)
		}
		return text[:at-len(old)] + new + text[at:]
	}
	edit := func(old, new string) string { return editNth(1, old, new) }
	cases := []struct {
		name, file, want string
	}{
		{"truncated", text[:len(text)/2], "truncated: the JSON ends unfinished after"},
		{"empty", "", "invalid state file: empty"},
		{"not json", "hello", "not valid JSON at byte 1 (line 1)"},
		{"trailing data", text + "{}", "unexpected data after the document"},
		{"other format", edit(`"format": "orkstate-state"`, `"format": "airflow"`), `invalid format "airflow": not an orkstate state file`},
		{"newer version", edit(`"version": 2`, `"version": 3`), `invalid version "3": written by a newer orkstate`},
		{"unknown status", edit(`"status": "running"`, `"status": "runing"`), `workflows[1] "nightly_etl": runs[1]: invalid run status "runing": unknown run status`},
		{"unknown task status", edit(`              "status": "cancelled",`, `              "status": "stopped",`),
			`runs[3]: invalid task status "stopped": unknown task status (task extract)`},
		{"unknown field", edit(`"triggered_by": "api"`, `"triggerd_by": "api"`), `unknown field "triggerd_by"`},
		{"wrong type", edit(`"attempts": 3`, `"attempts": "3"`), `invalid workflows.runs.tasks.deferred_jobs.attempts: a JSON string where the state file wants int`},
		{"bad time", edit(`"created_at": "2025-06-05T10:00:00Z"`, `"created_at": "yesterday"`), `parsing time "yesterday"`},
		{"unknown dependency", edit(`"poll_api"
              ],
              "params": null,
              "status": "success"`, `"poll_apix"
              ],
              "params": null,
              "status": "success"`), `runs[0]: invalid depends_on "poll_apix": task "load" depends on unknown task`},
		{"edited snapshot", edit(`              "max_retries": 2,
              "timeout_seconds": 0,
              "priority": null,
              "concurrency_key": ""
            },
            {
              "name": "poll_api",`, `              "max_retries": 5,
              "timeout_seconds": 0,
              "priority": null,
              "concurrency_key": ""
            },
            {
              "name": "poll_api",`), `snapshots[0]: invalid content_hash`},
		{"bad cron", edit(`"schedule": "0 3 * * *"`, `"schedule": "0 25 * * *"`), `workflows[1] "nightly_etl": invalid schedule "0 25 * * *"`},
		{"duplicate workflow", edit(`"name": "hourly_report"`, `"name": "nightly_etl"`), `workflows[1] "nightly_etl": invalid name "nightly_etl": duplicate workflow name`},
		{"negative attempts", edit(`"attempts": 3`, `"attempts": -3`), `runs[1]: tasks[2] "poll_api": deferred_jobs[0]: invalid attempts "-3": must not be negative`},
		{"absurd priority", edit(`"priority": 0,`, `"priority": 100000,`), `workflows[0] "hourly_report": invalid priority "100000": must be between -1000 and 1000`},
		{"no slots", edit(`"concurrency_keys": []`, `"concurrency_keys": [{"key": "gpu", "slots": -1}]`), `concurrency_keys[0] "gpu": invalid slots "-1"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			tg := sqliteTarget(t)
			r := fails(t, tg, exitInvalid, c.want, "import", path)
			if !strings.Contains(r.stderr, path+": ") || !strings.HasSuffix(r.stderr, "(nothing imported)\n") {
				t.Errorf("the message names neither the file nor the outcome: %q", r.stderr)
			}
			if out := cli(t, tg, "workflows"); out != "no workflows\n" {
				t.Errorf("a refused file imported something: %q", out)
			}
		})
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, []byte(edit(`"status": "running"`, `"status": "runing"`)), 0o644); err != nil {
			t.Fatal(err)
		}
		tg := postgresTarget(t)
		fails(t, tg, exitInvalid, `invalid run status "runing"`, "import", path)
		if out := cli(t, tg, "workflows"); out != "no workflows\n" {
			t.Errorf("a refused file imported something: %q", out)
		}
	})
	t.Run("into a store that has the workflows", func(t *testing.T) {
		t.Parallel()
		forEachTarget(t, func(t *testing.T, tg *target) {
			path, _ := writeFixture(t)
			loaded(t, tg)
			before := cli(t, tg, "export")
			fails(t, tg, exitConflict, `workflow "hourly_report" exists in the destination; import into an empty store`, "import", path)
			if after := cli(t, tg, "export"); after != before {
				t.Error("a refused import changed the store")
			}
		})
	})
	t.Run("stdin", func(t *testing.T) {
		t.Parallel()
		tg := sqliteTarget(t)
		if r := runCLI(t, tg, opts{stdin: text[:100]}, "import", "-"); r.code != exitInvalid || !strings.Contains(r.stderr, "import: -: invalid state file: truncated") {
			t.Errorf("import - of a truncated document: exit %d, %q", r.code, r.stderr)
		}
		if r := runCLI(t, tg, opts{stdin: text}, "import", "-"); r.code != 0 || !strings.HasPrefix(r.stdout, "imported 2 workflows") {
			t.Errorf("import -: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		fails(t, sqliteTarget(t), exitNotFound, "state file /nonexistent/state.json not found", "import", "/nonexistent/state.json")
	})
}

// diffLines shows the first differing line of two texts, with context.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			lo := max(0, i-5)
			return "line " + itoa(int64(i+1)) + ":\nwant: " + a + "\n got: " + b + "\ncontext (want):\n" + strings.Join(w[lo:min(len(w), i+3)], "\n")
		}
	}
	return "(no difference)"
}
