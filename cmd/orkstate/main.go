// Command orkstate is the operator's command line of an orkstate store: install
// and upgrade it, look at workflows, runs, tasks and logs, act on them (trigger,
// cancel, pause, resume, retry, schedule), move the whole state to a file and
// back or between stores, and run the demo and the benchmarks.
//
//	orkstate migrate | status
//	orkstate workflows | runs [--workflow W] [--status S] [--limit N]
//	orkstate run ID [--watch] | task ID [--log] [--follow]
//	orkstate trigger WORKFLOW | cancel RUN | pause RUN | resume RUN | retry TASK
//	orkstate schedule WORKFLOW "CRON" | schedule WORKFLOW --off
//	orkstate export [--out state.json] | import state.json | copy --from ork.db --to postgres://…
//	orkstate demo | bench
//
// Every command works on PostgreSQL (--db postgres://…, else DATABASE_URL, else
// postgres://postgres@localhost:5432/postgres?sslmode=disable) in the install
// schema --schema (else ORK_SCHEMA, else ork), or on a SQLite file (--db ork.db).
// Human tables on a terminal, --json for scripts; the exit codes are in
// docs/cli.md and `orkstate --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mattn/go-isatty"

	"github.com/orkstate/orkstate/pgstore"
)

// defaultURL is used when neither --db nor DATABASE_URL is set.
const defaultURL = "postgres://postgres@localhost:5432/postgres?sslmode=disable"

// databaseURL is the database of the demo and the benchmarks: DATABASE_URL, else defaultURL.
func databaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return defaultURL
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now,
		outTerminal: isTerminal(os.Stdout), errTerminal: isTerminal(os.Stderr)}
	os.Exit(a.run(ctx, os.Args[1:]))
}

func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// exitError carries an exit code with nothing more to print.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// connect opens a pool on DATABASE_URL (the demo's and the benchmarks' database)
// and checks that the server answers.
func connect(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	return connectURL(ctx, databaseURL(), maxConns)
}

// connectURL opens a pool on url and checks that the server answers.
func connectURL(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL %s: %w", redact(url), err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL is not reachable at %s: %w\n%s", redact(url), err, startHint)
	}
	return pool, nil
}

const startHint = `Start one (Debian: pg_ctlcluster 15 main start, or apt-get install postgresql;
Docker: docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15)
or point DATABASE_URL at a server where you may create schemas.`

// redact hides a password in a connection URL.
func redact(u string) string {
	if at := strings.Index(u, "@"); at > 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			if colon := strings.Index(u[scheme+3:at], ":"); colon >= 0 {
				return u[:scheme+3+colon+1] + "***" + u[at:]
			}
		}
	}
	return u
}

func schemaVersion(ctx context.Context, pool *pgxpool.Pool, schema string) (int, error) {
	var v int
	err := pool.QueryRow(ctx, "select version from "+pgstore.VersionTable(schema)).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return 0, nil // no version table (or no schema): not installed, which is not a failure to read
	}
	return v, err
}
