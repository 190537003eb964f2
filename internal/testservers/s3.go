package testservers

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
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

	bin string
	mu  sync.Mutex
	p   *proc
}

// StartS3 starts versitygw on a free loopback port with one empty bucket.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := findGoTool("versitygw")
	if bin == "" {
		missing(t, "versitygw not found; install with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (or make tools)")
	}
	dir := t.TempDir()
	s := &S3{
		Region:    "us-east-1",
		AccessKey: "AK" + randomHex(9),
		SecretKey: randomHex(20),
		Bucket:    "ihr-test",
		Root:      filepath.Join(dir, "root"),
		LogFile:   filepath.Join(dir, "versitygw.log"),
		bin:       bin,
	}
	// A bucket is a directory under the backend root.
	if err := os.MkdirAll(filepath.Join(s.Root, s.Bucket), 0o755); err != nil {
		t.Fatalf("testservers: %v", err)
	}
	for attempt := 1; ; attempt++ {
		s.Port = freePort(t)
		err, clash := s.start()
		if err == "" {
			break
		}
		if attempt < startAttempts && clash {
			continue
		}
		t.Fatalf("testservers: versitygw on port %d: %s", s.Port, err)
	}
	s.Endpoint = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	t.Cleanup(s.Stop)
	return s
}

// start launches the gateway on s.Port and waits until it accepts
// connections. On failure it returns the error with the log and whether the
// failure looks like a port clash.
func (s *S3) start() (errMsg string, clash bool) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	p, err := startProc("versitygw", s.LogFile, s.bin,
		[]string{"--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
			"--port", addr, "--quiet", "posix", s.Root},
		// The credentials go on the command line, not in the log.
		os.Environ(), nil, syscall.SIGTERM)
	if err != nil {
		return err.Error(), false
	}
	if err := waitReady(p, startTimeout, dialReady(addr)); err != nil {
		p.stop()
		log := p.log()
		return err.Error() + "\n--- versitygw log ---\n" + log, portClash(log)
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	return "", false
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
	if err, _ := s.start(); err != "" {
		t.Fatalf("testservers: restart versitygw on port %d: %s", s.Port, err)
	}
}
