package workercli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/apiserver/apitest"
)

// cli runs the command line in process.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// validateConfig writes a configuration whose API key comes from an
// environment variable that is not set: validate must not need it.
func validateConfig(t *testing.T) (cfg, root string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "erp")
	os.MkdirAll(filepath.Join(root, "inbox"), 0o755)
	cfg = filepath.Join(dir, "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`api:
  url: https://acme.coupahost.com
  api_key: ${IHR_TEST_UNSET_KEY}
state: sqlite:%s
sources:
  - name: erp
    url: file://%s
    integration: ERP-INVOICES
`, filepath.Join(dir, "state.db"), root)), 0o600)
	return cfg, root
}

func TestValidateWithoutCredentials(t *testing.T) {
	os.Unsetenv("IHR_TEST_UNSET_KEY")
	cfg, root := validateConfig(t)
	f := filepath.Join(root, "inbox", "a.csv")
	os.WriteFile(f, []byte("external-id,document-type,document-id,status,contact-alert-type\nV-1,InvoiceHeader,1,Success,Functional\n"), 0o644)
	code, out, errs := cli(t, "validate", "--config", cfg, "--source", "erp", "a.csv")
	if code != 0 || !strings.Contains(errs, "1 row(s), 1 valid, 0 invalid") || !strings.Contains(out, ",valid,") {
		t.Fatalf("validate without credentials: exit %d\n%s\n%s", code, out, errs)
	}
	// Commands that call the API still require them.
	if code, _, errs := cli(t, "run", "--config", cfg); code != 2 || !strings.Contains(errs, "IHR_TEST_UNSET_KEY") {
		t.Fatalf("run without credentials: exit %d\n%s", code, errs)
	}
}

func TestValidateWholeFileRejectedHasNoNegativeCount(t *testing.T) {
	cfg, root := validateConfig(t)
	f := filepath.Join(root, "inbox", "empty.csv")
	os.WriteFile(f, nil, 0o644)
	code, _, errs := cli(t, "validate", "--config", cfg, "--source", "erp", "empty.csv")
	if code != 1 || strings.Contains(errs, "-1") || !strings.Contains(errs, "rejected as a whole") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	code, out, _ := cli(t, "validate", "--config", cfg, "--source", "erp", "empty.csv", "--json")
	var v struct{ Rows, Valid, Invalid int }
	if code != 1 || json.Unmarshal([]byte(out), &v) != nil || v.Valid != 0 || v.Rows != 0 {
		t.Fatalf("--json: exit %d %s", code, out)
	}
}

func TestLogFlagsCheckedByEveryCommand(t *testing.T) {
	cfg, _ := validateConfig(t)
	for _, args := range [][]string{
		{"status", "--config", cfg, "--log-level", "bogus"},
		{"status", "--config", cfg, "--log-format", "xml"},
		{"version", "--log-level", "loud"},
	} {
		if code, _, errs := cli(t, args...); code != 2 || !strings.Contains(errs, "--log-") {
			t.Errorf("%v: exit %d\n%s", args, code, errs)
		}
	}
}

// /readyz reports a source whose last pass failed (here: its integration
// does not exist yet) and turns ready once a pass succeeds; /healthz stays
// 200 throughout.
func TestServeReadyz(t *testing.T) {
	srv := apitest.Start(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "erp")
	os.MkdirAll(filepath.Join(root, "inbox"), 0o755)
	cfg := filepath.Join(dir, "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`api: {url: %q, api_key: %q, rate_limit: 0}
state: sqlite:%s
sources:
  - {name: erp, url: "file://%s", integration: ERP-READY, poll: 1s, stable_for: 0s}
`, srv.URL, srv.APIKey, filepath.Join(dir, "state.db"), root)), 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	var logBuf syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--config", cfg, "--metrics-addr", addr}, Streams{Out: io.Discard, Err: &logBuf})
	}()
	defer func() { cancel(); <-done }()
	get := func(p string) (int, string) {
		res, err := http.Get("http://" + addr + p)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				code, body := get("/readyz")
				t.Fatalf("timed out waiting for %s: /readyz %d %s\nlogs:\n%s", what, code, body, logBuf.String())
			}
		}
	}
	waitFor("/readyz 503 naming the source", func() bool {
		code, body := get("/readyz")
		return code == 503 && strings.Contains(body, "erp: last pass failed") && strings.Contains(body, "ERP-READY")
	})
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d while a source fails; liveness must stay cheap and up", code)
	}
	c, err := apiclient.New(apiclient.Config{BaseURL: srv.URL, APIKey: srv.APIKey, RateLimit: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateIntegration(context.Background(), &apiclient.Integration{Code: "ERP-READY", Name: "ready"}); err != nil {
		t.Fatal(err)
	}
	waitFor("/readyz 200", func() bool { code, _ := get("/readyz"); return code == 200 })
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every metric the worker defines is described in docs/metrics.md.
func TestMetricsDocumented(t *testing.T) {
	src, err := os.ReadFile("metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`Name:\s+"(ihr_worker_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(names) < 5 {
		t.Fatalf("found %d metric names in metrics.go", len(names))
	}
	for _, n := range names {
		if !strings.Contains(string(docs), "`"+n[1]+"`") {
			t.Errorf("docs/metrics.md does not describe %s", n[1])
		}
	}
}
