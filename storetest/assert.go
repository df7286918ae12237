package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// The suite's one assertion style: every helper fails the test at once with
// "<what>: got …, want …".

func noErr(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

func errIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

func isValidation(t testing.TB, what string, err error) {
	t.Helper()
	if !orkstate.IsValidation(err) {
		t.Fatalf("%s: got error %v, want a *orkstate.ValidationError", what, err)
	}
}

func equal[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func deepEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

func isTrue(t testing.TB, what string, cond bool) {
	t.Helper()
	if !cond {
		t.Fatalf("%s: condition is false", what)
	}
}

func contains(t testing.TB, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%s: got %q, want it to contain %q", what, s, sub)
	}
}

func isNil[T any](t testing.TB, what string, p *T) {
	t.Helper()
	if p != nil {
		t.Fatalf("%s: got %v, want nil", what, *p)
	}
}

func notNil[T any](t testing.TB, what string, p *T) {
	t.Helper()
	if p == nil {
		t.Fatalf("%s: got nil, want a value", what)
	}
}

// between checks lo-slack <= got <= hi+slack.
func between(t testing.TB, what string, got *time.Time, lo, hi time.Time, slack time.Duration) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil, want a time in [%v, %v]", what, lo, hi)
	}
	if got.Before(lo.Add(-slack)) || got.After(hi.Add(slack)) {
		t.Fatalf("%s: got %v, want a time in [%v, %v] (±%v)", what, got.UTC(), lo.UTC(), hi.UTC(), slack)
	}
}

func sameTime(t testing.TB, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil || !got.Equal(want) {
		t.Fatalf("%s: got %v, want %v", what, fmtTime(got), want.UTC())
	}
}

func fmtTime(p *time.Time) string {
	if p == nil {
		return "nil"
	}
	return p.UTC().String()
}

// jsonEqual compares two JSON documents by value (jsonb normalises spacing and key order).
func jsonEqual(t testing.TB, what string, got, want json.RawMessage) {
	t.Helper()
	if len(want) == 0 || string(want) == "null" {
		if len(got) != 0 && string(got) != "null" {
			t.Fatalf("%s: got %s, want no JSON", what, got)
		}
		return
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: got invalid JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: bad expectation %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: got %s, want %s", what, got, want)
	}
}

// strs compares string lists treating nil and empty alike.
func strs(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func workflowNames(ws []orkstate.Workflow) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

func workflowIDs(ws []orkstate.Workflow) []int64 {
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

func runIDs(rs []orkstate.Run) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func summaryIDs(rs []orkstate.RunSummary) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func tasksIDs(ts []orkstate.Task) []int64 {
	out := make([]int64, len(ts))
	for i, x := range ts {
		out[i] = x.ID
	}
	return out
}

func claimedIDs(ts []orkstate.ClaimedTask) []int64 {
	out := make([]int64, len(ts))
	for i, x := range ts {
		out[i] = x.ID
	}
	return out
}

func jobIDs(js []orkstate.DeferredJob) []int64 {
	out := make([]int64, len(js))
	for i, x := range js {
		out[i] = x.ID
	}
	return out
}

// retryDue moves the clock past the backoff after failed attempt n and checks that
// task id is then dispatchable: both stores read retry times against their clock.
func (b *bundle) retryDue(id int64, n int) {
	b.t.Helper()
	b.clock.advance(orkstate.RetryBackoff(n) + time.Second)
	if !containsID(b.dispatchable(), id) {
		b.t.Fatalf("task %d: retry not due once the clock is past the backoff of attempt %d", id, n)
	}
}
