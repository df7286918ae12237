package orkstate

import (
	"errors"
	"fmt"
)

// Errors every Store returns, wrapped with context; test with errors.Is.
var (
	// ErrNotFound: no row has the given id or name.
	ErrNotFound = errors.New("orkstate: not found")
	// ErrInvalidTransition: the state machine forbids the change (the transition
	// table of docs/semantics.md).
	ErrInvalidTransition = errors.New("orkstate: invalid status transition")
	// ErrConflict: the change collides with existing data (a duplicate name).
	ErrConflict = errors.New("orkstate: conflict")
	// ErrStale: a report carried an older attempt than the task's current one, so a
	// claimer that lost its lease cannot overwrite newer state.
	ErrStale = errors.New("orkstate: stale attempt")
	// ErrUnsupported: the Store cannot honour this call (see Capabilities).
	ErrUnsupported = errors.New("orkstate: unsupported by this store")
)

// ValidationError is bad input: it names the field, the value and what is wrong.
// Nothing was changed when a call returns one.
type ValidationError struct {
	Field  string
	Value  any
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("orkstate: invalid %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("orkstate: invalid %s %q: %s", e.Field, fmt.Sprint(e.Value), e.Reason)
}

// Invalid returns a *ValidationError.
func Invalid(field string, value any, reason string) error {
	return &ValidationError{Field: field, Value: value, Reason: reason}
}

// IsValidation reports whether err is or wraps a *ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}
