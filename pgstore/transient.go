package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsTransient reports whether err is worth retrying after a pause: the call failed
// because of the connection or the server's state, not because of its input, and
// the same call may succeed later. A Postgres restart, a terminated backend or a
// failover give such errors for a while; a loop that retries them with backoff
// survives, one that returns the first error ends with them. Transient are:
//
//   - errors pgconn marks safe to retry (nothing reached the server);
//   - a lost or refused connection: connect failures, io.EOF and unexpected EOF,
//     network errors, a closed or reset connection;
//   - SQLSTATE class 08 (connection exception), 40001 serialization_failure,
//     40P01 deadlock_detected, 57P01 admin_shutdown (pg_terminate_backend, a
//     fast shutdown), 57P02 crash_shutdown, 57P03 cannot_connect_now (the server
//     is starting or stopping) and 53300 too_many_connections.
//
// A cancelled context or an expired deadline is the caller's own and never
// transient, nor is any orkstate error (validation, not found, stale, …).
//
// A report sent again after a transient error is safe: reports are fenced by their
// attempt, so one that had been applied before the connection died comes back
// ignored. A claim whose answer was lost leaves its tasks dispatched until their
// lease ends; the lease sweep then returns them.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "57P01", "57P02", "57P03", "53300":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}
