package testservers

import (
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FTP is a running vsftpd serving plain FTP and explicit FTPS (AUTH TLS) on
// the same port, passive mode only.
type FTP struct {
	Host     string // "127.0.0.1"
	Port     int
	Addr     string // Host:Port
	User     string
	Password string
	CAFile   string // PEM of the CA that signed the server's certificate (IP SAN 127.0.0.1)
	Root     string // local directory that is the FTP root "/" (the user is chrooted into it)
	LogFile  string
	Stop     func() // stops the server early (idempotent); also run in t.Cleanup
}

// pasvPorts is the size of each server's passive port range.
const pasvPorts = 16

// StartFTP starts vsftpd on a free loopback port. It needs root (vsftpd
// switches to the logged-in local user).
func StartFTP(t testing.TB) *FTP {
	t.Helper()
	bin := findBinary("vsftpd", "/usr/sbin", "/sbin")
	if bin == "" {
		Missing(t, "vsftpd not found; install with: apt-get install vsftpd")
	}
	if !isRoot() {
		Missing(t, "vsftpd needs root to log in a local user")
	}
	// vsftpd's default secure_chroot_dir; the package creates it, but
	// /var/run may be a fresh tmpfs.
	must(t, os.MkdirAll("/var/run/vsftpd/empty", 0o755))
	pw, _, root := userRoot(t, ftpUser, true, "ihr-ftp-*")

	dir := t.TempDir()
	f := &FTP{Host: "127.0.0.1", User: ftpUser, Password: pw, Root: root, LogFile: filepath.Join(dir, "vsftpd.log")}
	tlsFiles := NewTLSFiles(t)
	f.CAFile = tlsFiles.CA

	srv := &server{name: "vsftpd", bin: bin, logFile: f.LogFile, args: func(port int) ([]string, error) {
		lo := pasvRange()
		conf := strings.Join([]string{
			"listen=YES",
			"listen_ipv6=NO",
			"listen_address=127.0.0.1",
			"listen_port=" + strconv.Itoa(port),
			"background=NO",
			"anonymous_enable=NO",
			"local_enable=YES",
			"write_enable=YES",
			"local_umask=022",
			// chroot into local_root so several servers can share one user.
			"local_root=" + f.Root,
			"chroot_local_user=YES",
			"allow_writeable_chroot=YES",
			"pasv_enable=YES",
			"port_enable=NO",
			"pasv_min_port=" + strconv.Itoa(lo),
			"pasv_max_port=" + strconv.Itoa(lo+pasvPorts-1),
			"seccomp_sandbox=NO",
			"isolate_network=NO",
			"ssl_enable=YES",
			"allow_anon_ssl=NO",
			"force_local_logins_ssl=NO",
			"force_local_data_ssl=NO",
			"require_ssl_reuse=NO",
			// vsftpd 3.0.3 defaults to DES-CBC3-SHA, which Go clients refuse.
			"ssl_ciphers=HIGH",
			"ssl_tlsv1=YES",
			"rsa_cert_file=" + tlsFiles.Cert,
			"rsa_private_key_file=" + tlsFiles.Key,
			// No /etc/pam.d file of this name exists, so PAM uses
			// /etc/pam.d/other (pam_unix only). Debian's "vsftpd" service
			// would also demand a login shell from /etc/shells, and the
			// test user deliberately has none.
			"pam_service_name=ihr-testservers",
			"userlist_enable=NO",
			"tcp_wrappers=NO",
			// Tests open many sessions; keep the default limits out of the way.
			"max_clients=0",
			"max_per_ip=0",
			"xferlog_enable=NO",
			"log_ftp_protocol=NO",
			"vsftpd_log_file=" + f.LogFile,
			"dual_log_enable=NO",
			"syslog_enable=NO",
			"",
		}, "\n")
		cfg := filepath.Join(dir, "vsftpd.conf")
		return []string{cfg}, os.WriteFile(cfg, []byte(conf), 0o600)
	}}
	p, port, err := srv.start(0)
	must(t, err)
	f.Port, f.Addr = port, net.JoinHostPort(f.Host, strconv.Itoa(port))
	f.Stop = p.stop
	t.Cleanup(p.stop)
	return f
}

// pasvRange picks the first port of a passive range below the kernel's
// ephemeral range (32768+), where ports handed out for ":0" listens and
// outgoing connections never land, and checks that the ports are free
// right now. vsftpd itself retries another port of the range when one is
// taken at transfer time.
func pasvRange() int {
	for try := 0; ; try++ {
		lo := 20000 + mrand.IntN((32768-20000)/pasvPorts-1)*pasvPorts
		if try >= 20 || rangeFree(lo, pasvPorts) {
			return lo
		}
	}
}

func rangeFree(lo, n int) bool {
	for p := lo; p < lo+n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
