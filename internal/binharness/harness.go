// Package binharness runs the project's commands as separate processes
// for the tests that need the real binaries (the end-to-end benchmarks,
// the reliability suite, cmd/ihr-worker's end-to-end tests, the scale-out
// test): it builds ihr-api, ihr-worker and ihr-loadgen, starts ihr-api on
// a loopback port over a fresh SQLite file, writes benchmark CSV files and
// runs the worker, measuring wall time and peak RSS.
//
// Each binary is built at most once per test binary, on first use, into a
// temporary folder; call Main from TestMain so the folder is removed
// afterwards. With IHR_E2E_API_BIN set, that ihr-api binary (e.g. a
// released build) is used instead of building one.
package binharness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/internal/launch"
)

// Bins are the built commands.
type Bins struct {
	API, Worker, Loadgen string
}

// The builds are shared by every test of one test binary: linking a
// command costs seconds on the 2-core machine, and they do not change
// during a run. Each command is built on first use, so a test binary that
// runs only the worker does not link ihr-loadgen.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]*built
}

type built struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests and then removes the built binaries.
func Main(m *testing.M) {
	code := m.Run()
	builds.mu.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.mu.Unlock()
	os.Exit(code)
}

// Binaries builds the three commands (each once per process).
func Binaries(t testing.TB) Bins {
	t.Helper()
	return Bins{API: Binary(t, "ihr-api"), Worker: Binary(t, "ihr-worker"), Loadgen: Binary(t, "ihr-loadgen")}
}

// Binary returns the path of the command cmd/NAME, building it on first
// use; ihr-api is IHR_E2E_API_BIN when that is set.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if p := os.Getenv("IHR_E2E_API_BIN"); p != "" && name == "ihr-api" {
		return p
	}
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "ihr-binharness-")
		if err != nil {
			builds.mu.Unlock()
			t.Fatal(err)
		}
		builds.dir, builds.bins = dir, map[string]*built{}
	}
	b := builds.bins[name]
	if b == nil {
		b = &built{path: filepath.Join(builds.dir, name)}
		builds.bins[name] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		var out bytes.Buffer
		// moduleRoot: a test binary may run from anywhere (go test -c).
		if err := launch.Build(context.Background(), moduleRoot(), name, b.path, &out); err != nil {
			b.err = fmt.Errorf("%v\n%s", err, out.Bytes())
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// DieWithTest makes cmd's process die with the test binary (Linux
// PR_SET_PDEATHSIG), so a test killed by its timeout leaves no server or
// worker behind. It replaces cmd.SysProcAttr.
func DieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// moduleRoot is the repository root, two folders above this file.
func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	addr, err := launch.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// SyncBuffer is a bytes.Buffer safe for a process's output goroutines and
// a reader at the same time.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// APIOptions configure an ihr-api process.
type APIOptions struct {
	// Key is the API key (default: a fresh random one).
	Key       string
	RateLimit float64 // --rate-limit (0: off)
	Burst     int     // --burst
	// OAuthID and OAuthSecret add an OAuth client.
	OAuthID, OAuthSecret string
	// Integrations are created before Start returns.
	Integrations []string
	// Host is the address to listen on (default 127.0.0.1).
	Host string
	// TLSCert and TLSKey serve HTTPS; CAFile then verifies it for
	// readiness and Client.
	TLSCert, TLSKey, CAFile string
	// SecretsInFiles passes the key and the OAuth client through
	// --api-key-file and --oauth-clients-file instead of the environment.
	SecretsInFiles bool
	// Args are extra command-line arguments.
	Args []string
	// DB is an existing SQLite file to serve (default: a fresh one).
	DB string
}

// API is a running ihr-api process.
type API struct {
	URL  string // http://127.0.0.1:PORT
	Key  string
	Logs *SyncBuffer // stdout and stderr
	DB   string      // the SQLite file

	cmd    *exec.Cmd
	done   chan struct{}
	client *apiclient.Client
	hc     *http.Client
}

// Pid is the server's process id.
func (a *API) Pid() int { return a.cmd.Process.Pid }

// StartAPI starts ihr-api over a fresh SQLite file and stops it (SIGTERM,
// then SIGKILL) at cleanup.
func StartAPI(t testing.TB, opt APIOptions) *API {
	t.Helper()
	bin := Binary(t, "ihr-api")
	dir := t.TempDir()
	a := &API{Key: opt.Key, Logs: &SyncBuffer{}, DB: filepath.Join(dir, "api.db"), done: make(chan struct{})}
	if opt.DB != "" {
		a.DB = opt.DB
	}
	if a.Key == "" {
		a.Key = "bench-key-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	host := opt.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := FreePort(t)
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	a.URL = "http://" + hostPort
	args := []string{"--addr", hostPort, "--db", "sqlite:" + a.DB}
	if opt.RateLimit > 0 {
		args = append(args, "--rate-limit", strconv.FormatFloat(opt.RateLimit, 'f', -1, 64), "--burst", strconv.Itoa(opt.Burst))
	}
	a.hc = &http.Client{Timeout: 10 * time.Second}
	var roots *x509.CertPool
	if opt.TLSCert != "" {
		a.URL = "https://" + hostPort
		args = append(args, "--tls-cert", opt.TLSCert, "--tls-key", opt.TLSKey)
		pem, err := os.ReadFile(opt.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		a.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	}
	// Credentials through the environment or files, never argv, so they
	// do not show in a process listing (the security tests look).
	env := os.Environ()
	if opt.SecretsInFiles {
		keyFile, clientsFile := filepath.Join(dir, "api-keys"), filepath.Join(dir, "oauth-clients")
		writeSecret(t, keyFile, a.Key)
		args = append(args, "--api-key-file", keyFile)
		if opt.OAuthID != "" {
			writeSecret(t, clientsFile, opt.OAuthID+":"+opt.OAuthSecret)
			args = append(args, "--oauth-clients-file", clientsFile)
		}
	} else {
		env = append(env, "IHR_API_KEYS="+a.Key)
		if opt.OAuthID != "" {
			env = append(env, "IHR_API_OAUTH_CLIENTS="+opt.OAuthID+":"+opt.OAuthSecret)
		}
	}
	a.cmd = exec.Command(bin, append(args, opt.Args...)...)
	a.cmd.Env = env
	a.cmd.Stdout, a.cmd.Stderr = a.Logs, a.Logs
	DieWithTest(a.cmd)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("ihr-api logs (tail):\n%s", tail(a.Logs.String(), 4000))
		}
	})
	if err := launch.WaitAPIWith(context.Background(), a.hc, a.URL, a.Key, a.done, 20*time.Second); err != nil {
		t.Fatalf("%v:\n%s", err, a.Logs.String())
	}
	var err error
	a.client, err = apiclient.New(apiclient.Config{BaseURL: a.URL, APIKey: a.Key, RateLimit: -1, Timeout: 30 * time.Second, RootCAs: roots}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range opt.Integrations {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := a.client.CreateIntegration(ctx, &apiclient.Integration{Code: code, Name: code})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// HTTPClient is a plain client that trusts the server's CA.
func (a *API) HTTPClient() *http.Client { return a.hc }

// writeSecret writes a one-line secrets file only its owner may read.
func writeSecret(t testing.TB, path, line string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Stop ends the server (idempotent).
func (a *API) Stop() { launch.Stop(a.cmd.Process, a.done, 10*time.Second) }

// Client is an unthrottled API client on the server.
func (a *API) Client() *apiclient.Client { return a.client }

// Statuses sums ihr_api_requests_total by HTTP status code, from /metrics.
func (a *API) Statuses(t testing.TB) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/metrics", nil)
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ihr_api_requests_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `code="`)
		code, rest, _ := strings.Cut(rest, `"`)
		_, val, _ := strings.Cut(rest, "} ")
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		out[code] += v
	}
	return out
}

// CountByFilename returns, for one integration_filename, how many records
// the server holds per external-id.
func (a *API) CountByFilename(t testing.TB, filename string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := map[string]int{}
	q := apiclient.NewQuery().Eq("integration-filename", filename).Fields("id", "external-id")
	for r, err := range a.client.All(ctx, q) {
		if err != nil {
			t.Fatal(err)
		}
		out[r.ExternalID]++
	}
	return out
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string { return tail(s, n) }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
