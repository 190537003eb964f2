package testservers

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GPG is GnuPG with a throw-away keyring (GNUPGHOME), so test files are
// made by the tool ERP teams use. Every call passes --batch and
// --pinentry-mode loopback, as the tested invocations in the project's
// notes do.
type GPG struct {
	t    testing.TB
	bin  string
	Home string // GNUPGHOME, mode 0700
	Dir  string // a scratch folder for exported keys and messages
}

// Key algorithms for GenKey.
const (
	// KeyRSA: one RSA-2048 key that signs and encrypts.
	KeyRSA = "rsa"
	// KeyCurve25519: an Ed25519 signing key with a Curve25519 (cv25519)
	// encryption subkey.
	KeyCurve25519 = "curve25519"
)

// StartGPG returns a GnuPG with an empty keyring of its own; its agent is
// stopped and its home removed when the test ends. It skips (or fails
// under IHR_REQUIRE_SERVERS=1) when gpg is not installed.
func StartGPG(t testing.TB) *GPG {
	t.Helper()
	bin := findBinary("gpg")
	if bin == "" {
		Missing(t, "gpg not installed (Debian package gnupg; .ci/install-servers installs it)")
	}
	// The agent's socket lives in GNUPGHOME: keep the path short (sockaddr_un).
	home, err := os.MkdirTemp("", "gpg")
	must(t, err)
	must(t, os.Chmod(home, 0o700))
	// The agent otherwise calibrates its key protection to 100 ms of CPU
	// per use, which on a loaded machine makes each key generation or
	// decryption take seconds; these keys protect nothing.
	must(t, os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("s2k-count 65536\n"), 0o600))
	g := &GPG{t: t, bin: bin, Home: home, Dir: t.TempDir()}
	t.Cleanup(func() {
		if gc := findBinary("gpgconf"); gc != "" {
			cmd := exec.Command(gc, "--kill", "all")
			cmd.Env = g.env()
			_ = cmd.Run()
		}
		os.RemoveAll(home)
	})
	return g
}

func (g *GPG) env() []string { return append(os.Environ(), "GNUPGHOME="+g.Home) }

// Run runs gpg with args (after --batch --yes --pinentry-mode loopback)
// and stdin, and returns stdout; a failure fails the test.
func (g *GPG) Run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	out, err := g.Try(stdin, args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Try is Run that returns gpg's failure (with its stderr) instead.
func (g *GPG) Try(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command(g.bin, append([]string{"--batch", "--yes", "--pinentry-mode", "loopback", "--trust-model", "always"}, args...)...)
	cmd.Env = g.env()
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &gpgError{err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

type gpgError struct {
	err    error
	stderr string
}

func (e *gpgError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// GenKey creates a key for uid (an e-mail address) of the given kind
// (KeyRSA or KeyCurve25519), protected by passphrase ("" for none).
func (g *GPG) GenKey(uid, kind, passphrase string) {
	g.t.Helper()
	switch kind {
	case KeyRSA:
		g.Run(nil, "--passphrase", passphrase, "--quick-gen-key", uid, "rsa2048", "encr,sign", "1d")
	case KeyCurve25519:
		g.Run(nil, "--passphrase", passphrase, "--quick-gen-key", uid, "ed25519", "sign", "1d")
		g.Run(nil, "--passphrase", passphrase, "--quick-add-key", g.Fingerprint(uid), "cv25519", "encr", "1d")
	default:
		g.t.Fatalf("GenKey: unknown kind %q", kind)
	}
}

// Fingerprint is uid's primary key fingerprint.
func (g *GPG) Fingerprint(uid string) string {
	g.t.Helper()
	out := g.Run(nil, "--list-secret-keys", "--with-colons", uid)
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Split(l, ":"); len(f) > 9 && f[0] == "fpr" {
			return f[9]
		}
	}
	g.t.Fatalf("no fingerprint for %s", uid)
	return ""
}

// ExportSecret writes uid's secret keys to a file (armored or binary) and
// returns its path.
func (g *GPG) ExportSecret(uid, passphrase string, armored bool) string {
	g.t.Helper()
	args := []string{"--passphrase", passphrase}
	if armored {
		args = append(args, "--armor")
	}
	out := g.Run(nil, append(args, "--export-secret-keys", uid)...)
	return g.write(uid+".sec", out)
}

// ExportPublic writes uid's public key (armored) to a file and returns its
// path.
func (g *GPG) ExportPublic(uid string) string {
	g.t.Helper()
	return g.write(uid+".pub.asc", g.Run(nil, "--armor", "--export", uid))
}

func (g *GPG) write(name string, data []byte) string {
	g.t.Helper()
	p := filepath.Join(g.Dir, name)
	must(g.t, os.WriteFile(p, data, 0o600))
	return p
}

// Encrypt encrypts plain for the recipient uid, signed by signer's key
// when signer is not "" (signerPass unlocks it), armored or binary.
func (g *GPG) Encrypt(plain []byte, to, signer, signerPass string, armored bool) []byte {
	g.t.Helper()
	in := g.write("plain.in", plain)
	out := filepath.Join(g.Dir, "message.out")
	args := []string{"-r", to, "-o", out}
	if armored {
		args = append(args, "--armor")
	}
	if signer != "" {
		args = append(args, "--passphrase", signerPass, "-u", signer, "-se", in)
	} else {
		args = append(args, "-e", in)
	}
	g.Run(nil, args...)
	data, err := os.ReadFile(out)
	must(g.t, err)
	return data
}

// Sign makes a signed (not encrypted) message; extra are more gpg options
// (such as "--compress-algo", "none").
func (g *GPG) Sign(plain []byte, signer, signerPass string, armored bool, extra ...string) []byte {
	g.t.Helper()
	in := g.write("plain.in", plain)
	out := filepath.Join(g.Dir, "message.out")
	args := append([]string{"--passphrase", signerPass, "-u", signer, "-o", out}, extra...)
	if armored {
		args = append(args, "--armor")
	}
	g.Run(nil, append(args, "-s", in)...)
	data, err := os.ReadFile(out)
	must(g.t, err)
	return data
}

// Decrypt decrypts a message with the keyring's secret keys.
func (g *GPG) Decrypt(msg []byte, passphrase string) ([]byte, error) {
	return g.Try(msg, "--passphrase", passphrase, "-d")
}

// EncryptFile encrypts the file in for the recipient to into out,
// streaming (for files too big to hold in memory); extra are more gpg
// options, such as "--compress-algo", "none" for content that is already
// compressed.
func (g *GPG) EncryptFile(in, out, to string, extra ...string) {
	g.t.Helper()
	g.Run(nil, append(append([]string{"-r", to, "-o", out}, extra...), "-e", in)...)
}
