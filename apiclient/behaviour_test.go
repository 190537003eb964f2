package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/faultproxy"
	"github.com/ihr-tools/ihr/record"
)

func oauthConfig(base string) Config {
	cfg := fastConfig(base)
	cfg.APIKey = ""
	cfg.OAuth = &OAuthConfig{ClientID: "cid", ClientSecret: "sec", Scopes: []string{"core.integration.read", "core.integration.write"}}
	return cfg
}

func TestOAuthTokenReusedRefreshedAndReplacedOn401(t *testing.T) {
	f := newFake(t)
	f.tokenLife = 2 * time.Second
	c := mustNew(t, oauthConfig(f.srv.URL))
	ctx := context.Background()

	// Many concurrent requests share one token.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if _, err := c.Create(ctx, record.Create, testRecord(i, "oauth.csv")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := f.tokenRequests.Load(); got != 1 {
		t.Fatalf("40 requests fetched %d tokens, want 1", got)
	}

	// Refreshed before expiry: a request after 3/4 of the lifetime gets a
	// new token without ever being refused.
	time.Sleep(1600 * time.Millisecond)
	if _, err := c.Show(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got, u := f.tokenRequests.Load(), f.unauthorized.Load(); got != 2 || u != 0 {
		t.Fatalf("after expiry: %d token requests, %d 401s; want 2 and 0", got, u)
	}

	// Revoked server-side: the 401 drops the token, one new one is fetched
	// and the request succeeds.
	f.revokeAll()
	for i := range 5 {
		if _, err := c.Show(ctx, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if got, u := f.tokenRequests.Load(), f.unauthorized.Load(); got != 3 || u != 1 {
		t.Fatalf("after revocation: %d token requests, %d 401s; want 3 and 1", got, u)
	}
}

func TestOAuthBadSecretIsPermanent(t *testing.T) {
	f := newFake(t)
	cfg := oauthConfig(f.srv.URL)
	cfg.OAuth.ClientSecret = "wrong"
	c := mustNew(t, cfg)
	_, err := c.Show(context.Background(), 1)
	var e *Error
	if !errors.As(err, &e) || e.Status != 401 || e.Temporary() || len(e.Messages) != 1 || e.Messages[0] != "invalid_client: wrong secret" {
		t.Fatalf("got %#v", err)
	}
	// One try plus the single re-authentication a 401 earns.
	if got := f.tokenRequests.Load(); got != 2 {
		t.Errorf("%d token requests", got)
	}
	if f.apiRequests.Load() != 0 {
		t.Error("API called without a token")
	}
}

func TestAPIKey401IsNotRetried(t *testing.T) {
	f := newFake(t)
	cfg := fastConfig(f.srv.URL)
	cfg.APIKey = "wrong"
	c := mustNew(t, cfg)
	_, err := c.Show(context.Background(), 1)
	var e *Error
	if !errors.As(err, &e) || e.Status != 401 {
		t.Fatalf("got %v", err)
	}
	if got := f.apiRequests.Load(); got != 1 {
		t.Errorf("%d requests", got)
	}
}

// scripted answers the given statuses in turn, then delegates.
func scripted(next http.Handler, header http.Header, statuses ...int) (http.Handler, *atomic.Int64) {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1) - 1
		if int(i) < len(statuses) {
			for k, v := range header {
				w.Header()[k] = v
			}
			w.WriteHeader(statuses[i])
			w.Write([]byte(`{"errors":{"error":["scripted"]}}`))
			return
		}
		next.ServeHTTP(w, r)
	}), &n
}

func TestRetryAfterIsHonoured(t *testing.T) {
	f := newFake(t)
	h, n := scripted(f.srv.Config.Handler, http.Header{"Retry-After": {"1"}}, 429)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := mustNew(t, fastConfig(srv.URL))
	t0 := time.Now()
	if _, err := c.Create(context.Background(), record.Create, testRecord(1, "ra.csv")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < time.Second {
		t.Errorf("retried after %v, before Retry-After: 1", d)
	}
	if n.Load() != 2 || f.count() != 1 {
		t.Errorf("%d requests, %d records", n.Load(), f.count())
	}
}

func TestTransientVersusPermanent(t *testing.T) {
	for _, c := range []struct {
		status   int
		requests int64
		ok       bool
	}{
		{503, 2, true}, {502, 2, true}, {504, 2, true}, {429, 2, true},
		{500, 1, false}, {403, 1, false}, {404, 1, false}, {413, 1, false}, {415, 1, false}, {422, 1, false},
	} {
		f := newFake(t)
		h, n := scripted(f.srv.Config.Handler, nil, c.status)
		srv := httptest.NewServer(h)
		cl := mustNew(t, fastConfig(srv.URL))
		_, err := cl.Show(context.Background(), 0)
		var e *Error
		if c.ok {
			// Show 0 is a 404 from the fake once the scripted failure passed.
			if !errors.As(err, &e) || e.Status != 404 {
				t.Errorf("%d: got %v", c.status, err)
			}
		} else if !errors.As(err, &e) || e.Status != c.status || e.Messages[0] != "scripted" {
			t.Errorf("%d: got %v", c.status, err)
		}
		if n.Load() != c.requests {
			t.Errorf("%d: %d requests, want %d", c.status, n.Load(), c.requests)
		}
		srv.Close()
	}
}

func TestConnectionRefusedIsRetriedThenTemporary(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	cfg := fastConfig(url)
	cfg.MaxRetries = 2
	var attempts atomic.Int64
	cfg.Observer = observerFunc(func(RequestInfo) { attempts.Add(1) })
	c := mustNew(t, cfg)
	_, err := c.Create(context.Background(), record.Create, testRecord(1, "x.csv"))
	var e *Error
	if !errors.As(err, &e) || e.Status != 0 || !e.Temporary() || e.Err == nil {
		t.Fatalf("got %#v", err)
	}
	// Never written, so no lookups: exactly 1 + MaxRetries posts.
	if attempts.Load() != 3 {
		t.Errorf("%d attempts", attempts.Load())
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	f := newFake(t)
	h, _ := scripted(f.srv.Config.Handler, http.Header{"Retry-After": {"30"}}, 429)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := mustNew(t, fastConfig(srv.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Show(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestStrictServerLookupAndNoDuplicates(t *testing.T) {
	f := newFake(t)
	f.strict = true
	ctx := context.Background()
	c := mustNew(t, fastConfig(f.srv.URL))
	r := testRecord(7, "strict.csv")
	if got, err := c.FindExisting(ctx, r); err != nil || got != nil {
		t.Fatalf("FindExisting on empty server: %v, %v", got, err)
	}
	created, err := c.Create(ctx, record.Create, r)
	if err != nil {
		t.Fatal(err)
	}
	other := *r
	other.Status = "Error" // another event of the same document
	if got, err := c.FindExisting(ctx, &other); err != nil || got != nil {
		t.Fatalf("matched a different event: %v, %v", got, err)
	}
	got, err := c.FindExisting(ctx, r)
	if err != nil || got == nil || got.ID != created.ID {
		t.Fatalf("FindExisting = %v, %v; want id %d", got, err, created.ID)
	}
	// Having seen the server drop the file name, the client asks only
	// the query that can answer: one request per lookup.
	before := f.apiRequests.Load()
	c.FindExisting(ctx, r)
	if n := f.apiRequests.Load() - before; n != 1 {
		t.Errorf("lookup took %d requests", n)
	}

	n0 := f.count()
	runNoDuplicates(t, f.srv.URL, fakeKey, 300, func() int { return f.count() - n0 })
}

func TestOutageIsRiddenOut(t *testing.T) {
	f := newFake(t)
	p := faultproxy.Start(t, f.srv.URL, faultproxy.Config{Seed: 1})
	cfg := fastConfig(p.URL)
	cfg.MaxRetries = 20
	cfg.MaxBackoff = 100 * time.Millisecond
	c := mustNew(t, cfg)
	p.Outage(500 * time.Millisecond)
	for i := range 5 {
		if _, err := c.Create(context.Background(), record.MarkExported, testRecord(i, "outage.csv")); err != nil {
			t.Fatal(err)
		}
	}
	if pc := p.Counts(); pc.Outage == 0 || f.count() != 5 {
		t.Fatalf("outage %d, records %d", pc.Outage, f.count())
	}
}

// A 3xx is never followed, for API calls and token requests alike: the
// error names the Location, nothing reaches it, and nothing is retried.
func TestRedirectNotFollowed(t *testing.T) {
	var reached atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	defer other.Close()
	var asked atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusPermanentRedirect)
	}))
	defer front.Close()
	for name, cfg := range map[string]Config{"api-key": fastConfig(front.URL), "oauth": oauthConfig(front.URL)} {
		t.Run(name, func(t *testing.T) {
			asked.Store(0)
			_, err := mustNew(t, cfg).Create(context.Background(), record.Create, testRecord(1, "r.csv"))
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusPermanentRedirect || e.Temporary() {
				t.Fatalf("err = %v, want a permanent 308 *Error", err)
			}
			if want := "refused to follow a redirect to " + other.URL; !strings.Contains(err.Error(), want) {
				t.Errorf("%v does not name the Location", err)
			}
			if n := asked.Load(); n != 1 {
				t.Errorf("%d requests to the redirecting server, want 1 (no retry)", n)
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
}

// TestUnknownOutcomesAreLookedUpTogether: creates whose answers are lost
// (the server stored the record, a gateway answered 504) are looked up in
// batches, external-id[in]=…, not with one GET each, and none is sent twice.
func TestUnknownOutcomesAreLookedUpTogether(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			f.serve(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var rec record.Record
		json.Unmarshal(body, &rec)
		mu.Lock()
		first := !seen[rec.ExternalID]
		seen[rec.ExternalID] = true
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !first {
			f.serve(w, r)
			return
		}
		f.serve(httptest.NewRecorder(), r) // stored; the answer is lost
		w.WriteHeader(http.StatusGatewayTimeout)
	}))
	t.Cleanup(gw.Close)
	cfg := fastConfig(gw.URL)
	cfg.MinBackoff = 100 * time.Millisecond // the window in which lookups gather
	c := mustNew(t, cfg)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := c.Create(context.Background(), record.Create, testRecord(i, "lost.csv"))
			if !errors.Is(err, ErrAlreadyRecorded) || got == nil || got.ExternalID != testRecord(i, "").ExternalID {
				t.Errorf("row %d: %+v, %v; want the stored record and ErrAlreadyRecorded", i, got, err)
			}
		})
	}
	wg.Wait()
	if got := f.count(); got != n {
		t.Fatalf("server holds %d records, want %d", got, n)
	}
	// Typically 1–3 queries; the bound leaves room for a loaded machine
	// spreading the 40 calls out, while one query each would be 40.
	if got := f.indexRequests.Load(); got > n/2 {
		t.Errorf("%d lookups for %d lost answers: want them batched (at most %d)", got, n, n/2)
	}
	t.Logf("%d lost answers, %d lookup queries", n, f.indexRequests.Load())
}

// TestLookupOfIDWithComma: an external id the comma list of [in] cannot
// carry is looked up by itself, and found.
func TestLookupOfIDWithComma(t *testing.T) {
	f := newFake(t)
	c := mustNew(t, fastConfig(f.srv.URL))
	r := testRecord(1, "comma.csv")
	r.ExternalID = "A,B"
	created, err := c.Create(context.Background(), record.Create, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.FindExisting(context.Background(), r)
	if err != nil || got == nil || got.ID != created.ID {
		t.Fatalf("FindExisting = %+v, %v; want id %d", got, err, created.ID)
	}
}

// TestLookupQueueSurvivesCancelledWaiters: lookups that give up while
// queued behind a slow one (their row's deadline) neither block the
// lookups after them nor leave the queue without a leader.
func TestLookupQueueSurvivesCancelledWaiters(t *testing.T) {
	f := newFake(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			time.Sleep(200 * time.Millisecond)
		}
		f.serve(w, r)
	}))
	t.Cleanup(slow.Close)
	c := mustNew(t, fastConfig(slow.URL))
	r := testRecord(1, "cancel.csv")
	if _, err := c.Create(context.Background(), record.Create, r); err != nil {
		t.Fatal(err)
	}
	lead := make(chan error, 1)
	go func() {
		_, err := c.FindExisting(context.Background(), testRecord(2, "cancel.csv"))
		lead <- err
	}()
	time.Sleep(20 * time.Millisecond) // the leader's query is in flight
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			// The first five give up while queued; the last is likely
			// made leader just before its deadline.
			d := time.Duration(10+i*10) * time.Millisecond
			if i == 5 {
				d = 200 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			_, err := c.FindExisting(ctx, testRecord(3+i, "cancel.csv"))
			if i < 5 && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("waiter %d: %v, want its deadline", i, err)
			}
		})
	}
	wg.Wait()
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := c.FindExisting(ctx, r)
	if err != nil || got == nil {
		t.Fatalf("lookup after cancelled waiters: %+v, %v", got, err)
	}
}
