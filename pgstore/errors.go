package pgstore

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
)

// SQLSTATEs raised by the functions of sql/functions. Their message says what
// was wrong; for validation errors the column name is the field. A stale report is
// an outcome row ('stale'), never an error raised in SQL, so there is no code for it
// (TestSQLSTATEsMatchTheFunctions keeps this list and the functions in step).
const (
	codeNotFound          = "OK404"
	codeInvalidTransition = "OK409"
	codeValidation        = "OK422"
)

// translate turns driver errors into orkstate errors so callers never see pgx
// types: no rows → ErrNotFound, unique violation → ErrConflict, foreign key
// violation → ErrNotFound, check violation, data exceptions (class 22), program
// limits and the functions' own codes → a *ValidationError or the matching sentinel.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return orkstate.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "23505":
		return fmt.Errorf("%w: %s", orkstate.ErrConflict, pgErr.Detail)
	case "23503":
		return fmt.Errorf("%w: %s", orkstate.ErrNotFound, pgErr.Detail)
	case "23514", "23502", "22P02", "22023", "2202E":
		return &orkstate.ValidationError{Field: fieldOf(pgErr), Reason: pgErr.Message}
	case codeNotFound:
		return fmt.Errorf("%w: %s", orkstate.ErrNotFound, pgErr.Message)
	case codeInvalidTransition:
		return fmt.Errorf("%w: %s", orkstate.ErrInvalidTransition, pgErr.Message)
	case codeValidation:
		return &orkstate.ValidationError{Field: fieldOf(pgErr), Reason: pgErr.Message}
	case "54000":
		// program_limit_exceeded: a value too big for an index row, an array or a
		// statement. The shared bounds refuse these first; this is the backstop.
		return &orkstate.ValidationError{Field: fieldOf(pgErr), Reason: pgErr.Message}
	}
	if len(pgErr.Code) == 5 && pgErr.Code[:2] == "22" {
		// Class 22, data exception: bad UTF-8, a NUL byte, a number or time out of range.
		return &orkstate.ValidationError{Field: fieldOf(pgErr), Reason: pgErr.Message}
	}
	return err
}

func fieldOf(e *pgconn.PgError) string {
	switch {
	case e.ColumnName != "":
		return e.ColumnName
	case e.ConstraintName != "":
		return e.ConstraintName
	}
	return "input"
}
