package pgstore

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
)

// Data exceptions (class 22) and program limits that reach PostgreSQL past the
// shared checks are *ValidationError, never a raw driver error.
func TestTranslateDataExceptions(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"22003", "22008", "22021", "22P05", "54000"} {
		if err := translate(&pgconn.PgError{Code: code, Message: "m"}); !orkstate.IsValidation(err) {
			t.Errorf("translate(%s) = %v, want a *ValidationError", code, err)
		}
	}
	if err := translate(&pgconn.PgError{Code: "40P01"}); orkstate.IsValidation(err) {
		t.Error("a deadlock is not a validation error")
	}
}
