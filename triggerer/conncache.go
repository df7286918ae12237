package triggerer

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// connCache keeps a few of the pool's connections for one kind of group work
// (the commit groups' statement), so that work runs on the same backends group
// after group instead of on whichever connection the pool hands out. A backend's
// first group statement costs 13–14 ms of server CPU (compiling
// report_deferred_polls and the state machine's functions, planning their
// statements), the next ones about 1 ms; from the shared pool a new Triggerer's
// commit groups landed on four to six backends, through the cache on at most
// maxCommitsInFlight.
//
// A connection stays in the cache for at most connCacheHold after it was taken
// from the pool, then goes back to it, so the pool's health checks and connection
// lifetimes still apply. The pool's acquire and release hooks (Config.Pool's,
// copied) run only when a connection leaves or re-enters the pool, not between
// two groups on a cached one; only the group statement runs on it. close
// releases the cached connections; put after close releases the connection to
// the pool.
type connCache struct {
	pool *pgxpool.Pool
	max  int

	mu     sync.Mutex
	idle   []cachedConn
	closed bool
}

type cachedConn struct {
	conn  *pgxpool.Conn
	since time.Time // taken from the pool
}

// connCacheHold is how long a connection stays out of the pool.
const connCacheHold = time.Minute

func newConnCache(pool *pgxpool.Pool, max int) *connCache {
	return &connCache{pool: pool, max: max}
}

// get returns a cached connection, or one from the pool.
func (c *connCache) get(ctx context.Context) (cachedConn, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		cc := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cc, nil
	}
	c.mu.Unlock()
	conn, err := c.pool.Acquire(ctx)
	return cachedConn{conn: conn, since: time.Now()}, err
}

// put keeps cc for the next get, or releases it to the pool: when the cache is
// closed or full, the connection is broken or inside a transaction, or it has
// been out of the pool for connCacheHold.
func (c *connCache) put(cc cachedConn) {
	pc := cc.conn.Conn().PgConn()
	if !pc.IsClosed() && !pc.IsBusy() && pc.TxStatus() == 'I' && time.Since(cc.since) < connCacheHold {
		c.mu.Lock()
		if !c.closed && len(c.idle) < c.max {
			c.idle = append(c.idle, cc)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	cc.conn.Release()
}

// drain releases the cached connections (a stopped Triggerer holds none).
func (c *connCache) drain() { c.release(false) }

// close releases the cached connections; later puts release theirs.
func (c *connCache) close() { c.release(true) }

func (c *connCache) release(closing bool) {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.closed = c.closed || closing
	c.mu.Unlock()
	for _, cc := range idle {
		cc.conn.Release()
	}
}
