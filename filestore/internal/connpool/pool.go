// Package connpool is the one place where the SFTP and FTP stores keep,
// reuse, probe and replace their connections. Neither protocol lets a
// store assume a connection is still alive: servers close idle sessions,
// and networks drop them mid-transfer. The pool re-dials on demand, so the
// stores (and the retry decorator above them) never need their own
// reconnect logic.
package connpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Options describe how to make, check and dispose of connections of type C.
type Options[C any] struct {
	// Max is the number of connections open at once (leased or idle);
	// Get waits for a free one beyond that. Values below 1 mean 1.
	Max int
	// Dial opens a new, logged-in connection. ctx bounds the dial.
	Dial func(ctx context.Context) (C, error)
	// Close disposes of a connection; it must not block for long.
	Close func(C)
	// Abort unblocks I/O in progress on a connection, from another
	// goroutine, when the context of its lease ends. The connection is
	// closed afterwards.
	Abort func(C)
	// Probe checks an idle connection before it is reused, when it has
	// been idle longer than ProbeAfter; a failing one is replaced.
	// Optional.
	Probe      func(ctx context.Context, c C) error
	ProbeAfter time.Duration
	// Broken reports whether an operation's error leaves the connection
	// unusable (lost, or out of step with the server). Errors it deems
	// harmless (file not found) keep the connection.
	Broken func(err error) bool
}

// Pool hands out connections one caller at a time. It is safe for
// concurrent use.
type Pool[C any] struct {
	o     Options[C]
	slots chan struct{} // one token per connection open or being dialled

	mu     sync.Mutex
	idle   []idleConn[C]
	closed bool
}

type idleConn[C any] struct {
	c     C
	since time.Time
}

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("connection pool closed")

// New returns an empty pool; connections are dialled on first use.
func New[C any](o Options[C]) *Pool[C] {
	if o.Max < 1 {
		o.Max = 1
	}
	return &Pool[C]{o: o, slots: make(chan struct{}, o.Max)}
}

// Lease is one caller's hold on a connection. Release it exactly once.
type Lease[C any] struct {
	C        C
	p        *Pool[C]
	stop     func() bool
	aborted  atomic.Bool
	released bool
}

// Get returns an idle connection (probed if it idled long) or dials a new
// one. Until the lease is released, the end of ctx aborts the connection's
// I/O, so a caller that gives up never leaves a goroutine blocked on the
// network.
func (p *Pool[C]) Get(ctx context.Context) (*Lease[C], error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		ic, ok, err := p.popIdle()
		if err != nil {
			<-p.slots
			return nil, err
		}
		if !ok {
			break
		}
		if p.o.Probe != nil && time.Since(ic.since) > p.o.ProbeAfter {
			if err := p.probe(ctx, ic.c); err != nil {
				p.o.Close(ic.c)
				continue
			}
		}
		return p.lease(ctx, ic.c), nil
	}
	c, err := p.o.Dial(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return p.lease(ctx, c), nil
}

func (p *Pool[C]) probe(ctx context.Context, c C) error {
	l := p.lease(ctx, c)
	err := p.o.Probe(ctx, c)
	if l.stop() && !l.aborted.Load() {
		return err
	}
	return context.Canceled
}

func (p *Pool[C]) lease(ctx context.Context, c C) *Lease[C] {
	l := &Lease[C]{C: c, p: p}
	l.stop = context.AfterFunc(ctx, func() {
		l.aborted.Store(true)
		p.o.Abort(c)
	})
	return l
}

func (p *Pool[C]) popIdle() (idleConn[C], bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return idleConn[C]{}, false, ErrClosed
	}
	n := len(p.idle)
	if n == 0 {
		return idleConn[C]{}, false, nil
	}
	// Newest first: the most recently used connection is the likeliest to
	// be alive, and the old ones age out through the probe.
	ic := p.idle[n-1]
	p.idle = p.idle[:n-1]
	return ic, true, nil
}

// Release returns the connection to the pool, or closes it when err says
// it is broken, when the lease's context aborted it, or when the pool is
// closed. err is the outcome of the last operation on it (nil if fine).
func (l *Lease[C]) Release(err error) {
	if l.released {
		return
	}
	l.released = true
	p := l.p
	stopped := l.stop()
	keep := stopped && !l.aborted.Load() && (err == nil || p.o.Broken == nil || !p.o.Broken(err))
	if keep {
		p.mu.Lock()
		if !p.closed {
			p.idle = append(p.idle, idleConn[C]{c: l.C, since: time.Now()})
		} else {
			keep = false
		}
		p.mu.Unlock()
	}
	if !keep {
		p.o.Close(l.C)
	}
	<-p.slots
}

// Discard closes the connection instead of returning it: the caller left
// it in a state the next user cannot trust (a transfer cut short).
func (l *Lease[C]) Discard() {
	if l.released {
		return
	}
	l.released = true
	l.stop()
	l.p.o.Close(l.C)
	<-l.p.slots
}

// Close closes the idle connections; leased ones close on release.
func (p *Pool[C]) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, ic := range idle {
		p.o.Close(ic.c)
	}
	return nil
}

// Do runs f on a leased connection and releases it with f's outcome.
func (p *Pool[C]) Do(ctx context.Context, f func(c C) error) error {
	l, err := p.Get(ctx)
	if err != nil {
		return err
	}
	err = f(l.C)
	l.Release(err)
	return err
}
