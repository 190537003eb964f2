package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/launch"
)

// start runs the command with args until the test ends.
func start(t *testing.T, args ...string) (addr string, stderr *binharness.SyncBuffer) {
	t.Helper()
	addr, err := launch.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &binharness.SyncBuffer{}
	cmd := newCommand(stderr)
	cmd.SetArgs(append([]string{"--addr", addr}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ihr-api exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("ihr-api did not shut down")
		}
	})
	for i := 0; ; i++ {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			return addr, stderr
		}
		if i > 200 {
			t.Fatalf("ihr-api did not come up: %v\n%s", err, stderr)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func get(t *testing.T, url, key string) int {
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("X-COUPA-API-KEY", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestFlagsAndEnv(t *testing.T) {
	t.Setenv("IHR_API_KEYS", "env-key-1, env-key-2")
	t.Setenv("IHR_API_RATE_LIMIT", "1000")
	t.Setenv("IHR_API_STRICT", "true")
	addr, _ := start(t, "--db", "sqlite:"+filepath.Join(t.TempDir(), "a.db"), "--api-key", "flag-key")
	u := "http://" + addr + "/api/integration_history_records"
	if c := get(t, u, "flag-key"); c != 200 {
		t.Fatalf("flag key: %d", c)
	}
	// --api-key replaces the environment's list, as flags override env.
	if c := get(t, u, "env-key-1"); c != 401 {
		t.Fatalf("env key with a flag given: %d", c)
	}
	if c := get(t, "http://"+addr+"/metrics", ""); c != 200 {
		t.Fatalf("metrics: %d", c)
	}
}

func TestEnvOnly(t *testing.T) {
	t.Setenv("IHR_API_KEYS", "env-key-1,env-key-2")
	t.Setenv("IHR_API_DB", "sqlite:"+filepath.Join(t.TempDir(), "b.db"))
	addr, _ := start(t)
	if c := get(t, "http://"+addr+"/api/integration_history_records", "env-key-2"); c != 200 {
		t.Fatalf("env key: %d", c)
	}
}

func TestNoCredentialsGeneratesKey(t *testing.T) {
	t.Setenv("IHR_API_KEYS", "")
	t.Setenv("IHR_API_OAUTH_CLIENTS", "")
	addr, stderr := start(t, "--db", "sqlite:"+filepath.Join(t.TempDir(), "c.db"))
	m := regexp.MustCompile(`X-COUPA-API-KEY: ([0-9a-f]{32})`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no generated key printed:\n%s", stderr)
	}
	u := "http://" + addr + "/api/integration_history_records"
	if c := get(t, u, ""); c != 401 {
		t.Fatalf("open server: %d", c)
	}
	if c := get(t, u, m[1]); c != 200 {
		t.Fatalf("generated key: %d", c)
	}
	if !strings.Contains(stderr.String(), "NO CREDENTIALS CONFIGURED") {
		t.Fatal("no warning")
	}
}

func TestBadOAuthClientFlag(t *testing.T) {
	cmd := newCommand(&binharness.SyncBuffer{})
	cmd.SetArgs([]string{"--oauth-client", "only-an-id", "--db", "sqlite:" + filepath.Join(t.TempDir(), "d.db")})
	if err := cmd.Execute(); err == nil || strings.Contains(err.Error(), "only-an-id:") && !strings.Contains(err.Error(), "***") {
		t.Fatalf("want an error without the secret, got %v", err)
	}
}

func TestSecretsFiles(t *testing.T) {
	t.Setenv("IHR_API_KEYS", "")
	t.Setenv("IHR_API_OAUTH_CLIENTS", "")
	dir := t.TempDir()
	keys, clients := filepath.Join(dir, "keys"), filepath.Join(dir, "clients")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(keys, []byte("# rotated 2026-11\nfile-key-1\n\n  file-key-2  \n"), 0o600))
	must(os.WriteFile(clients, []byte("erp:s3cret\n"), 0o600))
	addr, _ := start(t, "--db", "sqlite:"+filepath.Join(dir, "e.db"), "--api-key-file", keys, "--oauth-clients-file", clients)
	u := "http://" + addr + "/api/integration_history_records"
	for _, k := range []string{"file-key-1", "file-key-2"} {
		if c := get(t, u, k); c != 200 {
			t.Errorf("%s: %d", k, c)
		}
	}
	res, err := http.PostForm("http://"+addr+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"erp"}, "client_secret": {"s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("token for a client from the file: %d", res.StatusCode)
	}

	for name, content := range map[string]string{"empty": "# nothing\n", "no secret": "erp\n"} {
		bad := filepath.Join(dir, "bad")
		must(os.WriteFile(bad, []byte(content), 0o600))
		cmd := newCommand(&binharness.SyncBuffer{})
		cmd.SetArgs([]string{"--oauth-clients-file", bad, "--db", "sqlite:" + filepath.Join(dir, "f.db")})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--oauth-clients-file") {
			t.Errorf("%s: err = %v, want one naming --oauth-clients-file", name, err)
		}
	}
	cmd := newCommand(&binharness.SyncBuffer{})
	cmd.SetArgs([]string{"--tls-cert", filepath.Join(dir, "nope.pem"), "--db", "sqlite:" + filepath.Join(dir, "g.db")})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("--tls-cert alone: %v", err)
	}
}
