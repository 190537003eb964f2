package reliability_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/ftpstore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/s3store"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/filestore/storetest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// armingStore arms a storetest.Faults dialer when the pipeline reaches a
// chosen operation, so the cut lands inside that transfer: reading the
// input file (each of its first `reads` opens) or writing its report (the
// first `writes` report uploads).
type armingStore struct {
	filestore.Store
	f             *storetest.Faults
	reads, writes atomic.Int32
	cutAfter      int64
}

func (s *armingStore) Open(ctx context.Context, name string, off int64) (io.ReadCloser, error) {
	if strings.HasPrefix(name, "inbox/") && s.reads.Add(-1) >= 0 {
		s.f.CutReadAfter(s.cutAfter)
	}
	return s.Store.Open(ctx, name, off)
}

func (s *armingStore) Write(ctx context.Context, name string, r io.Reader) error {
	if strings.HasPrefix(name, "reports/") && s.writes.Add(-1) >= 0 {
		s.f.CutWriteAfter(s.cutAfter)
		defer s.f.CutWriteAfter(-1)
	}
	return s.Store.Write(ctx, name, r)
}

// remoteStore starts a real SFTP or FTP server and returns a store on it
// whose connections go through dial.
func remoteStore(t *testing.T, kind string, dial dialFunc) filestore.Store {
	t.Helper()
	var s filestore.Store
	var err error
	switch kind {
	case "sftp":
		srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
		s, err = sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
			KnownHosts: srv.KnownHostsFile, Root: srv.Root, Timeout: 10 * time.Second, DialContext: dial}, zap.NewNop())
	case "ftp":
		srv := testservers.StartFTP(t)
		s, err = ftpstore.New(ftpstore.Config{Addr: srv.Addr, User: srv.User, Password: srv.Password,
			Root: "/", Timeout: 10 * time.Second, DialContext: dial}, zap.NewNop())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStoreConnectionCut cuts the SFTP or FTP connection in the middle of
// reading the input file (both reading passes) or of uploading its report.
// Whatever the pass makes of it, the file is at all times in exactly one
// place, and in the end archived with one record per row.
func TestStoreConnectionCut(t *testing.T) {
	for _, kind := range []string{"sftp", "ftp"} {
		for _, when := range []string{"mid-download", "mid-report-upload"} {
			t.Run(kind+"/"+when, func(t *testing.T) {
				t.Parallel()
				srv, direct := apiServer(t)
				faults := storetest.NewFaults()
				raw := remoteStore(t, kind, faults.DialContext)
				arm := &armingStore{Store: raw, f: faults, cutAfter: 40 << 10}
				if when == "mid-download" {
					arm.reads.Store(2)
				} else {
					arm.writes.Store(1)
				}
				store := filestore.WithRetry(arm, storetest.FastRetry, nil)
				p := newPipe(t, srv, direct, srv.URL, nil, store)
				name := fmtName(kind, when)
				content, ids := rows(strings.ToUpper(kind), 3000) // ≈ 170 KB in, ≈ 200 KB of report
				p.put(name, content)
				p.watch = name
				p.untilDone(90 * time.Second)
				if faults.Cuts() == 0 {
					t.Fatalf("no connection was cut")
				}
				t.Logf("%d connection(s) cut", faults.Cuts())
				p.checkExactlyOnce(name, ids)
			})
		}
	}
}

// TestS3Restart restarts the S3 server while the pipeline is posting a
// file it streams from S3; the report and the move come after the restart.
func TestS3Restart(t *testing.T) {
	t.Parallel()
	srv, direct := apiServer(t)
	s3 := testservers.StartS3(t)
	raw, err := s3store.New(context.Background(), s3store.Config{Bucket: s3.Bucket, Endpoint: s3.Endpoint,
		Region: s3.Region, PathStyle: true, AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey,
		Timeout: 10 * time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	p := newPipe(t, srv, direct, srv.URL, nil, filestore.WithRetry(raw, filestore.DefaultRetryPolicy(), nil))
	name := "s3-restart.csv"
	content, ids := rows("S3R", 3000)
	p.put(name, content)
	p.watch = name

	reached := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	p.api.onCreate = func(n int) {
		if n >= 300 {
			once.Do(func() { close(reached) })
			<-release // hold this worker until the server is back
		}
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_, err := p.im.RunSource(ctx, p.src)
		done <- err
	}()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("the pass ended before the restart: %v", err)
	}
	s3.Stop()
	time.Sleep(300 * time.Millisecond) // a moment with no server at all
	s3.Start(t)
	close(release)
	t.Logf("pass across the restart: %v", <-done)
	p.checkOnePlace("")
	p.untilDone(90 * time.Second)
	p.checkExactlyOnce(name, ids)
}

// TestLocalDiskFull runs the pipeline on a 1 MiB tmpfs that fills up while
// the report is written: the pass fails, the file stays in inbox/ with no
// half-written report; once space is freed, the next pass archives it with
// one record per row.
func TestLocalDiskFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		testservers.Missing(t, "cannot mount a tmpfs (needs root): "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	srv, direct := apiServer(t)
	store, err := local.New(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	p := newPipe(t, srv, direct, srv.URL, nil, store)
	name := "disk-full.csv"
	content, ids := rows("DISK", 3000)
	p.put(name, content)
	p.watch = name

	// Leave about 60 KB: less than the ≈ 200 KB report.
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, max(free-60<<10, 0)), 0o644); err != nil {
		t.Fatalf("filling the disk: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err = p.im.RunSource(ctx, p.src)
	cancel()
	t.Logf("pass on a full disk: %v", err)
	if err == nil {
		t.Fatalf("a pass on a full disk reported no error")
	}
	p.checkOnePlace("inbox")
	if ents, _ := os.ReadDir(filepath.Join(dir, "reports")); len(ents) != 0 {
		t.Errorf("reports/ holds %v after a failed report write, want nothing", ents)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.untilDone(60 * time.Second)
	p.checkExactlyOnce(name, ids)
}
