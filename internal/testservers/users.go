package testservers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Local users the password-authenticated servers log in as. They are
// created once per machine (useradd) with no home and /usr/sbin/nologin as
// shell, so they cannot log in to a shell through the machine's own sshd.
const (
	sftpUser = "ihrtest"
	ftpUser  = "ihrftp"
)

// secretsDir holds the per-machine random passwords of those users,
// readable by root only.
func secretsDir() (string, error) {
	d := filepath.Join(os.TempDir(), "ihr-testservers-secrets")
	if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
		return "", err
	}
	// Refuse a directory someone else planted (symlink, other owner, open
	// permissions): it would leak or let them choose the passwords.
	st, err := os.Lstat(d)
	if err != nil {
		return "", err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || st.Mode().Perm() != 0o700 || sys == nil || int(sys.Uid) != os.Geteuid() {
		return "", fmt.Errorf("%s is not a private directory of this user", d)
	}
	return d, nil
}

// userRoot makes sure the local user name exists (see ensureUser) and
// gives it a fresh folder root inside a new directory shared (see
// sharedDir, made from pattern) that the user can enter.
func userRoot(t testing.TB, name string, withHome bool, pattern string) (pw, shared, root string) {
	t.Helper()
	pw, err := ensureUser(name, withHome)
	if err != nil {
		t.Fatalf("testservers: user %s: %v", name, err)
	}
	uid, gid, _, err := lookupUser(name)
	must(t, err)
	shared = sharedDir(t, pattern)
	root = filepath.Join(shared, "root")
	must(t, os.Mkdir(root, 0o755))
	must(t, os.Chown(root, uid, gid))
	return pw, shared, root
}

// ensureUser makes sure the local user name exists and has a known
// password, and returns that password.
//
// The password is random per machine but stable: it is set once and kept in
// secretsDir. Setting a new one on every start would break servers that
// another test binary (go test runs packages in parallel) started a moment
// earlier with the old password. A file lock serialises test binaries.
//
// withHome gives the user a home directory (/home/NAME): vsftpd changes
// into the home directory before local_root and refuses the login if that
// fails; sshd only warns.
func ensureUser(name string, withHome bool) (string, error) {
	dir, err := secretsDir()
	if err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	created := false
	uid, gid, home, err := lookupUser(name)
	if err != nil {
		useradd := findBinary("useradd", "/usr/sbin", "/sbin")
		if useradd == "" {
			return "", fmt.Errorf("useradd not found (install passwd)")
		}
		shell := "/usr/sbin/nologin"
		if _, err := os.Stat(shell); err != nil {
			shell = "/bin/false"
		}
		args := []string{"-M", "-d", "/nonexistent", "-s", shell, name}
		if withHome {
			args = []string{"-m", "-s", shell, name}
		}
		out, err := exec.Command(useradd, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("useradd %s: %v: %s", name, err, out)
		}
		created = true
	} else if withHome {
		// An existing user whose home went missing (a cleaned-up machine).
		if _, err := os.Stat(home); err != nil {
			if err := os.MkdirAll(home, 0o755); err != nil {
				return "", err
			}
			if err := os.Chown(home, uid, gid); err != nil {
				return "", err
			}
		}
	}
	pwFile := filepath.Join(dir, name+".password")
	if b, err := os.ReadFile(pwFile); err == nil && !created && len(b) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	pw := randomHex(12)
	chpasswd := findBinary("chpasswd", "/usr/sbin", "/sbin")
	if chpasswd == "" {
		return "", fmt.Errorf("chpasswd not found (install passwd)")
	}
	cmd := exec.Command(chpasswd)
	cmd.Stdin = strings.NewReader(name + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chpasswd %s: %v: %s", name, err, out)
	}
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}
