package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/sqlitecompat"
	"github.com/orkstate/orkstate/statefile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testNow is the clock of every command run by the tests.
var testNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// target is one store the commands run against, as a user would name it.
type target struct {
	name  string
	flags []string // --db (and --schema)
	env   map[string]string
	store orkstate.Store
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is what one command printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// opts change how a command is run.
type opts struct {
	env                      map[string]string
	outTerminal, errTerminal bool
	ctx                      context.Context
	stdout                   *syncBuffer
	stdin                    string
	// pollInterval of --watch and --follow; defaults to 20ms.
	pollInterval time.Duration
}

// runCLI runs the entry point with args as a user would, against tg's store.
func runCLI(t *testing.T, tg *target, o opts, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	out := &stdout
	if o.stdout != nil {
		out = o.stdout
	}
	env := map[string]string{}
	if tg != nil {
		for k, v := range tg.env {
			env[k] = v
		}
		args = append(append([]string{}, tg.flags...), args...)
	}
	for k, v := range o.env {
		env[k] = v
	}
	ctx := o.ctx
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
	}
	a := &app{stdout: out, stderr: &stderr, getenv: func(k string) string { return env[k] },
		now: func() time.Time { return testNow }, outTerminal: o.outTerminal, errTerminal: o.errTerminal,
		pollInterval: 20 * time.Millisecond, stdin: strings.NewReader(o.stdin)}
	if o.pollInterval != 0 {
		a.pollInterval = o.pollInterval
	}
	code := a.run(ctx, args)
	return result{stdout: out.String(), stderr: stderr.String(), code: code}
}

// cli runs a command that must succeed and returns its stdout.
func cli(t *testing.T, tg *target, args ...string) string {
	t.Helper()
	r := runCLI(t, tg, opts{}, args...)
	if r.code != 0 {
		t.Fatalf("orkstate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must exit with code and print want (a substring) on stderr.
func fails(t *testing.T, tg *target, code int, want string, args ...string) result {
	t.Helper()
	r := runCLI(t, tg, opts{}, args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Fatalf("orkstate %s: exit %d (want %d), stderr %q (want it to contain %q)", strings.Join(args, " "), r.code, code, r.stderr, want)
	}
	return r
}

// postgresTarget is a fresh install schema; commands name it with --db and --schema.
func postgresTarget(t *testing.T) *target {
	t.Helper()
	pool, schema := testdb.Schema(t)
	st, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return &target{name: "postgres", flags: []string{"--db", testdb.URL(), "--schema", schema}, store: st}
}

// sqliteTarget is a fresh SQLite file; commands name it with --db.
func sqliteTarget(t *testing.T) *target {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ork.db")
	st, err := sqlitecompat.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return &target{name: "sqlite", flags: []string{"--db", path}, store: st}
}

var targets = map[string]func(*testing.T) *target{"postgres": postgresTarget, "sqlite": sqliteTarget}

// forEachTarget runs fn against a fresh store of each kind.
func forEachTarget(t *testing.T, fn func(t *testing.T, tg *target)) {
	for _, name := range []string{"postgres", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, targets[name](t))
		})
	}
}

func at(s string) *time.Time {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &v
}

// fixture is a state document with every kind of row and fixed timestamps: a
// scheduled DAG workflow with a succeeded, a running (a failed task waiting for
// its retry, a dispatched one, a running one with a deferred job, a blocked one),
// a failed and a cancelled run, and a legacy workflow with a pending run.
func fixture(t *testing.T) *statefile.Document {
	t.Helper()
	dag := []statefile.TaskSpec{
		{Name: "extract", ExecutorType: "process", DependsOn: []string{}, Params: json.RawMessage(`{"source":"orders"}`)},
		{Name: "clean", ExecutorType: "process", DependsOn: []string{"extract"}, MaxRetries: 2},
		{Name: "poll_api", ExecutorType: "http", DependsOn: []string{"extract"}, TimeoutSeconds: 600},
		{Name: "load", ExecutorType: "process", DependsOn: []string{"clean", "poll_api"}},
	}
	specs := make([]orkstate.TaskSpec, len(dag))
	for i, s := range dag {
		specs[i] = orkstate.TaskSpec{Name: s.Name, ExecutorType: s.ExecutorType, DependsOn: s.DependsOn, Params: s.Params,
			MaxRetries: s.MaxRetries, TimeoutSeconds: s.TimeoutSeconds}
	}
	hash, err := orkstate.ContentHash(specs)
	if err != nil {
		t.Fatal(err)
	}
	task := func(i int, status string, created string) statefile.Task {
		s := dag[i]
		return statefile.Task{Index: i, Name: s.Name, ExecutorType: s.ExecutorType, DependsOn: s.DependsOn, Params: s.Params,
			Status: status, MaxRetries: s.MaxRetries, TimeoutSeconds: s.TimeoutSeconds, CreatedAt: *at(created), DeferredJobs: []statefile.DeferredJob{}}
	}
	done := func(k statefile.Task, start, end string, attempts int) statefile.Task {
		k.StartedAt, k.FinishedAt, k.DispatchedAt, k.Attempts = at(start), at(end), at(start), attempts
		k.ClaimedBy, k.ExecutionName = "scheduler-1", k.Name+"-1"
		return k
	}
	// Run 1: succeeded.
	r1 := statefile.Run{Snapshot: hash, Status: "success", TriggeredBy: "schedule", CreatedAt: *at("2025-06-01T03:00:00Z"),
		StartedAt: at("2025-06-01T03:00:00.5Z"), FinishedAt: at("2025-06-01T03:00:09.25Z")}
	e := done(task(0, "success", "2025-06-01T03:00:00.5Z"), "2025-06-01T03:00:01Z", "2025-06-01T03:00:03.5Z", 1)
	e.Output, e.Log = json.RawMessage(`{"rows":1042}`), "reading orders\n1042 rows\n"
	r1.Tasks = []statefile.Task{e,
		done(task(1, "success", "2025-06-01T03:00:00.5Z"), "2025-06-01T03:00:04Z", "2025-06-01T03:00:05Z", 1),
		done(task(2, "success", "2025-06-01T03:00:00.5Z"), "2025-06-01T03:00:04Z", "2025-06-01T03:00:07Z", 1),
		done(task(3, "success", "2025-06-01T03:00:00.5Z"), "2025-06-01T03:00:07.5Z", "2025-06-01T03:00:09.25Z", 1)}
	// Run 2: running.
	r2 := statefile.Run{Snapshot: hash, Status: "running", TriggeredBy: "cli", CreatedAt: *at("2025-06-02T03:00:00Z"),
		StartedAt: at("2025-06-02T03:00:01Z")}
	c := task(1, "pending", "2025-06-02T03:00:01Z")
	c.Attempts, c.Error, c.RetryAt = 1, "upstream answered 503", at("2026-01-15T12:00:30Z") // after testNow
	p := task(2, "running", "2025-06-02T03:00:01Z")
	p.Attempts, p.ClaimedBy, p.ExecutionName = 1, "scheduler-2", "poll_api-1"
	p.DispatchedAt, p.StartedAt, p.LeaseExpiresAt = at("2025-06-02T03:00:05Z"), at("2025-06-02T03:00:05.5Z"), at("2025-06-02T03:05:05Z")
	p.DeferredJobs = []statefile.DeferredJob{{ServiceType: "http", JobID: "job-7", JobData: json.RawMessage(`{"url":"https://api.example/jobs/7"}`),
		Status: "polling", Attempts: 3, ClaimedBy: "triggerer-1", LeaseExpiresAt: at("2025-06-02T03:01:00Z"),
		NextPollAt: at("2025-06-02T03:01:00Z"), CreatedAt: *at("2025-06-02T03:00:05.5Z"), StartedAt: at("2025-06-02T03:00:06Z"),
		LastPolledAt: at("2025-06-02T03:00:40Z")}}
	p.Log = "submitted job-7\n"
	r2.Tasks = []statefile.Task{done(task(0, "success", "2025-06-02T03:00:01Z"), "2025-06-02T03:00:02Z", "2025-06-02T03:00:04.75Z", 1),
		c, p, task(3, "pending", "2025-06-02T03:00:01Z")}
	// Run 3: failed, its dependents failed with it.
	r3 := statefile.Run{Snapshot: hash, Status: "failed", TriggeredBy: "schedule", Error: "task extract failed",
		CreatedAt: *at("2025-06-03T03:00:00Z"), StartedAt: at("2025-06-03T03:00:01Z"), FinishedAt: at("2025-06-03T03:00:04Z")}
	f := done(task(0, "failed", "2025-06-03T03:00:01Z"), "2025-06-03T03:00:02Z", "2025-06-03T03:00:04Z", 1)
	f.Error, f.Log = "exit status 1\npermission denied", "connecting\npermission denied\n"
	dep := func(i int) statefile.Task {
		k := task(i, "failed", "2025-06-03T03:00:01Z")
		k.Error, k.FinishedAt = "dependency failed", at("2025-06-03T03:00:04Z")
		return k
	}
	r3.Tasks = []statefile.Task{f, dep(1), dep(2), dep(3)}
	// Run 4: cancelled while its first task ran.
	r4 := statefile.Run{Snapshot: hash, Status: "cancelled", TriggeredBy: "cli", CreatedAt: *at("2025-06-04T03:00:00Z"),
		StartedAt: at("2025-06-04T03:00:01Z"), FinishedAt: at("2025-06-04T03:00:30Z")}
	cancelled := func(i int) statefile.Task {
		k := task(i, "cancelled", "2025-06-04T03:00:01Z")
		k.Error, k.FinishedAt = "run cancelled", at("2025-06-04T03:00:30Z")
		return k
	}
	x := cancelled(0)
	x.Attempts, x.StartedAt, x.DispatchedAt, x.ClaimedBy = 1, at("2025-06-04T03:00:02Z"), at("2025-06-04T03:00:02Z"), "scheduler-1"
	r4.Tasks = []statefile.Task{x, cancelled(1), cancelled(2), cancelled(3)}
	for _, r := range []*statefile.Run{&r1, &r2, &r3, &r4} {
		for i := range r.Tasks {
			if r.Tasks[i].DependsOn == nil {
				r.Tasks[i].DependsOn = []string{}
			}
		}
	}
	return &statefile.Document{Format: statefile.Format, Version: statefile.Version, Workflows: []statefile.Workflow{
		{Name: "hourly_report", Description: "legacy count-based tasks", ExecutorType: "shell", TaskParams: json.RawMessage(`{"task_count":2}`),
			Tasks: []statefile.TaskSpec{}, Snapshots: []statefile.Snapshot{},
			Runs: []statefile.Run{{Status: "pending", TriggeredBy: "api", CreatedAt: *at("2025-06-05T10:00:00Z"), Tasks: []statefile.Task{}}}},
		{Name: "nightly_etl", Description: "orders into the warehouse", JobName: "nightly-etl", Project: "data", Region: "eu",
			ExecutorType: "process", Schedule: "0 3 * * *", ScheduleEnabled: true,
			LastScheduledAt: at("2025-06-03T03:00:00Z"), NextScheduledAt: at("2025-06-04T03:00:00Z"),
			CurrentSnapshot: hash, Tasks: dag, Snapshots: []statefile.Snapshot{{ContentHash: hash, Tasks: dag}},
			Runs: []statefile.Run{r1, r2, r3, r4}},
	}}
}

// writeFixture encodes the fixture into a file and returns its path and bytes.
func writeFixture(t *testing.T) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := fixture(t).Encode(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fixture.json")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b.Bytes()
}

// loaded is a target with the fixture imported through the CLI.
func loaded(t *testing.T, tg *target) *target {
	t.Helper()
	path, _ := writeFixture(t)
	out := cli(t, tg, "import", path)
	if !strings.HasPrefix(out, "imported 2 workflows, 5 runs, 16 tasks, 1 deferred jobs into ") {
		t.Fatalf("import said %q", out)
	}
	return tg
}

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// runIDs maps run status to run id, through runs --json.
func runIDs(t *testing.T, tg *target) map[string]int64 {
	t.Helper()
	var out struct {
		Runs []struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(cli(t, tg, "runs", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, r := range out.Runs {
		ids[r.Status] = r.ID
	}
	return ids
}

// taskID finds a task of a run by name, through run --json.
func taskID(t *testing.T, tg *target, run int64, name string) int64 {
	t.Helper()
	var out struct {
		Tasks []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(cli(t, tg, "run", itoa(run), "--json")), &out); err != nil {
		t.Fatal(err)
	}
	for _, k := range out.Tasks {
		if k.Name == name {
			return k.ID
		}
	}
	t.Fatalf("run %d has no task %s", run, name)
	return 0
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
