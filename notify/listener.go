package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"

	"github.com/orkstate/orkstate"
)

// DefaultSchema is the install schema when a config leaves it empty; it matches
// pgstore.DefaultSchema.
const DefaultSchema = "ork"

// ListenerConfig configures a Listener. The zero value works with a pool.
type ListenerConfig struct {
	// ApplicationName is set as application_name on the listener's connection, so
	// it can be told apart in pg_stat_activity. Defaults to "orkstate_listener".
	ApplicationName string

	// ConnString, when set, makes the listener open its own connection with it
	// (for instance straight to Postgres when the pool goes through PgBouncer)
	// instead of taking one from the pool. Defaults to "" (use the pool).
	ConnString string

	// Logger receives the listener's non-fatal errors (a lost connection, a
	// failed reconnect, a malformed payload). Defaults to slog.Default().
	Logger *slog.Logger

	// ReconnectDelayMax caps the backoff between reconnect attempts. A connection
	// that stayed up this long resets the backoff. Defaults to 30 seconds.
	ReconnectDelayMax time.Duration

	// ReconnectDelayMin is the wait before the first reconnect after a lost
	// connection; each failed attempt doubles it (with ±20% jitter) up to
	// ReconnectDelayMax. Defaults to 100 milliseconds.
	ReconnectDelayMin time.Duration

	// Schema is the install schema whose channels are listened to. Defaults to "ork".
	Schema string
}

// withDefaults returns a copy of c (nil is the zero config) with defaults filled in.
func (c *ListenerConfig) withDefaults() ListenerConfig {
	var r ListenerConfig
	if c != nil {
		r = *c
	}
	if r.ApplicationName == "" {
		r.ApplicationName = "orkstate_listener"
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.ReconnectDelayMax == 0 {
		r.ReconnectDelayMax = 30 * time.Second
	}
	if r.ReconnectDelayMin == 0 {
		r.ReconnectDelayMin = 100 * time.Millisecond
	}
	if r.Schema == "" {
		r.Schema = DefaultSchema
	}
	return r
}

func (c *ListenerConfig) validate() error {
	if len(c.ApplicationName) > 63 {
		return orkstate.Invalid("ListenerConfig.ApplicationName", c.ApplicationName, "must be at most 63 bytes")
	}
	if c.ReconnectDelayMin < 0 {
		return orkstate.Invalid("ListenerConfig.ReconnectDelayMin", c.ReconnectDelayMin, "must not be negative")
	}
	if c.ReconnectDelayMax < c.ReconnectDelayMin {
		return orkstate.Invalid("ListenerConfig.ReconnectDelayMax", c.ReconnectDelayMax,
			"must not be less than ReconnectDelayMin ("+c.ReconnectDelayMin.String()+")")
	}
	return validateSchema("ListenerConfig.Schema", c.Schema)
}

// ListenerStats counts what a Listener did since it was made.
type ListenerStats struct {
	// Connects counts the connections on which it listened to every channel.
	// More than one means it reconnected.
	Connects int64
	// Notifications counts the notifications it received.
	Notifications int64
}

// Listener listens to an install's channels on a connection of its own and
// signals the Wakers built on it. Make one with NewListener, run it with Start,
// end it with Stop or by cancelling Start's context. It is safe for concurrent use.
type Listener struct {
	cfg        ListenerConfig
	pool       *pgxpool.Pool
	connConfig *pgx.ConnConfig // set when cfg.ConnString is
	channels   map[string]orkstate.WakeKind

	mu         sync.Mutex
	subs       map[*subscriber]struct{}
	runWaiters map[int64]map[*runWaiter]struct{}
	allRuns    int // len of all runWaiters' sets, for a cheap "nobody waits"
	started    bool
	stopped    bool
	cancel     context.CancelFunc
	done       chan struct{}

	ready    chan struct{} // closed once listening on the first connection
	isReady  atomic.Bool
	startErr chan error // the first error before ready

	// Used only by the listen goroutine (Connect and the handlers run on it).
	connectCalls   int
	failures       int       // consecutive reconnects, for the backoff
	listeningSince time.Time // when the current connection listened to every channel
	listened       int       // channels listened to on the current connection

	connects      atomic.Int64
	notifications atomic.Int64
}

// NewListener returns a Listener for cfg.Schema's channels (nil cfg is the zero
// config). It takes a connection from pool for itself at every (re)connect and
// never gives it back, so the pool stays free for queries; pool may be nil when
// cfg.ConnString is set. Nothing connects before Start.
func NewListener(pool *pgxpool.Pool, cfg *ListenerConfig) (*Listener, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:        c,
		pool:       pool,
		channels:   make(map[string]orkstate.WakeKind, len(orkstate.WakeKinds)),
		subs:       make(map[*subscriber]struct{}),
		runWaiters: make(map[int64]map[*runWaiter]struct{}),
		ready:      make(chan struct{}),
		startErr:   make(chan error, 1),
	}
	for _, k := range orkstate.WakeKinds {
		l.channels[Channel(c.Schema, k)] = k
	}
	if c.ConnString != "" {
		cc, err := pgx.ParseConfig(c.ConnString)
		if err != nil {
			// The error may quote the connection string with its password.
			return nil, orkstate.Invalid("ListenerConfig.ConnString", nil, "cannot be parsed")
		}
		cc.RuntimeParams["application_name"] = c.ApplicationName
		// A network that drops the connection silently would leave the listener
		// waiting on a dead socket; keepalives notice within about a minute.
		d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3,
		}}
		cc.DialFunc = d.DialContext
		l.connConfig = cc
	} else if pool == nil {
		return nil, orkstate.Invalid("pool", nil, "must not be nil unless ListenerConfig.ConnString is set")
	}
	return l, nil
}

// Schema is the install schema listened to.
func (l *Listener) Schema() string { return l.cfg.Schema }

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{Connects: l.connects.Load(), Notifications: l.notifications.Load()}
}

// Start connects, listens to the three channels and returns nil once it listens;
// or returns the error of that first attempt (or ctx's), and then the Listener is
// stopped. After a successful Start the Listener runs until Stop or until ctx is
// cancelled, reconnecting with backoff whenever the connection is lost. A
// Listener starts once; a second Start is an error.
func (l *Listener) Start(ctx context.Context) error {
	l.mu.Lock()
	if l.started || l.stopped {
		l.mu.Unlock()
		return errors.New("notify: Listener already started or stopped")
	}
	l.started = true
	runCtx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	l.done = make(chan struct{})
	l.mu.Unlock()

	pl := &pgxlisten.Listener{
		Connect:  l.connect,
		LogError: l.logError,
		// connect waits with backoff itself; pgxlisten's fixed delay would add a minute.
		ReconnectDelay: -1,
	}
	for ch, k := range l.channels {
		pl.Handle(ch, &handler{l: l, kind: k})
	}
	go func() {
		defer close(l.done)
		_ = pl.Listen(runCtx) // returns only once runCtx ends
	}()

	select {
	case <-l.ready:
		return nil
	case err := <-l.startErr:
		l.Stop()
		return fmt.Errorf("notify: listener (schema %s): %w", l.cfg.Schema, err)
	case <-ctx.Done():
		l.Stop()
		return ctx.Err()
	}
}

// Stop closes the connection and returns once the listener has ended. It is safe
// to call more than once, and before Start (which then fails). Wakers built on a
// stopped Listener keep working by polling.
func (l *Listener) Stop() {
	l.mu.Lock()
	l.stopped = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// connect is pgxlisten's Connect: it waits out the backoff before every attempt
// but the first, then opens or hijacks a connection for the listener alone.
func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	if l.connectCalls > 0 {
		if !l.listeningSince.IsZero() && time.Since(l.listeningSince) >= l.cfg.ReconnectDelayMax {
			l.failures = 0
		}
		t := time.NewTimer(l.backoff(l.failures))
		l.failures++
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	l.connectCalls++
	l.listeningSince = time.Time{}
	l.listened = 0

	if l.connConfig != nil {
		return pgx.ConnectConfig(ctx, l.connConfig)
	}
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// Hijacked, the connection belongs to the listener: the pool forgets it and
	// may open another in its place, and pgxlisten closes it when done.
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "select set_config('application_name', $1, false)", l.cfg.ApplicationName); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// backoff is ReconnectDelayMin doubled n times, capped at ReconnectDelayMax, ±20%.
func (l *Listener) backoff(n int) time.Duration {
	d := l.cfg.ReconnectDelayMin
	for i := 0; i < n && d < l.cfg.ReconnectDelayMax; i++ {
		d *= 2
	}
	d = min(d, l.cfg.ReconnectDelayMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// logError is pgxlisten's LogError. Before the first connection listens, the
// error goes to Start; after, to the logger. Errors of a shutdown are dropped.
func (l *Listener) logError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	if !l.isReady.Load() {
		select {
		case l.startErr <- err:
		default:
		}
		return
	}
	l.cfg.Logger.WarnContext(ctx, "orkstate notify listener", "schema", l.cfg.Schema, "err", err)
}

// handler serves one channel. Both methods run on the listen loop, so they only
// set flags and make non-blocking sends.
type handler struct {
	l    *Listener
	kind orkstate.WakeKind
}

// HandleNotification implements pgxlisten.Handler.
func (h *handler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.l.notifications.Add(1)
	ev, err := parseEvent(h.kind, n.Payload)
	h.l.dispatch(ev, pendingNotified) // even when malformed: then waiters look their runs up
	return err
}

// HandleBacklog implements pgxlisten.BacklogHandler. pgxlisten calls it after
// LISTEN on each channel; once every channel listens, the Wakers hear that
// notifications may have been missed while no connection was listening.
func (h *handler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	l := h.l
	l.listened++
	if l.listened < len(l.channels) {
		return nil
	}
	l.listeningSince = time.Now()
	l.connects.Add(1)
	l.dispatch(Event{}, pendingBacklog)
	if l.isReady.CompareAndSwap(false, true) {
		close(l.ready)
	}
	return nil
}

// dispatch signals the subscribers that care about ev (all of them for a
// backlog) and the waiters of the runs it names.
func (l *Listener) dispatch(ev Event, why uint32) {
	backlog := why == pendingBacklog
	bit := kindBit(ev.Kind)
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs {
		if backlog || s.kinds&bit != 0 {
			s.signal(why)
		}
	}
	if l.allRuns == 0 || (!backlog && ev.Kind != orkstate.WakeKindRunFinished) {
		return
	}
	for _, r := range ev.Runs {
		for w := range l.runWaiters[r.ID] {
			w.poke() // the payload's status is not trusted: the waiter looks the run up
		}
	}
	if backlog || ev.More {
		for _, ws := range l.runWaiters {
			for w := range ws {
				w.poke()
			}
		}
	}
}

// Flags a subscriber holds until its Waker takes them.
const (
	pendingNotified uint32 = 1 << iota
	pendingBacklog
)

// subscriber is one Waker's mailbox: pending flags plus a one-slot channel that
// says "look at the flags". Signals coalesce: any number of them between two
// takes is one wake-up.
type subscriber struct {
	kinds   uint32 // kind bits
	pending atomic.Uint32
	c       chan struct{}
}

func (s *subscriber) signal(why uint32) {
	s.pending.Or(why)
	s.rearm()
}

// rearm makes sure a token waits in c; it never blocks.
func (s *subscriber) rearm() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

func (l *Listener) subscribe(kinds uint32) *subscriber {
	s := &subscriber{kinds: kinds, c: make(chan struct{}, 1)}
	l.mu.Lock()
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	return s
}

func (l *Listener) unsubscribe(s *subscriber) {
	l.mu.Lock()
	delete(l.subs, s)
	l.mu.Unlock()
}

// runWaiter is one WaitForRun call: a one-slot channel that says "look again".
type runWaiter struct {
	runID int64
	c     chan struct{}
}

func (w *runWaiter) poke() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (l *Listener) watchRun(runID int64) *runWaiter {
	w := &runWaiter{runID: runID, c: make(chan struct{}, 1)}
	l.mu.Lock()
	ws := l.runWaiters[runID]
	if ws == nil {
		ws = make(map[*runWaiter]struct{})
		l.runWaiters[runID] = ws
	}
	ws[w] = struct{}{}
	l.allRuns++
	l.mu.Unlock()
	return w
}

func (l *Listener) unwatchRun(w *runWaiter) {
	l.mu.Lock()
	if ws := l.runWaiters[w.runID]; ws != nil {
		if _, ok := ws[w]; ok {
			delete(ws, w)
			l.allRuns--
		}
		if len(ws) == 0 {
			delete(l.runWaiters, w.runID)
		}
	}
	l.mu.Unlock()
}
