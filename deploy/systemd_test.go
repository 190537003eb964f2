package deploy

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
)

func TestMain(m *testing.M) { binharness.Main(m) }

// requireTool finds a system tool, skipping (or failing under
// IHR_REQUIRE_SERVERS=1) when it is not installed.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testservers.Missing(t, fmt.Sprintf("%s not found; install with: apt-get install %s (.ci/install-servers does)", name, pkg))
	}
	return p
}

// TestSystemdSecurityRating keeps every service "OK" or better in
// systemd-analyze's own security review.
func TestSystemdSecurityRating(t *testing.T) {
	bin := requireTool(t, "systemd-analyze", "systemd")
	services, _ := filepath.Glob("systemd/*.service")
	if len(services) == 0 {
		t.Fatal("no systemd/*.service to rate: the units moved, or the test runs from the wrong folder")
	}
	overall := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\w+)`)
	for _, s := range services {
		out, err := exec.Command(bin, "security", "--offline=yes", "--no-pager", s).CombinedOutput()
		m := overall.FindStringSubmatch(string(out))
		if m == nil {
			t.Errorf("%s: no rating (%v):\n%s", s, err, out)
			continue
		}
		t.Logf("%s: exposure %s %s", s, m[1], m[2])
		switch m[2] {
		case "OK", "SAFE", "PERFECT":
		default:
			t.Errorf("%s: systemd-analyze security rates it %s %s, want OK or better:\n%s", s, m[1], m[2], out)
		}
	}
}

// TestSystemdUnitRunsUnprivileged runs ihr-worker.service's ExecStart as
// the unit would: as an unprivileged user (nobody, like the unit's
// system user ihr), with the configuration and secrets where LoadCredential=
// puts them (%d, readable by that user alone) and its state in the
// StateDirectory, against a real ihr-api.
func TestSystemdUnitRunsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to an unprivileged user needs root")
	}
	setpriv := requireTool(t, "setpriv", "util-linux")
	u := parseUnit(t, "systemd/ihr-worker.service")
	exec0 := u["Service"]["ExecStart"][0]
	if !strings.Contains(exec0, "%d/") || len(u["Service"]["LoadCredential"]) == 0 {
		t.Fatalf("the unit should read its configuration from LoadCredential= (%%d): %s", exec0)
	}
	if v := u["Service"]["User"]; len(v) != 1 || v[0] != "ihr" || len(u["Service"]["StateDirectory"]) != 1 || u["Service"]["StateDirectory"][0] != "ihr" {
		t.Fatal("the unit should run as the packages' system user ihr (User=ihr) with StateDirectory=ihr")
	}
	// nobody stands in for ihr: both are unprivileged system users, and
	// nobody exists on every machine.
	const uid, gid = 65534, 65534 // nobody:nogroup

	api := binharness.StartAPI(t, binharness.APIOptions{Integrations: []string{"ERP-INVOICES"}})
	base := t.TempDir()
	for d := base; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // let nobody through the test's folders, as / and /var are
	}
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, uid, gid)
		os.Chmod(p, mode)
		return p
	}
	// LoadCredential= copies each file into a private folder owned by the
	// service's user, read-only: worker.yaml, and secrets_<name> for each
	// file of /etc/ihr/secrets.
	creds := mk("credentials", 0o500)
	state := mk("var-lib-ihr", 0o700)
	src := mk("erp", 0o755)
	mk("erp/inbox", 0o755)
	put := func(p, content string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, uid, gid)
	}
	put(filepath.Join(creds, "worker.yaml"), fmt.Sprintf(`api:
  url: %s
  api_key_file: secrets_coupa-api-key
state: sqlite:/var/lib/ihr/state.db
sources:
  - name: erp-invoices
    url: file://%s
    integration: ERP-INVOICES
    stable_for: 0s
`, api.URL, src), 0o400)
	put(filepath.Join(creds, "secrets_coupa-api-key"), api.Key+"\n", 0o400)
	put(filepath.Join(src, "inbox", "a.csv"), "external-id,document-type,document-id,status,contact-alert-type\nU-1,InvoiceHeader,1,Success,Functional\n", 0o644)

	// The binary, where nobody may run it.
	bin := filepath.Join(base, "ihr-worker")
	in, err := os.Open(binharness.Binary(t, "ihr-worker"))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	io.Copy(out, in)
	in.Close()
	out.Close()

	line := strings.NewReplacer("%d", creds, "/var/lib/ihr", state, "/usr/bin/ihr-worker", bin).Replace(exec0)
	args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, strings.Fields(line)...)
	cmd := exec.Command(setpriv, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	var outb []byte
	go func() { outb, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 60s:\n%s", outb)
	}
	if err != nil {
		t.Fatalf("the unit's command as nobody: %v\n%s", err, outb)
	}
	if _, err := os.Stat(filepath.Join(src, "archive", "a.csv")); err != nil {
		t.Errorf("a.csv not archived: %v\n%s", err, outb)
	}
	if fi, err := os.Stat(filepath.Join(state, "state.db")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uid {
		t.Errorf("state not written by the unprivileged user: %v", err)
	}
}
