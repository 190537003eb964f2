package ftpstore_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/ftpstore"
	"github.com/ihr-tools/ihr/filestore/storetest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func config(srv *testservers.FTP, tls bool, root string) ftpstore.Config {
	cfg := ftpstore.Config{Addr: srv.Addr, User: srv.User, Password: srv.Password,
		Root: root, Timeout: 10 * time.Second}
	if tls {
		cfg.TLS, cfg.CAFile = true, srv.CAFile
	}
	return cfg
}

func newStore(t testing.TB, cfg ftpstore.Config) filestore.Store {
	s, err := ftpstore.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// subfolder makes an empty folder on the server for one test.
func subfolder(t testing.TB, srv *testservers.FTP, name string) string {
	s := newStore(t, config(srv, false, "/"))
	defer s.Close()
	if err := s.MkdirAll(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return "/" + name
}

func TestConformancePlain(t *testing.T) {
	srv := testservers.StartFTP(t)
	storetest.Run(t, func(t *testing.T) filestore.Store {
		return newStore(t, config(srv, false, subfolder(t, srv, "plain")))
	})
}

func TestConformanceTLS(t *testing.T) {
	srv := testservers.StartFTP(t)
	storetest.Run(t, func(t *testing.T) filestore.Store {
		return newStore(t, config(srv, true, subfolder(t, srv, "tls")))
	}, storetest.LargeFileSize(32<<20))
}

func TestConnectionDrop(t *testing.T) {
	srv := testservers.StartFTP(t)
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[tls]
		t.Run(name, func(t *testing.T) {
			storetest.RunConnectionDrop(t, func(t *testing.T, dial dialFunc) filestore.Store {
				cfg := config(srv, tls, subfolder(t, srv, "drop-"+name))
				cfg.DialContext = dial
				return newStore(t, cfg)
			})
		})
	}
}

func TestCertificateVerified(t *testing.T) {
	srv := testservers.StartFTP(t)
	ctx := context.Background()
	// Without the CA file the self-signed certificate must not verify
	// against the system roots.
	cfg := config(srv, true, "/")
	cfg.CAFile = ""
	s := newStore(t, cfg)
	defer s.Close()
	_, err := s.List(ctx, "")
	if err == nil {
		t.Fatal("accepted a self-signed certificate without its CA")
	}
	if !filestore.IsPermanent(err) {
		t.Errorf("certificate failure should be permanent: %v", err)
	}
	// A CA file with some other certificate refuses too.
	cfg.CAFile = testservers.NewTLSFiles(t).CA
	s2 := newStore(t, cfg)
	defer s2.Close()
	if _, err := s2.List(ctx, ""); err == nil {
		t.Fatal("accepted a certificate from an unrelated CA")
	}
	// Only the explicit switch skips verification.
	cfg.CAFile, cfg.InsecureSkipVerify = "", true
	s3 := newStore(t, cfg)
	defer s3.Close()
	if _, err := s3.List(ctx, ""); err != nil {
		t.Fatalf("InsecureSkipVerify: %v", err)
	}
}

func TestBadPasswordIsPermanentAndNotLeaked(t *testing.T) {
	srv := testservers.StartFTP(t)
	const secret = "wrong-Pa55word-xyz"
	cfg := config(srv, false, "/")
	cfg.Password = secret
	s := newStore(t, cfg)
	defer s.Close()
	_, err := s.List(context.Background(), "")
	if err == nil {
		t.Fatal("logged in with a wrong password")
	}
	if !filestore.IsPermanent(err) {
		t.Errorf("login failure should be permanent: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error leaks the password: %v", err)
	}
}

func BenchmarkDownload(b *testing.B) {
	srv := testservers.StartFTP(b)
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[tls]
		b.Run(name, func(b *testing.B) {
			s := newStore(b, config(srv, tls, subfolder(b, srv, "bench-"+name)))
			defer s.Close()
			storetest.BenchmarkDownload(b, s)
		})
	}
}
