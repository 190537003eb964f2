package workercli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/binharness"
)

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
	var logBuf binharness.SyncBuffer
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
