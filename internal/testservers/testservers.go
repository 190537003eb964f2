// Package testservers starts real servers (OpenSSH sftp, vsftpd FTP/FTPS,
// versitygw S3, PostgreSQL) on free 127.0.0.1 ports for tests, each in its
// own temporary directory, and stops them when the test ends.
//
// Every Start function either returns a server that accepts connections or
// ends the test: when the server binary is not installed the test is skipped
// with a message naming the package to install, unless the environment sets
// IHR_REQUIRE_SERVERS=1 (as CI does), in which case the test fails. A server
// that does not come up in time fails the test with the server's log.
//
// Servers are stopped (process group killed and waited for) in t.Cleanup, so
// a test never leaks a process. Servers are also started with a parent-death
// signal so they go away if the test binary itself is killed.
//
// Start-up costs on the 2-core machine (measured by the smoke tests, go test
// -v): sshd 25-80 ms, vsftpd ~75 ms, versitygw ~100 ms (restart ~40 ms),
// PostgreSQL ~1.1 s per cluster plus ~60 ms per NewDatabase. Packages that
// need many PostgreSQL clusters can share one per test binary: see Main.
package testservers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns "binary missing" skips
// into failures.
const RequireEnv = "IHR_REQUIRE_SERVERS"

// startTimeout bounds how long a server may take to accept connections. It is
// generous because the CI machine has 2 cores shared by parallel test binaries.
const startTimeout = 45 * time.Second

// startAttempts is how often a start is retried when the port picked turned
// out to be taken (another process grabbed it between our probe and the bind).
const startAttempts = 4

// Missing ends the test because a server, a tool (or a precondition such
// as running as root) is not available: a skip, or a failure under
// IHR_REQUIRE_SERVERS=1 (RequireEnv), as in CI.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("testservers: %s (%s=1, so this is a failure, not a skip)", msg, RequireEnv)
	}
	t.Skipf("testservers: %s", msg)
}

// findBinary looks for name on PATH, then in the extra directories (sbin
// directories are often not on a non-root PATH; go install puts tools in
// GOPATH/bin). It returns "" when the binary is nowhere.
func findBinary(name string, extraDirs ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	for _, d := range extraDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// findGoTool finds a tool that `go install` may have put in GOBIN or
// GOPATH/bin, which are often not on PATH.
func findGoTool(name string) string {
	var dirs []string
	if gb := os.Getenv("GOBIN"); gb != "" {
		dirs = append(dirs, gb)
	}
	for _, p := range filepath.SplitList(os.Getenv("GOPATH")) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	if p := findBinary(name, dirs...); p != "" {
		return p
	}
	// `go env` costs a process start; ask only when the cheap places failed.
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return ""
	}
	dirs = dirs[:0]
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 2 {
		if lines[0] != "" {
			dirs = append(dirs, lines[0])
		}
		for _, p := range filepath.SplitList(lines[1]) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return findBinary(name, dirs...)
}

func isRoot() bool { return os.Geteuid() == 0 }

// must ends the test on a setup error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
}

// freePort asks the kernel for a free loopback port. The port is free only
// at this moment, so server.start retries when the bind fails.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomHex returns n random bytes hex-encoded, for passwords and keys.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// proc is one running server process, owned by the test that started it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when cmd.Wait returned
	waitErr error         // valid after done is closed
	stopSig syscall.Signal
	once    sync.Once
}

// startProc starts bin with args, its stdout and stderr going to logPath.
// The process gets its own process group so that stop can kill forked
// children (vsftpd sessions, postgres backends) too. cred, when non-nil,
// runs the process as another user (root starting postgres).
func startProc(name, logPath, bin string, args []string, env []string, cred *syscall.Credential, stopSig syscall.Signal) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{}), stopSig: stopSig}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (stopSig to its group), kills the group
// after a grace period, and waits for the process. Safe to call twice.
func (p *proc) stop() {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		if !p.exited() {
			_ = syscall.Kill(-pgid, p.stopSig)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
		}
		// Kill whatever is left in the group (forked session processes)
		// even if the leader already exited.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
		p.logFile.Close()
	})
}

// log returns the last part of the server's log, for error messages.
func (p *proc) log() string {
	return tailFile(p.logPath, 8<<10)
}

func tailFile(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	return string(bytes.TrimSpace(b))
}

// errExited means the server process ended before it accepted connections.
var errExited = errors.New("server exited before accepting connections")

// waitReady waits until ready succeeds, the process exits, or the deadline
// passes.
func waitReady(p *proc, deadline time.Duration, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var last error
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		if p.exited() {
			return fmt.Errorf("%w (%v)", errExited, p.waitErr)
		}
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(actx)
		acancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", deadline, last)
		case <-p.done:
		case <-time.After(delay):
		}
	}
}

// server says how to start one server process.
type server struct {
	name    string // in logs and errors: "sshd"
	bin     string
	logFile string              // stdout and stderr
	env     []string            // nil: os.Environ()
	cred    *syscall.Credential // nil: run as ourselves
	stopSig syscall.Signal      // 0: SIGTERM
	// args returns the command line for a server on port, writing any
	// configuration file that names the port first.
	args func(port int) ([]string, error)
	// ready checks that the server on port serves; nil: the port accepts
	// a TCP connection.
	ready func(port int) func(ctx context.Context) error
}

// start starts srv on port and waits until it is ready. Port 0 picks a
// free one, and a start that lost the race for it (another process bound
// it between our probe and the server's bind) is retried on another. The
// error carries the end of the server's log.
func (srv *server) start(port int) (*proc, int, error) {
	env, sig := srv.env, srv.stopSig
	if env == nil {
		env = os.Environ()
	}
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	pick := port == 0
	for attempt := 1; ; attempt++ {
		if pick {
			var err error
			if port, err = freePort(); err != nil {
				return nil, 0, err
			}
		}
		args, err := srv.args(port)
		if err != nil {
			return nil, 0, err
		}
		p, err := startProc(srv.name, srv.logFile, srv.bin, args, env, srv.cred, sig)
		if err != nil {
			return nil, 0, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ready := dialReady(addr)
		if srv.ready != nil {
			ready = srv.ready(port)
		}
		if err = waitReady(p, startTimeout, ready); err == nil {
			return p, port, nil
		}
		p.stop()
		log := p.log()
		if pick && attempt < startAttempts && portClash(log) {
			continue
		}
		return nil, 0, fmt.Errorf("%s on %s: %v\n--- %s log ---\n%s", srv.name, addr, err, srv.name, log)
	}
}

// dialReady is a readiness check: the TCP port accepts a connection.
func dialReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// portClash reports whether a failed start looks like a lost race for the
// port, which is worth retrying with another port.
func portClash(log string) bool {
	l := strings.ToLower(log)
	return strings.Contains(l, "address already in use") || strings.Contains(l, "could not bind")
}

// lookupUser returns uid and gid of a local user.
func lookupUser(name string) (uid, gid int, home string, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, "", err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, u.HomeDir, nil
}

// sharedDir makes a fresh directory under os.TempDir() that other local
// users can reach (t.TempDir's parents are 0700, so a server running as
// another user could not enter them). It is removed in t.Cleanup.
func sharedDir(t testing.TB, pattern string) string {
	t.Helper()
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatalf("testservers: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// chownTree gives dir (recursively) to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// sortedVersions sorts directory names like "13", "15", "9.6" newest first.
func sortedVersions(names []string) []string {
	sort.Slice(names, func(i, j int) bool {
		a, _ := strconv.ParseFloat(names[i], 64)
		b, _ := strconv.ParseFloat(names[j], 64)
		return a > b
	})
	return names
}
