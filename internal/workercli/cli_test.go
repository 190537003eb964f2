package workercli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/scheduler"
	"github.com/ihr-tools/ihr/state"
)

func TestMetricsAreNamedAndExposed(t *testing.T) {
	m := newMetrics()
	m.initSource("erp")
	m.RequestDone(apiclient.RequestInfo{Action: "create", Status: 429, Throttled: true, Retry: true, Duration: time.Millisecond})
	m.RequestDone(apiclient.RequestInfo{Action: "create", Status: 0, Err: errors.New("refused")})
	m.RowDone("erp", "a.csv", state.Created)
	m.FileDone("erp", "a.csv", importer.FileResult{Status: state.Done})
	m.PassStarted("erp", scheduler.TriggerSchedule)
	m.PassFinished("erp", scheduler.TriggerSchedule, nil, time.Second)
	m.PassSkipped("erp", scheduler.TriggerPoll)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		n := f.GetName()
		names[n] = true
		if !strings.HasPrefix(n, "ihr_worker_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s is not named ihr_worker_…", n)
		}
	}
	for _, want := range []string{
		"ihr_worker_files_total", "ihr_worker_rows_total", "ihr_worker_api_requests_total",
		"ihr_worker_api_retries_total", "ihr_worker_api_throttled_total", "ihr_worker_api_request_duration_seconds",
		"ihr_worker_last_success_timestamp_seconds", "ihr_worker_passes_skipped_total", "ihr_worker_pass_duration_seconds",
	} {
		if !names[want] {
			t.Errorf("metric %s missing", want)
		}
	}
}

func TestExportTarget(t *testing.T) {
	cfg := &config.Config{Sources: []config.Source{{
		Name: "erp", URL: "sftp://coupa@sftp.example.com:22/Outgoing", KeyFile: "/k", KnownHosts: "/kh",
	}}}
	src, name, where, err := exportTarget(cfg, "sftp://coupa@sftp.example.com:22/Exports/x.csv")
	if err != nil || name != "x.csv" || src.KeyFile != "/k" || src.URL != "sftp://coupa@sftp.example.com:22/Exports" || where == "" {
		t.Fatalf("%+v %q %q %v", src, name, where, err)
	}
	src, name, _, err = exportTarget(cfg, "out/y.csv")
	abs, _ := filepath.Abs("out")
	if err != nil || name != "y.csv" || src.URL != "file://"+filepath.ToSlash(abs) {
		t.Fatalf("%+v %q %v", src, name, err)
	}
	if _, _, _, err := exportTarget(cfg, "s3://bucket/dir/"); err == nil {
		t.Fatal("a URL without a file name was accepted")
	}
}

func TestParseTime(t *testing.T) {
	for _, s := range []string{"2024-06-01", "2024-06-01T10:00:00Z", "2024-06-01T10:00:00+09:00", "2024-06-01T10:00"} {
		if _, err := parseTime(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := parseTime("yesterday"); err == nil {
		t.Error("accepted yesterday")
	}
}

// In-process: status and a config error, through Main with buffers.
func TestMainInProcess(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "w.yaml")
	os.WriteFile(cfg, []byte(`api: {url: "http://127.0.0.1:1", api_key: "hunter2-secret"}
state: "sqlite:`+filepath.Join(dir, "s.db")+`"
sources: [{name: a, url: "file:///nonexistent"}]
`), 0o600)
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"status", "--config", cfg, "--json"}, Streams{Out: &out, Err: &errb})
	if code != 0 || !strings.Contains(out.String(), `"name": "a"`) {
		t.Fatalf("status: %d\n%s\n%s", code, out.String(), errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "hunter2") {
		t.Fatal("secret in output")
	}
	out.Reset()
	errb.Reset()
	code = Main(context.Background(), []string{"run", "--config", cfg, "--api-url", "ftp://x"}, Streams{Out: &out, Err: &errb})
	if code != ExitUsage || !strings.Contains(errb.String(), "api.url: must be an http:// or https:// URL") {
		t.Fatalf("override error: %d\n%s", code, errb.String())
	}
}

// serve's /metrics listens on loopback, on a port Prometheus itself does
// not use, unless --metrics-addr says otherwise.
func TestServeMetricsAddrDefault(t *testing.T) {
	f := newServeCommand(&globals{}).Flags().Lookup("metrics-addr")
	host, port, err := net.SplitHostPort(f.DefValue)
	if err != nil || !net.ParseIP(host).IsLoopback() || port == "9090" {
		t.Fatalf("--metrics-addr default %q: want loopback, not :9090", f.DefValue)
	}
}
