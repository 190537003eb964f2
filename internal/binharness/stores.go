package binharness

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/s3store"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// Source is a worker source on a real store, ready for files.
type Source struct {
	Kind string // local, sftp, s3
	// YAML is the source's store lines for the worker configuration (url
	// and settings), indented for a list item under sources:.
	YAML string
	// Store reaches the same folder from the test, for staging files and
	// checking where they ended.
	Store filestore.Store
	// Local is the folder on this machine that holds the source's files
	// (local: the root; sftp: the server root; s3: the bucket folder).
	Local string
	// SFTP and S3 are the servers, for fault tests.
	SFTP *testservers.SFTP
	S3   *testservers.S3
}

// NewSource starts (for sftp and s3) a real server and returns a source on
// it. Secrets appear in YAML as ${VAR} references only; Env holds them.
func NewSource(t testing.TB, kind string) (*Source, []string) {
	t.Helper()
	s := &Source{Kind: kind}
	var env []string
	var err error
	switch kind {
	case "local":
		s.Local = t.TempDir()
		s.YAML = fmt.Sprintf("    url: file://%s\n", filepath.ToSlash(s.Local))
		s.Store, err = localStore(s.Local)
	case "sftp":
		srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
		s.SFTP, s.Local = srv, srv.Root
		s.YAML = fmt.Sprintf("    url: sftp://%s@%s%s\n    key_file: %s\n    known_hosts: %s\n",
			srv.User, srv.Addr, srv.Root, srv.KeyFile, srv.KnownHostsFile)
		s.Store, err = sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
			KnownHosts: srv.KnownHostsFile, Root: srv.Root, Timeout: 30 * time.Second}, zap.NewNop())
	case "s3":
		srv := testservers.StartS3(t)
		s.S3, s.Local = srv, filepath.Join(srv.Root, srv.Bucket)
		s.YAML = fmt.Sprintf("    url: s3://%s/drop\n    endpoint: %s\n    region: %s\n    path_style: true\n"+
			"    access_key_id: %s\n    secret_access_key: ${BENCH_S3_SECRET}\n", srv.Bucket, srv.Endpoint, srv.Region, srv.AccessKey)
		env = append(env, "BENCH_S3_SECRET="+srv.SecretKey)
		s.Local = filepath.Join(s.Local, "drop")
		s.Store, err = s3store.New(context.Background(), s3store.Config{Bucket: srv.Bucket, Prefix: "drop",
			Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true, AccessKeyID: srv.AccessKey,
			SecretAccessKey: srv.SecretKey, Timeout: 30 * time.Second}, zap.NewNop())
	default:
		t.Fatalf("binharness: unknown store kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Store.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, d := range []string{"inbox", "archive", "failed", "reports"} {
		if err := s.Store.MkdirAll(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	return s, env
}

// Put copies the local file src into the store under name (e.g.
// "inbox/a.csv").
func (s *Source) Put(t testing.TB, name, src string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.Store.Write(ctx, name, f); err != nil {
		t.Fatal(err)
	}
}

// PutString writes content into the store under name.
func (s *Source) PutString(t testing.TB, name, content string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Store.Write(ctx, name, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
}

// Names lists the files of one folder of the store.
func (s *Source) Names(t testing.TB, dir string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fis, err := s.Store.List(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name)
	}
	return out
}

// Exists says whether name is in the store.
func (s *Source) Exists(t testing.TB, name string) bool {
	t.Helper()
	dir, base := path.Split(name)
	for _, n := range s.Names(t, strings.TrimSuffix(dir, "/")) {
		if n == base {
			return true
		}
	}
	return false
}

// WorkerConfig writes a worker configuration with this one source (named
// "bench", integration ERP-BENCH, stable at once) to dir/worker.yaml and
// returns its path. apiYAML holds the api: block's lines after url (each
// indented two spaces); extra is appended to the source.
func WorkerConfig(t testing.TB, dir, apiURL, apiYAML string, src *Source, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf("api:\n  url: %s\n%sstate: sqlite:%s\nsources:\n  - name: bench\n%s    integration: ERP-BENCH\n    stable_for: 0s\n%s",
		apiURL, apiYAML, filepath.Join(dir, "state.db"), src.YAML, extra)
	p := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func localStore(root string) (filestore.Store, error) { return local.New(root, zap.NewNop()) }
