// Package pgstore is the orkstate Store on PostgreSQL through pgx/v5.
//
// The hot paths are SQL functions of the install (in the schema <schema>_api);
// this package calls them and keeps the rest of the contract in plain statements.
// Every method also runs inside a caller's transaction: s.WithTx(tx) returns a
// Store bound to tx, so an application changes its own rows and orkstate's
// atomically.
package pgstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
)

// DefaultSchema is the install schema when Config.Schema is empty.
const DefaultSchema = "ork"

// Config configures a Store. The zero value works.
type Config struct {
	// Now is the clock of the calls whose effect depends on the time: claims and
	// DispatchableTasks (retry times fall due against it; leases, dispatch and timeouts
	// start from it), status reports (retry, start, finish and timeout times), the lease
	// and timeout sweeps, deferred-job claims and poll reports (each passes it as the SQL
	// function's p_now), MarkDeferredJobPolled, and the schedule calls given a zero now.
	// Tests set it to move time instead of waiting for it (storetest does). The database
	// stamps the rest (creation and run times) at its own now(). Defaults to nil: the
	// database's time (the transaction's start), as psql callers get, and time.Now for
	// the schedule calls.
	Now func() time.Time
	// Schema is the install schema; functions live in Schema+"_api". Defaults to "ork".
	Schema string
}

// dbtx is what both *pgxpool.Pool and pgx.Tx offer.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store implements orkstate.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	db     dbtx
	schema string
	clock  func() time.Time // Config.Now; nil: the database's time
	sqls   *sync.Map        // query text with {ork} and {api} → text for this schema
}

// New returns a Store on pool. It does not install anything; call Migrate.
func New(pool *pgxpool.Pool, cfg *Config) (*Store, error) {
	if pool == nil {
		return nil, orkstate.Invalid("pool", nil, "must not be nil")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if err := ValidateSchemaName(c.Schema); err != nil {
		return nil, err
	}
	return &Store{pool: pool, db: pool, schema: c.Schema, clock: c.Now, sqls: &sync.Map{}}, nil
}

// now is the time a time-dependent call passes its SQL function as p_now: the
// Config.Now clock's, or nil (NULL: the function reads the database's now()).
func (s *Store) now() *time.Time {
	if s.clock == nil {
		return nil
	}
	t := s.clock()
	return &t
}

// goNow is the time of the schedule calls given a zero now: the Config.Now clock's,
// else time.Now().
func (s *Store) goNow() time.Time {
	if s.clock == nil {
		return time.Now()
	}
	return s.clock()
}

// WithTx returns a Store whose every call runs inside tx. Nothing it does is
// visible to others until the caller commits, and a rollback undoes all of it.
// Calls that need several statements use savepoints inside tx.
func (s *Store) WithTx(tx pgx.Tx) *Store {
	c := *s
	c.db = tx
	return &c
}

// Schema is the install schema.
func (s *Store) Schema() string { return s.schema }

// Pool is the pool the Store was built on.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Capabilities: everything.
func (s *Store) Capabilities() orkstate.Capabilities {
	return orkstate.Capabilities{ConcurrentClaimers: true, SQLFunctions: true, ListenNotify: true}
}

// Close does nothing: the pool belongs to the caller.
func (s *Store) Close() {}

// sql rewrites a query written against {ork} (tables) and {api} (functions) for this
// install. Schema names are validated identifiers, never values.
func (s *Store) sql(q string) string {
	if v, ok := s.sqls.Load(q); ok {
		return v.(string)
	}
	r := strings.NewReplacer("{ork}", s.schema, "{api}", s.schema+"_api").Replace(q)
	s.sqls.Store(q, r)
	return r
}

// inTx runs fn in a transaction (a savepoint when s is bound to a caller's tx).
func (s *Store) inTx(ctx context.Context, fn func(tx *Store) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return translate(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(s.WithTx(tx)); err != nil {
		return err
	}
	return translate(tx.Commit(ctx))
}

// wrap adds what was being done to an error already translated.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, translate(err))...)
}
