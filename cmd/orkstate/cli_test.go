package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestTables runs the looking commands on the fixture, on both stores, and
// compares the human tables with golden files (go test -update rewrites them).
// The fixture's times are fixed and the clock is testNow; ids are those a fresh
// store hands out.
func TestTables(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		loaded(t, tg)
		ids := runIDs(t, tg)
		var all strings.Builder
		for _, args := range [][]string{
			{"workflows"},
			{"runs"},
			{"runs", "--workflow", "nightly_etl", "--status", "failed"},
			{"runs", "--limit", "2"},
			{"run", itoa(ids["running"])},
			{"run", itoa(ids["failed"])},
			{"run", itoa(ids["pending"])},
			{"task", itoa(taskID(t, tg, ids["running"], "poll_api"))},
			{"task", itoa(taskID(t, tg, ids["failed"], "extract")), "--log"},
		} {
			all.WriteString("$ orkstate " + strings.Join(args, " ") + "\n")
			all.WriteString(cli(t, tg, args...))
			all.WriteString("\n")
		}
		golden(t, "tables.txt", all.String()) // the same for both stores
	})
}

// TestJSON checks the documented field names of --json output.
func TestJSON(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		loaded(t, tg)
		ids := runIDs(t, tg)
		var run struct {
			Run   map[string]any   `json:"run"`
			Tasks []map[string]any `json:"tasks"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "run", itoa(ids["running"]), "--json")), &run); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "workflow_id", "workflow", "snapshot_id", "status", "triggered_by", "error", "created_at", "started_at", "finished_at", "tasks"} {
			if _, ok := run.Run[k]; !ok {
				t.Errorf("run has no %q: %v", k, run.Run)
			}
		}
		if run.Run["workflow"] != "nightly_etl" || run.Run["status"] != "running" || run.Run["created_at"] != "2025-06-02T03:00:00Z" {
			t.Errorf("run = %v", run.Run)
		}
		byName := map[string]map[string]any{}
		for _, k := range run.Tasks {
			byName[k["name"].(string)] = k
		}
		for _, k := range []string{"id", "run_id", "index", "name", "executor_type", "depends_on", "status", "attempts", "max_retries",
			"timeout_seconds", "execution_name", "error", "params", "output", "claimed_by", "lease_expires_at", "retry_at",
			"created_at", "dispatched_at", "started_at", "finished_at", "priority", "priority_override", "concurrency_key", "waits_for"} {
			if _, ok := byName["load"][k]; !ok {
				t.Errorf("task has no %q", k)
			}
		}
		if got := byName["load"]["waits_for"]; len(got.([]any)) != 2 {
			t.Errorf("load waits for %v, want clean and poll_api", got)
		}
		if byName["clean"]["retry_at"] != "2026-01-15T12:00:30Z" || byName["clean"]["attempts"] != 1.0 {
			t.Errorf("clean = %v", byName["clean"])
		}
		var wfs struct {
			Workflows []map[string]any `json:"workflows"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "workflows", "--json")), &wfs); err != nil {
			t.Fatal(err)
		}
		if len(wfs.Workflows) != 2 || wfs.Workflows[1]["schedule"] != "0 3 * * *" || wfs.Workflows[1]["next_scheduled_at"] != "2025-06-04T03:00:00Z" {
			t.Errorf("workflows = %v", wfs.Workflows)
		}
		var task struct {
			Task         map[string]any   `json:"task"`
			Workflow     string           `json:"workflow"`
			DeferredJobs []map[string]any `json:"deferred_jobs"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "task", itoa(taskID(t, tg, ids["running"], "poll_api")), "--json")), &task); err != nil {
			t.Fatal(err)
		}
		if task.Workflow != "nightly_etl" || len(task.DeferredJobs) != 1 || task.DeferredJobs[0]["job_id"] != "job-7" || task.DeferredJobs[0]["attempts"] != 3.0 {
			t.Errorf("task = %+v", task)
		}
		var log struct {
			Log string `json:"log"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "task", itoa(taskID(t, tg, ids["failed"], "extract")), "--log", "--json")), &log); err != nil {
			t.Fatal(err)
		}
		if log.Log != "connecting\npermission denied\n" {
			t.Errorf("log = %q", log.Log)
		}
	})
}

// TestActions: trigger, pause, resume, cancel, retry and schedule, each checked
// through what the store then holds.
func TestActions(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		loaded(t, tg)
		ids := runIDs(t, tg)
		st := tg.store

		out := cli(t, tg, "trigger", "nightly_etl")
		if !strings.HasPrefix(out, "run ") || !strings.HasSuffix(out, " of nightly_etl created (pending; a scheduler starts it)\n") {
			t.Errorf("trigger said %q", out)
		}
		var trig struct {
			ID          int64  `json:"id"`
			Status      string `json:"status"`
			TriggeredBy string `json:"triggered_by"`
		}
		if err := json.Unmarshal([]byte(cli(t, tg, "trigger", "nightly_etl", "--json")), &trig); err != nil {
			t.Fatal(err)
		}
		if r, err := st.GetRun(ctx, trig.ID); err != nil || r.Status != orkstate.RunPending || r.TriggeredBy != "cli" {
			t.Errorf("triggered run = %+v, %v", r, err)
		}

		running := itoa(ids["running"])
		if out := cli(t, tg, "pause", running); !strings.Contains(out, ": paused (") {
			t.Errorf("pause said %q", out)
		}
		if r, _ := st.GetRun(ctx, ids["running"]); r.Status != orkstate.RunPaused {
			t.Errorf("after pause: %s", r.Status)
		}
		fails(t, tg, exitConflict, "is paused; only a running run can be paused", "pause", running)
		if out := cli(t, tg, "resume", running); !strings.Contains(out, ": running (") {
			t.Errorf("resume said %q", out)
		}

		// A failed task of the running run: retried, attempts reset.
		clean := taskID(t, tg, ids["running"], "clean")
		if _, err := st.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: clean, Status: orkstate.TaskCancelled}); err != nil {
			t.Fatal(err)
		}
		if out := cli(t, tg, "retry", itoa(clean)); out != "task "+itoa(clean)+" (clean) of run "+running+": cancelled → pending\n" {
			t.Errorf("retry said %q", out)
		}
		if k, _ := st.GetTask(ctx, clean); k.Status != orkstate.TaskPending || k.Attempts != 0 {
			t.Errorf("after retry: %s, %d attempts", k.Status, k.Attempts)
		}
		fails(t, tg, exitConflict, "is pending; only a finished task can be retried", "retry", itoa(clean))

		if out := cli(t, tg, "cancel", running); !strings.Contains(out, ": cancelled (") {
			t.Errorf("cancel said %q", out)
		}
		fails(t, tg, exitConflict, "run "+running+" is cancelled; only an unfinished run can be cancelled", "cancel", running)
		// A cancelled run's task cannot be retried, and the message says why.
		fails(t, tg, exitConflict, "cannot be retried: its run "+running+" is cancelled", "retry", itoa(clean))

		out = cli(t, tg, "schedule", "hourly_report", "*/15 * * * *")
		if out != "hourly_report: schedule \"*/15 * * * *\" on, next fire 2026-01-15 12:15:00Z\n" {
			t.Errorf("schedule said %q", out)
		}
		if out := cli(t, tg, "schedule", "hourly_report", "--off"); out != "hourly_report: schedule \"*/15 * * * *\" off\n" {
			t.Errorf("schedule --off said %q", out)
		}
		wf, _ := st.GetWorkflowByName(ctx, "hourly_report")
		if wf.Schedule != "*/15 * * * *" || wf.ScheduleEnabled || wf.NextScheduledAt != nil {
			t.Errorf("after --off: %q enabled=%v next=%v", wf.Schedule, wf.ScheduleEnabled, wf.NextScheduledAt)
		}
	})
}

// TestBadInput: unknown ids, wrong arguments, invalid values. Each exits with its
// documented code, says what was wrong, and changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		loaded(t, tg)
		ids := runIDs(t, tg)
		before := cli(t, tg, "export")
		fails(t, tg, exitNotFound, "run 999999 not found", "run", "999999")
		fails(t, tg, exitNotFound, "run 999999 not found", "cancel", "999999")
		fails(t, tg, exitNotFound, "run 999999 not found", "pause", "999999")
		fails(t, tg, exitNotFound, "task 999999 not found", "task", "999999")
		fails(t, tg, exitNotFound, "task 999999 not found", "retry", "999999")
		fails(t, tg, exitNotFound, `workflow "nope" not found`, "trigger", "nope")
		fails(t, tg, exitNotFound, `workflow "nope" not found`, "schedule", "nope", "@hourly")
		fails(t, tg, exitNotFound, `workflow "nope" not found`, "runs", "--workflow", "nope")
		fails(t, tg, exitInvalid, `invalid run id "abc": must be a positive integer`, "run", "abc")
		fails(t, tg, exitInvalid, `invalid task id "0"`, "retry", "0")
		fails(t, tg, exitInvalid, `invalid schedule "61 * * * *"`, "schedule", "nightly_etl", "61 * * * *")
		fails(t, tg, exitInvalid, `invalid schedule "every day"`, "schedule", "nightly_etl", "every day")
		fails(t, tg, exitInvalid, `workflow "hourly_report" has no schedule to turn off`, "schedule", "hourly_report", "--off")
		fails(t, tg, exitInvalid, `invalid run status "done": unknown run status`, "runs", "--status", "done")
		fails(t, tg, exitInvalid, `invalid --limit "0"`, "runs", "--limit", "0")
		fails(t, tg, exitConflict, "run "+itoa(ids["success"])+" is success; only an unfinished run can be cancelled", "cancel", itoa(ids["success"]))
		fails(t, tg, exitConflict, "its run "+itoa(ids["cancelled"])+" is cancelled, and a finished run never changes",
			"retry", itoa(taskID(t, tg, ids["cancelled"], "extract")))
		fails(t, tg, exitUsage, "wants RUN_ID, got 0 argument(s)", "run")
		fails(t, tg, exitUsage, `wants WORKFLOW "CRON", got 1 argument(s)`, "schedule", "nightly_etl")
		fails(t, tg, exitUsage, "unknown flag: --nope", "runs", "--nope")
		fails(t, tg, exitUsage, `unknown command "nope"`, "nope")
		fails(t, tg, exitUsage, `invalid argument "x" for "--limit"`, "runs", "--limit", "x")
		if after := cli(t, tg, "export"); after != before {
			t.Error("a refused command changed the store")
		}
		// --json: the error as JSON on stderr, with its kind and code.
		r := runCLI(t, tg, opts{}, "--json", "run", "999999")
		var e struct {
			Error    string `json:"error"`
			Kind     string `json:"kind"`
			ExitCode int    `json:"exit_code"`
		}
		if err := json.Unmarshal([]byte(r.stderr), &e); err != nil || r.code != exitNotFound || e.Kind != "not_found" || e.ExitCode != 3 || e.Error != "run 999999 not found" {
			t.Errorf("--json error: exit %d, %q (%v)", r.code, r.stderr, err)
		}
	})
}

func TestMissingStore(t *testing.T) {
	t.Parallel()
	missing := &target{flags: []string{"--db", filepath.Join(t.TempDir(), "none.db")}}
	fails(t, missing, exitNotFound, "no SQLite store at ", "runs")
	pool := testdb.Pool(t)
	noInstall := &target{flags: []string{"--db", testdb.URL(), "--schema", "orkstate_never_installed"}}
	fails(t, noInstall, exitNotFound, `install "orkstate_never_installed" is not in `, "workflows")
	bad := &target{flags: []string{"--db", testdb.URL(), "--schema", "Bad-Name"}}
	fails(t, bad, exitInvalid, `invalid schema "Bad-Name"`, "workflows")

	// A version table that cannot be read is a failure, not a missing install:
	// exit 1 with the cause, never "is not in … run orkstate migrate".
	unreadable := testdb.SchemaName(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "create table "+pgstore.VersionTable(unreadable)+" (version text); insert into "+
		pgstore.VersionTable(unreadable)+" values ('not a number')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "drop table if exists "+pgstore.VersionTable(unreadable))
	})
	broken := &target{flags: []string{"--db", testdb.URL(), "--schema", unreadable}}
	fails(t, broken, exitInternal, `read the schema version of install "`+unreadable+`"`, "workflows")
}

// TestSchemaFromEnvironment: without --schema every command uses ORK_SCHEMA
// (issue 11, item 3: the CLI used to install into ork whatever ORK_SCHEMA said).
func TestSchemaFromEnvironment(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t)
	schema := testdb.SchemaName(t)
	t.Cleanup(func() { testdb.Drop(t, pool, schema) })
	tg := &target{flags: []string{"--db", testdb.URL()}, env: map[string]string{"ORK_SCHEMA": schema}}
	if out := cli(t, tg, "migrate"); !strings.HasPrefix(out, schema+": at version ") {
		t.Errorf("migrate said %q", out)
	}
	var v int
	if err := pool.QueryRow(context.Background(), "select version from "+pgstore.VersionTable(schema)).Scan(&v); err != nil || v == 0 {
		t.Fatalf("ORK_SCHEMA=%s: no install there (version %d, %v)", schema, v, err)
	}
	loaded(t, tg)
	if out := cli(t, tg, "status"); !strings.HasPrefix(out, "install "+schema+": schema version ") || !strings.Contains(out, "runs           pending 1, running 1, paused 0") {
		t.Errorf("status said %q", out)
	}
	// DATABASE_URL stands for --db.
	byEnv := &target{env: map[string]string{"DATABASE_URL": testdb.URL(), "ORK_SCHEMA": schema}}
	if out := cli(t, byEnv, "runs", "--status", "pending"); !strings.Contains(out, "hourly_report  pending") {
		t.Errorf("runs by DATABASE_URL and ORK_SCHEMA: %q", out)
	}
	// --schema wins over ORK_SCHEMA; an invalid ORK_SCHEMA is refused by name.
	fails(t, tg, exitNotFound, `install "ork_not_here" is not in`, "--schema", "ork_not_here", "runs")
	bad := &target{flags: []string{"--db", testdb.URL()}, env: map[string]string{"ORK_SCHEMA": "Ork-Prod"}}
	fails(t, bad, exitInvalid, `invalid schema "Ork-Prod"`, "migrate")
}

func TestSQLiteMigrateAndStatus(t *testing.T) {
	t.Parallel()
	tg := &target{flags: []string{"--db", filepath.Join(t.TempDir(), "new.db")}}
	if out := cli(t, tg, "migrate"); !strings.HasSuffix(out, "new.db: at version 2\n") {
		t.Errorf("migrate said %q", out)
	}
	loaded(t, tg)
	out := cli(t, tg, "status")
	if !strings.Contains(out, "tasks                16  (cancelled 4, failed 4, pending 2, running 1, success 5)") || !strings.Contains(out, "workflows             2") {
		t.Errorf("status said %q", out)
	}
}

// TestWatch follows a run while it is driven to its end: on PostgreSQL woken by
// NOTIFY (the poll is set to an hour, so only a notification can wake it), on
// SQLite by polling. Exit 0 on success, 6 on failure.
func TestWatch(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		st := tg.store
		wf, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ReplaceWorkflowTasks(ctx, wf.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}}); err != nil {
			t.Fatal(err)
		}
		for _, final := range []orkstate.TaskStatus{orkstate.TaskSuccess, orkstate.TaskFailed} {
			r, err := st.CreateRun(ctx, wf.ID, "test")
			if err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			done := make(chan result, 1)
			o := opts{stdout: &out}
			if tg.name == "postgres" {
				o.pollInterval = time.Hour
			}
			go func() { done <- runCLI(t, tg, o, "run", itoa(r.ID), "--watch", "--json") }()
			waitFor(t, func() bool { return strings.Contains(out.String(), `"status":"pending"`) })
			if _, err := st.StartPendingRuns(ctx, 10); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return strings.Contains(out.String(), `"status":"running"`) })
			for _, status := range []orkstate.TaskStatus{orkstate.TaskSuccess, final} {
				claimed, err := st.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "test", Limit: 1})
				if err != nil || len(claimed) != 1 {
					t.Fatalf("claim: %v, %v", claimed, err)
				}
				if _, err := st.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: claimed[0].ID, Status: status, Attempt: claimed[0].Attempt}); err != nil {
					t.Fatal(err)
				}
			}
			var res result
			select {
			case res = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("watch did not end with the run")
			}
			want := exitOK
			if final == orkstate.TaskFailed {
				want = exitRunEnded
			}
			lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
			if res.code != want || len(lines) < 3 || !strings.Contains(lines[len(lines)-1], `"status":"`+string(final)+`"`) {
				t.Errorf("watch: exit %d (want %d), stderr %q, %d lines, last %s", res.code, want, res.stderr, len(lines), lines[len(lines)-1])
			}
		}
	})
}

// TestFollow prints a task's log as it grows and stops when the task finishes.
func TestFollow(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		st := tg.store
		wf, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.CreateRun(ctx, wf.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		tasks, err := st.CreateTasks(ctx, r.ID, 1, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		id := tasks[0].ID
		if err := st.AppendTaskLog(ctx, id, "one\n"); err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		done := make(chan result, 1)
		go func() { done <- runCLI(t, tg, opts{stdout: &out}, "task", itoa(id), "--follow") }()
		waitFor(t, func() bool { return out.String() == "one\n" })
		if err := st.AppendTaskLog(ctx, id, "two\n"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return out.String() == "one\ntwo\n" })
		if err := st.AppendTaskLog(ctx, id, "three\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.UpdateTaskStatus(ctx, orkstate.TaskUpdate{TaskID: id, Status: orkstate.TaskSuccess}); err != nil {
			t.Fatal(err)
		}
		select {
		case res := <-done:
			if res.code != 0 || res.stdout != "one\ntwo\nthree\n" {
				t.Errorf("follow: exit %d, %q, stderr %q", res.code, res.stdout, res.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("follow did not end with the task")
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProgress: progress lines on a terminal's stderr only, never with --json or
// when stderr is piped, and never on stdout.
func TestProgress(t *testing.T) {
	t.Parallel()
	tg := loaded(t, sqliteTarget(t))
	out := filepath.Join(t.TempDir(), "state.json")
	r := runCLI(t, tg, opts{errTerminal: true, outTerminal: true}, "export", "--out", out)
	if r.code != 0 || !strings.Contains(r.stderr, "\rexport: 5/5 runs\n") || strings.Contains(r.stdout, "runs\r") {
		t.Errorf("terminal: exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	for _, o := range []struct {
		name string
		args []string
		opts opts
	}{
		{"piped", []string{"export", "--out", out}, opts{}},
		{"json", []string{"export", "--out", out, "--json"}, opts{errTerminal: true, outTerminal: true}},
	} {
		r := runCLI(t, tg, o.opts, o.args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%s: exit %d, stderr %q", o.name, r.code, r.stderr)
		}
	}
	dst := &target{flags: []string{"--db", filepath.Join(t.TempDir(), "copy.db")}}
	r = runCLI(t, dst, opts{errTerminal: true}, "import", out)
	if r.code != 0 || !strings.Contains(r.stderr, "\rimport: 5/5 runs\n") {
		t.Errorf("import on a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestDemoAndBench: the demo and the benchmarks still take their own flags.
func TestDemoAndBench(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "demo.db")
	r := runCLI(t, nil, opts{}, "demo", "--sqlite", path, "--keep")
	if r.code != 0 || !strings.Contains(r.stdout, "finished: SUCCESS") || !strings.Contains(r.stdout, "Kept "+path) {
		t.Errorf("demo: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The demo's file is a store like any other.
	if out := cli(t, &target{flags: []string{"--db", path}}, "runs"); !strings.Contains(out, "nightly_etl  success") {
		t.Errorf("runs of the demo's file: %q", out)
	}
	r = runCLI(t, nil, opts{}, "bench", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "-only") {
		t.Errorf("bench -h: exit %d, %q", r.code, r.stderr)
	}
	r = runCLI(t, nil, opts{}, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Exit codes: 0 ok") || !strings.Contains(r.stdout, "completion") {
		t.Errorf("--help: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, nil, opts{}, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "__start_orkstate") {
		t.Errorf("completion bash: exit %d", r.code)
	}
}

// TestBinary builds the command and runs it as a user would, for the exit code.
func TestBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "orkstate")
	if out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tg := loaded(t, sqliteTarget(t))
	cmd := exec.CommandContext(context.Background(), bin, append(tg.flags, "run", "424242")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != exitNotFound || stderr.String() != "orkstate run: run 424242 not found\n" {
		t.Errorf("binary: exit %d (%v), stderr %q", code, err, stderr.String())
	}
	cmd = exec.CommandContext(context.Background(), bin, append(tg.flags, "workflows")...)
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "ID  NAME") {
		t.Errorf("binary workflows: %v, %q", err, out)
	}
	_ = os.Remove(bin)
}
