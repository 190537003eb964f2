package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/faultproxy"
	"github.com/ihr-tools/ihr/record"
)

// countAll counts the server's records through the index iterator.
func countAll(t testing.TB, c *Client) int {
	t.Helper()
	n := 0
	for _, err := range c.All(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func TestRealServerEveryMethod(t *testing.T) {
	ts := apitest.Start(t)
	ctx := context.Background()
	cfg := fastConfig(ts.URL)
	cfg.Timeout = 10 * time.Second
	cfg.APIKey = ""
	cfg.OAuth = &OAuthConfig{ClientID: ts.OAuthID, ClientSecret: ts.OAuthSecret,
		Scopes: []string{"core.integration.read", "core.integration.write"}}
	c := mustNew(t, cfg)

	// Integrations.
	in, err := c.CreateIntegration(ctx, &Integration{Code: "ERP-AP", Name: "ERP invoices", Direction: "from_coupa",
		Contacts: []Contact{{Name: "Ops", Email: "ops@example.com", ContactAlertType: "Both"}}})
	if err != nil {
		t.Fatal(err)
	}
	if in.ID == 0 || in.Code != "ERP-AP" || len(in.Contacts) != 1 || in.Contacts[0].ContactAlertType != "Both" {
		t.Fatalf("created integration %+v", in)
	}
	if got, err := c.ShowIntegration(ctx, in.ID); err != nil || got.Name != "ERP invoices" {
		t.Fatalf("show integration: %+v %v", got, err)
	}
	if got, err := c.UpdateIntegration(ctx, in.ID, &Integration{EndSystem: "SAP"}); err != nil || got.EndSystem != "SAP" || got.Code != "ERP-AP" {
		t.Fatalf("update integration: %+v %v", got, err)
	}
	if list, err := c.Integrations(ctx, NewQuery().Eq("code", "ERP-AP")); err != nil || len(list) != 1 {
		t.Fatalf("index integrations: %v %v", list, err)
	}
	_, err = c.CreateIntegration(ctx, &Integration{Code: "ERP-AP", Name: "dup"})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || len(apiErr.Messages) == 0 {
		t.Fatalf("duplicate code: %v", err)
	}

	// Integration runs.
	run, err := c.CreateRun(ctx, "ERP-AP")
	if err != nil || run.Status != "pending" || run.Integration == nil || run.Integration.Code != "ERP-AP" {
		t.Fatalf("create run: %+v %v", run, err)
	}
	if got, err := c.StartRun(ctx, run.ID, 5); err != nil || got.Status != "running" || got.TotalRecords == nil || *got.TotalRecords != 5 {
		t.Fatalf("start run: %+v %v", got, err)
	}

	// Every POST action.
	var ids []int64
	for i, a := range record.Actions {
		r := testRecord(i, "every.csv")
		r.Integration = &record.IntegrationRef{Code: "ERP-AP"}
		r.IntegrationRun = &record.IntegrationRef{ID: run.ID}
		r.Responses = []record.Response{{ResponseCode: "OK", ResponseMessage: "posted " + string(a)}}
		got, err := c.Create(ctx, a, r)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if got.ID == 0 || got.ExternalID != r.ExternalID || got.IntegrationFilename != "every.csv" ||
			got.Integration == nil || got.Integration.Code != "ERP-AP" || len(got.Responses) != 1 || got.CreatedAt == nil {
			t.Fatalf("%s: got %+v", a, got)
		}
		ids = append(ids, got.ID)
	}
	if got, err := c.SucceedRun(ctx, run.ID); err != nil || got.Status != "successful" {
		t.Fatalf("succeed run: %+v %v", got, err)
	}
	run2, _ := c.CreateRun(ctx, "ERP-AP")
	if got, err := c.FailRun(ctx, run2.ID); err != nil || got.Status != "failed" {
		t.Fatalf("fail run: %+v %v", got, err)
	}
	if got, err := c.ShowRun(ctx, run.ID); err != nil || got.Status != "successful" {
		t.Fatalf("show run: %+v %v", got, err)
	}

	// Show, update (responses appended), resolve, unresolve.
	got, err := c.Show(ctx, ids[0])
	if err != nil || got.ID != ids[0] {
		t.Fatalf("show: %+v %v", got, err)
	}
	upd, err := c.Update(ctx, ids[0], &record.Record{DocumentStatus: "paid",
		Responses: []record.Response{{ResponseCode: "E2", ResponseMessage: "later"}}})
	if err != nil || upd.DocumentStatus != "paid" || len(upd.Responses) != 2 || upd.Status != "Success" {
		t.Fatalf("update: %+v %v", upd, err)
	}
	if r, err := c.Resolve(ctx, ids[0]); err != nil || !r.Resolved {
		t.Fatalf("resolve: %+v %v", r, err)
	}
	if r, err := c.Unresolve(ctx, ids[0]); err != nil || r.Resolved {
		t.Fatalf("unresolve: %+v %v", r, err)
	}
	_, err = c.Show(ctx, 99999)
	if !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("show unknown: %v", err)
	}

	// Index: operators, associations, fields, order, paging.
	for i := range 120 {
		r := testRecord(100+i, "many.csv")
		if i%3 == 0 {
			r.Status = "Error"
		}
		if _, err := c.Create(ctx, record.Create, r); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		q    *Query
		want int
	}{
		{"eq", NewQuery().Eq("status", "Error"), 40},
		{"not_eq", NewQuery().Where("status", NotEq, "Error").Eq("integration_filename", "many.csv"), 80},
		{"contains", NewQuery().Where("external-id", Contains, "ERP-0010"), 10},
		{"starts_with", NewQuery().Where("external-id", StartsWith, "ERP-0021"), 10},
		{"ends_with", NewQuery().Where("external-id", EndsWith, "9").Eq("integration-filename", "many.csv"), 12},
		{"gt", NewQuery().Where("document-id", Gt, "1200"), 19},
		{"lt", NewQuery().Where("document-id", Lt, "1003"), 3},
		{"gt_or_eq", NewQuery().Where("document-id", GtOrEq, "1200"), 20},
		{"lt_or_eq", NewQuery().Where("document-id", LtOrEq, "1003"), 4},
		{"in", NewQuery().In("external-id", "ERP-00100", "ERP-00101", "nope"), 2},
		{"not_in", NewQuery().NotIn("integration_filename", "many.csv"), 5},
		{"blank", NewQuery().IsBlank("document-status", false), 1},
		{"integration[code]", NewQuery().Integration("ERP-AP"), 5},
		{"responses[response-code]", NewQuery().Eq("responses[response-code]", "E2"), 1},
		{"created-at", NewQuery().Where("created-at", GtOrEq, time.Now().Add(-time.Hour).Format(time.RFC3339)), 125},
	}
	for _, tc := range cases {
		n := 0
		for _, err := range c.All(ctx, tc.q) {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			n++
		}
		if n != tc.want {
			t.Errorf("%s (%s): %d records, want %d", tc.name, tc.q.Encode(), n, tc.want)
		}
	}
	page, err := c.Index(ctx, NewQuery().Eq("integration_filename", "many.csv").OrderBy("document-id", true).Limit(7).Offset(3).
		Fields("id", "document-id", map[string][]string{"integration": {"code"}}))
	if err != nil || len(page) != 7 {
		t.Fatalf("page: %d %v", len(page), err)
	}
	if *page[0].DocumentID != 1216 || page[0].ExternalID != "" || page[0].Status != "" {
		t.Errorf("ordered/trimmed page starts with %+v", page[0])
	}
	if p, err := c.Index(ctx, NewQuery().Limit(500)); err != nil || len(p) != MaxPageSize {
		t.Errorf("limit 500 gave %d, %v", len(p), err)
	}
	// An iterator with a small page size and an early stop.
	n := 0
	for r, err := range c.All(ctx, NewQuery().Limit(9).Offset(5)) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && r.ID != 6 {
			t.Errorf("offset 5 starts at id %d", r.ID)
		}
		if n++; n == 30 {
			break
		}
	}
	_, err = c.Index(ctx, NewQuery().Eq("colour", "red"))
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(strings.Join(apiErr.Messages, " "), "colour") {
		t.Errorf("unknown attribute: %v", err)
	}
	if got := countAll(t, c); got != 125 {
		t.Errorf("count %d", got)
	}

	// FindExisting finds by file and external id, and only that.
	if r, err := c.FindExisting(ctx, testRecord(150, "many.csv")); err != nil || r == nil || r.ExternalID != "ERP-00150" {
		t.Errorf("FindExisting: %+v %v", r, err)
	}
	if r, err := c.FindExisting(ctx, testRecord(150, "other.csv")); err != nil || r != nil {
		t.Errorf("FindExisting matched another file: %+v %v", r, err)
	}

	// Validation errors carry the server's messages.
	_, err = c.Create(ctx, record.Create, &record.Record{DocumentType: "Nope", DocumentID: record.Int64(1)})
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || len(apiErr.Messages) < 2 {
		t.Fatalf("validation: %v", err)
	}
	t.Logf("validation messages: %q", apiErr.Messages)
}

func TestRealServerNoDuplicatesThroughFaults(t *testing.T) {
	ts := apitest.Start(t)
	direct := mustNew(t, Config{BaseURL: ts.URL, APIKey: ts.APIKey, RateLimit: -1})
	runNoDuplicates(t, ts.URL, ts.APIKey, 2000, func() int { return countAll(t, direct) })
}

func TestRealStrictServerNoDuplicatesThroughFaults(t *testing.T) {
	ts := apitest.Start(t, apitest.WithStrict())
	direct := mustNew(t, Config{BaseURL: ts.URL, APIKey: ts.APIKey, RateLimit: -1})
	runNoDuplicates(t, ts.URL, ts.APIKey, 300, func() int { return countAll(t, direct) })
}

// TestRateBudget runs 8 goroutines flat out for 10 s against a server
// limiting the same credential to the same budget.
func TestRateBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	ts := apitest.Start(t, apitest.WithRateLimit(25, 20))
	var seen, throttledAtServer atomic.Int64
	h := ts.Server.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		sw := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.status == http.StatusTooManyRequests {
			throttledAtServer.Add(1)
		}
	}))
	defer srv.Close()
	var throttled, attempts atomic.Int64
	c := mustNew(t, Config{BaseURL: srv.URL, APIKey: ts.APIKey, RateLimit: 25, Burst: 20,
		Observer: observerFunc(func(i RequestInfo) {
			attempts.Add(1)
			if i.Throttled {
				throttled.Add(1)
			}
		})})
	const window = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var created atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := c.Create(ctx, record.Create, testRecord(g*10000+i, "rate.csv")); err == nil {
					created.Add(1)
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	limit := int64(25*window/time.Second + 20)
	t.Logf("rate budget 25/s burst 20 over %v: server saw %d requests (limit %d), created %d, client 429s %d, server 429s %d",
		window, seen.Load(), limit, created.Load(), throttled.Load(), throttledAtServer.Load())
	if seen.Load() > limit {
		t.Errorf("server saw %d requests in %v, more than %d", seen.Load(), window, limit)
	}
	if throttled.Load() != 0 {
		t.Errorf("client got %d 429s with a budget equal to the server limit", throttled.Load())
	}
	if seen.Load() < limit-30 {
		t.Errorf("only %d requests: the budget is not being used", seen.Load())
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// TestRealServerOAuth counts token requests at the real server through a
// wrapping handler that shortens token lifetimes and can revoke.
func TestRealServerOAuth(t *testing.T) {
	ts := apitest.Start(t)
	var tokens, unauthorized atomic.Int64
	var revoke atomic.Bool
	h := ts.Server.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth2/token" {
			tokens.Add(1)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			// A 3 s lifetime so the test sees expiry without waiting a day.
			body := strings.Replace(rec.Body.String(), `"expires_in":86399`, `"expires_in":3`, 1)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			fmt.Fprint(w, body)
			return
		}
		if revoke.CompareAndSwap(true, false) {
			unauthorized.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":{"error":["token revoked"]}}`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg := Config{BaseURL: srv.URL, RateLimit: -1,
		OAuth: &OAuthConfig{ClientID: ts.OAuthID, ClientSecret: ts.OAuthSecret}}
	c := mustNew(t, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			if _, err := c.Create(ctx, record.Create, testRecord(i, "oauth.csv")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if tokens.Load() != 1 {
		t.Fatalf("30 requests used %d tokens", tokens.Load())
	}
	time.Sleep(2500 * time.Millisecond) // past 3/4 of the lifetime
	if _, err := c.Show(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if tokens.Load() != 2 {
		t.Fatalf("after expiry: %d token requests, want 2", tokens.Load())
	}
	revoke.Store(true)
	if _, err := c.Show(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if tokens.Load() != 3 || unauthorized.Load() != 1 {
		t.Fatalf("after 401: %d token requests, %d 401s", tokens.Load(), unauthorized.Load())
	}
	t.Logf("token requests: %d for 32 API requests (1 initial, 1 on expiry, 1 after a 401)", tokens.Load())
}

// TestRealServerUnknownOutcomeOfPutAndIntegrationPost: a gateway that loses
// the answer after the server did the work must not make the client append
// responses twice or create an integration twice.
func TestRealServerUnknownOutcomeOfPutAndIntegrationPost(t *testing.T) {
	ts := apitest.Start(t)
	ctx := context.Background()
	direct := mustNew(t, Config{BaseURL: ts.URL, APIKey: ts.APIKey, RateLimit: -1})
	rec, err := direct.Create(ctx, record.Create, testRecord(1, "put.csv"))
	if err != nil {
		t.Fatal(err)
	}
	p := faultproxy.Start(t, ts.URL, faultproxy.Config{ServerErrorAfter: 1,
		Eligible: func(r *http.Request) bool { return r.Method != http.MethodGet }})
	cfg := fastConfig(p.URL)
	cfg.APIKey = ts.APIKey
	c := mustNew(t, cfg)

	upd, err := c.Update(ctx, rec.ID, &record.Record{Responses: []record.Response{{ResponseCode: "R1", ResponseMessage: "once"}}})
	if err != nil || len(upd.Responses) != 1 {
		t.Fatalf("update: %+v %v", upd, err)
	}
	in, err := c.CreateIntegration(ctx, &Integration{Code: "GW", Name: "Gateway"})
	if !errors.Is(err, ErrAlreadyRecorded) || in == nil || in.Code != "GW" {
		t.Fatalf("integration: %+v %v", in, err)
	}
	got, _ := direct.Show(ctx, rec.ID)
	list, _ := direct.Integrations(ctx, nil)
	if len(got.Responses) != 1 || len(list) != 1 {
		t.Fatalf("responses %d, integrations %d", len(got.Responses), len(list))
	}
	if pc := p.Counts(); pc.ServerErrorsAfter != 2 {
		t.Fatalf("re-sent after a lookup found the work done: %+v", pc)
	}
}

func TestUserAgent(t *testing.T) {
	var ua atomic.Value
	f := newFake(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.UserAgent())
		f.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := mustNew(t, fastConfig(srv.URL))
	c.Index(context.Background(), nil)
	if got := ua.Load().(string); !strings.HasPrefix(got, "ihr-worker/") {
		t.Errorf("User-Agent %q", got)
	}
}

// With CreateFields the server sends only what the caller keeps, and the
// client still learns whether the server stores integration_filename.
func TestRealServerCreateFields(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			var opts []apitest.Option
			if strict {
				opts = append(opts, apitest.WithStrict())
			}
			ts := apitest.Start(t, opts...)
			cfg := Config{BaseURL: ts.URL, APIKey: ts.APIKey, RateLimit: -1, CreateFields: []string{"id"}}
			c := mustNew(t, cfg)
			ctx := context.Background()
			got, err := c.Create(ctx, record.MarkExported, testRecord(1, "trim.csv"))
			if err != nil {
				t.Fatal(err)
			}
			if got.ID == 0 || got.DocumentType != "" || got.ExternalID != "" {
				t.Fatalf("answer not trimmed to the id: %+v", got)
			}
			wantFile, wantMode := "trim.csv", int32(filenameKept)
			if strict {
				wantFile, wantMode = "", filenameNotStored
			}
			if got.IntegrationFilename != wantFile || c.filenameStored.Load() != wantMode {
				t.Fatalf("integration-filename %q, mode %d; want %q, %d", got.IntegrationFilename, c.filenameStored.Load(), wantFile, wantMode)
			}
			full, err := c.Show(ctx, got.ID)
			if err != nil || full.ExternalID != "ERP-00001" || full.DocumentType != "InvoiceHeader" {
				t.Fatalf("stored record: %+v %v", full, err)
			}
			if f, err := c.FindExisting(ctx, testRecord(1, "trim.csv")); err != nil || f == nil || f.ID != got.ID {
				t.Fatalf("FindExisting after a trimmed create: %+v %v", f, err)
			}
		})
	}
}
