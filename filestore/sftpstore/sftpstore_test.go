package sftpstore_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/filestore/storetest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func keyConfig(srv *testservers.SFTP, root string) sftpstore.Config {
	return sftpstore.Config{
		Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
		KnownHosts: srv.KnownHostsFile, Root: root, Timeout: 10 * time.Second,
	}
}

func newStore(t *testing.T, cfg sftpstore.Config) filestore.Store {
	s, err := sftpstore.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceKey(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	storetest.Run(t, func(t *testing.T) filestore.Store { return newStore(t, keyConfig(srv, srv.Root)) })
}

func TestConformancePassword(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{Password: true})
	storetest.Run(t, func(t *testing.T) filestore.Store {
		return newStore(t, sftpstore.Config{
			Addr: srv.Addr, User: srv.User, Password: srv.Password,
			KnownHosts: srv.KnownHostsFile, Root: srv.Root, Timeout: 10 * time.Second,
		})
	}, storetest.LargeFileSize(16<<20)) // the 200 MB run is the key variant's
}

func TestConnectionDrop(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	storetest.RunConnectionDrop(t, func(t *testing.T, dial dialFunc) filestore.Store {
		cfg := keyConfig(srv, srv.Root)
		cfg.DialContext = dial
		return newStore(t, cfg)
	})
}

func TestHostKeyChecked(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	ctx := context.Background()

	// A known_hosts file with another key for this address must refuse.
	other := filepath.Join(t.TempDir(), "known_hosts")
	line := "[127.0.0.1]:" + strconv.Itoa(srv.Port) + " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
	if err := os.WriteFile(other, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := keyConfig(srv, srv.Root)
	cfg.KnownHosts = other
	s := newStore(t, cfg)
	defer s.Close()
	_, err := s.List(ctx, "")
	if err == nil {
		t.Fatal("connected to a server whose key is not in known_hosts")
	}
	if !filestore.IsPermanent(err) {
		t.Errorf("host key mismatch should be permanent: %v", err)
	}

	// An empty known_hosts refuses too.
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	cfg.KnownHosts = empty
	s2 := newStore(t, cfg)
	defer s2.Close()
	if _, err := s2.List(ctx, ""); err == nil {
		t.Fatal("connected with an empty known_hosts")
	}

	// Only the loudly named switch skips the check.
	cfg.InsecureIgnoreHostKey = true
	s3 := newStore(t, cfg)
	defer s3.Close()
	if _, err := s3.List(ctx, ""); err != nil {
		t.Fatalf("InsecureIgnoreHostKey: %v", err)
	}
}

func TestBadPasswordIsPermanentAndNotLeaked(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{Password: true})
	const secret = "wrong-Pa55word-xyz"
	s := newStore(t, sftpstore.Config{Addr: srv.Addr, User: srv.User, Password: secret,
		KnownHosts: srv.KnownHostsFile, Root: srv.Root, Timeout: 10 * time.Second})
	defer s.Close()
	_, err := s.List(context.Background(), "")
	if err == nil {
		t.Fatal("logged in with a wrong password")
	}
	if !filestore.IsPermanent(err) {
		t.Errorf("auth failure should be permanent: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestCancelledContextAbortsStream(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	s := newStore(t, keyConfig(srv, srv.Root))
	defer s.Close()
	storetest.Put(t, s, "f.bin", make([]byte, 4<<20))
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := s.Open(ctx, "f.bin", 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := rc.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	var rerr error
	for rerr == nil {
		_, rerr = rc.Read(buf)
	}
	rc.Close()
	if !errors.Is(rerr, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", rerr)
	}
	// The store keeps working on a fresh connection.
	if _, err := s.Stat(context.Background(), "f.bin"); err != nil {
		t.Errorf("Stat after cancelled stream: %v", err)
	}
}

func BenchmarkDownload(b *testing.B) {
	srv := testservers.StartSFTP(b, testservers.SFTPOptions{})
	s, err := sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
		KnownHosts: srv.KnownHostsFile, Root: srv.Root}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkDownload(b, s)
}

// Move relies on OpenSSH's plain rename refusing an existing target (the
// check in Move is only a second line of defence). Prove the server does.
func TestServerRenameRefusesExistingTarget(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	s := newStore(t, keyConfig(srv, srv.Root))
	defer s.Close()
	storetest.Put(t, s, "a.csv", []byte("a"))
	storetest.Put(t, s, "b.csv", []byte("b"))
	conn, err := ssh.Dial("tcp", srv.Addr, srv.ClientConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Rename(srv.Root+"/a.csv", srv.Root+"/b.csv"); err == nil {
		t.Fatal("OpenSSH's SFTP rename replaced an existing file")
	}
	if got := storetest.Get(t, s, "b.csv"); string(got) != "b" {
		t.Errorf("target changed: %q", got)
	}
}
