package reliability_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
)

func secret(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestSecretsNeverLeak runs the built worker with every kind of secret
// configured (API key, OAuth client secret, SFTP password), at debug log
// level, through good and bad input and through wrong credentials, then
// greps everything it produced (stdout, stderr, --json summaries, status,
// validate, reports, the ledger file, the server's logs) for the secrets.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	bins := binharness.Binaries(t)
	oauthID, oauthSecret := "ihr-worker", secret("oauth-secret-")
	api := binharness.StartAPI(t, binharness.APIOptions{OAuthID: oauthID, OAuthSecret: oauthSecret, Integrations: []string{integration}})
	sftp := testservers.StartSFTP(t, testservers.SFTPOptions{Password: true})
	if sftp.Password == "" {
		t.Fatal("the SFTP server has no password")
	}
	wrongKey, wrongPassword := secret("wrong-key-"), secret("wrong-password-")
	secrets := map[string]string{"API key": api.Key, "OAuth secret": oauthSecret, "SFTP password": sftp.Password,
		"wrong API key": wrongKey, "wrong SFTP password": wrongPassword}

	dir := t.TempDir()
	state := filepath.Join(dir, "state.db")
	source := func(pwVar string) string {
		return fmt.Sprintf("sources:\n  - name: erp\n    url: sftp://%s@%s%s\n    password: ${%s}\n    known_hosts: %s\n"+
			"    integration: %s\n    stable_for: 0s\n", sftp.User, sftp.Addr, sftp.Root, pwVar, sftp.KnownHostsFile, integration)
	}
	write := func(name, apiBlock, pwVar string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf("api:\n  url: %s\n%s  rate_limit: 0\n  max_retries: 1\n  timeout: 5s\nstate: sqlite:%s\n%s", api.URL, apiBlock, state, source(pwVar))
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyCfg := write("key.yaml", "  api_key: ${API_KEY}\n", "SFTP_PASSWORD")
	oauthCfg := write("oauth.yaml", fmt.Sprintf("  oauth:\n    client_id: %s\n    client_secret: ${OAUTH_SECRET}\n", oauthID), "SFTP_PASSWORD")
	wrongKeyCfg := write("wrong-key.yaml", "  api_key: ${WRONG_KEY}\n", "SFTP_PASSWORD")
	wrongPwCfg := write("wrong-pw.yaml", "  api_key: ${API_KEY}\n", "WRONG_PASSWORD")
	env := []string{"API_KEY=" + api.Key, "OAUTH_SECRET=" + oauthSecret, "SFTP_PASSWORD=" + sftp.Password,
		"WRONG_KEY=" + wrongKey, "WRONG_PASSWORD=" + wrongPassword}

	store, err := sftpstore.New(sftpstore.Config{Addr: sftp.Addr, User: sftp.User, Password: sftp.Password,
		KnownHosts: sftp.KnownHostsFile, Root: sftp.Root, Timeout: 10 * time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	put := func(name, content string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := store.MkdirAll(ctx, "inbox"); err != nil {
			t.Fatal(err)
		}
		if err := store.Write(ctx, "inbox/"+name, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	bad := binharness.Header + "S-1,InvoiceHeader,abc,Success,Functional,x\r\nS-2,NoSuchType,2,Success,Functional,y\r\n"

	var outputs []string
	run := func(wantCode int, args ...string) {
		t.Helper()
		r := binharness.Exec(t, 2*time.Minute, env, bins.Worker, append(args, "--log-level", "debug", "--log-format", "json")...)
		outputs = append(outputs, fmt.Sprintf("$ ihr-worker %s\n%s\n%s", strings.Join(args, " "), r.Stdout, r.Stderr))
		if wantCode >= 0 && r.Code != wantCode {
			t.Errorf("ihr-worker %v: exit %d, want %d\n%s", args, r.Code, wantCode, r.Stderr)
		}
	}
	good, _ := binharness.CSV("SEC", 50)
	put("a-good.csv", good)
	put("b-bad.csv", bad)
	run(1, "run", "--config", keyCfg, "--json")
	good2, _ := binharness.CSV("SEC2", 50)
	put("c-oauth.csv", good2)
	run(0, "run", "--config", oauthCfg, "--json")
	good3, _ := binharness.CSV("SEC3", 50) // not good's content: that would be skipped as a duplicate
	put("d-later.csv", good3)
	// A refused login is a setup error no rerun fixes: exit 2.
	run(2, "run", "--config", wrongKeyCfg, "--json")
	run(2, "run", "--config", wrongPwCfg)
	run(-1, "status", "--config", keyCfg, "--json")
	run(-1, "status", "--config", oauthCfg)
	local := filepath.Join(t.TempDir(), "v.csv")
	if err := os.WriteFile(local, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	run(-1, "validate", "--config", keyCfg, "--source", "erp", local)

	corpus := map[string]string{"ihr-api logs": api.Logs.String()}
	for i, o := range outputs {
		corpus[fmt.Sprintf("worker output %d", i)] = o
	}
	for _, d := range []string{"reports", "archive", "failed", "inbox"} {
		ents, _ := os.ReadDir(filepath.Join(sftp.Root, d))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(sftp.Root, d, e.Name()))
			if err == nil {
				corpus[d+"/"+e.Name()] = string(b)
			}
		}
	}
	if len(corpus) < 8 {
		t.Errorf("only %d outputs collected: %v", len(corpus), keys(corpus))
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(state + suffix); err == nil {
			corpus["ledger "+filepath.Base(state)+suffix] = string(b)
		}
	}
	for where, text := range corpus {
		for what, s := range secrets {
			if strings.Contains(text, s) {
				i := strings.Index(text, s)
				t.Errorf("the %s appears in %s: …%s…", what, where, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// traversalStore adds hostile names to the inbox listing, as a malicious
// or broken server could send them.
type traversalStore struct {
	filestore.Store
	names []string
}

func (s traversalStore) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	fis, err := s.Store.List(ctx, dir)
	if err != nil || dir != "inbox" {
		return fis, err
	}
	for _, n := range s.names {
		fis = append(fis, filestore.FileInfo{Name: n, Size: 10, ModTime: time.Now().Add(-time.Hour)})
	}
	return fis, nil
}

// TestPathTraversalNames gives the pipeline a listing with names that
// climb out of the inbox or the store root, and a real file whose name
// holds a backslash, and a symbolic link out of the root: only the honest
// file is processed; files the hostile
// names point at are neither read, posted, moved nor changed.
func TestPathTraversalNames(t *testing.T) {
	t.Parallel()
	srv, direct := apiServer(t)
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	targets := map[string]string{
		filepath.Join(root, "escape.csv"):           "external-id,document-type,document-id,status\r\nESC-1,InvoiceHeader,1,Success\r\n",
		filepath.Join(parent, "outside.csv"):        "external-id,document-type,document-id,status\r\nOUT-1,InvoiceHeader,1,Success\r\n",
		filepath.Join(root, "archive.csv"):          "external-id,document-type,document-id,status\r\nARC-1,InvoiceHeader,1,Success\r\n",
		filepath.Join(root, "inbox", `..\evil.csv`): "external-id,document-type,document-id,status\r\nEVIL-1,InvoiceHeader,1,Success\r\n",
	}
	for p, c := range targets {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A symbolic link in the inbox to a file outside the root.
	if err := os.Symlink(filepath.Join(parent, "outside.csv"), filepath.Join(root, "inbox", "link.csv")); err != nil {
		t.Fatal(err)
	}
	ls, err := local.New(root, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Close() })
	hostile := []string{"../escape.csv", "..", "../../outside.csv", "sub/../../outside.csv", "/etc/passwd.csv",
		`..\..\outside.csv`, "../archive.csv", ".", "", "a\x00.csv"}
	p := newPipe(t, srv, direct, srv.URL, nil, traversalStore{Store: ls, names: hostile})
	content, ids := rows("HONEST", 20)
	p.put("honest.csv", content)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	sum, err := p.im.RunSource(ctx, p.src)
	cancel()
	t.Logf("pass: %d files, err %v", len(sum.Files), err)
	for _, f := range sum.Files {
		t.Logf("  %s: %s %s %v", f.Name, f.Status, f.Reason, f.Err)
	}
	checkServer(t, direct, "honest.csv", ids)
	for p, c := range targets {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != c {
			t.Errorf("%s was moved or changed: %v", p, err)
		}
	}
	for _, n := range []string{"escape.csv", "outside.csv", "archive.csv", `..\evil.csv`, "evil.csv", "passwd.csv", "link.csv"} {
		checkServer(t, direct, n, nil)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 2 {
		t.Errorf("the store's parent folder holds %d entries, want root and outside.csv", len(ents))
	}
}

// TestSFTPUnknownHostKeyRefused points the built worker at an SFTP server
// whose host key differs from the one in known_hosts: the run fails as a
// source that cannot be reached (exit 3), names the host key as the
// reason, and touches nothing.
func TestSFTPUnknownHostKeyRefused(t *testing.T) {
	t.Parallel()
	bins := binharness.Binaries(t)
	sftp := testservers.StartSFTP(t, testservers.SFTPOptions{})
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", sftp.Host, sftp.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))))
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(sftp.Root, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	content, _ := binharness.CSV("HK", 5)
	if err := os.WriteFile(filepath.Join(sftp.Root, "inbox", "hk.csv"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "worker.yaml")
	y := fmt.Sprintf("api:\n  url: http://127.0.0.1:1\n  api_key: unused\nstate: sqlite:%s\nsources:\n  - name: erp\n"+
		"    url: sftp://%s@%s%s\n    key_file: %s\n    known_hosts: %s\n    integration: %s\n    stable_for: 0s\n",
		filepath.Join(dir, "state.db"), sftp.User, sftp.Addr, sftp.Root, sftp.KeyFile, kh, integration)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	r := binharness.Exec(t, 2*time.Minute, nil, bins.Worker, "run", "--config", cfg, "--no-progress")
	t.Logf("exit %d: %s", r.Code, binharness.Tail(r.Stderr, 600))
	// No rerun fixes a host key that does not match: a setup error, exit 2.
	if r.Code != 2 {
		t.Errorf("exit %d, want 2 (configuration: the host key does not match)", r.Code)
	}
	if e := strings.ToLower(r.Stderr); !strings.Contains(e, "host key") && !strings.Contains(e, "key mismatch") {
		t.Errorf("stderr does not name the host key as the reason:\n%s", r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(sftp.Root, "inbox", "hk.csv")); err != nil {
		t.Errorf("the file left the inbox: %v", err)
	}
	for _, d := range []string{"archive", "failed", "reports"} {
		if ents, _ := os.ReadDir(filepath.Join(sftp.Root, d)); len(ents) > 0 {
			t.Errorf("%s/ holds %d entries after a refused connection", d, len(ents))
		}
	}
}
