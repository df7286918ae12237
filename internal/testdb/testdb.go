// Package testdb gives tests a real PostgreSQL: one pool per test binary and an
// install schema per test. A database that cannot be reached fails the test with a
// message saying how to start one.
//
// Store hands out a migrated install that is reused: emptied (truncated) when a test
// takes it, so tests do not each migrate under tern's database-wide advisory lock,
// which serialised parallel tests and packages. Schema and FreshStore install a new
// schema and drop it afterwards, for tests that change the install itself
// (migrations, grants, function versions).
package testdb

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate/pgstore"
)

// DefaultURL is used when DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@localhost:5432/postgres?sslmode=disable"

// URL is DATABASE_URL, or DefaultURL.
func URL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	poolOnce sync.Once
	pool     *pgxpool.Pool
	poolErr  error
	counter  atomic.Int64
)

// Pool returns the shared pool, failing t when the database is unreachable.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	poolOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cfg, err := pgxpool.ParseConfig(URL())
		if err != nil {
			poolErr = err
			return
		}
		cfg.MaxConns = 16
		pool, poolErr = pgxpool.NewWithConfig(ctx, cfg)
		if poolErr == nil {
			poolErr = pool.Ping(ctx)
		}
	})
	if poolErr != nil {
		t.Fatalf("PostgreSQL is not reachable at %s: %v\n"+
			"Start one (on Debian: pg_ctlcluster --skip-systemctl-redirect 15 main start, or "+
			"apt-get install postgresql) or point DATABASE_URL at a server you may create schemas in.",
			URL(), poolErr)
	}
	return pool
}

var (
	simpleOnce sync.Once
	simplePool *pgxpool.Pool
	simpleErr  error
)

// SimplePool returns a second shared pool whose connections use pgx's simple query
// protocol (QueryExecModeSimpleProtocol), as PgBouncer in transaction pooling mode
// requires: no prepared statements, every argument sent as text.
func SimplePool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	Pool(t)
	simpleOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cfg, err := pgxpool.ParseConfig(URL())
		if err != nil {
			simpleErr = err
			return
		}
		cfg.MaxConns = 4
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		simplePool, simpleErr = pgxpool.NewWithConfig(ctx, cfg)
	})
	if simpleErr != nil {
		t.Fatalf("simple-protocol pool: %v", simpleErr)
	}
	return simplePool
}

// OwnPool returns a small pool of t's own, closed when t ends, for a test that
// counts what its store does with its pool.
func OwnPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	Pool(t)
	cfg, err := pgxpool.ParseConfig(URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// SchemaName returns a schema name unique to this test process and call.
func SchemaName(t testing.TB) string {
	name := strings.ToLower(t.Name())
	var b strings.Builder
	for _, r := range name {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
		if b.Len() >= 12 {
			break
		}
	}
	return fmt.Sprintf("t%d_%d_%s", os.Getpid()%100000, counter.Add(1), b.String())
}

// Schema creates an empty, uniquely named install schema for t (migrated to the
// newest version) and drops it, its code schema and its version table when t ends.
func Schema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	p := Pool(t)
	schema := SchemaName(t)
	ctx := context.Background()
	t.Cleanup(func() { Drop(t, p, schema) })
	if err := pgstore.Migrate(ctx, p, schema); err != nil {
		t.Fatalf("migrate %s: %v", schema, err)
	}
	return p, schema
}

// Store returns a pgstore.Store on an empty, migrated install that t has to itself
// (a reused one, see Reused). A test that changes the install's objects uses
// FreshStore instead.
func Store(t testing.TB) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(Pool(t), &pgstore.Config{Schema: Reused(t)})
	if err != nil {
		t.Fatalf("pgstore.New: %v", err)
	}
	return s
}

// FreshStore returns a pgstore.Store on a newly installed schema, dropped when t ends.
func FreshStore(t testing.TB) *pgstore.Store {
	t.Helper()
	p, schema := Schema(t)
	s, err := pgstore.New(p, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatalf("pgstore.New: %v", err)
	}
	return s
}

// Drop removes every object of an install.
func Drop(t testing.TB, p *pgxpool.Pool, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		"drop schema if exists " + schema + "_api cascade",
		"drop schema if exists " + schema + " cascade",
		"drop table if exists " + pgstore.VersionTable(schema),
	} {
		if _, err := p.Exec(ctx, q); err != nil {
			t.Errorf("cleanup %s: %v", q, err)
		}
	}
}
