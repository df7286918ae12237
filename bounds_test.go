package orkstate_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

func TestValidJSONRefusesWhatJSONBCannotHold(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{"a": "x\u0000y"}`, `{"x\u0000": 1}`, "{\"a\": \"\xff\"}", `{"a":`} {
		if err := orkstate.ValidJSON("f", json.RawMessage(bad)); !orkstate.IsValidation(err) {
			t.Errorf("ValidJSON(%q) = %v, want a validation error", bad, err)
		}
	}
	for _, good := range []string{``, `null`, `{"a": "\\u0000"}`, `["\\\\", "\u00e9"]`, `1e400`} {
		if err := orkstate.ValidJSON("f", json.RawMessage(good)); err != nil {
			t.Errorf("ValidJSON(%q) = %v, want nil", good, err)
		}
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	if err := orkstate.ValidName("n", strings.Repeat("é", orkstate.MaxNameLength), true); err != nil {
		t.Errorf("MaxNameLength characters: %v", err)
	}
	for what, s := range map[string]string{
		"too long": strings.Repeat("a", orkstate.MaxNameLength+1), "blank": "  ", "NUL": "a\x00", "UTF-8": "\xc3",
	} {
		if err := orkstate.ValidName("n", s, true); !orkstate.IsValidation(err) {
			t.Errorf("%s: %v, want a validation error", what, err)
		}
	}
}

func TestScheduleInterval(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"* * * * * *", "*/30 * * * * *", "0-5 * * * * *", "@every 1ms", "@every 30s",
		"TZ=UTC * * * * * *", strings.Repeat("1,", 200) + "2 * * * *"} {
		if _, err := orkstate.ParseSchedule(bad); !orkstate.IsValidation(err) {
			t.Errorf("ParseSchedule(%q) = %v, want a validation error", bad, err)
		}
	}
	for _, good := range []string{"*/5 * * * *", "0 * * * * *", "59 30 2 * * *", "@every 1m", "@daily", "TZ=UTC 0 * * * *"} {
		if _, err := orkstate.ParseSchedule(good); err != nil {
			t.Errorf("ParseSchedule(%q) = %v", good, err)
		}
	}
}

func TestLegacyTaskCount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{``: 3, `{}`: 3, `[1]`: 3, `{"task_count": "5"}`: 3, `{"task_count": 0}`: 0,
		`{"task_count": 2.5}`: 3, `{"task_count": 100000}`: 100000} {
		if got, err := orkstate.LegacyTaskCount(json.RawMessage(in)); err != nil || got != want {
			t.Errorf("LegacyTaskCount(%s) = %d, %v, want %d", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		`{"task_count": 1e10}`:   "task_params.task_count must be between 0 and 100000, got 10000000000",
		`{"task_count": -1}`:     "task_params.task_count must be between 0 and 100000, got -1",
		`{"task_count": 100001}`: "task_params.task_count must be between 0 and 100000, got 100001",
	} {
		if _, err := orkstate.LegacyTaskCount(json.RawMessage(in)); err == nil || err.Error() != msg {
			t.Errorf("LegacyTaskCount(%s) error = %v, want %q", in, err, msg)
		}
	}
}

func TestClaimParamsNormalize(t *testing.T) {
	t.Parallel()
	p, err := orkstate.ClaimParams{Claimer: " c ", Limit: 1}.Normalize()
	if err != nil || p.Lease != orkstate.DefaultTaskLease || p.Claimer != " c " {
		t.Errorf("Normalize = %+v, %v", p, err)
	}
	d, err := orkstate.DeferredClaimParams{Claimer: "c", Limit: 1}.Normalize()
	if err != nil || d.Lease != orkstate.DefaultDeferredLease {
		t.Errorf("deferred Normalize = %+v, %v", d, err)
	}
	for what, bad := range map[string]orkstate.ClaimParams{
		"blank claimer":  {Claimer: " ", Limit: 1},
		"limit 0":        {Claimer: "c"},
		"lease too long": {Claimer: "c", Limit: 1, Lease: orkstate.MaxLease + time.Nanosecond},
		"negative lease": {Claimer: "c", Limit: 1, Lease: -1},
		"type too long":  {Claimer: "c", Limit: 1, ExecutorTypes: []string{strings.Repeat("t", 513)}},
	} {
		if _, err := bad.Normalize(); !orkstate.IsValidation(err) {
			t.Errorf("%s: %v, want a validation error", what, err)
		}
	}
}

func TestPageBoundsClamp(t *testing.T) {
	t.Parallel()
	for in, want := range map[int]int{0: orkstate.DefaultPageLimit, 7: 7, orkstate.MaxPageLimit + 1: orkstate.MaxPageLimit, 1 << 40: orkstate.MaxPageLimit} {
		if got, _, err := orkstate.PageBounds(in, 0); err != nil || got != want {
			t.Errorf("PageBounds(%d) = %d, %v, want %d", in, got, err, want)
		}
	}
}

func TestNormalizeUpdatesLowerCase(t *testing.T) {
	t.Parallel()
	us, err := orkstate.NormalizeTaskUpdates([]orkstate.TaskUpdate{{TaskID: 1, Status: "RUNNING"}})
	if err != nil || us[0].Status != orkstate.TaskRunning {
		t.Errorf("NormalizeTaskUpdates = %+v, %v", us, err)
	}
	rs, err := orkstate.NormalizePollReports([]orkstate.DeferredPollReport{{JobID: 1, Result: "Running"}})
	if err != nil || rs[0].Result != orkstate.PollRunning || rs[0].NextPollAfter != orkstate.DefaultNextPollAfter {
		t.Errorf("NormalizePollReports = %+v, %v", rs, err)
	}
	if _, err := orkstate.NormalizeTaskUpdates([]orkstate.TaskUpdate{{TaskID: 1, Status: "running", Attempt: 7 << 32}}); !orkstate.IsValidation(err) {
		t.Errorf("attempt 7<<32: %v, want a validation error", err)
	}
}
