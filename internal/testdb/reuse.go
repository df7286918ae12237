package testdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate/pgstore"
	orksql "github.com/orkstate/orkstate/sql"
)

// Reused installs are named reusePrefix + a fingerprint of the embedded SQL + "_" + n.
// A change to any SQL file changes the fingerprint, so an install is only ever
// reused by code that would have created exactly it. They outlive the test process
// (that is the point: the next run finds them migrated); installs of other
// fingerprints unused for staleAfter are dropped by the first test that reuses one.
const (
	reusePrefix = "ot_"
	staleAfter  = time.Hour
	// lockClass is the first key of the two-key advisory lock that marks an install
	// as taken; tern's lock is a single bigint key, so the two never meet.
	lockClass = 170417
)

// held is a reused install checked out by this process: conn holds its lock.
type held struct {
	schema string
	conn   *pgx.Conn
}

var (
	reuseMu   sync.Mutex
	free      []held // installs this process holds the lock on and no test uses
	nextN     int    // the next install number to try
	sweepOnce sync.Once
	fpOnce    sync.Once
	fp        string
)

// fingerprint hashes every embedded SQL file: a reused install matches the code.
func fingerprint(t testing.TB) string {
	fpOnce.Do(func() {
		h := sha256.New()
		for _, dir := range []fs.FS{orksql.Schema(), orksql.Functions()} {
			_ = fs.WalkDir(dir, ".", func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				f, err := dir.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				_, _ = io.WriteString(h, path+"\x00")
				_, err = io.Copy(h, f)
				return err
			})
		}
		fp = hex.EncodeToString(h.Sum(nil))[:10]
	})
	return fp
}

// Reused returns the schema of an empty, migrated install that t has to itself until
// it ends. The install is taken under a session advisory lock held by a connection of
// its own, so parallel tests and other test processes never share one, and a crashed
// process releases its installs with its connections. It is emptied (TRUNCATE …
// RESTART IDENTITY, then the rows migrations seed) when taken, not when given back,
// so what a crashed test left behind is cleared as well.
func Reused(t testing.TB) string {
	t.Helper()
	Pool(t) // fails t with the how-to-start message when there is no server
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sweepOnce.Do(func() { sweepStale(ctx, t) })
	h, err := take(ctx, fingerprint(t))
	if err != nil {
		t.Fatalf("testdb: take a reused install: %v", err)
	}
	t.Cleanup(func() {
		reuseMu.Lock()
		defer reuseMu.Unlock()
		free = append(free, h)
	})
	return h.schema
}

// take checks out a free install of this process or locks the next unused one,
// installing it when it is missing or incomplete, and empties it.
func take(ctx context.Context, fp string) (held, error) {
	reuseMu.Lock()
	if n := len(free); n > 0 {
		h := free[n-1]
		free = free[:n-1]
		reuseMu.Unlock()
		return h, empty(ctx, h)
	}
	reuseMu.Unlock()

	cfg, err := pgx.ParseConfig(URL())
	if err != nil {
		return held{}, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return held{}, err
	}
	for {
		reuseMu.Lock()
		nextN++
		schema := fmt.Sprintf("%s%s_%d", reusePrefix, fp, nextN)
		reuseMu.Unlock()
		var locked bool
		if err := conn.QueryRow(ctx, "select pg_try_advisory_lock($1, hashtext($2))", lockClass, schema).Scan(&locked); err != nil {
			_ = conn.Close(ctx)
			return held{}, err
		}
		if !locked {
			continue // another process is using it
		}
		h := held{schema: schema, conn: conn}
		if err := install(ctx, h); err != nil {
			_ = conn.Close(ctx)
			return held{}, fmt.Errorf("%s: %w", schema, err)
		}
		return h, empty(ctx, h)
	}
}

// install migrates h's schema unless a complete install of it is already there. The
// schema comment "ready" is written last, so an install cut short is redone.
func install(ctx context.Context, h held) error {
	var comment *string
	err := h.conn.QueryRow(ctx, `select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = $1`,
		h.schema).Scan(&comment)
	if err != nil && err != pgx.ErrNoRows {
		return err
	}
	if comment != nil && strings.HasPrefix(*comment, "ready") {
		return touch(ctx, h)
	}
	if err := dropInstall(ctx, h.conn, h.schema); err != nil {
		return err
	}
	if err := pgstore.Migrate(ctx, pool, h.schema); err != nil {
		return err
	}
	return touch(ctx, h)
}

// touch records when the install was last taken, for sweepStale.
func touch(ctx context.Context, h held) error {
	_, err := h.conn.Exec(ctx, fmt.Sprintf(`comment on schema %s is 'ready %d'`, h.schema, time.Now().Unix()))
	return err
}

// seeded restores the rows migrations insert, after the truncate.
const seeded = `insert into %s.settings default values`

// empty truncates every table of h's install and restores the seeded rows.
func empty(ctx context.Context, h held) error {
	var tables string
	err := h.conn.QueryRow(ctx, `select string_agg(format('%I.%I', schemaname, tablename), ', ')
		from pg_tables where schemaname = $1`, h.schema).Scan(&tables)
	if err != nil {
		return err
	}
	_, err = h.conn.Exec(ctx, "truncate "+tables+" restart identity cascade; "+fmt.Sprintf(seeded, h.schema))
	if err != nil {
		return fmt.Errorf("empty %s: %w", h.schema, err)
	}
	return touch(ctx, h)
}

// sweepStale drops reused installs of other fingerprints (older SQL) that nobody has
// taken for staleAfter and nobody holds now.
func sweepStale(ctx context.Context, t testing.TB) {
	rows, err := pool.Query(ctx, `select nspname, coalesce(obj_description(oid, 'pg_namespace'), '')
		from pg_namespace where nspname like $1 and nspname not like $2`,
		reusePrefix+"%", reusePrefix+fingerprint(t)+"%")
	if err != nil {
		t.Logf("testdb: sweep: %v", err)
		return
	}
	type stale struct{ schema, comment string }
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stale, error) {
		var s stale
		return s, r.Scan(&s.schema, &s.comment)
	})
	if err != nil {
		t.Logf("testdb: sweep: %v", err)
		return
	}
	for _, s := range found {
		if strings.HasSuffix(s.schema, "_api") {
			continue
		}
		used, _ := strconv.ParseInt(strings.TrimPrefix(s.comment, "ready "), 10, 64)
		if time.Since(time.Unix(used, 0)) < staleAfter {
			continue
		}
		if err := dropIfFree(ctx, s.schema); err != nil {
			t.Logf("testdb: sweep %s: %v", s.schema, err)
		}
	}
}

// dropIfFree drops an install unless another process holds its lock.
func dropIfFree(ctx context.Context, schema string) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "select pg_try_advisory_lock($1, hashtext($2))", lockClass, schema).Scan(&locked); err != nil || !locked {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1, hashtext($2))", lockClass, schema)
	}()
	return dropInstall(ctx, conn.Conn(), schema)
}

// dropInstall removes every object of an install, if there are any.
func dropInstall(ctx context.Context, conn *pgx.Conn, schema string) error {
	for _, q := range []string{
		"drop schema if exists " + schema + "_api cascade",
		"drop schema if exists " + schema + " cascade",
		"drop table if exists " + pgstore.VersionTable(schema),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
