package testservers

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SFTP is a running OpenSSH sshd serving the internal-sftp subsystem.
type SFTP struct {
	Host           string // "127.0.0.1"
	Port           int
	Addr           string // Host:Port
	User           string // user to log in as
	KeyFile        string // OpenSSH private key (ed25519, no passphrase) accepted for User
	Password       string // set only with SFTPOptions.Password
	KnownHostsFile string // one line: [127.0.0.1]:Port <type> <key>
	Root           string // absolute directory on the server, fresh and writable by User
	Stop           func() // stops the server early (idempotent); also run in t.Cleanup
	LogFile        string // sshd's log (-e), for debugging
}

// SFTPOptions chooses the SFTP server variant.
type SFTPOptions struct {
	// Password enables password authentication for a local unprivileged
	// user (created once per machine) instead of root with a key. The key
	// in KeyFile works for that user too. Needs root.
	Password bool
}

// StartSFTP starts sshd on a free loopback port. By default the user is the
// current user (root on CI) with key authentication only.
func StartSFTP(t testing.TB, opt SFTPOptions) *SFTP {
	t.Helper()
	bin := findBinary("sshd", "/usr/sbin", "/sbin")
	if bin == "" {
		missing(t, "sshd not found; install with: apt-get install openssh-server")
	}
	if !filepath.IsAbs(bin) {
		t.Fatalf("testservers: sshd path %q is not absolute (sshd refuses to re-exec)", bin)
	}
	if opt.Password && !isRoot() {
		missing(t, "the password variant of the sftp server needs root (it logs in a local user)")
	}
	if isRoot() {
		// The privilege-separation directory sshd insists on.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("testservers: %v", err)
		}
	}

	dir := t.TempDir()
	s := &SFTP{Host: "127.0.0.1"}

	hostPub := writeKey(t, filepath.Join(dir, "host_key"))
	userPub := writeKey(t, filepath.Join(dir, "user_key"))
	s.KeyFile = filepath.Join(dir, "user_key")
	authKeys := filepath.Join(dir, "authorized_keys")

	if opt.Password {
		pw, err := ensureUser(sftpUser, false)
		if err != nil {
			t.Fatalf("testservers: sftp user: %v", err)
		}
		uid, gid, _, err := lookupUser(sftpUser)
		if err != nil {
			t.Fatalf("testservers: %v", err)
		}
		s.User, s.Password = sftpUser, pw
		shared := sharedDir(t, "ihr-sftp-*")
		// sshd reads authorized_keys as the user, who cannot enter
		// t.TempDir (0700 root).
		authKeys = filepath.Join(shared, "authorized_keys")
		s.Root = filepath.Join(shared, "root")
		if err := os.Mkdir(s.Root, 0o755); err != nil {
			t.Fatalf("testservers: %v", err)
		}
		if err := os.Chown(s.Root, uid, gid); err != nil {
			t.Fatalf("testservers: %v", err)
		}
	} else {
		u, err := user.Current()
		if err != nil {
			t.Fatalf("testservers: %v", err)
		}
		s.User = u.Username
		s.Root = filepath.Join(dir, "root")
		if err := os.Mkdir(s.Root, 0o755); err != nil {
			t.Fatalf("testservers: %v", err)
		}
	}

	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(userPub), 0o644); err != nil {
		t.Fatalf("testservers: %v", err)
	}

	s.LogFile = filepath.Join(dir, "sshd.log")
	var p *proc
	for attempt := 1; ; attempt++ {
		s.Port = freePort(t)
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
		cfg := filepath.Join(dir, "sshd_config")
		pwAuth := "no"
		if opt.Password {
			pwAuth = "yes"
		}
		conf := strings.Join([]string{
			"Port " + strconv.Itoa(s.Port),
			"ListenAddress 127.0.0.1",
			"HostKey " + filepath.Join(dir, "host_key"),
			"AuthorizedKeysFile " + authKeys,
			"PubkeyAuthentication yes",
			"PasswordAuthentication " + pwAuth,
			"KbdInteractiveAuthentication no",
			"AllowUsers " + s.User,
			"PermitRootLogin yes",
			"StrictModes no",
			"UsePAM no",
			"Subsystem sftp internal-sftp",
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			// Tests open many short connections at once.
			"MaxStartups 100",
			"MaxSessions 100",
			"LogLevel VERBOSE",
			"",
		}, "\n")
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			t.Fatalf("testservers: %v", err)
		}
		var err error
		p, err = startProc("sshd", s.LogFile, bin, []string{"-D", "-e", "-f", cfg}, os.Environ(), nil, syscall.SIGTERM)
		if err != nil {
			t.Fatalf("testservers: %v", err)
		}
		err = waitReady(p, startTimeout, dialReady(s.Addr))
		if err == nil {
			break
		}
		p.stop()
		if attempt < startAttempts && portClash(p.log()) {
			continue
		}
		t.Fatalf("testservers: sshd on %s: %v\n--- sshd log ---\n%s", s.Addr, err, p.log())
	}
	s.Stop = p.stop
	t.Cleanup(p.stop)

	s.KnownHostsFile = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", s.Host, s.Port, ssh.MarshalAuthorizedKey(hostPub))
	if err := os.WriteFile(s.KnownHostsFile, []byte(line), 0o644); err != nil {
		t.Fatalf("testservers: %v", err)
	}
	return s
}

// writeKey writes a new ed25519 private key in OpenSSH format to path and
// returns its public key.
func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("testservers: %v", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatalf("testservers: %v", err)
	}
	return sp
}

// ClientConfig returns an ssh client configuration for s: the user, its
// key (and password when set) and a host-key check against KnownHostsFile.
// It is a convenience for tests; production code builds its own.
func (s *SFTP) ClientConfig(t testing.TB) *ssh.ClientConfig {
	t.Helper()
	pem, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	hk, err := knownHostsCallback(s.KnownHostsFile)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	auth := []ssh.AuthMethod{ssh.PublicKeys(signer)}
	if s.Password != "" {
		auth = []ssh.AuthMethod{ssh.Password(s.Password)}
	}
	return &ssh.ClientConfig{User: s.User, Auth: auth, HostKeyCallback: hk, Timeout: 10 * time.Second}
}

func knownHostsCallback(file string) (ssh.HostKeyCallback, error) {
	return knownhosts.New(file)
}
