package orkstate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds every Store enforces on its input, the same in pgstore (Go and the SQL
// functions, see sql/functions/checks.sql) and sqlitecompat. A value outside them
// is a *ValidationError naming the field, and nothing changes.
const (
	// MaxNameLength caps names, in characters: workflow, task and dependency names,
	// executor types, claimers, triggered_by, job_name, project, region, and deferred
	// jobs' service_type and job_id. Names are indexed, and PostgreSQL refuses an
	// index row over ~2,700 bytes: 512 characters of up to 4 bytes each stay under it.
	MaxNameLength = 512
	// MaxTaskCount caps the tasks of one call or one run start: CreateTasks' count, a
	// DAG's size and a legacy workflow's task_params.task_count.
	MaxTaskCount = 100_000
	// MaxTaskRetries caps a task's max_retries.
	MaxTaskRetries = 1000
	// MaxTimeoutSeconds caps a task's timeout_seconds (30 days).
	MaxTimeoutSeconds = 30 * 24 * 60 * 60
	// MaxAttempt is the largest fencing token a report may carry (the int32 that
	// stores attempts); a larger one would wrap.
	MaxAttempt = math.MaxInt32
	// MaxTaskIndex is the largest task index (stored as int32).
	MaxTaskIndex = math.MaxInt32
	// MaxLease caps the lease of a task or deferred-job claim.
	MaxLease = 24 * time.Hour
	// MaxPollInterval caps a deferred poll report's NextPollAfter.
	MaxPollInterval = 24 * time.Hour
	// MinScheduleInterval is the shortest gap between two fires a cron expression
	// may ask for: a seconds field, when given, must be one number, and @every at
	// least this long.
	MinScheduleInterval = time.Minute
	// MaxScheduleLength caps a cron expression, in characters.
	MaxScheduleLength = 256
)

// Defaults applied when a caller leaves a field zero; the SQL functions' parameter
// defaults are the same.
const (
	// DefaultTaskLease is ClaimParams.Lease when zero.
	DefaultTaskLease = 5 * time.Minute
	// DefaultDeferredLease is DeferredClaimParams.Lease when zero.
	DefaultDeferredLease = time.Minute
	// DefaultNextPollAfter is DeferredPollReport.NextPollAfter when zero.
	DefaultNextPollAfter = 10 * time.Second
	// DefaultLegacyTaskCount is the number of legacy tasks a run starts with when its
	// workflow has no snapshot, no compiled tasks and no task_params.task_count.
	DefaultLegacyTaskCount = 3
)

// ValidText refuses text a PostgreSQL text column cannot hold: invalid UTF-8 and
// NUL bytes. Both stores apply it, so SQLite refuses what PostgreSQL would.
func ValidText(field, s string) error {
	if !utf8.ValidString(s) {
		return Invalid(field, nil, "must be valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Invalid(field, nil, "must not contain NUL bytes")
	}
	return nil
}

// ValidName is ValidText with the MaxNameLength cap; required names must also not
// be blank.
func ValidName(field, s string, required bool) error {
	if err := ValidText(field, s); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(s); n > MaxNameLength {
		return Invalid(field, abbreviate(s), fmt.Sprintf("%d characters, at most %d allowed", n, MaxNameLength))
	}
	if required && strings.TrimSpace(s) == "" {
		return Invalid(field, s, "must not be empty")
	}
	return nil
}

// abbreviate keeps error messages short when the offending value is long.
func abbreviate(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return s
	}
	r := []rune(s)
	return string(r[:40]) + "…"
}

// ValidJSON returns a validation error naming field unless raw is empty or one
// valid JSON value that PostgreSQL's jsonb accepts: UTF-8, and no \u0000 escape in
// any string or key.
func ValidJSON(field string, raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if !utf8.Valid(raw) {
		return Invalid(field, nil, "JSON must be valid UTF-8")
	}
	if !json.Valid(raw) {
		return Invalid(field, abbreviate(string(raw)), "not valid JSON")
	}
	if bytes.Contains(raw, []byte(`\u0000`)) && jsonHasNUL(raw) {
		return Invalid(field, nil, `JSON strings must not contain \u0000`)
	}
	return nil
}

// jsonHasNUL reports whether a valid JSON value has a string or key with a NUL
// character (the byte search above also matches an escaped backslash before u0000).
func jsonHasNUL(raw json.RawMessage) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return false
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
}
