package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// served is a running `ihr-worker serve`.
type served struct {
	t    *testing.T
	base string // http://127.0.0.1:PORT
	logs *binharness.SyncBuffer
}

func (e *env) serve(extraEnv ...string) *served {
	t := e.t
	t.Helper()
	port := binharness.FreePort(t)
	cmd := exec.Command(binharness.Binary(t, "ihr-worker"), "serve", "--config", e.config, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Env = append(append(os.Environ(), "E2E_API_KEY="+apiKey), extraEnv...)
	s := &served{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &binharness.SyncBuffer{}}
	cmd.Stderr = s.logs
	binharness.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("serve logs (tail):\n%s", binharness.Tail(s.logs.String(), 6000))
		}
	})
	s.waitFor("serve to listen", 20*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("serve exited:\n%s", s.logs.String())
		default:
		}
		code, _ := s.get("/healthz")
		return code == 200
	})
	return s
}

func (s *served) get(path string) (int, string) {
	resp, err := http.Get(s.base + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *served) metric(series string) float64 {
	_, text := s.get("/metrics")
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func (s *served) waitFor(what string, d time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chromium returns the headless browser, or skips (fails under
// IHR_REQUIRE_SERVERS=1) where it is not installed.
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testservers.Missing(t, "chromium not installed; .ci/install-servers installs it")
	return ""
}

func headless(t *testing.T, bin string, args ...string) string {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--timeout=20000"}
	cmd := exec.Command(bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.Output(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("chromium %v timed out:\n%s", args, stderr.String())
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// TestDashboardInBrowser loads the dashboard of a serve that has archived
// a good file, rejected a bad one and is mid-way through a large one, in
// headless Chromium: the DOM shows the counts, the rejected file's reason
// and the progress, and a screenshot is kept as a test artifact
// (IHR_DASHBOARD_SCREENSHOT also copies it, e.g. to docs/dashboard.png).
func TestDashboardInBrowser(t *testing.T) {
	browser := chromium(t)
	api := startAPI(t, "ERP-INVOICES")
	h := &hooks{}
	recv := httptest.NewServer(h)
	defer recv.Close()
	e := newEnv(t, api, "    poll: 1s\n    expect: {schedule: \"0 2 * * *\", within: 2h}\n    retain: {archive: 90d, reports: 180d}\n",
		"notify:\n  - webhook: "+recv.URL+"\n    events: [file_failed]\n")
	// Slow enough that big.csv is still in progress while the page loads.
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "rate_limit: 0", "rate_limit: 40\n  burst: 1", 1)), 0o600)

	// Retention (opt-in above) deletes old files from archive/ and
	// reports/ only.
	old := map[string]time.Duration{"archive/ancient.csv": 100 * 24 * time.Hour, "reports/ancient.response.csv": 200 * 24 * time.Hour,
		"failed/ancient.csv": 400 * 24 * time.Hour, "archive/recent.csv": 10 * 24 * time.Hour}
	for name, age := range old {
		p := filepath.Join(e.src, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x\n"), 0o644)
		os.Chtimes(p, time.Now().Add(-age), time.Now().Add(-age))
	}
	e.drop("good.csv", goodRows("G", 3))
	bad := header() + "B-1,InvoiceHeader,1,Success,Functional,OK,fine\n" +
		"B-2,InvoiceHeader,2,Success,Functional,OK,fine\n" +
		"B-3,,3,Success,Functional,OK,no document type\n"
	e.drop("bad.csv", bad)
	s := e.serve()
	s.waitFor("good.csv and bad.csv", 30*time.Second, func() bool {
		return exists(filepath.Join(e.src, "archive", "good.csv")) && exists(filepath.Join(e.src, "failed", "bad.csv"))
	})
	s.waitFor("retention after the pass", 10*time.Second, func() bool {
		return !exists(filepath.Join(e.src, "archive", "ancient.csv")) && !exists(filepath.Join(e.src, "reports", "ancient.response.csv"))
	})
	for name, gone := range map[string]bool{"archive/ancient.csv": true, "reports/ancient.response.csv": true, "failed/ancient.csv": false, "archive/recent.csv": false} {
		if exists(filepath.Join(e.src, filepath.FromSlash(name))) == gone {
			t.Errorf("retention: %s exists=%v, want %v", name, gone, !gone)
		}
	}
	if !strings.Contains(s.logs.String(), `"msg":"retention: deleted","source":"erp","file":"archive/ancient.csv"`) {
		t.Errorf("retention deletion not logged")
	}
	e.drop("big.csv", goodRows("BIG", 5000))
	s.waitFor("big.csv to be mid-way", 30*time.Second, func() bool {
		_, page := s.get("/")
		return regexp.MustCompile(`<td class="progress-text">[1-9][0-9]* / 5000</td>`).MatchString(page)
	})

	dom := headless(t, browser, "--dump-dom", s.base+"/")
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	headless(t, browser, "--window-size=1280,1000", "--screenshot="+shot, s.base+"/")
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
	if dst := os.Getenv("IHR_DASHBOARD_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	row := func(table, file string) string {
		re := regexp.MustCompile(`(?s)<table class="files ` + table + `">.*?<tr data-file="` + regexp.QuoteMeta(file) + `">(.*?)</tr>`)
		m := re.FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no %s row for %s in the DOM:\n%s", table, file, dom)
		}
		return m[1]
	}
	good := row("recent", "good.csv")
	for _, want := range []string{"archived", "3 created", "0 invalid", "archive/good.csv"} {
		if !strings.Contains(good, want) {
			t.Errorf("good.csv row lacks %q: %s", want, good)
		}
	}
	badRow := row("failed", "bad.csv")
	for _, want := range []string{"failed", "2 created", "1 invalid", `row 3 invalid: Document type can't be blank`, "/report?source=erp&amp;name=bad.csv&amp;download=1"} {
		if !strings.Contains(badRow, want) {
			t.Errorf("bad.csv row lacks %q: %s", want, badRow)
		}
	}
	if big := row("inprogress", "big.csv"); !regexp.MustCompile(`[1-9][0-9]* / 5000`).MatchString(big) {
		t.Errorf("big.csv progress: %s", big)
	}
	for _, want := range []string{`data-health="api"><b>API</b> reachable`, `data-health="store"><b>Store</b> reachable`, `<svg class="chart"`, `data-series="created"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}

	// The links work: the report, and the file's rows with the invalid one
	// first.
	if code, rep := s.get("/report?source=erp&name=bad.csv"); code != 200 || !strings.Contains(rep, "Document type can't be blank") {
		t.Errorf("report: %d %q", code, rep)
	}
	code, page := s.get("/file?source=erp&name=bad.csv")
	if i, j := strings.Index(page, `data-row="3"`), strings.Index(page, `data-row="1"`); code != 200 || i < 0 || j < 0 || i > j {
		t.Errorf("file page: %d, invalid row 3 not first", code)
	}
	if code, _ := s.get("/report?source=erp&name=../../etc/passwd"); code != 404 {
		t.Errorf("report of an unknown file: %d", code)
	}
	if resp, err := http.Post(s.base+"/", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp, err)
	}
	// The rejected file was notified, once, with its reason and report.
	s.waitFor("the file_failed notification", 10*time.Second, func() bool { return len(h.of("file_failed")) > 0 })
	ff := h.of("file_failed")
	if len(ff) != 1 || ff[0]["file"] != "bad.csv" || ff[0]["report"] != "reports/bad.response.csv" ||
		!strings.Contains(fmt.Sprint(ff[0]["reason"]), "1 invalid") {
		t.Errorf("file_failed notifications: %v", ff)
	}
}

// hooks is a webhook receiver that keeps every event.
type hooks struct {
	mu     sync.Mutex
	events []map[string]any
}

func (h *hooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var e map[string]any
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *hooks) of(kind string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, e := range h.events {
		if e["event"] == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestServeMissedDeliveryNotifiedOnceThenRecovers: a source expects a file
// in a 2-second window; none arrives, so serve records a missed delivery
// (ledger, status, metric, dashboard) and notifies it once, however often
// it checks; a file then arrives and the miss is cleared, with one
// recovery notification.
func TestServeMissedDeliveryNotifiedOnceThenRecovers(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	h := &hooks{}
	recv := httptest.NewServer(h)
	defer recv.Close()
	// One firing a minute, a few seconds from now: exactly one window
	// closes during the test. (The binary is built first, so building it
	// does not eat into those seconds: a window that closed before serve
	// started is, rightly, not judged.)
	binharness.Binary(t, "ihr-worker")
	sec := (time.Now().Second() + 6) % 60
	e := newEnv(t, api, fmt.Sprintf("    poll: 1s\n    expect: {schedule: \"%d * * * * *\", within: 2s}\n", sec),
		"notify:\n  - webhook: "+recv.URL+"/hook\n    events: [delivery_missed, recovered]\n")
	s := e.serve()

	s.waitFor("the missed delivery notification", 20*time.Second, func() bool { return len(h.of("delivery_missed")) > 0 })
	if v := s.metric(`ihr_worker_delivery_missed{source="erp"}`); v != 1 {
		t.Errorf("ihr_worker_delivery_missed = %v, want 1", v)
	}
	st := e.worker("status", "--config", e.config, "--json").expect(t, 0)
	if !strings.Contains(st.stdout, `"kind": "delivery_missed"`) && !strings.Contains(st.stdout, `"kind":"delivery_missed"`) {
		t.Errorf("status does not show the missed delivery:\n%s", st.stdout)
	}
	if st := e.worker("status", "--config", e.config).expect(t, 0); !strings.Contains(st.stderr, "! delivery_missed since") {
		t.Errorf("status (text) does not show the missed delivery:\n%s", st.stderr)
	}
	if _, page := s.get("/"); !strings.Contains(page, `data-event="delivery_missed"`) {
		t.Errorf("the dashboard does not show the missed delivery")
	}
	// The watcher checks every 500 ms: the miss must stay one notification.
	time.Sleep(2 * time.Second)
	if n := len(h.of("delivery_missed")); n != 1 {
		t.Fatalf("%d delivery_missed notifications, want 1: %v", n, h.of("delivery_missed"))
	}

	e.drop("late.csv", goodRows("L", 2))
	s.waitFor("the recovery notification", 20*time.Second, func() bool { return len(h.of("recovered")) > 0 })
	time.Sleep(1500 * time.Millisecond)
	rec := h.of("recovered")
	if len(rec) != 1 || rec[0]["recovers"] != "delivery_missed" || !strings.Contains(fmt.Sprint(rec[0]["reason"]), "late.csv") {
		t.Fatalf("recovered notifications: %v", rec)
	}
	if n := len(h.of("delivery_missed")); n != 1 {
		t.Fatalf("%d delivery_missed notifications after recovery, want 1", n)
	}
	if v := s.metric(`ihr_worker_delivery_missed{source="erp"}`); v != 0 {
		t.Errorf("ihr_worker_delivery_missed = %v after recovery, want 0", v)
	}
	if v := s.metric(`ihr_worker_deliveries_missed_total{source="erp"}`); v != 1 {
		t.Errorf("ihr_worker_deliveries_missed_total = %v, want 1", v)
	}
	st = e.worker("status", "--config", e.config, "--json").expect(t, 0)
	if strings.Contains(st.stdout, "delivery_missed") {
		t.Errorf("status still shows the missed delivery:\n%s", st.stdout)
	}
	if code, body := s.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d: %s", code, body)
	}
}

// TestReadyzFollowsTheAPI: /readyz turns 503 when passes fail because the
// API is unreachable, while /healthz stays 200; after down_after failed
// passes a source_down notification goes out once, and a recovery once
// the API is back.
func TestReadyzFollowsTheAPI(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	h := &hooks{}
	recv := httptest.NewServer(h)
	defer recv.Close()
	e := newEnv(t, api, "    poll: 1s\n    down_after: 2\n", "notify:\n  - webhook: "+recv.URL+"\n")
	e.drop("a.csv", goodRows("A", 1))
	s := e.serve()
	s.waitFor("a good pass", 20*time.Second, func() bool {
		code, _ := s.get("/readyz")
		return code == 200 && exists(filepath.Join(e.src, "archive", "a.csv"))
	})

	api.Stop()
	e.drop("b.csv", goodRows("B", 1))
	s.waitFor("/readyz to fail", 30*time.Second, func() bool { code, _ := s.get("/readyz"); return code == 503 })
	if code, _ := s.get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d while the API is down; liveness must not follow it", code)
	}
	s.waitFor("source_down", 30*time.Second, func() bool { return len(h.of("source_down")) > 0 })
	time.Sleep(1500 * time.Millisecond)
	if n := len(h.of("source_down")); n != 1 {
		t.Errorf("%d source_down notifications, want 1", n)
	}
	if _, page := s.get("/"); !strings.Contains(page, `data-health="api"><b>API</b> unreachable`) {
		t.Errorf("dashboard does not show the API unreachable")
	}
}

// TestReplicasShareThePicture: two serve replicas on one PostgreSQL
// ledger. Each dashboard shows the files either processed, and a missed
// delivery both replicas detect is recorded and notified once.
func TestReplicasShareThePicture(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	h := &hooks{}
	recv := httptest.NewServer(h)
	defer recv.Close()
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	binharness.Binary(t, "ihr-worker")
	sec := (time.Now().Second() + 8) % 60
	e := newEnv(t, api, fmt.Sprintf("    poll: 1s\n    expect: {schedule: \"%d * * * * *\", within: 2s}\n", sec),
		"notify:\n  - webhook: "+recv.URL+"\n    events: [delivery_missed]\n")
	cfg, _ := os.ReadFile(e.config)
	cfg = regexp.MustCompile(`(?m)^state: .*$`).ReplaceAll(cfg, []byte("state: "+dsn))
	os.WriteFile(e.config, cfg, 0o600)
	e.drop("good.csv", goodRows("R", 3))
	s1, s2 := e.serve(), e.serve()

	s1.waitFor("good.csv archived", 20*time.Second, func() bool { return exists(filepath.Join(e.src, "archive", "good.csv")) })
	s1.waitFor("the missed delivery", 25*time.Second, func() bool { return len(h.of("delivery_missed")) > 0 })
	time.Sleep(2 * time.Second) // both replicas' watchers check every 500 ms
	if n := len(h.of("delivery_missed")); n != 1 {
		t.Errorf("%d delivery_missed notifications from two replicas, want 1", n)
	}
	for i, s := range []*served{s1, s2} {
		_, page := s.get("/")
		for _, want := range []string{`<tr data-file="good.csv">`, `3 created`, `data-event="delivery_missed"`, `data-health="api"><b>API</b> reachable`} {
			if !strings.Contains(page, want) {
				t.Errorf("replica %d's dashboard lacks %q", i+1, want)
			}
		}
	}
}
