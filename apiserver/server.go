// Package apiserver is ihr-api: a self-hostable implementation of Coupa's
// Integration History Records API (routes and the behaviours we chose:
// docs/ihr-api.md and apiserver/README.md), with the minimal
// integrations and integration-runs resources records point at, OAuth 2.0
// client credentials and the legacy X-COUPA-API-KEY, JSON and Rails-style
// XML, Coupa's query syntax, SQLite (default) or PostgreSQL storage.
//
// Every action runs in one database transaction, so a failed call changes
// nothing, and bad input is always a 4xx, never a 500.
package apiserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// DefaultMaxBodyBytes is the request body limit when Config leaves it 0.
const DefaultMaxBodyBytes = 1 << 20

// Config configures a Server. The zero value serves a SQLite file
// ihr-api.db in the working directory and accepts no credentials.
type Config struct {
	// DB is "sqlite:PATH" or a "postgres://…" DSN.
	DB string
	// APIKeys are accepted in X-COUPA-API-KEY, with read and write scope.
	APIKeys []string
	// OAuthClients maps client id → secret for POST /oauth2/token.
	OAuthClients map[string]string
	// RateLimit is requests per second per credential; 0 disables it.
	RateLimit float64
	// Burst is the token-bucket size; 0 means max(1, RateLimit).
	Burst int
	// Strict ignores integration_filename on input, as Coupa's element page says.
	Strict bool
	// MaxBodyBytes bounds request bodies (413 beyond); 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// AuthFailures is how many failed authentications one client address
	// may make in a burst (refilled at as many per minute) before it gets
	// 429; 0 means DefaultAuthFailures, < 0 disables the limit.
	AuthFailures int
	// MaxTokensPerClient bounds the live access tokens of one OAuth
	// client (the oldest is revoked); 0 means DefaultMaxTokensPerClient.
	MaxTokensPerClient int
	// SmallBodyTimeout is the deadline for the body of /oauth2/token;
	// 0 means DefaultSmallBodyTimeout.
	SmallBodyTimeout time.Duration
	// RequestTimeout bounds a request's work, its database waits among
	// them: past it the answer is 503, which clients retry after checking
	// whether a create landed. 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives request and error logs; nil discards them.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now. Tests use it to control timestamps.
	Now func() time.Time

	// wrapConn wraps the database connector; tests count statements with it.
	wrapConn func(driver.Connector) driver.Connector
}

// Server is one ihr-api instance. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *zap.Logger
	st      *store
	now     func() time.Time
	handler http.Handler

	apiKeys map[string]principal // key → principal
	clients map[string]string    // OAuth client id → secret
	userIDs map[string]int64     // login → users.id for configured credentials

	tokMu  sync.Mutex
	tokens map[string]cachedToken // sha256(token) → cached validation

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter

	guard *authGuard // failed authentications per client address; nil: off

	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New opens the database, applies migrations and prepares the handler.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.AuthFailures == 0 {
		cfg.AuthFailures = DefaultAuthFailures
	}
	if cfg.MaxTokensPerClient <= 0 {
		cfg.MaxTokensPerClient = DefaultMaxTokensPerClient
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.SmallBodyTimeout <= 0 {
		cfg.SmallBodyTimeout = DefaultSmallBodyTimeout
	}
	if cfg.RateLimit > 0 && cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.RateLimit))
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		apiKeys:  map[string]principal{},
		clients:  map[string]string{},
		userIDs:  map[string]int64{},
		tokens:   map[string]cachedToken{},
		limiters: map[string]*rate.Limiter{},
		guard:    newAuthGuard(cfg.AuthFailures),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	st, err := openStore(ctx, cfg.DB, cfg.wrapConn)
	if err != nil {
		return nil, err
	}
	s.st = st
	for id, secret := range cfg.OAuthClients {
		if id == "" || secret == "" {
			st.close()
			return nil, errors.New("apiserver: OAuth client id and secret must not be empty")
		}
		s.clients[id] = secret
		if err := s.ensureUser(ctx, id); err != nil {
			st.close()
			return nil, err
		}
	}
	for _, k := range cfg.APIKeys {
		if k == "" {
			continue
		}
		login := apiKeyLogin(k)
		if err := s.ensureUser(ctx, login); err != nil {
			st.close()
			return nil, err
		}
		s.apiKeys[k] = principal{login: login, userID: s.userIDs[login], read: true, write: true}
	}
	// The user in-process administration acts as (seed.go).
	if err := s.ensureUser(ctx, adminLogin); err != nil {
		st.close()
		return nil, err
	}
	s.initMetrics()
	s.handler = s.routes()
	return s, nil
}

// apiKeyLogin names the user behind an API key without revealing it: a
// short hash is stable across restarts and safe to log and to store.
func apiKeyLogin(key string) string {
	h := sha256.Sum256([]byte(key))
	return "api-key-" + hex.EncodeToString(h[:4])
}

func (s *Server) ensureUser(ctx context.Context, login string) error {
	d := s.st.d
	if _, err := s.st.w.ExecContext(ctx, d.q(`INSERT INTO users (login) VALUES (?) ON CONFLICT (login) DO NOTHING`), login); err != nil {
		return fmt.Errorf("apiserver: user %s: %w", login, err)
	}
	var id int64
	if err := s.st.w.QueryRowContext(ctx, d.q(`SELECT id FROM users WHERE login = ?`), login).Scan(&id); err != nil {
		return fmt.Errorf("apiserver: user %s: %w", login, err)
	}
	s.userIDs[login] = id
	return nil
}

// Handler serves the whole API.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases the database.
func (s *Server) Close() error { return s.st.close() }

// Dialect reports the storage engine in use: "sqlite" or "postgres".
func (s *Server) Dialect() string { return s.st.d.String() }

func (s *Server) initMetrics() {
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ihr_api_requests_total",
		Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ihr_api_request_duration_seconds",
		Help:    "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	s.reg.MustRegister(s.requests, s.latency)
	// Group commit on SQLite: writes over commits is the batch size.
	s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ihr_api_sqlite_commits_total",
		Help: "SQLite group commits (one transaction each); 0 on PostgreSQL.",
	}, func() float64 { return float64(s.st.nBatches.Load()) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ihr_api_sqlite_writes_total",
		Help: "Units of work (one request's writes each) committed in SQLite group commits; 0 on PostgreSQL.",
	}, func() float64 { return float64(s.st.nUnits.Load()) }))
}

// scope is what a route needs from the caller.
type scope int

const (
	scopeNone scope = iota // public: healthz, metrics, token
	scopeRead
	scopeWrite
)

// Scope names as Coupa's OAuth server grants them.
const (
	ScopeRead  = "core.integration.read"
	ScopeWrite = "core.integration.write"
)

type ctxKey struct{}

// principal is the authenticated caller.
type principal struct {
	login       string
	userID      int64
	read, write bool
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(ctxKey{}).(principal)
	return p
}

// statusWriter records the status for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the body
// deadline of /oauth2/token).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// handle registers pattern with auth, rate limiting, metrics and panic
// recovery around h. route is the metrics label.
func (s *Server) handle(mux *http.ServeMux, pattern, route string, need scope, h http.HandlerFunc) {
	resource := resourceFor(route)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic", zap.String("route", route), zap.Any("panic", v), zap.Stack("stack"))
				if sw.code == 0 {
					writeError(sw, r, http.StatusInternalServerError, resource, "Internal error")
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			d := time.Since(start)
			s.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			s.latency.WithLabelValues(route).Observe(d.Seconds())
			if code >= 500 {
				s.log.Error("request", zap.String("method", r.Method), zap.String("route", route), zap.Int("status", code), zap.Duration("took", d))
			} else if s.log.Core().Enabled(zap.DebugLevel) {
				s.log.Debug("request", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", code), zap.Duration("took", d))
			}
		}()
		if lp, ok := r.Context().Value(localKey{}).(principal); ok {
			// In-process administration (seed.go): no credential, no
			// rate limit.
			h(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, lp)))
			return
		}
		if need != scopeNone {
			// Limit guessing before looking at the credentials: a blocked
			// address learns nothing, right secret or not.
			addr := clientAddr(r.RemoteAddr)
			if wait, blocked := s.guard.blocked(addr, time.Now()); blocked {
				dropBody(sw, r)
				tooManyFailures(sw, r, resource, wait, false)
				return
			}
			p, ok := s.authenticate(r)
			if !ok {
				if r.Header.Get("X-COUPA-API-KEY") != "" || r.Header.Get("Authorization") != "" {
					s.guard.failed(addr, time.Now())
				}
				dropBody(sw, r)
				sw.Header().Set("WWW-Authenticate", bearerChallenge(r))
				writeError(sw, r, http.StatusUnauthorized, resource, "Invalid or missing credentials: send X-COUPA-API-KEY or Authorization: Bearer <token>")
				return
			}
			if s.cfg.RateLimit > 0 {
				if wait, ok := s.allow(p.login); !ok {
					dropBody(sw, r)
					sw.Header().Set("Retry-After", strconv.Itoa(wait))
					writeError(sw, r, http.StatusTooManyRequests, resource, "Rate limit exceeded; retry after "+strconv.Itoa(wait)+" seconds")
					return
				}
			}
			if (need == scopeRead && !p.read) || (need == scopeWrite && !p.write) {
				want := ScopeRead
				if need == scopeWrite {
					want = ScopeWrite
				}
				dropBody(sw, r)
				sw.Header().Set("WWW-Authenticate", scopeChallenge(want))
				writeError(sw, r, http.StatusForbidden, resource, "The access token lacks the scope "+want)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, p))
		}
		h(sw, r)
	})
}

// dropBody is for answers given without reading the request's body
// (refused credentials, throttling). net/http would otherwise read up to
// 256 KiB of it after the answer, to reuse the connection, for as long as
// the server's read timeout: any client, without credentials, could hold
// connections open with slow bodies. The connection closes instead.
func dropBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// resourceFor names the resource of a route in error bodies.
func resourceFor(route string) string {
	switch {
	case strings.HasPrefix(route, "records."):
		return recordRoot
	case strings.HasPrefix(route, "integrations."):
		return integrationRoot
	case strings.HasPrefix(route, "runs."):
		return runRoot
	case route == "sandbox.alerts":
		return "alert"
	case route == "sandbox.documents":
		return "document"
	}
	return route
}

// allow takes one token from the caller's bucket; when empty it returns
// the whole seconds until one is available (at least 1).
func (s *Server) allow(key string) (int, bool) {
	s.limMu.Lock()
	l, ok := s.limiters[key]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), s.cfg.Burst)
		s.limiters[key] = l
	}
	s.limMu.Unlock()
	now := time.Now()
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return 1, false
	}
	d := res.DelayFrom(now)
	if d == 0 {
		return 0, true
	}
	res.CancelAt(now)
	secs := int((d + time.Second - 1) / time.Second)
	return max(1, secs), false
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	const ihr = "/api/integration_history_records"
	s.handle(mux, "POST "+ihr, "records.create", scopeWrite, s.recordCreate("create"))
	s.handle(mux, "POST "+ihr+"/{action}", "records.action", scopeWrite, s.recordAction)
	s.handle(mux, "GET "+ihr, "records.index", scopeRead, records.index(s))
	s.handle(mux, "GET "+ihr+"/{id}", "records.show", scopeRead, records.show(s))
	s.handle(mux, "PUT "+ihr+"/{id}", "records.update", scopeWrite, s.recordUpdate())
	s.handle(mux, "PATCH "+ihr+"/{id}", "records.update", scopeWrite, s.recordUpdate())
	s.handle(mux, "PUT "+ihr+"/{id}/resolve", "records.resolve", scopeWrite, s.recordResolve(true))
	s.handle(mux, "PUT "+ihr+"/{id}/unresolve", "records.unresolve", scopeWrite, s.recordResolve(false))

	s.handle(mux, "POST /api/integrations", "integrations.create", scopeWrite, s.integrationCreate())
	s.handle(mux, "GET /api/integrations", "integrations.index", scopeRead, integrations.index(s))
	s.handle(mux, "GET /api/integrations/{id}", "integrations.show", scopeRead, integrations.show(s))
	s.handle(mux, "PUT /api/integrations/{id}", "integrations.update", scopeWrite, s.integrationUpdate())
	s.handle(mux, "PATCH /api/integrations/{id}", "integrations.update", scopeWrite, s.integrationUpdate())

	s.handle(mux, "POST /api/integration_runs", "runs.create", scopeWrite, s.runCreate())
	s.handle(mux, "GET /api/integration_runs", "runs.index", scopeRead, runs.index(s))
	s.handle(mux, "GET /api/integration_runs/{id}", "runs.show", scopeRead, runs.show(s))
	s.handle(mux, "PUT /api/integration_runs/{id}", "runs.update", scopeWrite, s.runChange(""))
	s.handle(mux, "PATCH /api/integration_runs/{id}", "runs.update", scopeWrite, s.runChange(""))
	s.handle(mux, "PUT /api/integration_runs/{id}/{transition}", "runs.transition", scopeWrite, s.runTransition)

	s.handle(mux, "GET /sandbox/alerts", "sandbox.alerts", scopeRead, s.sandboxAlerts)
	s.handle(mux, "GET /sandbox/documents", "sandbox.documents", scopeRead, s.sandboxDocuments)

	s.handle(mux, "POST /oauth2/token", "oauth2.token", scopeNone, s.token)
	s.handle(mux, "GET /healthz", "healthz", scopeNone, s.healthz)
	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	s.handle(mux, "GET /metrics", "metrics", scopeNone, metrics.ServeHTTP)
	s.handle(mux, "/", "notfound", scopeNone, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "route", "No route matches "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.st.r.PingContext(ctx); err != nil {
		s.log.Warn("healthz: database unreachable", zap.Error(err))
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// writeError answers with Coupa's error shape:
// {"errors":{"<resource>":[msgs…]}} or <errors><error>…</error></errors>.
func writeError(w http.ResponseWriter, r *http.Request, code int, resource string, msgs ...string) {
	var b bytes.Buffer
	f := negotiate(r.Header.Get("Accept"))
	if f == formatXML {
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<errors>\n")
		for _, m := range msgs {
			b.WriteString("  <error>")
			xmlEscape(&b, m)
			b.WriteString("</error>\n")
		}
		b.WriteString("</errors>\n")
	} else {
		list := make([]any, len(msgs))
		for i, m := range msgs {
			list[i] = m
		}
		encodeJSON(&b, object{{"errors", object{{resource, list}}}})
	}
	w.Header().Set("Content-Type", f.contentType())
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(code)
	w.Write(b.Bytes())
}
