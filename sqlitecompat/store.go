// Package sqlitecompat is the orkstate Store on a single SQLite file through
// modernc.org/sqlite (pure Go, no cgo). It honours the same contract as pgstore
// (docs/semantics.md) and passes storetest, with these reductions:
//
//   - One node. Every write runs in a BEGIN IMMEDIATE transaction, so writers are
//     serialised by SQLite's file lock instead of row locks and SKIP LOCKED.
//     Claims are still exactly-once for any number of goroutines and of processes
//     sharing the file (Capabilities().ConcurrentClaimers is true), but they do not
//     run in parallel: throughput is one writer's. Processes take turns fairly (see
//     begin): none starves while another writes in a loop.
//   - No SQL function API: the state machine runs in Go over plain SQL, so there is
//     nothing to call from a SQL shell (Capabilities().SQLFunctions is false).
//   - No LISTEN/NOTIFY: wake-ups are in-process only (Store.Waker), so a scheduler
//     in another process sharing the file learns of new work by its fallback poll
//     (Capabilities().ListenNotify is false).
//   - No River: the triggerer's River jobs need pgstore; deferred jobs are claimed
//     with ClaimDeferredJobs instead.
//   - No caller transactions: there is no WithTx twin of the methods.
//
// Timestamps are stored as INTEGER unix microseconds (UTC) everywhere, the
// precision of Postgres' timestamptz. The schema has its own embedded migrations
// (Migrate, MigrateTo) and a version table, orkstate_schema_version.
package sqlitecompat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/orkstate/orkstate"
)

// Config configures a Store. The zero value works; Open(ctx, path, nil) too.
type Config struct {
	// BusyTimeout is how long a writer waits for another process's write lock
	// before failing with SQLITE_BUSY. Defaults to 10 seconds.
	BusyTimeout time.Duration
	// MaxReaders caps the read connections of a file store. Defaults to max(4, GOMAXPROCS).
	MaxReaders int
	// NoMigrate skips the Migrate call Open otherwise makes.
	NoMigrate bool
	// Now is the clock; tests inject one. Defaults to time.Now.
	Now func() time.Time
}

// Store implements orkstate.Store on SQLite. It is safe for concurrent use, and
// several processes may open the same file.
type Store struct {
	wdb *sql.DB // one connection, every transaction BEGIN IMMEDIATE
	rdb *sql.DB // readers (the same handle as wdb for :memory:)
	wmu sync.Mutex
	now func() time.Time

	// busyTimeout bounds begin's wait for another process's write lock;
	// contendedAt is when begin last had to wait (unix ns), handOffMissed how
	// many hand-offs in a row ran out since (both under wmu).
	busyTimeout   time.Duration
	contendedAt   int64
	handOffMissed int

	notifier  *notifier
	closeOnce sync.Once

	// stmts caches the write path's statements, prepared on wdb's one connection
	// (guarded by wmu). A statement first seen inside a transaction runs unprepared
	// and is prepared after the transaction, when the connection is free again:
	// preparing dominated the cost of a write before.
	stmts   map[string]*sql.Stmt
	unprep  map[string]bool
	noCache map[string]bool
}

// maxCachedStmts bounds the statement cache.
const maxCachedStmts = 256

var _ orkstate.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path, or a private
// in-memory database for ":memory:", and migrates it to the newest schema unless
// cfg.NoMigrate. The file uses WAL, a busy timeout and foreign keys.
func Open(ctx context.Context, path string, cfg *Config) (*Store, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if path == "" {
		return nil, orkstate.Invalid("path", path, "must not be empty (use \":memory:\" for an in-memory store)")
	}
	if strings.ContainsRune(path, '?') {
		return nil, orkstate.Invalid("path", path, "must not contain '?'")
	}
	if c.BusyTimeout < 0 {
		return nil, orkstate.Invalid("BusyTimeout", c.BusyTimeout, "must not be negative")
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 10 * time.Second
	}
	if c.MaxReaders < 0 {
		return nil, orkstate.Invalid("MaxReaders", c.MaxReaders, "must not be negative")
	}
	if c.MaxReaders == 0 {
		c.MaxReaders = max(4, runtime.GOMAXPROCS(0))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// "file::memory:" is the URI form of ":memory:": opened as a file, each read
	// connection would get its own empty database, so writes seemed to work and every
	// read failed.
	memory := path == ":memory:" || path == "file::memory:"
	if memory {
		path = ":memory:"
	} else if err := checkParentDir(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(c.BusyTimeout.Milliseconds()))
	q.Set("_foreign_keys", "1")
	if !memory {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "NORMAL")
	}
	rq := url.Values{}
	for k, v := range q {
		rq[k] = v
	}
	q.Set("_txlock", "immediate")
	if !memory {
		// The write connection waits for the file lock in begin, not in SQLite's busy
		// handler (see begin); readers keep the handler.
		q.Set("_busy_timeout", "0")
	}

	wdb, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlitecompat: open %s: %w", path, err)
	}
	// One write connection: in-process writers queue on wmu, other processes on
	// the file lock (busy_timeout). :memory: lives in this one connection, so the
	// readers share it too.
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	rdb := wdb
	if !memory {
		rdb, err = sql.Open("sqlite", path+"?"+rq.Encode())
		if err != nil {
			wdb.Close()
			return nil, fmt.Errorf("sqlitecompat: open %s: %w", path, err)
		}
		rdb.SetMaxOpenConns(c.MaxReaders)
		rdb.SetMaxIdleConns(c.MaxReaders)
	}
	s := &Store{wdb: wdb, rdb: rdb, now: c.Now, notifier: newNotifier(), busyTimeout: c.BusyTimeout,
		stmts: map[string]*sql.Stmt{}, unprep: map[string]bool{}, noCache: map[string]bool{}}
	if err := wdb.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlitecompat: open %s: %w", path, err)
	}
	if !c.NoMigrate {
		if err := s.Migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// checkParentDir refuses a database path whose folder does not exist, with an error
// naming it (SQLite's own is "unable to open database file", naming nothing).
func checkParentDir(path string) error {
	file := strings.TrimPrefix(path, "file:")
	dir := filepath.Dir(file)
	st, err := os.Stat(dir)
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		return orkstate.Invalid("path", path, fmt.Sprintf("folder %s does not exist", dir))
	case err != nil:
		return fmt.Errorf("sqlitecompat: open %s: %w", path, err)
	case !st.IsDir():
		return orkstate.Invalid("path", path, fmt.Sprintf("%s is not a folder", dir))
	}
	return nil
}

// Capabilities: claims are exactly-once across goroutines and processes (serialised
// by BEGIN IMMEDIATE); no SQL function API; no LISTEN/NOTIFY.
func (s *Store) Capabilities() orkstate.Capabilities {
	return orkstate.Capabilities{ConcurrentClaimers: true, SQLFunctions: false, ListenNotify: false}
}

// Close closes the database and wakes every waiter with an error. Safe to call twice.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.notifier.close()
		s.wmu.Lock()
		for _, st := range s.stmts {
			st.Close()
		}
		s.stmts = map[string]*sql.Stmt{}
		s.wmu.Unlock()
		if s.rdb != s.wdb {
			s.rdb.Close()
		}
		s.wdb.Close()
	})
}

// DB returns the read handle, for inspection and tests. Writing through it bypasses
// the state machine.
func (s *Store) DB() *sql.DB { return s.rdb }

// clock returns now truncated to the stored precision.
func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// txState is one write transaction: its statements and what to signal after commit.
type txState struct {
	s       *Store
	tx      *sql.Tx
	ctx     context.Context
	now     time.Time
	signals kind
	runs    []runEvent
	// touchedRuns are runs whose completion must be checked before commit.
	touchedRuns map[int64]bool
}

// stmt returns q prepared for this transaction, or nil to run it unprepared.
func (t *txState) stmt(q string) *sql.Stmt {
	if st := t.s.stmts[q]; st != nil {
		return t.tx.StmtContext(t.ctx, st)
	}
	if !t.s.noCache[q] {
		t.s.unprep[q] = true
	}
	return nil
}

func (t *txState) exec(q string, args ...any) (sql.Result, error) {
	if st := t.stmt(q); st != nil {
		return st.ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, q, args...)
}

func (t *txState) query(q string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(q); st != nil {
		return st.QueryContext(t.ctx, args...)
	}
	return t.tx.QueryContext(t.ctx, q, args...)
}

func (t *txState) queryRow(q string, args ...any) *sql.Row {
	if st := t.stmt(q); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, q, args...)
}

// prepareSeen prepares the statements the last transaction ran unprepared. It
// runs under wmu with no transaction open, so wdb's one connection is free.
func (s *Store) prepareSeen(ctx context.Context) {
	for q := range s.unprep {
		delete(s.unprep, q)
		if len(s.stmts) >= maxCachedStmts {
			s.noCache[q] = true
			continue
		}
		st, err := s.wdb.PrepareContext(ctx, q)
		if err != nil {
			s.noCache[q] = true // e.g. several statements in one text (migrations)
			continue
		}
		s.stmts[q] = st
	}
}

// write runs fn in one BEGIN IMMEDIATE transaction, checks the completion of the
// runs it touched, commits, and then signals the waiters. An error from fn rolls
// everything back.
func (s *Store) write(ctx context.Context, fn func(t *txState) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	defer s.prepareSeen(context.WithoutCancel(ctx))
	tx, err := s.begin(ctx)
	if err != nil {
		return translate(err)
	}
	// Another process wanted the file lately: note the file's data version while this
	// transaction holds the write lock (nobody else can commit meanwhile), so that
	// after commit this handle can wait for the other side's turn (handOff).
	version := int64(-1)
	if time.Now().UnixNano()-s.contendedAt < int64(contendedFor) {
		if err := tx.QueryRowContext(ctx, "PRAGMA data_version").Scan(&version); err != nil {
			tx.Rollback()
			return translate(err)
		}
	}
	t := &txState{s: s, tx: tx, ctx: ctx, now: s.clock(), touchedRuns: map[int64]bool{}}
	if err := fn(t); err != nil {
		tx.Rollback()
		return translate(err)
	}
	if err := t.completeRuns(); err != nil {
		tx.Rollback()
		return translate(err)
	}
	if err := tx.Commit(); err != nil {
		return translate(err)
	}
	s.notifier.signal(t.signals, t.runs)
	if version >= 0 {
		s.handOff(ctx, version)
	}
	return nil
}

// handOff waits, after a commit, until another connection has committed to the file
// since version (PRAGMA data_version counts other connections' commits only), or
// handOffMax passes: a writer in a loop would otherwise take the lock straight back
// in the microseconds between its COMMIT and its next BEGIN, before a process polling
// for it sees it free. handOffMisses waits in a row that run out mean the other side
// wants the lock no more (one can be its poll delayed on a busy machine), so the
// handle stops waiting until begin meets contention again.
func (s *Store) handOff(ctx context.Context, version int64) {
	deadline := time.Now().Add(handOffMax)
	for {
		var v int64
		if err := s.wdb.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil || v != version {
			s.handOffMissed = 0
			return
		}
		if time.Now().After(deadline) {
			if s.handOffMissed++; s.handOffMissed >= handOffMisses {
				s.contendedAt, s.handOffMissed = 0, 0
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(handOffPoll):
		}
	}
}

// Write-lock fairness between processes sharing a file. Measured with
// TestTwoHandlesShareClaimsFairly (two handles claiming 2,000 tasks in tight loops):
// with SQLite's busy handler, which sleeps 1, 2, 5, … up to 100 ms between tries,
// one handle got 2,000 and the other 0 (issue 11: two processes, 19,972 and 28 of
// 20,000). A fixed 300 µs pause after each commit instead of handOff still let one
// handle take 250 of 300 under the race detector on a loaded machine: the other's
// poll, up to 1.5 ms apart, missed most pauses.
const (
	// beginPoll is the first wait between tries of BEGIN IMMEDIATE; it doubles up to beginPollMax.
	beginPoll    = 50 * time.Microsecond
	beginPollMax = time.Millisecond
	// contendedFor is how long after a contended BEGIN a handle hands off after commits.
	contendedFor = 100 * time.Millisecond
	// handOffMax bounds a hand-off: several of the other side's polls (up to 1.5 ms
	// apart, jittered) and its transaction.
	handOffMax = 10 * time.Millisecond
	// handOffMisses is how many hand-offs in a row may run out before the handle stops handing off.
	handOffMisses = 3
	// handOffPoll is how often a hand-off reads the data version.
	handOffPoll = 100 * time.Microsecond
)

// begin starts the write transaction, BEGIN IMMEDIATE. While another process holds
// the file's write lock it tries again every 50 µs to 1 ms (jittered) up to
// BusyTimeout: short enough to find the gaps between the other side's transactions.
func (s *Store) begin(ctx context.Context) (*sql.Tx, error) {
	var deadline time.Time
	wait := beginPoll
	for {
		tx, err := s.wdb.BeginTx(ctx, nil)
		if err == nil || !isBusy(err) {
			return tx, err
		}
		now := time.Now()
		s.contendedAt = now.UnixNano()
		if deadline.IsZero() {
			deadline = now.Add(s.busyTimeout)
		}
		if now.After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait/2 + time.Duration(rand.Int64N(int64(wait)))):
		}
		wait = min(2*wait, beginPollMax)
	}
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// translate maps driver errors to orkstate's: a unique violation is ErrConflict.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %v", orkstate.ErrConflict, err)
		}
	}
	return err
}

// Time helpers: the one stored format is INTEGER unix microseconds, UTC.

func ts(t time.Time) int64 { return t.UTC().Truncate(time.Microsecond).UnixMicro() }

func tsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ts(*t)
}

func fromTS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullTS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromTS(v.Int64)
	return &t
}

// jsonArg stores nil/empty JSON as NULL.
func jsonArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func fromNullJSON(v sql.NullString) []byte {
	if !v.Valid {
		return nil
	}
	return []byte(v.String)
}

func notFound(what string, id any) error {
	return fmt.Errorf("%w: %s %v", orkstate.ErrNotFound, what, id)
}

func invalidTransition(format string, args ...any) error {
	return fmt.Errorf("%w: %s", orkstate.ErrInvalidTransition, fmt.Sprintf(format, args...))
}

// checkLimit is the shared rule for lists that are not paged.
func checkLimit(limit int) error { return orkstate.CheckListLimit(limit) }

// checkBatchLimit bounds the hot paths' batches like the SQL functions: 1 … 10,000.
func checkBatchLimit(limit int) error { return orkstate.CheckBatchLimit(limit) }
