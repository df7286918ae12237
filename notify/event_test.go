package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/schemaname"
)

func TestChannelNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ got, want string }{
		{TasksReadyChannel("ork"), "ork_tasks_ready"},
		{DeferredJobsChannel("ork"), "ork_deferred_jobs"},
		{RunsChannel("ork"), "ork_runs"},
		{Channel("a_b", orkstate.WakeKindRunFinished), "a_b_runs"},
	} {
		if c.got != c.want {
			t.Errorf("channel = %q, want %q", c.got, c.want)
		}
	}
	// The longest schema validateSchema accepts still gives channels Postgres keeps whole.
	long := strings.Repeat("s", schemaname.MaxLen)
	if err := validateSchema("schema", long); err != nil {
		t.Fatalf("validateSchema(%d chars) = %v", len(long), err)
	}
	for _, k := range orkstate.WakeKinds {
		if n := len(Channel(long, k)); n > 63 {
			t.Errorf("%s channel of a %d-char schema is %d bytes, more than 63", k, len(long), n)
		}
	}
	for _, bad := range []string{long + "s", "select", "AudU", "pg_x"} {
		if err := validateSchema("schema", bad); err == nil {
			t.Errorf("validateSchema(%q) = nil, want an error", bad)
		}
	}
}

func TestParseEvent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, channel, payload string
		want                   Event
		wantErr                string
	}{
		{name: "tasks ready", channel: "ork_tasks_ready", want: Event{Kind: orkstate.WakeKindTasksReady}},
		{name: "deferred, payload ignored", channel: "ork_deferred_jobs", payload: "x", want: Event{Kind: orkstate.WakeKindDeferredJobs}},
		{
			name: "runs", channel: "ork_runs",
			payload: `{"runs":[{"id":1,"status":"success"},{"id":9007199254740993,"status":"cancelled"}],"more":true}`,
			want: Event{Kind: orkstate.WakeKindRunFinished, More: true, Runs: []FinishedRun{
				{ID: 1, Status: orkstate.RunSuccess}, {ID: 9007199254740993, Status: orkstate.RunCancelled},
			}},
		},
		{name: "runs without more", channel: "ork_runs", payload: `{"runs":[{"id":2,"status":"failed"}]}`,
			want: Event{Kind: orkstate.WakeKindRunFinished, Runs: []FinishedRun{{ID: 2, Status: orkstate.RunFailed}}}},
		{name: "other schema", channel: "ork2_runs", wantErr: `not one of schema "ork"`},
		{name: "bad json", channel: "ork_runs", payload: `{`, want: Event{Kind: orkstate.WakeKindRunFinished, More: true}, wantErr: "runs payload"},
		{name: "unknown status", channel: "ork_runs", payload: `{"runs":[{"id":3,"status":"done"}]}`,
			want: Event{Kind: orkstate.WakeKindRunFinished, More: true, Runs: []FinishedRun{}}, wantErr: "unknown run status"},
		{name: "not terminal", channel: "ork_runs", payload: `{"runs":[{"id":3,"status":"running"}]}`,
			want: Event{Kind: orkstate.WakeKindRunFinished, More: true, Runs: []FinishedRun{}}, wantErr: "must be terminal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseEvent("ork", c.channel, c.payload)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got.Kind != c.want.Kind || got.More != c.want.More || len(got.Runs) != len(c.want.Runs) {
				t.Fatalf("event = %+v, want %+v", got, c.want)
			}
			for i := range got.Runs {
				if got.Runs[i] != c.want.Runs[i] {
					t.Fatalf("event = %+v, want %+v", got, c.want)
				}
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		err   func() error
		field string
	}{
		{"listener without pool", func() error { _, err := NewListener(nil, nil); return err }, "pool"},
		{"bad schema", func() error {
			_, err := NewListener(nil, &ListenerConfig{ConnString: "postgres://x", Schema: "Bad-Name"})
			return err
		}, "ListenerConfig.Schema"},
		{"bad conn string", func() error {
			_, err := NewListener(nil, &ListenerConfig{ConnString: "postgres://u:secret@h:notaport/db"})
			return err
		}, "ListenerConfig.ConnString"},
		{"max below min", func() error {
			_, err := NewListener(nil, &ListenerConfig{ConnString: "postgres://x", ReconnectDelayMin: time.Minute})
			return err
		}, "ListenerConfig.ReconnectDelayMax"},
		{"negative min", func() error {
			_, err := NewListener(nil, &ListenerConfig{ConnString: "postgres://x", ReconnectDelayMin: -1})
			return err
		}, "ListenerConfig.ReconnectDelayMin"},
		{"negative poll", func() error { _, err := NewWaker(nil, &WakerConfig{PollInterval: -1}); return err }, "WakerConfig.PollInterval"},
		{"negative debounce", func() error { _, err := NewWaker(nil, &WakerConfig{Debounce: -1}); return err }, "WakerConfig.Debounce"},
		{"unknown kind", func() error { _, err := NewWaker(nil, &WakerConfig{Kinds: []orkstate.WakeKind{"nope"}}); return err }, "WakerConfig.Kinds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.err()
			if !orkstate.IsValidation(err) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("err = %v, want a validation error naming %s", err, c.field)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("err = %v leaks the password", err)
			}
		})
	}

	w, err := NewWaker(nil, nil)
	if err != nil {
		t.Fatalf("NewWaker(nil, nil) = %v", err)
	}
	if w.cfg.PollInterval != time.Second || w.cfg.Debounce != 5*time.Millisecond || len(w.cfg.Kinds) != 1 || !w.PollOnly() {
		t.Fatalf("zero WakerConfig gave %+v", w.cfg)
	}
	if _, err := w.WaitForRun(t.Context(), 1); !orkstate.IsValidation(err) || !strings.Contains(err.Error(), "WakerConfig.RunStatus") {
		t.Fatalf("WaitForRun without RunStatus = %v, want a validation error naming WakerConfig.RunStatus", err)
	}
}
