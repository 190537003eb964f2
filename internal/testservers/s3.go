package testservers

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// S3 is a running versitygw gateway with its POSIX backend. Clients must use
// path-style addressing.
type S3 struct {
	Endpoint  string // "http://127.0.0.1:PORT"
	Region    string // "us-east-1"
	AccessKey string
	SecretKey string
	Bucket    string // exists, empty at start
	Root      string // POSIX directory; the bucket is Root/Bucket, objects are files below it
	Port      int
	LogFile   string

	srv *server
	mu  sync.Mutex
	p   *proc
}

// StartS3 starts versitygw on a free loopback port with one empty bucket.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := findGoTool("versitygw")
	if bin == "" {
		Missing(t, "versitygw not found; install with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (or make tools)")
	}
	dir := t.TempDir()
	s := &S3{
		Region:    "us-east-1",
		AccessKey: "AK" + randomHex(9),
		SecretKey: randomHex(20),
		Bucket:    "ihr-test",
		Root:      filepath.Join(dir, "root"),
		LogFile:   filepath.Join(dir, "versitygw.log"),
	}
	s.srv = &server{name: "versitygw", bin: bin, logFile: s.LogFile, args: func(port int) ([]string, error) {
		// The credentials go on the command line, not in the log.
		return []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
			"--port", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "--quiet", "posix", s.Root}, nil
	}}
	// A bucket is a directory under the backend root.
	must(t, os.MkdirAll(filepath.Join(s.Root, s.Bucket), 0o755))
	p, port, err := s.srv.start(0)
	must(t, err)
	s.Port, s.p = port, p
	s.Endpoint = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the gateway (idempotent). The files under Root stay until the
// test ends.
func (s *S3) Stop() {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Restart stops the gateway and starts it again on the same port with the
// same data, as a server restart would look to a client. Clients keep their
// endpoint. It fails the test if the gateway does not come back.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Start(t)
}

// Start starts a gateway stopped with Stop again on the same port and data
// (for tests of an outage that lasts a while). It does nothing if the
// gateway is running.
func (s *S3) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.p != nil && !s.p.exited()
	s.mu.Unlock()
	if running {
		return
	}
	p, _, err := s.srv.start(s.Port)
	if err != nil {
		t.Fatalf("testservers: restart: %v", err)
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}
