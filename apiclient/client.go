// Package apiclient is the worker's only way to Coupa's Integration History
// Records API or to our ihr-api: a typed client for every record action,
// integrations and integration runs.
//
// Contracts the rest of the worker relies on:
//   - Every attempt (first tries, retries, lookups, token fetches) waits for
//     one token of a rate budget shared by every goroutine using the Client
//     (and by other Clients given the same Config.Limiter).
//   - Only transient outcomes are retried: connection errors, timeouts, 429,
//     502, 503 and 504, with exponential backoff and full jitter, honouring
//     Retry-After. Everything else comes back at once as an *Error.
//   - A POST that creates a record is never blindly re-sent once its outcome
//     is unknown (the request was written but no answer came, or a gateway
//     answered 502/503/504): the record is looked up first and created only
//     if absent; if found, Create returns it with ErrAlreadyRecorded.
//
// JSON goes out with hyphenated keys; both spellings are accepted in.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/ihr-tools/ihr/record"
)

// Defaults. These are the worker's too: its configuration (api.rate_limit,
// api.timeout, api.max_retries, api.concurrency) and the importer take
// them from here, so each lives in one place.
const (
	// DefaultRateLimit is requests per second, all callers of one Client
	// together: below Coupa's documented 25, leaving room for other
	// integrations on the same instance.
	DefaultRateLimit = 20
	// DefaultTimeout bounds one attempt. Coupa can take tens of seconds on
	// a loaded instance; a timed-out POST costs a lookup and a re-send.
	DefaultTimeout    = 60 * time.Second
	DefaultMaxRetries = 6
	// DefaultConcurrency is how many calls a caller keeps in flight per
	// file (the importer's Config.Concurrency); the Client does not bound
	// it.
	DefaultConcurrency = 4
	DefaultMinBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second

	// maxBody bounds what we read of one answer. An index page of 50
	// records at ihr-api's response cap (1 000 responses, 1 MiB of text
	// each) is about 60 MB of JSON; Coupa's records are far smaller.
	maxBody = 96 << 20
)

// DefaultBurst is the burst for a rate when none is given: one second's
// worth of requests, rounded up (at least 1).
func DefaultBurst(rate float64) int {
	b := int(math.Ceil(rate))
	return max(b, 1)
}

// Limiter is the rate budget. *rate.Limiter satisfies it; so can a limiter
// shared between processes (e.g. backed by PostgreSQL). Wait blocks until
// one request may be sent or ctx ends.
type Limiter interface {
	Wait(ctx context.Context) error
}

// NewLimiter returns a token bucket of rps requests per second with the
// given burst, for sharing between Clients through Config.Limiter.
// rps < 0 means no limit.
//
// It holds one token of the burst in reserve: requests reach the server
// after varying network delays, so two sent 40 ms apart may arrive 39 ms
// apart, and a server whose bucket equals our budget exactly would answer
// 429. One token of slack absorbs any jitter under 1/rps.
func NewLimiter(rps float64, burst int) Limiter {
	if rps < 0 {
		return rate.NewLimiter(rate.Inf, 1)
	}
	return rate.NewLimiter(rate.Limit(rps), max(burst-1, 1))
}

// OAuthConfig selects OAuth 2.0 client credentials.
type OAuthConfig struct {
	TokenURL     string // default BaseURL + "/oauth2/token"
	ClientID     string
	ClientSecret string
	Scopes       []string
	// AuthMethod is how the id and secret reach the token endpoint:
	// AuthPost (default; form fields, as Coupa documents them) or
	// AuthBasic (HTTP Basic, form-urlencoded first as RFC 6749 §2.3.1
	// says, so ids and secrets with + % @ : / arrive intact).
	AuthMethod string
	// EarlyRefresh renews a token this long before it expires, so no
	// request goes out with a token about to die. Default 60 s.
	EarlyRefresh time.Duration
}

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	BaseURL string // e.g. https://acme.coupahost.com (no /api suffix)

	// Exactly one of APIKey (sent as X-COUPA-API-KEY) and OAuth.
	APIKey string
	OAuth  *OAuthConfig

	// RateLimit is the budget in requests per second (default
	// DefaultRateLimit; < 0: no limit) with Burst (default DefaultBurst of
	// the rate). Ignored when Limiter is set.
	RateLimit float64
	Burst     int
	Limiter   Limiter

	Timeout    time.Duration // per attempt; default DefaultTimeout
	MaxRetries int           // retries after the first attempt; default DefaultMaxRetries; < 0: none
	MinBackoff time.Duration // first backoff cap; default 250 ms
	MaxBackoff time.Duration // largest backoff cap; default 30 s

	// CreateFields trims Create's answers to these elements with Coupa's
	// fields parameter (allowed on POST too), so neither side spends time
	// on elements the caller drops: the worker keeps only the id. "id" and
	// "integration-filename", which the client reads itself, are always
	// asked for. Nil: whole records.
	CreateFields []string

	// HTTPClient sends the requests (default: a pooled transport sized for
	// concurrency, verifying with RootCAs). Its CheckRedirect is replaced:
	// the client never follows a redirect (see New).
	HTTPClient *http.Client
	// RootCAs verifies the server's certificate instead of the system
	// roots (the worker's api.ca_file); ignored when HTTPClient is set.
	RootCAs   *x509.CertPool
	UserAgent string   // default "ihr-worker/<module version>"
	Observer  Observer // optional metrics hook
}

// Client talks to one API. It is safe for concurrent use; share one per
// process so the rate budget and OAuth token are shared too.
type Client struct {
	base    *url.URL
	cfg     Config
	hc      *http.Client
	limiter Limiter
	auth    authenticator
	log     *zap.Logger
	obs     Observer

	// filenameStored learns whether the server keeps integration_filename
	// (ours does unless strict; Coupa does not), so lookups use one query
	// instead of two once known.
	filenameStored atomic.Int32 // 0 unknown, 1 stored, 2 not stored

	lookups lookupQueue // lookups waiting to be asked together (lookup.go)

	createQuery string // fields= for Create, from Config.CreateFields, encoded once
	// createSlim: Create asks for no more than id and integration-filename,
	// so its answer is decoded into those two alone (createAnswer).
	createSlim bool
	userAgent  []string // the User-Agent header's value
	// baseURL is base as a string without a trailing slash, so a request's
	// URL is one concatenation rather than a URL copy and String per call.
	baseURL string
}

// New builds a Client. It makes no request.
func New(cfg Config, log *zap.Logger) (*Client, error) {
	if log == nil {
		log = zap.NewNop()
	}
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("apiclient: base URL %q must be an absolute http(s) URL", cfg.BaseURL)
	}
	if cfg.APIKey != "" && cfg.OAuth != nil {
		return nil, errors.New("apiclient: set either an API key or OAuth, not both")
	}
	if cfg.APIKey == "" && cfg.OAuth == nil {
		return nil, errors.New("apiclient: no credentials: set an API key or OAuth")
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst(cfg.RateLimit)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "ihr-worker/" + moduleVersion()
	}
	c := &Client{base: u, cfg: cfg, log: log, obs: cfg.Observer, userAgent: []string{cfg.UserAgent}}
	bu := *u
	bu.Path = strings.TrimRight(bu.Path, "/")
	bu.RawPath = ""
	bu.RawQuery, bu.Fragment = "", ""
	c.baseURL = bu.String()
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		c.hc = &hc
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The default of 2 idle connections per host makes concurrent
		// posting churn through connections (and TIME_WAIT sockets).
		t.MaxIdleConnsPerHost = 64
		if cfg.RootCAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		c.hc = &http.Client{Transport: t}
	}
	// Never follow a redirect: Go strips Authorization on a cross-host
	// redirect but not X-COUPA-API-KEY, and a token request would carry
	// the client secret (and any request the record) to wherever Location
	// points. The 3xx comes back as an error naming the Location instead.
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if len(cfg.CreateFields) > 0 {
		fields := []string{"id", "integration-filename"}
		for _, f := range cfg.CreateFields {
			if f = record.NormalizeKey(f); !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
		b, _ := json.Marshal(fields) // strings always marshal
		c.createQuery = url.Values{"fields": {string(b)}}.Encode()
		c.createSlim = len(fields) == 2
	}
	c.limiter = cfg.Limiter
	if c.limiter == nil {
		c.limiter = NewLimiter(cfg.RateLimit, cfg.Burst)
	}
	if cfg.OAuth != nil {
		a, err := newOAuth(c, *cfg.OAuth)
		if err != nil {
			return nil, err
		}
		c.auth = a
	} else {
		c.auth = apiKeyAuth{[]string{cfg.APIKey}}
	}
	return c, nil
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Observer receives one event per HTTP attempt, so the worker can feed
// Prometheus without this package importing it. It must be cheap and safe for
// concurrent use.
type Observer interface {
	RequestDone(RequestInfo)
}

// RequestInfo describes one finished attempt.
type RequestInfo struct {
	Action    string        // "create", "mark_exported", "index", "show", "lookup", "token", …
	Method    string        // HTTP method
	Status    int           // HTTP status; 0 when no answer came
	Duration  time.Duration // the attempt alone, without the rate-limit wait
	Waited    time.Duration // time spent waiting for the rate budget
	Attempt   int           // 0 for the first try
	Retry     bool          // the outcome was transient and another attempt follows
	Throttled bool          // the server answered 429
	Err       error         // transport error, if any
}

// call is one logical request, possibly sent several times.
type call struct {
	action string
	method string
	path   string // below the base URL, starting with /
	query  url.Values
	// rawQuery, if set, is sent instead of query: a query encoded once
	// for many calls.
	rawQuery string
	body     []byte // JSON; nil for none
	// onUnknown runs before re-sending a non-idempotent request whose
	// previous outcome is unknown, in place of the retry's backoff: it
	// waits wait itself (a lookup gathers other calls' lookups meanwhile,
	// see lookup.go). found=true ends the call with errFound.
	onUnknown func(ctx context.Context, wait time.Duration) (found bool, err error)
}

// errFound ends a call whose onUnknown hook found the work already done.
var errFound = errors.New("apiclient: found by lookup")

// headerJSON is the value of Accept and Content-Type, shared by every
// request (nothing in net/http writes into a header's value slice).
var headerJSON = []string{"application/json"}

// outcome of one attempt.
type outcome struct {
	status     int
	body       []byte
	err        error // transport error
	wrote      bool  // the request reached the wire completely
	retryAfter time.Duration
	hasRA      bool
	auth       string // the Authorization header sent, for invalidation
	authErr    *Error // the token endpoint refused our credentials
	fatal      bool   // err is final (the rate budget cannot be had in time)
	location   string // Location of a 3xx answer, which is never followed
}

func (o *outcome) transient() bool {
	if o.err != nil {
		return true
	}
	switch o.status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// unknown reports whether the server may have done the work although we
// cannot tell: the request was written and no answer came, or a gateway
// answered in the server's stead. 429 is a refusal, so it is known.
func (o *outcome) unknown() bool {
	if o.err != nil {
		return o.wrote
	}
	switch o.status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// do runs c with retries and decodes a 2xx JSON answer into out (if non-nil).
func (cl *Client) do(ctx context.Context, c *call, out any) error {
	// Without a lookup hook a request is safe to repeat (GET, state
	// transitions) or its duplicate is harmless (a pending integration run).
	idempotent := c.onUnknown == nil
	reauthed := false
	unknown := false
	var wait time.Duration // backoff still owed by a pending lookup
	var last outcome
	for attempt := 0; ; attempt++ {
		if unknown && !idempotent && c.onUnknown != nil {
			found, err := c.onUnknown(ctx, wait)
			if err != nil {
				return cl.fail(c, &last, fmt.Errorf("outcome unknown and lookup failed: %w", err))
			}
			if found {
				return errFound
			}
			unknown = false
		}
		if attempt > cl.cfg.MaxRetries {
			break
		}
		last = cl.attempt(ctx, c, attempt)
		if ctx.Err() != nil {
			return cl.fail(c, &last, ctx.Err())
		}
		if last.fatal {
			return cl.fail(c, &last, nil)
		}
		switch {
		case last.err == nil && last.status >= 200 && last.status < 300:
			if out != nil && len(bytes.TrimSpace(last.body)) > 0 {
				if err := decode(last.body, out); err != nil {
					return &Error{Status: last.status, Method: c.method, Path: c.path,
						Messages: []string{"undecodable answer: " + err.Error()}, Err: err}
				}
			}
			return nil
		case last.status == http.StatusUnauthorized && !reauthed && cl.auth.invalidate(last.auth):
			// A revoked or expired token: fetch a new one and try once more.
			reauthed = true
			attempt--
			continue
		case !last.transient():
			return cl.fail(c, &last, nil)
		}
		if last.unknown() {
			unknown = true
		}
		if attempt >= cl.cfg.MaxRetries {
			wait = 0
			continue // loop once more so a pending lookup runs, then stop
		}
		wait = cl.backoff(attempt, &last)
		cl.log.Debug("apiclient: transient failure, retrying",
			zap.String("method", c.method), zap.String("path", c.path),
			zap.Int("status", last.status), zap.NamedError("cause", last.err),
			zap.Int("attempt", attempt), zap.Duration("wait", wait))
		if unknown && !idempotent {
			// No sleep here: the lookup waits (see onUnknown). There is no
			// settle time either (see lookup.go for why none is needed).
			continue
		}
		if err := sleep(ctx, wait); err != nil {
			return cl.fail(c, &last, err)
		}
	}
	cl.log.Warn("apiclient: giving up after retries",
		zap.String("method", c.method), zap.String("path", c.path),
		zap.Int("status", last.status), zap.NamedError("cause", last.err),
		zap.Int("attempts", cl.cfg.MaxRetries+1))
	return cl.fail(c, &last, nil)
}

// attempt sends c once: rate token, auth, per-attempt timeout.
func (cl *Client) attempt(ctx context.Context, c *call, n int) (o outcome) {
	t0 := time.Now()
	info := RequestInfo{Action: c.action, Method: c.method, Attempt: n}
	defer func() {
		if cl.obs != nil {
			info.Status = o.status
			info.Err = o.err
			info.Throttled = o.status == http.StatusTooManyRequests
			info.Retry = o.transient() && n < cl.cfg.MaxRetries
			cl.obs.RequestDone(info)
		}
	}()
	if err := cl.limiter.Wait(ctx); err != nil {
		// The wait would outlast ctx: no point in retrying. Say so in
		// terms callers already test for.
		if ctx.Err() == nil {
			err = fmt.Errorf("%w: the rate budget allows no request before it (%v)", context.DeadlineExceeded, err)
		}
		return outcome{err: err, fatal: true}
	}
	info.Waited = time.Since(t0)
	t1 := time.Now()
	defer func() { info.Duration = time.Since(t1) }()

	actx, cancel := context.WithTimeout(ctx, cl.cfg.Timeout)
	defer cancel()
	target := cl.baseURL + c.path
	if c.rawQuery != "" {
		target += "?" + c.rawQuery
	} else if len(c.query) > 0 {
		target += "?" + c.query.Encode()
	}
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(actx, c.method, target, body)
	if err != nil {
		return outcome{err: err}
	}
	// Header values are shared, read-only slices: Set would allocate one
	// per header and request.
	req.Header["Accept"] = headerJSON
	req.Header["User-Agent"] = cl.userAgent
	if c.body != nil {
		req.Header["Content-Type"] = headerJSON
	}
	if err := cl.auth.apply(actx, req); err != nil {
		var e *Error
		if errors.As(err, &e) {
			// The token endpoint refused us for good: as permanent as a 401.
			return outcome{status: e.Status, authErr: e}
		}
		return outcome{err: fmt.Errorf("fetching OAuth token: %w", err)}
	}
	authUsed := req.Header.Get("Authorization")
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	req = req.WithContext(httptrace.WithClientTrace(actx, trace))
	resp, err := cl.hc.Do(req)
	if err != nil {
		// A certificate that does not verify will not verify on a retry.
		return outcome{err: err, wrote: wrote.Load(), auth: authUsed, fatal: IsCertificateError(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err == nil && len(b) > maxBody {
		// Cut short, it would only fail to decode; say why instead.
		return outcome{status: resp.StatusCode, wrote: true, auth: authUsed, fatal: true,
			err: fmt.Errorf("answer larger than %d MiB; ask for fewer records (limit) or elements (fields)", maxBody>>20)}
	}
	if err != nil {
		// The server answered, so for 2xx the work is done but we lost
		// the record; treat as unknown like any cut-off answer.
		return outcome{err: err, wrote: true, auth: authUsed}
	}
	o = outcome{status: resp.StatusCode, body: b, wrote: true, auth: authUsed}
	if isRedirect(resp.StatusCode) {
		o.location = resp.Header.Get("Location")
	}
	o.retryAfter, o.hasRA = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return o
}

func isRedirect(code int) bool { return code >= 300 && code < 400 }

// redirectRefused is the message of a 3xx answer: which Location we did
// not follow, and why.
func redirectRefused(loc string) string {
	if loc == "" {
		loc = "(no Location)"
	}
	return "refused to follow a redirect to " + loc + ": credentials are sent to the configured URL only; configure the final URL instead"
}

// IsCertificateError reports a TLS certificate the client does not
// trust (unknown authority, wrong host name, expired): a configuration
// problem, never transient.
func IsCertificateError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// backoff is exponential with full jitter, or the server's Retry-After when
// it gave one (we never come back sooner than asked).
func (cl *Client) backoff(attempt int, o *outcome) time.Duration {
	if o.hasRA {
		return o.retryAfter
	}
	ceiling := cl.cfg.MinBackoff << min(attempt, 30)
	if ceiling <= 0 || ceiling > cl.cfg.MaxBackoff {
		ceiling = cl.cfg.MaxBackoff
	}
	return rand.N(ceiling + 1)
}

// parseRetryAfter reads delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// decode decodes an answer into out. A type that decodes itself (a
// record: record.Record.UnmarshalJSON checks the JSON as it goes) is
// handed the body directly, without json.Unmarshal's scan of it first.
func decode(body []byte, out any) error {
	if u, ok := out.(json.Unmarshaler); ok {
		return u.UnmarshalJSON(body)
	}
	return json.Unmarshal(body, out)
}

// marshal encodes a request body.
func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("apiclient: encoding request: %w", err)
	}
	return b, nil
}
