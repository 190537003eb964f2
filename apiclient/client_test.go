package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/internal/faultproxy"
	"github.com/ihr-tools/ihr/record"
)

func testRecord(i int, file string) *record.Record {
	return &record.Record{
		ContactAlertType:    "Functional",
		DocumentID:          record.Int64(int64(1000 + i)),
		DocumentType:        "InvoiceHeader",
		ExternalID:          fmt.Sprintf("ERP-%05d", i),
		IntegrationFilename: file,
		Status:              "Success",
	}
}

func fastConfig(base string) Config {
	return Config{
		BaseURL: base, APIKey: fakeKey, RateLimit: -1,
		Timeout: 500 * time.Millisecond, MaxRetries: 10,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
}

func mustNew(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false}, {"3", 3 * time.Second, true}, {"0", 0, true}, {"-1", 0, false}, {"soon", 0, false},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
	} {
		got, ok := parseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestQueryEncode(t *testing.T) {
	q := NewQuery().Eq("document-type", "InvoiceHeader").Where("created-at", GtOrEq, "2026-01-01").
		In("status", "Success", "Error").IsBlank("external_id", false).Integration("ERP").
		Eq("responses[response-code]", "E1").
		Fields("id", map[string][]string{"integration": {"code"}}).OrderBy("updated-at", true).Limit(20).Offset(40)
	want := "created_at%5Bgt_or_eq%5D=2026-01-01&dir=desc&document_type=InvoiceHeader&external_id%5Bblank%5D=false" +
		"&fields=%5B%22id%22%2C%7B%22integration%22%3A%5B%22code%22%5D%7D%5D&integration%5Bcode%5D=ERP&limit=20&offset=40" +
		"&order_by=updated_at&responses%5Bresponse_code%5D=E1&status%5Bin%5D=Success%2CError"
	if got := q.Encode(); got != want {
		t.Errorf("Encode:\n got %s\nwant %s", got, want)
	}
}

func TestValidationErrorIsTyped(t *testing.T) {
	f := newFake(t)
	c := mustNew(t, fastConfig(f.srv.URL))
	_, err := c.Create(context.Background(), record.Create, &record.Record{DocumentType: "Nope"})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %T %v", err, err)
	}
	if e.Status != 400 || e.Method != "POST" || e.Path != recordsPath || e.Temporary() || len(e.Messages) != 3 {
		t.Fatalf("unexpected error %#v", e)
	}
	if e.Messages[0] != "Contact alert type can't be blank" {
		t.Errorf("messages %q", e.Messages)
	}
	if got := f.apiRequests.Load(); got != 1 {
		t.Errorf("a permanent error was retried: %d requests", got)
	}
}

// TestNoDuplicatesThroughFaults: no record is created twice while a proxy
// drops connections, delays answers and returns 429s and 5xx; run against the fake
// (smaller); apitest_test.go runs it at full size against the real server.
func TestNoDuplicatesThroughFaults(t *testing.T) {
	f := newFake(t)
	runNoDuplicates(t, f.srv.URL, fakeKey, 400, f.count)
}

func runNoDuplicates(t *testing.T, upstream, apiKey string, n int, count func() int) {
	p := faultproxy.Start(t, upstream, faultproxy.Config{
		Seed:      42,
		DropAfter: 0.05, Delay: 0.03, DelayFor: 600 * time.Millisecond,
		Throttle: 0.03, ThrottleNoHeader: 0.03, RetryAfter: "0",
		ServerError: 0.03, ServerErrorAfter: 0.03,
	})
	cfg := fastConfig(p.URL)
	cfg.APIKey = apiKey
	var throttled, retried atomic.Int64
	cfg.Observer = observerFunc(func(i RequestInfo) {
		if i.Throttled {
			throttled.Add(1)
		}
		if i.Retry {
			retried.Add(1)
		}
	})
	c := mustNew(t, cfg)
	ctx := context.Background()
	var created, already, failed atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				actions := record.Actions
				rec, err := c.Create(ctx, actions[i%len(actions)], testRecord(i, "batch-1.csv"))
				switch {
				case errors.Is(err, ErrAlreadyRecorded):
					already.Add(1)
				case err != nil:
					failed.Add(1)
					t.Errorf("row %d: %v", i, err)
				case rec.ID == 0:
					t.Errorf("row %d: no id", i)
				default:
					created.Add(1)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	pc := p.Counts()
	t.Logf("proxy: %+v (faults %d = %.1f%%)", pc, pc.Faults(), 100*float64(pc.Faults())/float64(pc.Requests))
	t.Logf("client: created %d, already-recorded %d, failed %d; retries %d, 429s seen %d",
		created.Load(), already.Load(), failed.Load(), retried.Load(), throttled.Load())
	if got := count(); got != n {
		t.Fatalf("server holds %d records, want exactly %d", got, n)
	}
	if pc.DroppedAfter == 0 || pc.Delayed == 0 || pc.Throttled == 0 || pc.ServerErrorsAfter == 0 {
		t.Fatalf("fault mix not exercised: %+v", pc)
	}
}

type observerFunc func(RequestInfo)

func (f observerFunc) RequestDone(i RequestInfo) { f(i) }

// BenchmarkCreate measures the client's own cost per record (encoding,
// request, decoding) against the in-memory fake, without a rate limit.
func BenchmarkCreate(b *testing.B) {
	f := newFake(b)
	c, err := New(fastConfig(f.srv.URL), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := c.Create(ctx, record.Create, testRecord(i, "bench.csv")); err != nil {
			b.Fatal(err)
		}
	}
}
