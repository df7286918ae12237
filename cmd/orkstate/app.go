package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/sqlitecompat"
)

// Exit codes scripts rely on (docs/cli.md).
const (
	exitOK       = 0
	exitInternal = 1 // anything else: the database unreachable, an unexpected error
	exitUsage    = 2 // unknown command or flag, missing or extra arguments
	exitNotFound = 3 // no such workflow, run, task, install or file
	exitInvalid  = 4 // bad input: an id, a status, a cron expression, a state file
	exitConflict = 5 // the state forbids it: a finished run, a taken name
	exitRunEnded = 6 // run --watch: the run finished, but not with success
)

// app is one invocation: its streams, environment and global flags. Tests build
// one with their own buffers, environment and clock.
type app struct {
	stdin          io.Reader // nil: os.Stdin
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// outTerminal, errTerminal: stdout, stderr are terminals (tables are
	// redrawn, progress is shown).
	outTerminal, errTerminal bool
	// pollInterval is how often --watch and --follow look when nothing wakes
	// them. Defaults to 1 second.
	pollInterval time.Duration

	db, schema string
	json       bool
}

// usageError is a command used the wrong way (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// runEndedError: a watched run finished without success (exit 6).
type runEndedError struct {
	id     int64
	status orkstate.RunStatus
}

func (e runEndedError) Error() string { return fmt.Sprintf("run %d finished: %s", e.id, e.status) }

// commandError marks an error returned by a command's body; anything else
// cobra returns is a usage error.
type commandError struct{ err error }

func (e commandError) Error() string { return e.err.Error() }
func (e commandError) Unwrap() error { return e.err }

// run executes args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	if a.getenv == nil {
		a.getenv = os.Getenv
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.pollInterval == 0 {
		a.pollInterval = time.Second
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	if a.stdin != nil {
		root.SetIn(a.stdin)
	}
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ce commandError
	if !errors.As(err, &ce) {
		err = usageError{err}
	}
	code, kind := classify(err)
	if code == exitOK {
		return code
	}
	var silent exitError
	if errors.As(err, &silent) {
		return code
	}
	name := cmd.CommandPath()
	if a.json {
		_ = json.NewEncoder(a.stderr).Encode(map[string]any{"error": message(err), "kind": kind, "exit_code": code})
		return code
	}
	fmt.Fprintf(a.stderr, "%s: %s\n", name, message(err))
	if code == exitUsage {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", name)
	}
	return code
}

// classify maps an error to its exit code and the kind --json reports.
func classify(err error) (int, string) {
	var code exitError
	var ended runEndedError
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, ""
	case errors.As(err, &code):
		return int(code), "exit"
	case errors.As(err, &ended):
		return exitRunEnded, "run_" + string(ended.status)
	case errors.Is(err, orkstate.ErrNotFound):
		return exitNotFound, "not_found"
	case orkstate.IsValidation(err):
		return exitInvalid, "invalid"
	case errors.Is(err, orkstate.ErrUnsupported):
		return exitInvalid, "unsupported"
	case errors.Is(err, orkstate.ErrConflict), errors.Is(err, orkstate.ErrInvalidTransition), errors.Is(err, orkstate.ErrStale):
		return exitConflict, "conflict"
	case errors.As(err, &usage):
		return exitUsage, "usage"
	}
	return exitInternal, "internal"
}

// message is err's text without the package prefixes the sentinels carry.
func message(err error) string {
	return strings.ReplaceAll(err.Error(), "orkstate: ", "")
}

// cmdErr wraps a command body so its errors are told apart from cobra's usage errors.
func cmdErr(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return commandError{err}
		}
		return nil
	}
}

// args checks the number of positional arguments, naming what is wanted.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			want := "no arguments"
			if len(names) > 0 {
				want = strings.Join(names, " ")
			}
			return fmt.Errorf("wants %s, got %d argument(s)", want, len(args))
		}
		return nil
	}
}

// parseID parses a positive id naming what it is.
func parseID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, orkstate.Invalid(what+" id", s, "must be a positive integer")
	}
	return id, nil
}

// openByID parses arg as the id of what, then opens the store: the start of every
// command that acts on one run or task. The caller closes the backend.
func (a *app) openByID(ctx context.Context, what, arg string) (int64, *backend, error) {
	id, err := parseID(what, arg)
	if err != nil {
		return 0, nil, err
	}
	be, err := a.openDB(ctx)
	if err != nil {
		return 0, nil, err
	}
	return id, be, nil
}

// kindError is a message of its own that still matches its kind (ErrNotFound, …)
// with errors.Is, for the exit code.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// errorf formats a message of kind kind.
func errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// notFound turns a store's ErrNotFound into a message naming the thing.
func notFound(err error, what string, key any) error {
	if errors.Is(err, orkstate.ErrNotFound) {
		return errorf(orkstate.ErrNotFound, "%s %v not found", what, key)
	}
	return err
}

// backend is an open store and what the commands need beside it.
type backend struct {
	store orkstate.Store
	// pg is set for PostgreSQL: the pgstore, for transactions and LISTEN.
	pg     *pgstore.Store
	pool   *pgxpool.Pool
	sqlite *sqlitecompat.Store
	desc   string
	close  func()
}

// dbFlag is --db, else DATABASE_URL, else the default URL.
func (a *app) dbFlag() string {
	if a.db != "" {
		return a.db
	}
	if u := a.getenv("DATABASE_URL"); u != "" {
		return u
	}
	return defaultURL
}

// isPostgres tells a connection string from a SQLite file path.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") ||
		strings.Contains(dsn, "host=") || strings.Contains(dsn, "dbname=")
}

// defaultSchema is ORK_SCHEMA, else "ork".
func (a *app) defaultSchema() string {
	if s := a.getenv("ORK_SCHEMA"); s != "" {
		return s
	}
	return pgstore.DefaultSchema
}

// open opens the store at dsn. A SQLite file must exist unless create is set; a
// PostgreSQL install must be migrated.
func (a *app) open(ctx context.Context, dsn string, create bool) (*backend, error) {
	if isPostgres(dsn) {
		if err := pgstore.ValidateSchemaName(a.schema); err != nil {
			return nil, err
		}
		pool, err := connectURL(ctx, dsn, 4)
		if err != nil {
			return nil, err
		}
		v, err := schemaVersion(ctx, pool, a.schema)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("read the schema version of install %q in %s: %w", a.schema, redact(dsn), err)
		}
		if v == 0 {
			pool.Close()
			return nil, errorf(orkstate.ErrNotFound, "install %q is not in %s (run: orkstate migrate --schema %s)",
				a.schema, redact(dsn), a.schema)
		}
		st, err := pgstore.New(pool, &pgstore.Config{Schema: a.schema})
		if err != nil {
			pool.Close()
			return nil, err
		}
		return &backend{store: st, pg: st, pool: pool, desc: fmt.Sprintf("%s schema %s", redact(dsn), a.schema), close: pool.Close}, nil
	}
	if !create {
		if _, err := os.Stat(dsn); err != nil {
			return nil, errorf(orkstate.ErrNotFound, "no SQLite store at %s (--db takes postgres://… or a SQLite file)", dsn)
		}
	}
	st, err := sqlitecompat.Open(ctx, dsn, nil)
	if err != nil {
		return nil, err
	}
	return &backend{store: st, sqlite: st, desc: "SQLite " + dsn, close: st.Close}, nil
}

// openDB opens the store of --db.
func (a *app) openDB(ctx context.Context) (*backend, error) { return a.open(ctx, a.dbFlag(), false) }

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress returns a progress printer for a long operation, or nil when stderr
// is not a terminal or the output is --json.
func (a *app) progress(what string) func(done, total int) {
	if !a.errTerminal || a.json {
		return nil
	}
	return func(done, total int) {
		if total > 0 {
			fmt.Fprintf(a.stderr, "\r%s: %d/%d runs", what, done, total)
		} else {
			fmt.Fprintf(a.stderr, "\r%s: %d runs", what, done)
		}
		if done == total {
			fmt.Fprintln(a.stderr)
		}
	}
}
