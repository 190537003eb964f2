// Package faultproxy is a fault-injecting HTTP reverse proxy for tests. It
// listens on 127.0.0.1 only and, at configured rates drawn from a seeded
// RNG, answers in the upstream's stead or spoils the upstream's answer:
//
//   - DropAfter: forwards the request (the upstream does the work), then
//     resets the client connection without answering.
//   - Delay: forwards, then holds the answer for DelayFor (set it past the
//     client's timeout).
//   - Throttle / ThrottleNoHeader: answers 429 with / without Retry-After,
//     without forwarding.
//   - ServerError: answers one of ServerErrorStatuses without forwarding.
//   - ServerErrorAfter: forwards, then answers 502 or 504 instead of the
//     upstream's answer (a gateway that lost the answer).
//
// Outage makes every request fail for a while. The proxy counts what it did.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Config sets the fault rates (each in [0,1]; their sum must not exceed 1).
type Config struct {
	Seed uint64

	DropAfter        float64
	Delay            float64
	DelayFor         time.Duration // default 2 s
	Throttle         float64
	ThrottleNoHeader float64
	RetryAfter       string // Retry-After value sent with Throttle; default "1"
	ServerError      float64
	// ServerErrorStatuses are chosen from uniformly; default 502, 503, 504.
	ServerErrorStatuses []int
	ServerErrorAfter    float64

	// Eligible, if set, limits faults to the requests it accepts (e.g. only
	// POSTs); others are forwarded untouched. Outages affect every request.
	Eligible func(*http.Request) bool
	// OutageStatus is what requests get during an outage; 0 resets the
	// connection without answering (and without forwarding).
	OutageStatus int
}

// Counts says what the proxy did. Requests = Forwarded + those answered or
// dropped without forwarding.
type Counts struct {
	Requests          int64
	Forwarded         int64 // reached the upstream
	Clean             int64 // forwarded and answered untouched
	DroppedAfter      int64
	Delayed           int64
	Throttled         int64 // 429 with Retry-After
	ThrottledNoHeader int64 // 429 without
	ServerErrors      int64 // answered 5xx without forwarding
	ServerErrorsAfter int64 // forwarded, then answered 5xx
	Outage            int64 // refused during an outage
	UpstreamErrors    int64 // the upstream could not be reached
}

// Faults is the number of requests that got any fault.
func (c Counts) Faults() int64 {
	return c.DroppedAfter + c.Delayed + c.Throttled + c.ThrottledNoHeader + c.ServerErrors + c.ServerErrorsAfter + c.Outage
}

// Proxy is a running fault proxy.
type Proxy struct {
	URL string // http://127.0.0.1:port

	cfg      Config
	upstream *url.URL
	srv      *httptest.Server
	tr       *http.Transport

	mu          sync.Mutex
	rng         *rand.Rand
	outageUntil time.Time

	requests, forwarded, clean, dropped, delayed, throttled, throttledNH,
	serverErrors, serverErrorsAfter, outage, upstreamErrors atomic.Int64
}

type fault int

const (
	none fault = iota
	dropAfter
	delay
	throttle
	throttleNoHeader
	serverError
	serverErrorAfter
)

// New starts a proxy in front of upstream (an http:// base URL).
func New(upstream string, cfg Config) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, errors.New("faultproxy: upstream must be an absolute URL")
	}
	sum := cfg.DropAfter + cfg.Delay + cfg.Throttle + cfg.ThrottleNoHeader + cfg.ServerError + cfg.ServerErrorAfter
	if sum > 1 {
		return nil, errors.New("faultproxy: fault rates add up to more than 1")
	}
	if cfg.DelayFor <= 0 {
		cfg.DelayFor = 2 * time.Second
	}
	if cfg.RetryAfter == "" {
		cfg.RetryAfter = "1"
	}
	if len(cfg.ServerErrorStatuses) == 0 {
		cfg.ServerErrorStatuses = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	}
	p := &Proxy{
		cfg:      cfg,
		upstream: u,
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		tr:       &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve)) // binds 127.0.0.1
	p.URL = p.srv.URL
	return p, nil
}

// Start is New for tests: it fails t on error and closes the proxy at cleanup.
func Start(t testing.TB, upstream string, cfg Config) *Proxy {
	t.Helper()
	p, err := New(upstream, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and waits for its handlers.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

// Outage makes every request fail for d from now.
func (p *Proxy) Outage(d time.Duration) {
	p.mu.Lock()
	p.outageUntil = time.Now().Add(d)
	p.mu.Unlock()
}

// Counts returns a snapshot of what the proxy did.
func (p *Proxy) Counts() Counts {
	return Counts{
		Requests: p.requests.Load(), Forwarded: p.forwarded.Load(), Clean: p.clean.Load(),
		DroppedAfter: p.dropped.Load(), Delayed: p.delayed.Load(),
		Throttled: p.throttled.Load(), ThrottledNoHeader: p.throttledNH.Load(),
		ServerErrors: p.serverErrors.Load(), ServerErrorsAfter: p.serverErrorsAfter.Load(),
		Outage: p.outage.Load(), UpstreamErrors: p.upstreamErrors.Load(),
	}
}

// pick draws the fault for one request; the RNG is shared, so the sequence
// is reproducible for a given seed and request order.
func (p *Proxy) pick(r *http.Request) (f fault, status int, inOutage bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.outageUntil) {
		return none, 0, true
	}
	if p.cfg.Eligible != nil && !p.cfg.Eligible(r) {
		return none, 0, false
	}
	x := p.rng.Float64()
	for _, c := range []struct {
		f    fault
		rate float64
	}{
		{dropAfter, p.cfg.DropAfter}, {delay, p.cfg.Delay}, {throttle, p.cfg.Throttle},
		{throttleNoHeader, p.cfg.ThrottleNoHeader}, {serverError, p.cfg.ServerError},
		{serverErrorAfter, p.cfg.ServerErrorAfter},
	} {
		if x < c.rate {
			switch c.f {
			case serverError:
				status = p.cfg.ServerErrorStatuses[p.rng.IntN(len(p.cfg.ServerErrorStatuses))]
			case serverErrorAfter:
				status = []int{http.StatusBadGateway, http.StatusGatewayTimeout}[p.rng.IntN(2)]
			}
			return c.f, status, false
		}
		x -= c.rate
	}
	return none, 0, false
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	f, status, inOutage := p.pick(r)
	if inOutage {
		p.outage.Add(1)
		if p.cfg.OutageStatus != 0 {
			http.Error(w, "outage", p.cfg.OutageStatus)
			return
		}
		io.Copy(io.Discard, r.Body)
		reset(w)
		return
	}
	switch f {
	case throttle:
		p.throttled.Add(1)
		w.Header().Set("Retry-After", p.cfg.RetryAfter)
		writeJSON(w, http.StatusTooManyRequests, `{"errors":["Rate limit exceeded (injected)"]}`)
		return
	case throttleNoHeader:
		p.throttledNH.Add(1)
		writeJSON(w, http.StatusTooManyRequests, `{"errors":["Rate limit exceeded (injected)"]}`)
		return
	case serverError:
		p.serverErrors.Add(1)
		writeJSON(w, status, `{"errors":["injected server error"]}`)
		return
	}

	resp, body, err := p.forward(r)
	if err != nil {
		p.upstreamErrors.Add(1)
		writeJSON(w, http.StatusBadGateway, `{"errors":["upstream unreachable"]}`)
		return
	}
	p.forwarded.Add(1)
	switch f {
	case dropAfter:
		p.dropped.Add(1)
		reset(w)
		return
	case serverErrorAfter:
		p.serverErrorsAfter.Add(1)
		writeJSON(w, status, `{"errors":["injected gateway error after forwarding"]}`)
		return
	case delay:
		p.delayed.Add(1)
		t := time.NewTimer(p.cfg.DelayFor)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	default:
		p.clean.Add(1)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

// forward sends r upstream and reads the whole answer, so the upstream has
// finished its work before any fault is applied to the client side.
func (p *Proxy) forward(r *http.Request) (*http.Response, []byte, error) {
	in, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, nil, err
	}
	u := *p.upstream
	u.Path = r.URL.Path
	u.RawPath = r.URL.RawPath
	u.RawQuery = r.URL.RawQuery
	// Detached from the client: the upstream finishes even if the client
	// has given up, as a real server behind a dead connection would.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(in))
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range r.Header {
		out.Header[k] = vs
	}
	out.Header.Del("Connection")
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	resp.Header.Del("Content-Length")
	resp.Header.Del("Connection")
	return resp, body, nil
}

// reset closes the client connection with a TCP RST and no answer.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}
