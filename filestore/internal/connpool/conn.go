package connpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// DialFunc opens a network connection, like (*net.Dialer).DialContext.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// ErrAborted is what I/O on a Conn returns after Abort.
var ErrAborted = errors.New("connection aborted")

// Conn is a net.Conn on which every Read and Write must make progress
// within an idle timeout, and which Abort unblocks for good. Protocol
// libraries without deadlines of their own (FTP, SSH) thereby get a timeout
// on every network call, and a cancelled context ends a stalled transfer.
type Conn struct {
	net.Conn
	idle    atomic.Int64 // time.Duration
	aborted atomic.Bool
}

// Dial connects with dial (net.Dialer if nil) within timeout and wraps the
// connection with the same value as its idle timeout.
func Dial(ctx context.Context, dial DialFunc, addr string, timeout time.Duration) (*Conn, error) {
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return Wrap(c, timeout), nil
}

// Wrap adds the idle timeout (none if idle ≤ 0) and Abort to c.
func Wrap(c net.Conn, idle time.Duration) *Conn {
	w := &Conn{Conn: c}
	w.idle.Store(int64(idle))
	return w
}

// SetIdle changes the idle timeout, e.g. to bound a final drain.
func (c *Conn) SetIdle(d time.Duration) { c.idle.Store(int64(d)) }

func (c *Conn) Read(p []byte) (int, error) {
	if idle := time.Duration(c.idle.Load()); idle > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(idle))
	}
	// Checked after setting the deadline: an Abort racing with us either
	// is seen here or its past deadline overrides ours.
	if c.aborted.Load() {
		return 0, ErrAborted
	}
	return c.Conn.Read(p)
}

func (c *Conn) Write(p []byte) (int, error) {
	if idle := time.Duration(c.idle.Load()); idle > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(idle))
	}
	if c.aborted.Load() {
		return 0, ErrAborted
	}
	return c.Conn.Write(p)
}

// Abort makes I/O in progress and all later I/O fail at once. It is safe to
// call from any goroutine, more than once.
func (c *Conn) Abort() {
	c.aborted.Store(true)
	_ = c.Conn.SetDeadline(time.Unix(1, 0))
}
