package s3store_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/s3store"
	"github.com/ihr-tools/ihr/filestore/storetest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func config(srv *testservers.S3, prefix string) s3store.Config {
	return s3store.Config{
		Bucket: srv.Bucket, Prefix: prefix, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, Timeout: 10 * time.Second,
	}
}

func newStore(t testing.TB, cfg s3store.Config) filestore.Store {
	s, err := s3store.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := testservers.StartS3(t)
	storetest.Run(t, func(t *testing.T) filestore.Store {
		return newStore(t, config(srv, "conformance/run"))
	}, storetest.VirtualFolders())
}

func TestConnectionDrop(t *testing.T) {
	srv := testservers.StartS3(t)
	storetest.RunConnectionDrop(t, func(t *testing.T, dial dialFunc) filestore.Store {
		cfg := config(srv, "drop")
		cfg.DialContext = dial
		return newStore(t, cfg)
	})
}

func TestETagAndPrefix(t *testing.T) {
	srv := testservers.StartS3(t)
	ctx := context.Background()
	s := newStore(t, config(srv, "/outer/inner/"))
	defer s.Close()
	storetest.Put(t, s, "inbox/a.csv", []byte("hello"))
	fis, err := s.List(ctx, "inbox")
	if err != nil || len(fis) != 1 {
		t.Fatalf("List: %v, %v", fis, err)
	}
	// The MD5 of "hello": a single-part upload's ETag.
	if fis[0].ETag != "5d41402abc4b2a76b9719d911017c592" {
		t.Errorf("ETag %q", fis[0].ETag)
	}
	// The prefix is honoured: the whole bucket sees outer/inner/inbox/a.csv.
	whole := newStore(t, config(srv, ""))
	defer whole.Close()
	if got := storetest.Get(t, whole, "outer/inner/inbox/a.csv"); string(got) != "hello" {
		t.Errorf("object under the prefix: %q", got)
	}
}

func TestBadCredentialsArePermanentAndNotLeaked(t *testing.T) {
	srv := testservers.StartS3(t)
	const secret = "wrongSecretKeyValue123"
	cfg := config(srv, "")
	cfg.SecretAccessKey = secret
	s := newStore(t, cfg)
	defer s.Close()
	_, err := s.List(context.Background(), "")
	if err == nil {
		t.Fatal("listed with a wrong secret key")
	}
	if !filestore.IsPermanent(err) {
		t.Errorf("refused credentials should be permanent: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error leaks the secret: %v", err)
	}
}

func TestServerRestartRetried(t *testing.T) {
	srv := testservers.StartS3(t)
	ctx := context.Background()
	s := newStore(t, config(srv, "restart"))
	defer s.Close()
	storetest.Put(t, s, "f.csv", []byte("x"))
	srv.Restart(t)
	rs := filestore.WithRetry(s, storetest.FastRetry, zaptest.NewLogger(t))
	if _, err := rs.Stat(ctx, "f.csv"); err != nil {
		t.Fatalf("Stat after restart: %v", err)
	}
}

func BenchmarkDownload(b *testing.B) {
	srv := testservers.StartS3(b)
	s := newStore(b, config(srv, "bench"))
	defer s.Close()
	storetest.BenchmarkDownload(b, s)
}
