package apiserver

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the abuse limits, when Config leaves them 0.
const (
	// DefaultAuthFailures is how many failed authentications (wrong API
	// key, unknown or expired bearer token, wrong client secret) one
	// client address may make in a burst; they come back at this many per
	// minute. Beyond, every authenticated route and /oauth2/token answer
	// that address 429 until the budget refills, right secret or not, so
	// guessing gains nothing from going faster.
	DefaultAuthFailures = 10
	// DefaultMaxTokensPerClient bounds the live access tokens of one
	// OAuth client; minting one more revokes the oldest.
	DefaultMaxTokensPerClient = 20
	// DefaultRequestTimeout is below cmd/ihr-api's write timeout (60 s),
	// so a request that runs out still gets its 503 through.
	DefaultRequestTimeout = 50 * time.Second
	// DefaultSmallBodyTimeout is how long the body of /oauth2/token (at
	// most 64 KiB) may take to arrive.
	DefaultSmallBodyTimeout = 5 * time.Second
	// DefaultMaxConns and DefaultMaxConnsPerAddr are LimitListener's
	// bounds in ihr-api; per address, room for one worker at its largest
	// api.concurrency (256).
	DefaultMaxConns        = 1024
	DefaultMaxConnsPerAddr = 256
)

// clientAddr is the address limits are kept per: the remote IP, or its
// /64 for IPv6, where one host commonly holds a whole /64.
func clientAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		host, _, _ := net.SplitHostPort(remote)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// authGuard counts failed authentications per client address in token
// buckets (burst n, n per minute). It forgets an address whose bucket is
// full again, so its memory is bounded by the addresses failing right now.
type authGuard struct {
	n     int
	mu    sync.Mutex
	addrs map[netip.Addr]*rate.Limiter
	adds  int // inserts since the last sweep
}

func newAuthGuard(n int) *authGuard {
	if n <= 0 {
		return nil
	}
	return &authGuard{n: n, addrs: map[netip.Addr]*rate.Limiter{}}
}

// blocked reports whether addr has no failures left, and for how many
// whole seconds (at least 1) that remains so.
func (g *authGuard) blocked(addr netip.Addr, now time.Time) (int, bool) {
	if g == nil {
		return 0, false
	}
	g.mu.Lock()
	l := g.addrs[addr]
	g.mu.Unlock()
	if l == nil {
		return 0, false
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	wait := time.Duration((1 - tokens) / float64(l.Limit()) * float64(time.Second))
	return max(1, int((wait+time.Second-1)/time.Second)), true
}

// failed spends one failure of addr.
func (g *authGuard) failed(addr netip.Addr, now time.Time) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.addrs[addr]
	if l == nil {
		if g.adds++; g.adds >= 1024 {
			g.sweep(now)
		}
		l = rate.NewLimiter(rate.Limit(float64(g.n)/60), g.n)
		g.addrs[addr] = l
	}
	l.AllowN(now, 1)
}

// sweep drops addresses whose bucket has refilled: they are
// indistinguishable from ones never seen.
func (g *authGuard) sweep(now time.Time) {
	g.adds = 0
	for a, l := range g.addrs {
		if l.TokensAt(now) >= float64(g.n) {
			delete(g.addrs, a)
		}
	}
}

// LimitListener bounds the connections ln hands out: at most total open
// at once (Accept waits for one to close, leaving the rest in the kernel's
// backlog) and at most perAddr from one client address (more are closed
// at once). Zero or less disables a bound.
func LimitListener(ln net.Listener, total, perAddr int) net.Listener {
	l := &limitListener{Listener: ln, perAddr: perAddr, open: map[netip.Addr]int{}, done: make(chan struct{})}
	if total > 0 {
		l.sem = make(chan struct{}, total)
	}
	return l
}

type limitListener struct {
	net.Listener
	sem     chan struct{}
	perAddr int

	mu   sync.Mutex
	open map[netip.Addr]int

	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if l.sem != nil {
			select {
			case l.sem <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		addr := clientAddr(c.RemoteAddr().String())
		l.mu.Lock()
		over := l.perAddr > 0 && l.open[addr] >= l.perAddr
		if !over {
			l.open[addr]++
		}
		l.mu.Unlock()
		if over {
			c.Close()
			l.release()
			continue
		}
		return &limitConn{Conn: c, l: l, addr: addr}, nil
	}
}

func (l *limitListener) release() {
	if l.sem != nil {
		<-l.sem
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	l    *limitListener
	addr netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.addr]--; c.l.open[c.addr] <= 0 {
			delete(c.l.open, c.addr)
		}
		c.l.mu.Unlock()
		c.l.release()
	})
	return err
}

// tooManyFailures answers 429 for an address out of authentication
// attempts.
func tooManyFailures(w http.ResponseWriter, r *http.Request, resource string, wait int, oauth bool) {
	w.Header().Set("Retry-After", strconv.Itoa(wait))
	msg := "Too many failed authentication attempts from this address; retry after " + strconv.Itoa(wait) + " seconds"
	if oauth {
		oauthError(w, http.StatusTooManyRequests, "temporarily_unavailable", msg)
		return
	}
	writeError(w, r, http.StatusTooManyRequests, resource, msg)
}
