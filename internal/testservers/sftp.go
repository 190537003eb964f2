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
		Missing(t, "sshd not found; install with: apt-get install openssh-server")
	}
	if !filepath.IsAbs(bin) {
		t.Fatalf("testservers: sshd path %q is not absolute (sshd refuses to re-exec)", bin)
	}
	if opt.Password && !isRoot() {
		Missing(t, "the password variant of the sftp server needs root (it logs in a local user)")
	}
	if isRoot() {
		// The privilege-separation directory sshd insists on.
		must(t, os.MkdirAll("/run/sshd", 0o755))
	}

	dir := t.TempDir()
	s := &SFTP{Host: "127.0.0.1"}

	hostPub := writeKey(t, filepath.Join(dir, "host_key"))
	userPub := writeKey(t, filepath.Join(dir, "user_key"))
	s.KeyFile = filepath.Join(dir, "user_key")
	authKeys := filepath.Join(dir, "authorized_keys")

	if opt.Password {
		var shared string
		s.User = sftpUser
		s.Password, shared, s.Root = userRoot(t, sftpUser, false, "ihr-sftp-*")
		// sshd reads authorized_keys as the user, who cannot enter
		// t.TempDir (0700 root).
		authKeys = filepath.Join(shared, "authorized_keys")
	} else {
		u, err := user.Current()
		must(t, err)
		s.User = u.Username
		s.Root = filepath.Join(dir, "root")
		must(t, os.Mkdir(s.Root, 0o755))
	}
	must(t, os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(userPub), 0o644))

	s.LogFile = filepath.Join(dir, "sshd.log")
	pwAuth := "no"
	if opt.Password {
		pwAuth = "yes"
	}
	srv := &server{name: "sshd", bin: bin, logFile: s.LogFile, args: func(port int) ([]string, error) {
		cfg := filepath.Join(dir, "sshd_config")
		conf := strings.Join([]string{
			"Port " + strconv.Itoa(port),
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
		return []string{"-D", "-e", "-f", cfg}, os.WriteFile(cfg, []byte(conf), 0o600)
	}}
	p, port, err := srv.start(0)
	must(t, err)
	s.Port, s.Addr = port, net.JoinHostPort(s.Host, strconv.Itoa(port))
	s.Stop = p.stop
	t.Cleanup(p.stop)

	s.KnownHostsFile = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", s.Host, s.Port, ssh.MarshalAuthorizedKey(hostPub))
	must(t, os.WriteFile(s.KnownHostsFile, []byte(line), 0o644))
	return s
}

// writeKey writes a new ed25519 private key in OpenSSH format to path and
// returns its public key.
func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	must(t, err)
	must(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	sp, err := ssh.NewPublicKey(pub)
	must(t, err)
	must(t, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644))
	return sp
}

// ClientConfig returns an ssh client configuration for s: the user, its
// key (and password when set) and a host-key check against KnownHostsFile.
// It is a convenience for tests; production code builds its own.
func (s *SFTP) ClientConfig(t testing.TB) *ssh.ClientConfig {
	t.Helper()
	pem, err := os.ReadFile(s.KeyFile)
	must(t, err)
	signer, err := ssh.ParsePrivateKey(pem)
	must(t, err)
	hk, err := knownhosts.New(s.KnownHostsFile)
	must(t, err)
	auth := []ssh.AuthMethod{ssh.PublicKeys(signer)}
	if s.Password != "" {
		auth = []ssh.AuthMethod{ssh.Password(s.Password)}
	}
	return &ssh.ClientConfig{User: s.User, Auth: auth, HostKeyCallback: hk, Timeout: 10 * time.Second}
}
