package statefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/orkstate/orkstate"
)

// Decode reads one document from r and checks it whole (Validate). Every problem
// is a *orkstate.ValidationError, wrapped with where it is in the document: a
// truncated file, JSON that is not a state document (an unknown field included),
// another format or version, and anything Validate refuses.
func Decode(r io.Reader) (*Document, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("statefile: read: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, decodeError(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, orkstate.Invalid("state file", nil, fmt.Sprintf("unexpected data after the document at byte %d", dec.InputOffset()))
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if d.Version < Version {
		// What an older version lacks reads as absent: no keys, no limits, default
		// priorities. Encoding it now writes the current version.
		d.Version = Version
		if d.ConcurrencyKeys == nil {
			d.ConcurrencyKeys = []ConcurrencyKey{}
		}
	}
	return &d, nil
}

// decodeError turns a json error into a validation error that says where.
func decodeError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF) && len(bytes.TrimSpace(data)) == 0:
		return orkstate.Invalid("state file", nil, "empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return orkstate.Invalid("state file", nil, fmt.Sprintf("truncated: the JSON ends unfinished after %d bytes", len(data)))
	case errors.As(err, &syn):
		return orkstate.Invalid("state file", nil, fmt.Sprintf("not valid JSON at byte %d (line %d): %v", syn.Offset, line(data, syn.Offset), syn))
	case errors.As(err, &typ):
		return orkstate.Invalid(typ.Field, nil, fmt.Sprintf("a JSON %s where the state file wants %s (byte %d, line %d)", typ.Value, typ.Type, typ.Offset, line(data, typ.Offset)))
	}
	// Unknown fields and bad timestamps come as plain errors.
	return orkstate.Invalid("state file", nil, strings.TrimPrefix(err.Error(), "json: "))
}

func line(data []byte, offset int64) int {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

// Validate checks everything Import needs before it writes: format and version
// (OldestVersion … Version), concurrency keys (valid, unique, with 1 … MaxSlots
// slots, and listed when a run's task names one), workflow limits within their
// bounds, unique workflow names, valid DAGs, snapshots whose hash matches their
// tasks and that exist where they are referred to, valid cron expressions and JSON,
// and each run as orkstate.RunImport.Validate checks it. The error names the
// workflow, run and task.
func (d *Document) Validate() error {
	if d.Format != Format {
		return orkstate.Invalid("format", d.Format, "not an orkstate state file (want "+Format+")")
	}
	if d.Version < OldestVersion || d.Version > Version {
		reason := fmt.Sprintf("this orkstate reads versions %d to %d", OldestVersion, Version)
		if d.Version > Version {
			reason = fmt.Sprintf("written by a newer orkstate; this one reads versions %d to %d", OldestVersion, Version)
		}
		return orkstate.Invalid("version", d.Version, reason)
	}
	keys := map[string]bool{}
	for i, k := range d.ConcurrencyKeys {
		where := fmt.Sprintf("concurrency_keys[%d]", i)
		if err := orkstate.ValidConcurrencyKey(k.Key); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if keys[k.Key] {
			return fmt.Errorf("%s: %w", where, orkstate.Invalid("key", k.Key, "duplicate concurrency key"))
		}
		keys[k.Key] = true
		if err := orkstate.ValidSlots(k.Slots); err != nil {
			return fmt.Errorf("%s %q: %w", where, k.Key, err)
		}
	}
	names := map[string]bool{}
	for i, w := range d.Workflows {
		where := fmt.Sprintf("workflows[%d] %q", i, w.Name)
		if strings.TrimSpace(w.Name) == "" {
			return fmt.Errorf("%s: %w", where, orkstate.Invalid("name", w.Name, "must not be empty"))
		}
		if names[w.Name] {
			return fmt.Errorf("%s: %w", where, orkstate.Invalid("name", w.Name, "duplicate workflow name"))
		}
		names[w.Name] = true
		if err := w.validate(keys); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

func (w *Workflow) validate(keys map[string]bool) error {
	if err := orkstate.ValidJSON("task_params", w.TaskParams); err != nil {
		return err
	}
	lim := orkstate.WorkflowLimits{Priority: w.Priority, MaxActiveRuns: w.MaxActiveRuns, MaxTasksInFlight: w.MaxTasksInFlight, Fair: w.Fair}
	if err := lim.Validate(); err != nil {
		return err
	}
	if err := orkstate.ValidateDAG(specsIn(w.Tasks)); err != nil {
		return fmt.Errorf("tasks: %w", err)
	}
	if w.Schedule != "" {
		if _, err := orkstate.ParseSchedule(w.Schedule); err != nil {
			return err
		}
	} else if w.ScheduleEnabled {
		return orkstate.Invalid("schedule_enabled", true, "no schedule to enable")
	}
	hashes := map[string]bool{}
	for i, s := range w.Snapshots {
		specs := specsIn(s.Tasks)
		if err := orkstate.ValidateDAG(specs); err != nil {
			return fmt.Errorf("snapshots[%d]: %w", i, err)
		}
		h, err := orkstate.ContentHash(specs)
		if err != nil {
			return fmt.Errorf("snapshots[%d]: %w", i, err)
		}
		if h != s.ContentHash {
			return fmt.Errorf("snapshots[%d]: %w", i, orkstate.Invalid("content_hash", s.ContentHash,
				"does not match the snapshot's tasks (they hash to "+h+"): the tasks or the hash were edited"))
		}
		if hashes[h] {
			return fmt.Errorf("snapshots[%d]: %w", i, orkstate.Invalid("content_hash", h, "duplicate snapshot"))
		}
		hashes[h] = true
	}
	if w.CurrentSnapshot != "" && !hashes[w.CurrentSnapshot] {
		return orkstate.Invalid("current_snapshot", w.CurrentSnapshot, "no snapshot of the workflow has this hash")
	}
	for i, r := range w.Runs {
		where := fmt.Sprintf("runs[%d]", i)
		if r.Snapshot != "" && !hashes[r.Snapshot] {
			return fmt.Errorf("%s: %w", where, orkstate.Invalid("snapshot", r.Snapshot, "no snapshot of the workflow has this hash"))
		}
		in, err := runImport(r, 0, nil, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := in.Validate(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for n, t := range r.Tasks {
			if t.ConcurrencyKey != "" && !keys[t.ConcurrencyKey] {
				return fmt.Errorf("%s: tasks[%d] %q: %w", where, n, t.Name,
					orkstate.Invalid("concurrency_key", t.ConcurrencyKey, "not among the document's concurrency_keys"))
			}
		}
	}
	return nil
}
