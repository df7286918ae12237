package pgstore_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

func TestIsTransient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{fmt.Errorf("pgstore: claim tasks: %w", &pgconn.PgError{Code: "57P01"}), true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{pgconn.ErrConnClosed, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "OK422"}, false},
		{orkstate.Invalid("limit", 0, "must be positive"), false},
		{orkstate.ErrNotFound, false},
		{context.Canceled, false},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), false},
	}
	for _, c := range cases {
		if got := pgstore.IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// The error a store call gets from a terminated backend is transient.
func TestIsTransientTerminatedBackend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	conn, err := b.s.Pool().Acquire(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(b.ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	b.exec(t, "select pg_terminate_backend($1, 5000)", pid)
	_, err = conn.Exec(b.ctx, "select 1")
	if err == nil {
		t.Fatal("query on a terminated backend succeeded")
	}
	if !pgstore.IsTransient(err) {
		t.Fatalf("IsTransient(%v) = false after pg_terminate_backend", err)
	}
}
