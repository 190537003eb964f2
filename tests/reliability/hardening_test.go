package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// localSource makes a file:// source folder with one CSV of n rows in its
// inbox and returns the folder.
func localSource(t *testing.T, prefix string, n int) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	content, _ := binharness.CSV(prefix, n)
	if err := os.WriteFile(filepath.Join(root, "inbox", prefix+".csv"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// workerConfig writes a worker configuration with the given api block
// (indented two spaces, without "api:") and one local source.
func workerConfig(t *testing.T, apiBlock, source string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "worker.yaml")
	y := fmt.Sprintf("api:\n%s  rate_limit: 0\n  max_retries: 2\n  timeout: 5s\nstate: sqlite:%s\nsources:\n"+
		"  - name: erp\n    url: file://%s\n    integration: %s\n    stable_for: 0s\n", apiBlock, filepath.Join(dir, "state.db"), source, integration)
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRedirectNeverFollowed: an API that answers every call, the OAuth
// token request included, with 307 to a second loopback server: the
// built worker fails naming that Location, and the second server receives
// nothing — neither the API key, nor the client secret, nor a record.
func TestRedirectNeverFollowed(t *testing.T) {
	t.Parallel()
	bins := binharness.Binaries(t)
	var hits atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(other.Close)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(front.Close)

	for _, c := range []struct{ name, block string }{
		{"api-key", fmt.Sprintf("  url: %s\n  api_key: redirected-key-1234\n", front.URL)},
		{"oauth", fmt.Sprintf("  url: %s\n  oauth:\n    client_id: erp\n    client_secret: redirected-secret-1234\n", front.URL)},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := localSource(t, "RD", 3)
			r := binharness.Exec(t, 2*time.Minute, nil, bins.Worker, "run", "--config", workerConfig(t, c.block, src), "--no-progress")
			t.Logf("exit %d: %s", r.Code, binharness.Tail(r.Stderr, 800))
			if r.Code != 2 {
				t.Errorf("exit %d, want 2 (a setup error: no rerun follows the redirect)", r.Code)
			}
			if _, err := os.Stat(filepath.Join(src, "inbox", "RD.csv")); err != nil {
				t.Errorf("the file left the inbox: %v", err)
			}
			if !strings.Contains(r.Stderr, "refused to follow a redirect to "+other.URL) {
				t.Errorf("stderr does not name the Location %s", other.URL)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the redirect target received %d requests", n)
			}
		})
	}
}

// nonLoopbackName is a name of this machine that is not literally
// loopback (so the worker's cleartext rule applies) and the address it
// resolves to, where a test server can listen.
func nonLoopbackName(t *testing.T) (name, ip string) {
	t.Helper()
	host, err := os.Hostname()
	if err != nil || host == "" || strings.EqualFold(host, "localhost") {
		t.Skipf("no usable host name (%q, %v)", host, err)
	}
	addrs, err := net.DefaultResolver.LookupHost(context.Background(), host)
	if err != nil || len(addrs) == 0 {
		t.Skipf("host name %s does not resolve: %v", host, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (%s): %v", addrs[0], host, err)
	}
	ln.Close()
	return host, addrs[0]
}

// TestCleartextRefusedThenAllowed: http:// to a host that is not
// loopback is refused at start (exit 2, naming the key and suggesting
// https://), for api.url and oauth.token_url, and ftp:// with a password
// likewise (suggesting ftps://); the override keys let the run through,
// with a warning on start.
func TestCleartextRefusedThenAllowed(t *testing.T) {
	t.Parallel()
	bins := binharness.Binaries(t)
	host, ip := nonLoopbackName(t)
	api := binharness.StartAPI(t, binharness.APIOptions{Host: ip, OAuthID: "erp", OAuthSecret: "cleartext-secret", Integrations: []string{integration}})
	u, _ := url.Parse(api.URL)
	plainURL := "http://" + net.JoinHostPort(host, u.Port())

	run := func(block, src string) binharness.Run {
		return binharness.Exec(t, 2*time.Minute, nil, bins.Worker, "run", "--config", workerConfig(t, block, src), "--no-progress")
	}
	keyBlock := fmt.Sprintf("  url: %s\n  api_key: %s\n", plainURL, api.Key)
	r := run(keyBlock, localSource(t, "CT0", 2))
	if r.Code != 2 || !strings.Contains(r.Stderr, "api.url") || !strings.Contains(r.Stderr, "https://") || !strings.Contains(r.Stderr, "allow_insecure_http") {
		t.Errorf("cleartext api.url: exit %d, want 2 naming api.url:\n%s", r.Code, r.Stderr)
	}
	tokenBlock := fmt.Sprintf("  url: %s\n  oauth:\n    client_id: erp\n    client_secret: cleartext-secret\n    token_url: %s/oauth2/token\n",
		strings.Replace(api.URL, "http://", "https://", 1), plainURL)
	if r := run(tokenBlock, localSource(t, "CT1", 2)); r.Code != 2 || !strings.Contains(r.Stderr, "api.oauth.token_url") {
		t.Errorf("cleartext token_url: exit %d, want 2 naming api.oauth.token_url:\n%s", r.Code, r.Stderr)
	}

	r = run(keyBlock+"  allow_insecure_http: true\n", localSource(t, "CT2", 2))
	if r.Code != 0 {
		t.Fatalf("with allow_insecure_http: exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "insecure configuration") || !strings.Contains(r.Stderr, "cleartext") {
		t.Errorf("no warning on start with allow_insecure_http:\n%s", r.Stderr)
	}
	oauthBlock := fmt.Sprintf("  url: %s\n  oauth:\n    client_id: erp\n    client_secret: cleartext-secret\n  allow_insecure_http: true\n", plainURL)
	if r := run(oauthBlock, localSource(t, "CT3", 2)); r.Code != 0 {
		t.Errorf("OAuth with allow_insecure_http: exit %d\n%s", r.Code, r.Stderr)
	}

	t.Run("ftp", func(t *testing.T) {
		ftp := testservers.StartFTP(t)
		if !net.ParseIP(ip).IsLoopback() {
			t.Skipf("%s resolves to %s, where vsftpd does not listen", host, ip)
		}
		content, _ := binharness.CSV("FTP", 2)
		if err := os.MkdirAll(filepath.Join(ftp.Root, "inbox"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ftp.Root, "inbox", "ftp.csv"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		// The FTP user must own what it moves.
		if st, err := os.Stat(ftp.Root); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				for _, p := range []string{filepath.Join(ftp.Root, "inbox"), filepath.Join(ftp.Root, "inbox", "ftp.csv")} {
					if err := os.Chown(p, int(sys.Uid), int(sys.Gid)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		dir := t.TempDir()
		write := func(extra string) string {
			p := filepath.Join(dir, "ftp"+strconv.Itoa(len(extra))+".yaml")
			y := fmt.Sprintf("api:\n  url: %s\n  api_key: %s\n  rate_limit: 0\nstate: sqlite:%s\nsources:\n  - name: erp\n"+
				"    url: ftp://%s@%s/\n    password: ${FTP_PASSWORD}\n    integration: %s\n    stable_for: 0s\n%s",
				api.URL, api.Key, filepath.Join(dir, "state.db"), ftp.User, net.JoinHostPort(host, strconv.Itoa(ftp.Port)), integration, extra)
			if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		env := []string{"FTP_PASSWORD=" + ftp.Password}
		r := binharness.Exec(t, 2*time.Minute, env, bins.Worker, "run", "--config", write(""), "--no-progress")
		if r.Code != 2 || !strings.Contains(r.Stderr, "sources[0].url") || !strings.Contains(r.Stderr, "ftps://") {
			t.Errorf("ftp:// with a password to %s: exit %d, want 2 suggesting ftps://:\n%s", host, r.Code, r.Stderr)
		}
		r = binharness.Exec(t, 2*time.Minute, env, bins.Worker, "run", "--config", write("    allow_insecure_ftp: true\n"), "--no-progress")
		if r.Code != 0 || !strings.Contains(r.Stderr, "insecure configuration") {
			t.Errorf("with allow_insecure_ftp: exit %d (want 0 with a warning)\n%s", r.Code, r.Stderr)
		}
	})
}

// status sends one request with hdr and returns its status and headers.
func status(t *testing.T, hc *http.Client, method, u, body string, hdr ...string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestBruteForceGets429: after N failed authentications from one address
// (wrong API keys, or wrong client secrets on /oauth2/token) the built
// ihr-api answers 429 with Retry-After, to right credentials too, while
// another address is unaffected; and one client's live tokens are
// bounded.
func TestBruteForceGets429(t *testing.T) {
	t.Parallel()
	const n = 5
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	form := "application/x-www-form-urlencoded"

	t.Run("api-key", func(t *testing.T) {
		api := binharness.StartAPI(t, binharness.APIOptions{Args: []string{"--auth-failures", strconv.Itoa(n)}})
		u := api.URL + "/api/integration_history_records?limit=1"
		for i := range n {
			if code, _ := status(t, hc, "GET", u, "", "X-COUPA-API-KEY", fmt.Sprintf("guess-%d", i)); code != 401 {
				t.Fatalf("wrong key %d: %d, want 401", i+1, code)
			}
		}
		code, h := status(t, hc, "GET", u, "", "X-COUPA-API-KEY", "guess-last")
		ra, _ := strconv.Atoi(h.Get("Retry-After"))
		t.Logf("after %d wrong keys: %d, Retry-After %q", n, code, h.Get("Retry-After"))
		if code != 429 || ra < 1 {
			t.Fatalf("wrong key %d: %d Retry-After %q, want 429 with Retry-After", n+1, code, h.Get("Retry-After"))
		}
		if code, _ := status(t, hc, "GET", u, "", "X-COUPA-API-KEY", api.Key); code != 429 {
			t.Errorf("the right key from the blocked address: %d, want 429 (a blocked guesser learns nothing)", code)
		}
		if code, _ := status(t, hc, "GET", u, "", "Authorization", "Bearer nope"); code != 429 {
			t.Errorf("a bearer token from the blocked address: %d, want 429", code)
		}
		// Another loopback address is another client.
		other := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
		if _, err := other.Get(api.URL + "/healthz"); err != nil {
			// Linux routes all of 127/8 to lo; elsewhere the check is
			// skipped, but never silently where the servers are required.
			if os.Getenv(testservers.RequireEnv) == "1" {
				t.Fatalf("cannot send from 127.0.0.2 (%v): the other-address check must run under %s=1", err, testservers.RequireEnv)
			}
			t.Logf("cannot send from 127.0.0.2 here (%v); skipping the other-address check", err)
		} else if code, _ := status(t, other, "GET", u, "", "X-COUPA-API-KEY", api.Key); code != 200 {
			t.Errorf("the right key from another address: %d, want 200", code)
		}
	})

	t.Run("oauth", func(t *testing.T) {
		api := binharness.StartAPI(t, binharness.APIOptions{OAuthID: "erp", OAuthSecret: "right-secret", Args: []string{"--auth-failures", strconv.Itoa(n)}})
		tok := api.URL + "/oauth2/token"
		for i := range n {
			if code, _ := status(t, hc, "POST", tok, "grant_type=client_credentials&client_id=erp&client_secret=guess"+strconv.Itoa(i), "Content-Type", form); code != 401 {
				t.Fatalf("wrong secret %d: %d, want 401", i+1, code)
			}
		}
		code, h := status(t, hc, "POST", tok, "grant_type=client_credentials&client_id=erp&client_secret=right-secret", "Content-Type", form)
		t.Logf("after %d wrong secrets, the right one: %d, Retry-After %q", n, code, h.Get("Retry-After"))
		if code != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("after %d wrong secrets: %d Retry-After %q, want 429 with Retry-After", n, code, h.Get("Retry-After"))
		}
	})

	t.Run("token-cap", func(t *testing.T) {
		api := binharness.StartAPI(t, binharness.APIOptions{OAuthID: "erp", OAuthSecret: "right-secret"})
		var toks []string
		for range 25 {
			req, _ := http.NewRequest("POST", api.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials&client_id=erp&client_secret=right-secret"))
			req.Header.Set("Content-Type", form)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_, rest, _ := strings.Cut(string(b), `"access_token":"`)
			tk, _, _ := strings.Cut(rest, `"`)
			if resp.StatusCode != 200 || tk == "" {
				t.Fatalf("token: %d %s", resp.StatusCode, b)
			}
			toks = append(toks, tk)
		}
		u := api.URL + "/api/integration_history_records?limit=1"
		if code, _ := status(t, hc, "GET", u, "", "Authorization", "Bearer "+toks[0]); code != 401 {
			t.Errorf("the oldest of 25 tokens: %d, want 401 (revoked by the cap of 20)", code)
		}
		for _, i := range []int{5, 24} {
			if code, _ := status(t, hc, "GET", u, "", "Authorization", "Bearer "+toks[i]); code != 200 {
				t.Errorf("token %d of 25: %d, want 200", i+1, code)
			}
		}
	})
}

// TestSlowBodyCut: a body that trickles into /oauth2/token is cut at the
// 5 s body deadline (408), not held for the server's read timeout; and
// connections from one address beyond --max-conns-per-addr are closed.
func TestSlowBodyCut(t *testing.T) {
	t.Parallel()
	api := binharness.StartAPI(t, binharness.APIOptions{Args: []string{"--max-conns-per-addr", "3"}})
	addr := strings.TrimPrefix(api.URL, "http://")

	t.Run("slow-body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=")
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // one byte every 200 ms: 200 s for the whole body
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		defer func() { close(stop); <-done }()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		took := time.Since(start)
		t.Logf("slow body answered %q after %v", strings.TrimSpace(line), took.Round(10*time.Millisecond))
		if err != nil || !strings.Contains(line, " 408 ") {
			t.Fatalf("slow body: %q %v, want 408", line, err)
		}
		if took > 7*time.Second {
			t.Errorf("slow body held %v, want it cut at the 5 s deadline", took)
		}
	})

	// An unauthenticated body is never waited for: the 401 goes out at
	// once and the connection is closed.
	t.Run("unauthenticated-slow-body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /api/integration_history_records HTTP/1.1\r\nHost: x\r\nX-COUPA-API-KEY: wrong\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		took := time.Since(start)
		line, _, _ := strings.Cut(string(b), "\r\n")
		t.Logf("unauthenticated slow body: %q, connection closed after %v (%v)", line, took.Round(time.Millisecond), err)
		if !strings.Contains(line, " 401 ") || took > 2*time.Second {
			t.Errorf("unauthenticated slow body: %q after %v, want a 401 and the connection closed at once", line, took)
		}
	})

	t.Run("conns-per-addr", func(t *testing.T) {
		// ask sends one keep-alive request on c and reads the status line:
		// "" when the server closed c instead of answering.
		ask := func(c net.Conn) string {
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("a connection was held open with no answer")
			}
			return strings.TrimSpace(line)
		}
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		// The limit counts every connection from 127.0.0.1, and this test
		// process may hold one more already (the harness's idle keep-alive
		// connection from waiting for the server), so open connections one
		// at a time until the server closes one instead of answering.
		// The earlier subtests' connections stay counted until the server
		// has finished closing them (net/http lingers before it closes a
		// connection whose body it did not read), so on a loaded machine
		// probe again until they are gone.
		for deadline := time.Now().Add(15 * time.Second); ; {
			for len(held) < 4 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				if ask(c) == "" {
					c.Close()
					break
				}
				held = append(held, c)
			}
			if len(held) >= 2 || time.Now().After(deadline) {
				break
			}
			for _, c := range held {
				c.Close()
			}
			held = nil
			time.Sleep(250 * time.Millisecond)
		}
		if len(held) > 3 || len(held) < 2 {
			t.Fatalf("%d connections from one address were served at once, want at most 3 (at least 2: at most one other is open)", len(held))
		}
		held[0].Close()
		held = held[1:]
		time.Sleep(200 * time.Millisecond)
		if code, _ := status(t, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "GET", api.URL+"/healthz", ""); code != 200 {
			t.Errorf("after one closed: %d", code)
		}
	})
}

// TestTLSEndToEnd: the built worker posts to the built ihr-api over
// HTTPS, trusting it through api.ca_file; with another CA's file it is
// refused at once (no retries) and nothing is recorded.
func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	bins := binharness.Binaries(t)
	files := binharness.NewTLSFiles(t)
	api := binharness.StartAPI(t, binharness.APIOptions{TLSCert: files.Cert, TLSKey: files.Key, CAFile: files.CA, Integrations: []string{integration}})
	if !strings.HasPrefix(api.URL, "https://") {
		t.Fatalf("URL %s", api.URL)
	}
	block := func(ca string) string {
		return fmt.Sprintf("  url: %s\n  api_key: %s\n  ca_file: %s\n", api.URL, api.Key, ca)
	}
	r := binharness.Exec(t, 2*time.Minute, nil, bins.Worker, "run", "--config", workerConfig(t, block(files.CA), localSource(t, "TLS", 20)), "--no-progress")
	if r.Code != 0 {
		t.Fatalf("worker over TLS with the CA file: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := len(api.CountByFilename(t, "TLS.csv")); got != 20 {
		t.Fatalf("%d records over TLS, want 20", got)
	}

	wrong := binharness.NewTLSFiles(t)
	r = binharness.Exec(t, 2*time.Minute, nil, bins.Worker, "run", "--config", workerConfig(t, block(wrong.CA), localSource(t, "WRONG", 5)), "--no-progress")
	t.Logf("wrong CA: exit %d after %v: %s", r.Code, r.Elapsed.Round(time.Millisecond), binharness.Tail(r.Stderr, 400))
	if r.Code != 2 || !strings.Contains(r.Stderr, "certificate") || !strings.Contains(r.Stderr, "api.ca_file") {
		t.Errorf("wrong CA: exit %d, want 2 naming the certificate and api.ca_file\n%s", r.Code, r.Stderr)
	}
	if r.Elapsed > 10*time.Second {
		t.Errorf("wrong CA took %v: a certificate error must not be retried", r.Elapsed)
	}
	if got := len(api.CountByFilename(t, "WRONG.csv")); got != 0 {
		t.Errorf("%d records through a refused certificate", got)
	}
	// Without ca_file the system roots do not know the test CA either.
	noCA := fmt.Sprintf("  url: %s\n  api_key: %s\n", api.URL, api.Key)
	if r := binharness.Exec(t, 2*time.Minute, nil, bins.Worker, "run", "--config", workerConfig(t, noCA, localSource(t, "NOCA", 1)), "--no-progress"); r.Code != 2 {
		t.Errorf("no ca_file: exit %d against a private CA, want 2", r.Code)
	}
}

// TestSecretsFromFilesNotInArgv: ihr-api takes its API key and OAuth
// clients from files; both work and neither shows in the process's
// command line (what ps prints, /proc/PID/cmdline).
func TestSecretsFromFilesNotInArgv(t *testing.T) {
	t.Parallel()
	key, oauthSecret := secret("file-key-"), secret("file-oauth-")
	api := binharness.StartAPI(t, binharness.APIOptions{Key: key, OAuthID: "erp", OAuthSecret: oauthSecret, SecretsInFiles: true})
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", api.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.ReplaceAll(string(cmdline), "\x00", " ")
	t.Logf("ihr-api argv: %s", args)
	if !strings.Contains(args, "--api-key-file") || !strings.Contains(args, "--oauth-clients-file") {
		t.Errorf("argv lacks the file flags: %s", args)
	}
	for what, s := range map[string]string{"API key": key, "OAuth secret": oauthSecret} {
		if strings.Contains(args, s) {
			t.Errorf("the %s shows in ps: %s", what, args)
		}
	}
	// StartAPI already used the key; the OAuth client works too.
	c, err := apiclient.New(apiclient.Config{BaseURL: api.URL, OAuth: &apiclient.OAuthConfig{ClientID: "erp", ClientSecret: oauthSecret}, RateLimit: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.CreateIntegration(ctx, &apiclient.Integration{Code: "FROM-FILE", Name: "x"}); err != nil {
		t.Fatalf("OAuth client from --oauth-clients-file: %v", err)
	}
}
