package orkstate_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func TestParseStatuses(t *testing.T) {
	t.Parallel()
	for _, s := range orkstate.TaskStatuses {
		got, err := orkstate.ParseTaskStatus(string(s))
		if err != nil || got != s {
			t.Errorf("ParseTaskStatus(%q) = %q, %v", s, got, err)
		}
	}
	// Any case is accepted on input, as in the original (issue 11 item 16); the
	// parsed value is lower case and Valid stays exact.
	for _, in := range []string{"PENDING", "Pending", "pEnDiNg"} {
		if got, err := orkstate.ParseTaskStatus(in); err != nil || got != orkstate.TaskPending {
			t.Errorf("ParseTaskStatus(%q) = %q, %v", in, got, err)
		}
		if got, err := orkstate.ParseRunStatus(in); err != nil || got != orkstate.RunPending {
			t.Errorf("ParseRunStatus(%q) = %q, %v", in, got, err)
		}
		if got, err := orkstate.ParseDeferredJobStatus(in); err != nil || got != orkstate.DeferredPending {
			t.Errorf("ParseDeferredJobStatus(%q) = %q, %v", in, got, err)
		}
		if orkstate.TaskStatus(in).Valid() {
			t.Errorf("TaskStatus(%q).Valid() = true, want false (only the stored form is valid)", in)
		}
	}
	for _, bad := range []string{"", "done", " pending"} {
		if _, err := orkstate.ParseTaskStatus(bad); !orkstate.IsValidation(err) {
			t.Errorf("ParseTaskStatus(%q) error = %v, want a validation error", bad, err)
		}
		if _, err := orkstate.ParseRunStatus(bad); !orkstate.IsValidation(err) {
			t.Errorf("ParseRunStatus(%q) error = %v, want a validation error", bad, err)
		}
		if _, err := orkstate.ParseDeferredJobStatus(bad); !orkstate.IsValidation(err) {
			t.Errorf("ParseDeferredJobStatus(%q) error = %v, want a validation error", bad, err)
		}
	}
	terminal := map[orkstate.TaskStatus]bool{orkstate.TaskSuccess: true, orkstate.TaskFailed: true, orkstate.TaskCancelled: true}
	for _, s := range orkstate.TaskStatuses {
		if s.IsTerminal() != terminal[s] {
			t.Errorf("%s.IsTerminal() = %v", s, s.IsTerminal())
		}
	}
	if !orkstate.RunCancelled.IsTerminal() || orkstate.RunPaused.IsTerminal() {
		t.Error("run terminal statuses are wrong")
	}
	if !orkstate.DeferredCompleted.IsTerminal() || orkstate.DeferredPolling.IsTerminal() {
		t.Error("deferred job terminal statuses are wrong")
	}
}

func TestTaskTransitions(t *testing.T) {
	t.Parallel()
	allowed := map[orkstate.TaskStatus]string{
		orkstate.TaskPending:    "running success failed cancelled paused",
		orkstate.TaskPaused:     "pending cancelled",
		orkstate.TaskDispatched: "running success failed cancelled pending",
		orkstate.TaskRunning:    "success failed cancelled pending",
	}
	for _, from := range orkstate.TaskStatuses {
		for _, to := range orkstate.TaskStatuses {
			want := strings.Contains(" "+allowed[from]+" ", " "+string(to)+" ")
			if got := orkstate.CanTransitionTask(from, to); got != want {
				t.Errorf("CanTransitionTask(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	if orkstate.CanTransitionDeferredJob(orkstate.DeferredCompleted, orkstate.DeferredFailed) {
		t.Error("a completed deferred job may not fail")
	}
	if !orkstate.CanTransitionDeferredJob(orkstate.DeferredPending, orkstate.DeferredCancelled) {
		t.Error("a pending deferred job may be cancelled")
	}
}

func TestOutcomeErr(t *testing.T) {
	t.Parallel()
	cases := map[orkstate.Outcome]error{
		orkstate.OutcomeApplied: nil, orkstate.OutcomeRetrying: nil, orkstate.OutcomeIgnored: nil,
		orkstate.OutcomeInvalid: orkstate.ErrInvalidTransition, orkstate.OutcomeStale: orkstate.ErrStale,
		orkstate.OutcomeNotFound: orkstate.ErrNotFound,
	}
	for o, want := range cases {
		if err := o.Err(); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%s.Err() = %v, want %v", o, err, want)
		}
	}
	if orkstate.Outcome("bogus").Err() == nil {
		t.Error("an unknown outcome must be an error")
	}
}

func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	want := []time.Duration{1, 1, 2, 4, 8, 16, 32, 60, 60, 60}
	for n, w := range want {
		if got := orkstate.RetryBackoff(n); got != w*time.Second {
			t.Errorf("RetryBackoff(%d) = %v, want %v", n, got, w*time.Second)
		}
	}
	if got := orkstate.RetryBackoff(1 << 30); got != time.Minute {
		t.Errorf("RetryBackoff(huge) = %v", got)
	}
}

func TestValidateDAG(t *testing.T) {
	t.Parallel()
	ok := []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"a", "b", "a"}}}
	if err := orkstate.ValidateDAG(ok); err != nil {
		t.Fatalf("valid DAG refused: %v", err)
	}
	bad := map[string]struct {
		dag  []orkstate.TaskSpec
		name string
	}{
		"unknown":   {[]orkstate.TaskSpec{{Name: "a", DependsOn: []string{"ghost"}}}, "ghost"},
		"cycle":     {[]orkstate.TaskSpec{{Name: "a", DependsOn: []string{"c"}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"b"}}, {Name: "d"}}, "a, b, c"},
		"self":      {[]orkstate.TaskSpec{{Name: "a", DependsOn: []string{"a"}}}, "a"},
		"duplicate": {[]orkstate.TaskSpec{{Name: "a"}, {Name: "a"}}, "a"},
		"empty":     {[]orkstate.TaskSpec{{Name: " "}}, "empty name"},
		"retries":   {[]orkstate.TaskSpec{{Name: "a", MaxRetries: -1}}, "max_retries"},
	}
	for what, c := range bad {
		err := orkstate.ValidateDAG(c.dag)
		if !orkstate.IsValidation(err) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: error = %v, want a validation error naming %q", what, err, c.name)
		}
	}
}

func TestContentHashIgnoresJSONLayout(t *testing.T) {
	t.Parallel()
	a, err := orkstate.ContentHash([]orkstate.TaskSpec{{Name: "a", Params: []byte(`{"x": 1, "y": [1,2]}`)}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := orkstate.ContentHash([]orkstate.TaskSpec{{Name: "a", Params: []byte(`{"y":[1,2],"x":1}`)}})
	c, _ := orkstate.ContentHash([]orkstate.TaskSpec{{Name: "a", Params: []byte(`{"x": 2, "y": [1,2]}`)}})
	if a != b {
		t.Errorf("the same params in another key order hash differently: %s %s", a, b)
	}
	if a == c {
		t.Error("different params hash alike")
	}
}

func TestSchedules(t *testing.T) {
	t.Parallel()
	after := time.Date(2026, 11, 26, 10, 7, 30, 0, time.UTC)
	cases := map[string]time.Time{
		"*/15 * * * *":    time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC),  // Ork's 5 fields
		"30 */15 * * * *": time.Date(2026, 11, 26, 10, 15, 30, 0, time.UTC), // seconds first
		"@hourly":         time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC),
	}
	for expr, want := range cases {
		got, err := orkstate.NextFireTime(expr, after)
		if err != nil || !got.Equal(want) {
			t.Errorf("NextFireTime(%q) = %v, %v; want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{"", "* * *", "61 * * * *", "every minute"} {
		if _, err := orkstate.ParseSchedule(bad); !orkstate.IsValidation(err) {
			t.Errorf("ParseSchedule(%q) error = %v, want a validation error", bad, err)
		}
	}
}

func FuzzParseTaskStatus(f *testing.F) {
	for _, s := range orkstate.TaskStatuses {
		f.Add(string(s))
	}
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := orkstate.ParseTaskStatus(s)
		if err == nil && string(st) != s {
			t.Fatalf("ParseTaskStatus(%q) = %q", s, st)
		}
		if err != nil && (st != "" || !orkstate.IsValidation(err)) {
			t.Fatalf("ParseTaskStatus(%q) = %q, %v", s, st, err)
		}
	})
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"*/5 * * * *", "0 0 * * * *", "@daily", "1-2,3 * * * MON", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := orkstate.ParseSchedule(expr)
		if err != nil {
			if !orkstate.IsValidation(err) {
				t.Fatalf("ParseSchedule(%q) error %v is not a validation error", expr, err)
			}
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if next := s.Next(from); !next.IsZero() && !next.After(from) {
			t.Fatalf("%q fires at %v, not after %v", expr, next, from)
		}
	})
}

func FuzzValidateDAG(f *testing.F) {
	f.Add("a", "b", "a", "c", "b")
	f.Add("a", "a", "a", "b", "c")
	f.Fuzz(func(t *testing.T, n1, n2, d2, n3, d3 string) {
		dag := []orkstate.TaskSpec{{Name: n1}, {Name: n2, DependsOn: []string{d2}}, {Name: n3, DependsOn: []string{d3}}}
		err := orkstate.ValidateDAG(dag)
		if err != nil && !orkstate.IsValidation(err) {
			t.Fatalf("ValidateDAG error %v is not a validation error", err)
		}
		if err == nil {
			// A valid DAG of three has unique names and known dependencies.
			names := map[string]bool{n1: true, n2: true, n3: true}
			if len(names) != 3 || !names[d2] || !names[d3] || d2 == n2 || d3 == n3 {
				t.Fatalf("ValidateDAG accepted %+v", dag)
			}
		}
	})
}
