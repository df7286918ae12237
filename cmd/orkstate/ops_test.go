package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// status on PostgreSQL reads stats(): the fixture has a pending run and a running
// one (its tasks: one succeeded, one running, one ready, one blocked), and its
// finished runs are older than the hour status counts.
func TestStatusReadsStats(t *testing.T) {
	t.Parallel()
	tg := loaded(t, postgresTarget(t))
	out := cli(t, tg, "status")
	for _, want := range []string{
		"schema version ",
		"  queue          ready 1, delayed 0, oldest ready ", "  tasks          in flight 1, unfinished 3\n",
		"  runs           pending 1, running 1, paused 0\n",
		"  finished 1h    success 0, failed 0, cancelled 0\n",
		"  deferred jobs  active 1, due ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var js statusJSON
	if err := json.Unmarshal([]byte(cli(t, tg, "--json", "status")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Stats.TasksInFlight != 1 || js.Runs["pending"] != 1 || js.Stats.FinishedWindowSecs != 3600 {
		t.Errorf("status --json = %+v", js)
	}
}

// status --watch refreshes until interrupted, then exits 0: one block per refresh
// when piped, the screen redrawn on a terminal, one JSON line per refresh with --json.
func TestStatusWatch(t *testing.T) {
	t.Parallel()
	tg := loaded(t, postgresTarget(t))
	// watch interrupts the command once it has printed marker three times (or
	// after 20 s): a fixed half second was too little on a loaded machine.
	watch := func(o opts, marker string, extra ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		o.ctx, o.stdout = ctx, &syncBuffer{}
		go func() {
			for ctx.Err() == nil && strings.Count(o.stdout.String(), marker) < 3 {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
		}()
		return runCLI(t, tg, o, append(extra, "status", "--watch", "--interval", "50ms")...)
	}
	r := watch(opts{}, "schema version")
	if n := strings.Count(r.stdout, "schema version"); r.code != 0 || n < 3 {
		t.Fatalf("piped watch: exit %d, %d blocks (want ≥ 3)\n%s%s", r.code, n, r.stdout, r.stderr)
	}
	if r := watch(opts{outTerminal: true}, "\x1b[H\x1b[2J"); r.code != 0 || strings.Count(r.stdout, "\x1b[H\x1b[2J") < 3 {
		t.Fatalf("terminal watch: exit %d, %d redraws (want ≥ 3)", r.code, strings.Count(r.stdout, "\x1b[H\x1b[2J"))
	}
	r = watch(opts{}, "\n", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var js statusJSON
	if r.code != 0 || len(lines) < 3 || json.Unmarshal([]byte(lines[len(lines)-1]), &js) != nil || js.Runs["running"] != 1 {
		t.Fatalf("--json watch: exit %d, %d lines, last %q", r.code, len(lines), lines[len(lines)-1])
	}
	fails(t, tg, exitInvalid, `invalid interval`, "status", "--watch", "--interval", "0s")
}

// purge deletes the fixture's finished runs (from 2025, older than 30 days) with
// progress on a terminal, leaves the live ones, and finds nothing the second time:
// on PostgreSQL and on a SQLite file alike.
func TestPurgeCommand(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"postgres", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tg := loaded(t, targets[name](t))
			r := runCLI(t, tg, opts{errTerminal: true}, "purge", "--older-than", "30d", "--batch", "1", "--max-rate", "10000")
			if r.code != 0 || !strings.HasPrefix(r.stdout, "purged 3 runs, 12 tasks, ") || !strings.Contains(r.stderr, "\rpurging: 3 runs, 12 tasks") {
				t.Fatalf("purge: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
			}
			if out := cli(t, tg, "runs"); strings.Count(out, "\n") != 3 { // header + the 2 live runs
				t.Errorf("runs after purge:\n%s", out)
			}
			var js map[string]float64
			if err := json.Unmarshal([]byte(cli(t, tg, "--json", "purge", "--older-than", "720h", "--vacuum")), &js); err != nil || js["runs"] != 0 || js["batches"] != 0 {
				t.Errorf("second purge --json = %v, %v; want nothing purged", js, err)
			}
			fails(t, tg, exitInvalid, `invalid older-than "30 days"`, "purge", "--older-than", "30 days")
			fails(t, tg, exitInvalid, `invalid batch_size`, "purge", "--older-than", "1d", "--batch", "20000")
			fails(t, tg, exitInvalid, `invalid pause`, "purge", "--older-than", "1d", "--pause", "-1s")
			fails(t, tg, exitInvalid, `invalid max_rate`, "purge", "--older-than", "1d", "--max-rate", "-5")
			fails(t, tg, exitUsage, `required flag(s) "older-than" not set`, "purge")
		})
	}
}
