package notify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/notify"
	"github.com/ihr-tools/ihr/state"
)

func ledger(t *testing.T) state.Ops {
	t.Helper()
	l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ops, err := state.OpsOf(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// counter records attempt outcomes per result.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) observe(_, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[result]++
}

func (c *counter) get(r string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[r]
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, n *notify.Notifier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

var fast = notify.Options{FirstRetry: 50 * time.Millisecond, MaxRetry: 200 * time.Millisecond, Timeout: 5 * time.Second}

// TestWebhookRetriedAndNeverDuplicated: a receiver that answers 503 gets
// the event again until it takes it; after that, the same event (queued
// again, or by a restarted notifier on the same ledger) is not resent,
// and the Slack channel gets its own copy.
func TestWebhookRetriedAndNeverDuplicated(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var got []notify.Event
	var slackTexts []string
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/slack" {
			var m map[string]string
			if err := json.Unmarshal(body, &m); err != nil {
				t.Errorf("slack body: %v", err)
			}
			slackTexts = append(slackTexts, m["text"])
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		var e notify.Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		got = append(got, e)
	}))
	defer srv.Close()

	ops := ledger(t)
	var c counter
	o := fast
	o.Observe = c.observe
	routes := []notify.Route{
		{Channel: &notify.Webhook{URL: srv.URL + "/hook"}},
		{Channel: &notify.Slack{URL: srv.URL + "/slack"}, Events: []string{notify.FileFailed}},
	}
	n := notify.New(routes, ops, zaptest.NewLogger(t), o)
	start(t, n)
	ev := notify.Event{ID: "file_failed/erp/x.csv/1", Kind: notify.FileFailed, Source: "erp", File: "x.csv", Reason: "2 rows invalid", Report: "reports/x.response.csv"}
	n.Notify(ev)
	n.Notify(notify.Event{ID: "delivery_missed/erp/1", Kind: notify.DeliveryMissed, Source: "erp", Reason: "no file"})
	waitFor(t, "retries while the receiver is down", 5*time.Second, func() bool { return c.get("retry") >= 3 })
	down.Store(false)
	waitFor(t, "deliveries", 5*time.Second, func() bool { return c.get("sent") == 3 })

	// The same event again, to this notifier and to a fresh one (a
	// restart, or another replica) on the same ledger.
	n.Notify(ev)
	n2 := notify.New(routes, ops, zaptest.NewLogger(t), o)
	start(t, n2)
	n2.Notify(ev)
	waitFor(t, "duplicates to be refused", 5*time.Second, func() bool { return c.get("duplicate") == 4 })
	time.Sleep(200 * time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("webhook got %d events, want 2: %+v", len(got), got)
	}
	var ff notify.Event
	for _, e := range got {
		if e.Kind == notify.FileFailed {
			ff = e
		}
	}
	if ff.Schema != notify.Schema || ff.ID != ev.ID || ff.File != "x.csv" || ff.Reason != "2 rows invalid" || ff.Report == "" || ff.At.IsZero() {
		t.Errorf("webhook payload: %+v", ff)
	}
	if len(slackTexts) != 1 || !strings.Contains(slackTexts[0], "x.csv was rejected: 2 rows invalid") {
		t.Errorf("slack got %q (only file_failed is routed there)", slackTexts)
	}
	t.Logf("attempts at the receiver: %d, retries: %d", attempts.Load(), c.get("retry"))
}

// TestNotifyNeverBlocks: a channel that hangs does not hold up Notify,
// which drops beyond the queue instead.
func TestNotifyNeverBlocks(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	var c counter
	o := fast
	o.Queue, o.Observe, o.Timeout, o.Drain = 2, c.observe, time.Second, 100*time.Millisecond
	n := notify.New([]notify.Route{{Channel: &notify.Webhook{URL: srv.URL}}}, ledger(t), zaptest.NewLogger(t), o)
	start(t, n)
	begin := time.Now()
	for i := range 50 {
		n.Notify(notify.Event{ID: "e" + strconv.Itoa(i), Kind: notify.SourceDown, Source: "s"})
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("Notify blocked for %v", d)
	}
	if c.get("dropped") < 40 {
		t.Fatalf("dropped %d, want most of 50 with a queue of 2", c.get("dropped"))
	}
}

// TestEmailSTARTTLSAuth sends through a real SMTP server (aiosmtpd) that
// requires STARTTLS and AUTH; the server is down at first, so the mail is
// retried, then delivered once.
func TestEmailSTARTTLSAuth(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import aiosmtpd").Run(); err != nil {
		testservers.Missing(t, "python3-aiosmtpd not installed ("+err.Error()+"); .ci/install-servers installs it")
	}
	dir := t.TempDir()
	tlsFiles := binharness.NewTLSFiles(t)
	out := filepath.Join(dir, "mail")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	port := binharness.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)

	ops := ledger(t)
	var c counter
	o := fast
	o.Observe = c.observe
	mail := &notify.Email{Addr: addr, From: "ihr@example.com", To: []string{"erp-team@example.com", "ops@example.com"},
		Username: "ihr", Password: "s3cret", StartTLS: true, CAFile: tlsFiles.CA}
	n := notify.New([]notify.Route{{Channel: mail}}, ops, zaptest.NewLogger(t), o)
	start(t, n)
	ev := notify.Event{ID: "delivery_missed/erp/2026-12-01T02:00:00Z", Kind: notify.DeliveryMissed, Source: "erp", Reason: "no file arrived between 02:00 and 04:00"}
	n.Notify(ev)
	waitFor(t, "retries while the SMTP server is down", 5*time.Second, func() bool { return c.get("retry") >= 2 })

	cmd := exec.Command(py, "testdata/smtpd.py", strconv.Itoa(port), tlsFiles.Cert, tlsFiles.Key, out, "ihr", "s3cret")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) != "READY" {
		t.Fatalf("smtpd: %q %v", line, err)
	}
	waitFor(t, "the mail", 10*time.Second, func() bool { return c.get("sent") == 1 })
	n.Notify(ev)
	waitFor(t, "the duplicate to be refused", 5*time.Second, func() bool { return c.get("duplicate") == 1 })
	time.Sleep(200 * time.Millisecond)

	files, _ := filepath.Glob(filepath.Join(out, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("server received %d messages, want 1", len(files))
	}
	msg, _ := os.ReadFile(files[0])
	for _, want := range []string{"Subject: ihr-worker: source erp missed delivery", "To: erp-team@example.com, ops@example.com", `"event": "delivery_missed"`} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}

	// Wrong password: refused by the server, reported as an error. (Go's
	// client then waits for an answer aiosmtpd never gives, so the
	// attempt ends with its deadline, as every attempt has one.)
	bad := *mail
	bad.Password = "nope"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := bad.Send(ctx, ev)
	if err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("wrong password: %v", err)
	}
}

// pending is Options.Pending over the test ledger's events (the worker's
// own conversion lives in internal/workercli).
func pending(ops state.Ops) func(context.Context) ([]notify.Event, error) {
	return func(ctx context.Context) ([]notify.Event, error) {
		es, err := ops.Events(ctx, "", false, 100)
		var out []notify.Event
		for _, e := range es {
			out = append(out, notify.Event{ID: e.ID, Kind: e.Kind, Source: e.Source, File: e.File, Reason: e.Detail, At: e.OpenedAt})
		}
		return out, err
	}
}

// receiver counts webhook deliveries by event ID; it answers 503 while
// down and holds requests while hold is set.
type receiver struct {
	down    atomic.Bool
	hold    chan struct{}
	arrived atomic.Int32
	mu      sync.Mutex
	got     map[string]int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.arrived.Add(1)
	if rc.hold != nil {
		<-rc.hold
	}
	if rc.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var e notify.Event
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got[e.ID]++
}

func (rc *receiver) count(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[id]
}

// TestSweepAfterGiveUp: the receiver is down longer than GiveUp, so the
// first delivery gives up with the event claimed but unsent; once the
// receiver is back, the sweep delivers it, exactly once, and a second
// notifier sweeping the same ledger sends nothing more.
func TestSweepAfterGiveUp(t *testing.T) {
	rc := &receiver{got: map[string]int{}}
	rc.down.Store(true)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	ops := ledger(t)
	ctx := context.Background()
	ev := state.Event{ID: "file_failed/erp/x.csv/1", Kind: state.EventFileFailed, Source: "erp", File: "x.csv", Detail: "2 rows invalid"}
	if _, err := ops.OpenEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	var c counter
	o := fast
	o.Observe, o.GiveUp, o.Stale, o.Resweep, o.Pending = c.observe, 300*time.Millisecond, 400*time.Millisecond, 100*time.Millisecond, pending(ops)
	routes := []notify.Route{{Channel: &notify.Webhook{URL: srv.URL}}}
	n := notify.New(routes, ops, zaptest.NewLogger(t), o)
	start(t, n)
	n.Notify(notify.Event{ID: ev.ID, Kind: notify.FileFailed, Source: "erp", File: "x.csv", Reason: ev.Detail})
	waitFor(t, "the delivery to give up", 5*time.Second, func() bool { return c.get("failed") >= 1 })
	rc.down.Store(false)
	waitFor(t, "the sweep to deliver", 5*time.Second, func() bool { return c.get("sent") == 1 })

	var c2 counter
	o2 := o
	o2.Observe = c2.observe
	n2 := notify.New(routes, ops, zaptest.NewLogger(t), o2)
	start(t, n2)
	time.Sleep(5 * o.Resweep)
	if got := rc.count(ev.ID); got != 1 {
		t.Fatalf("receiver got the event %d times, want 1", got)
	}
	if c.get("sent") != 1 || c2.get("sent") != 0 {
		t.Fatalf("sent by the first notifier %d, by the second %d; want 1 and 0", c.get("sent"), c2.get("sent"))
	}
	t.Logf("first notifier: %d retries, %d give-ups before the receiver came back", c.get("retry"), c.get("failed"))
}

// TestSweepAfterQueueFull: an event dropped because the channel's queue
// was full is delivered by the sweep, and nothing twice.
func TestSweepAfterQueueFull(t *testing.T) {
	rc := &receiver{got: map[string]int{}, hold: make(chan struct{})}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	ops := ledger(t)
	var c counter
	o := fast
	o.Queue, o.Observe, o.Resweep, o.Pending = 1, c.observe, 100*time.Millisecond, pending(ops)
	n := notify.New([]notify.Route{{Channel: &notify.Webhook{URL: srv.URL}}}, ops, zaptest.NewLogger(t), o)
	start(t, n)
	ids := []string{"file_failed/erp/a.csv/1", "file_failed/erp/b.csv/1", "file_failed/erp/c.csv/1"}
	// The first is taken by the channel's goroutine and held at the
	// receiver, the second waits in the queue of one, the third is
	// dropped.
	n.Notify(notify.Event{ID: ids[0], Kind: notify.FileFailed, Source: "erp"})
	waitFor(t, "the first delivery to start", 5*time.Second, func() bool { return rc.arrived.Load() == 1 })
	n.Notify(notify.Event{ID: ids[1], Kind: notify.FileFailed, Source: "erp"})
	n.Notify(notify.Event{ID: ids[2], Kind: notify.FileFailed, Source: "erp"})
	if c.get("dropped") != 1 {
		t.Fatalf("dropped %d, want 1", c.get("dropped"))
	}
	// The ledger has the events (the operator opens them before notifying).
	for _, id := range ids {
		if _, err := ops.OpenEvent(context.Background(), state.Event{ID: id, Kind: state.EventFileFailed, Source: "erp"}); err != nil {
			t.Fatal(err)
		}
	}
	close(rc.hold)
	waitFor(t, "all three delivered", 5*time.Second, func() bool { return c.get("sent") == 3 })
	time.Sleep(5 * o.Resweep)
	for _, id := range ids {
		if got := rc.count(id); got != 1 {
			t.Errorf("receiver got %s %d times, want 1", id, got)
		}
	}
}
