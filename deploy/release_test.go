package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// releaseVersion is what the tests build; no real release uses it.
const releaseVersion = "0.0.1"

// release runs make release's own program (deploy/release, as `make
// release` does) with args, and returns its output.
func release(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "."}, args...)...)
	cmd.Dir = "release"
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run ./deploy/release %s: %v\n%s%s", strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
	}
	return out.String()
}

// releaseFiles is every file a full `make release` writes into dist/.
func releaseFiles(t *testing.T) []string {
	t.Helper()
	names := strings.Fields(release(t, 5*time.Minute, "-version", releaseVersion, "-list"))
	if !slices.Contains(names, "ihr-worker_linux_amd64") || !slices.Contains(names, "SHA256SUMS") {
		t.Fatalf("-list: %q", names)
	}
	return names
}

// TestDockerfileCopiesReleaseFiles: the image is built from make release's
// output, so every COPY source, for each platform the image is built for,
// is a file make release writes. (No Docker engine runs `docker build`
// here; this is what can be checked without one.)
func TestDockerfileCopiesReleaseFiles(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	files := releaseFiles(t)
	var sources []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.EqualFold(f[0], "COPY") {
			continue
		}
		var args []string
		for _, a := range f[1:] {
			if !strings.HasPrefix(a, "--") {
				args = append(args, a)
			} else if strings.HasPrefix(a, "--from") {
				t.Errorf("Dockerfile: %q copies from another stage; the image should take make release's files", strings.TrimSpace(line))
			}
		}
		if len(args) < 2 {
			t.Errorf("Dockerfile: %q: want COPY SRC… DST", strings.TrimSpace(line))
			continue
		}
		sources = append(sources, args[:len(args)-1]...)
	}
	if len(sources) < 2 {
		t.Fatalf("Dockerfile copies %q; want both binaries from dist/", sources)
	}
	copied := map[string]bool{}
	for _, arch := range []string{"amd64", "arm64"} {
		for _, src := range sources {
			p := strings.NewReplacer("${TARGETARCH}", arch, "$TARGETARCH", arch).Replace(src)
			name, ok := strings.CutPrefix(p, "dist/")
			if !ok || !slices.Contains(files, name) {
				t.Errorf("Dockerfile: COPY %s (TARGETARCH=%s) is not a file make release writes into dist/ (it writes %v)", src, arch, files)
			}
			copied[name] = true
		}
	}
	for _, want := range []string{"ihr-worker_linux_amd64", "ihr-worker_linux_arm64", "ihr-api_linux_amd64", "ihr-api_linux_arm64"} {
		if !copied[want] {
			t.Errorf("Dockerfile does not copy dist/%s", want)
		}
	}
}

// TestReleaseBuildsReproduceAndTheDebInstalls builds the linux/amd64 part
// of a release twice (same bytes, SBOMs and .deb included), then installs
// the .deb with dpkg, runs the installed ihr-worker, verifies the units
// with systemd-analyze, removes the package (configuration and ledger
// stay) and purges it, leaving the machine as it was.
func TestReleaseBuildsReproduceAndTheDebInstalls(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release (-short)")
	}
	dist1, dist2 := t.TempDir(), t.TempDir()
	args := []string{"-version", releaseVersion, "-platforms", "linux/amd64", "-formats", "deb"}
	out := release(t, 12*time.Minute, append(args, "-dist", dist1)...)
	t.Log(out)
	release(t, 10*time.Minute, append(args, "-dist", dist2)...)
	sums1, err := os.ReadFile(filepath.Join(dist1, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sums2, _ := os.ReadFile(filepath.Join(dist2, "SHA256SUMS"))
	if !bytes.Equal(sums1, sums2) {
		t.Fatalf("two builds of one commit differ:\n%s\n%s", sums1, sums2)
	}
	t.Logf("two builds, same bytes:\n%s", sums1)
	for _, want := range []string{"ihr-worker_linux_amd64", "ihr-api_linux_amd64", "ihr-worker_linux_amd64.cdx.json", "ihr_" + releaseVersion + "_amd64.deb"} {
		if !bytes.Contains(sums1, []byte("  "+want+"\n")) {
			t.Errorf("SHA256SUMS does not list %s", want)
		}
	}
	sha256sum := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sha256sum.Dir = dist1
	if b, err := sha256sum.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, b)
	}

	commit := strings.TrimSpace(gitOut(t, "rev-parse", "HEAD"))
	wantVersion := regexp.MustCompile(`^ihr-(worker|api) ` + regexp.QuoteMeta(releaseVersion) + ` \(commit ` + commit + `(-dirty)?, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, go1\.\S+ linux/amd64\)$`)
	for _, b := range []string{"ihr-worker_linux_amd64", "ihr-api_linux_amd64"} {
		p := filepath.Join(dist1, b)
		if f, err := elf.Open(p); err != nil {
			t.Error(err)
		} else {
			for _, ph := range f.Progs {
				if ph.Type == elf.PT_INTERP {
					t.Errorf("%s is dynamically linked (PT_INTERP): the release builds with CGO_ENABLED=0", b)
				}
			}
			f.Close()
		}
	}
	if v := runOut(t, filepath.Join(dist1, "ihr-api_linux_amd64"), "--version"); !wantVersion.MatchString(v) {
		t.Errorf("ihr-api --version = %q, want %s", v, wantVersion)
	}
	var sbom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct{ Name, Version string } `json:"component"`
		} `json:"metadata"`
		Components []struct{ Name, Version string } `json:"components"`
	}
	if data, err := os.ReadFile(filepath.Join(dist1, "ihr-worker_linux_amd64.cdx.json")); err != nil || json.Unmarshal(data, &sbom) != nil {
		t.Errorf("SBOM: %v", err)
	} else if sbom.BOMFormat != "CycloneDX" || sbom.Metadata.Component.Name != "github.com/ihr-tools/ihr" ||
		sbom.Metadata.Component.Version != "v"+releaseVersion || !slices.ContainsFunc(sbom.Components, func(c struct{ Name, Version string }) bool {
		return c.Name == "modernc.org/sqlite"
	}) {
		t.Errorf("SBOM: want CycloneDX for github.com/ihr-tools/ihr v%s listing modernc.org/sqlite, got %+v (%d components)", releaseVersion, sbom.Metadata, len(sbom.Components))
	}

	installDeb(t, filepath.Join(dist1, "ihr_"+releaseVersion+"_amd64.deb"), wantVersion)
}

// The marker that a run of this test installed the package: a run killed
// before its cleanup leaves it, and the next run undoes that install
// first instead of refusing to touch an ihr package it did not install.
const installMarker = "/var/lib/ihr-release-test.json"

type machineBefore struct {
	User, VarLib, Etc bool
}

func installDeb(t *testing.T, deb string, wantVersion *regexp.Regexp) {
	cmdline := "sudo go test ./deploy -run TestReleaseBuildsReproduceAndTheDebInstalls"
	if os.Geteuid() != 0 {
		testservers.Missing(t, "installing the .deb needs root: "+cmdline)
	}
	dpkg := requireTool(t, "dpkg", "dpkg")
	analyze := requireTool(t, "systemd-analyze", "systemd")

	var before machineBefore
	if data, err := os.ReadFile(installMarker); err == nil {
		t.Logf("an earlier run was stopped before its cleanup; undoing its install first")
		if err := json.Unmarshal(data, &before); err != nil {
			t.Fatalf("%s: %v", installMarker, err)
		}
		undoInstall(t, dpkg, before)
	} else {
		if st, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "ihr").Output(); strings.Contains(string(st), "installed") {
			t.Skipf("the package ihr is installed on this machine (%s), not by this test: it is left alone. `dpkg --purge ihr` lets the test run.", st)
		}
		before = machineBefore{User: run("getent", "passwd", "ihr") == nil, VarLib: exists("/var/lib/ihr"), Etc: exists("/etc/ihr")}
	}
	data, _ := json.Marshal(before)
	if err := os.WriteFile(installMarker, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undoInstall(t, dpkg, before) })

	out, err := exec.Command(dpkg, "-i", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", deb, err, out)
	}
	t.Logf("dpkg -i:\n%s", out)
	if !strings.Contains(string(out), "systemctl enable --now ihr-worker.timer") || !strings.Contains(string(out), "Nothing is enabled or started") {
		t.Errorf("postinstall should say nothing runs yet and how to enable it:\n%s", out)
	}

	// The installed program, its version and a dry run on a sample.
	if v := runOut(t, "/usr/bin/ihr-worker", "version"); !wantVersion.MatchString(v) {
		t.Errorf("/usr/bin/ihr-worker version = %q, want %s", v, wantVersion)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "erp")
	if err := os.MkdirAll(filepath.Join(src, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`api:
  url: http://127.0.0.1:9
  api_key: validate-posts-nothing
state: sqlite:%s/state.db
sources:
  - name: erp-invoices
    url: file://%s
    integration: ERP-INVOICES
`, dir, src)), 0o600)
	sample, _ := filepath.Abs("../fixtures/demo/erp-invoice-results.csv")
	if v := runOut(t, "/usr/bin/ihr-worker", "validate", "--config", cfg, "--source", "erp-invoices", sample); !strings.Contains(v, "6 row(s), 6 valid, 0 invalid") {
		t.Errorf("installed ihr-worker validate: %s", v)
	}

	// The layout the units expect, and nothing enabled.
	for _, p := range []string{"/usr/bin/ihr-api", "/etc/ihr/worker.yaml", "/usr/lib/systemd/system/ihr-worker.service", "/usr/lib/systemd/system/ihr-worker.timer", "/usr/lib/systemd/system/ihr-worker-serve.service"} {
		if !exists(p) {
			t.Errorf("%s not installed", p)
		}
	}
	if owner := strings.TrimSpace(runOut(t, "stat", "-c", "%U:%G %a", "/var/lib/ihr")); owner != "ihr:ihr 750" {
		t.Errorf("/var/lib/ihr: %s, want ihr:ihr 750 (the system user the units run as)", owner)
	}
	if enabled, _ := filepath.Glob("/etc/systemd/system/*.wants/ihr-worker*"); len(enabled) > 0 {
		t.Errorf("the package enabled %v; it must start nothing before the configuration is filled in", enabled)
	}
	units := []string{"/usr/lib/systemd/system/ihr-worker.service", "/usr/lib/systemd/system/ihr-worker.timer", "/usr/lib/systemd/system/ihr-worker-serve.service"}
	if out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(units, " "), err, out)
	}

	// An edited configuration survives a reinstall (a conffile) and removal.
	edited := "\n# edited by the operator\n"
	f, _ := os.OpenFile("/etc/ihr/worker.yaml", os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(edited)
	f.Close()
	if out, err := exec.Command(dpkg, "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i again: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile("/etc/ihr/worker.yaml"); !strings.HasSuffix(string(b), edited) {
		t.Error("reinstalling replaced the edited /etc/ihr/worker.yaml")
	}
	ledger := "/var/lib/ihr/state.db"
	if err := os.WriteFile(ledger, []byte("the ledger\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(ledger, uidOf(t, "ihr"), -1)
	if out, err := exec.Command(dpkg, "-r", "ihr").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r ihr: %v\n%s", err, out)
	}
	if exists("/usr/bin/ihr-worker") {
		t.Error("dpkg -r left /usr/bin/ihr-worker")
	}
	if b, err := os.ReadFile("/etc/ihr/worker.yaml"); err != nil || !strings.HasSuffix(string(b), edited) {
		t.Errorf("dpkg -r should keep the edited /etc/ihr/worker.yaml: %v", err)
	}
	if b, err := os.ReadFile(ledger); err != nil || string(b) != "the ledger\n" {
		t.Errorf("dpkg -r should keep the ledger %s: %v", ledger, err)
	}
}

// undoInstall purges the package and removes what its install created and
// the machine did not have before.
func undoInstall(t *testing.T, dpkg string, before machineBefore) {
	if out, err := exec.Command(dpkg, "--purge", "ihr").CombinedOutput(); err != nil {
		t.Errorf("dpkg --purge ihr: %v\n%s", err, out)
	}
	if !before.VarLib {
		os.RemoveAll("/var/lib/ihr")
	}
	if !before.Etc {
		os.RemoveAll("/etc/ihr")
	}
	if !before.User && run("getent", "passwd", "ihr") == nil {
		if err := run("userdel", "ihr"); err != nil {
			t.Errorf("userdel ihr: %v", err)
		}
		if run("getent", "group", "ihr") == nil {
			run("groupdel", "ihr")
		}
	}
	os.Remove(installMarker)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func run(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}

// runOut runs a command and returns its stdout and stderr together
// (ihr-worker prints human output on stderr), failing the test on error.
func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		t.Skipf("git %s: %v (the release embeds the commit; this test needs the repository's history)", strings.Join(args, " "), err)
	}
	return string(out)
}

func uidOf(t *testing.T, user string) int {
	t.Helper()
	var uid int
	if _, err := fmt.Sscan(runOut(t, "id", "-u", user), &uid); err != nil {
		t.Fatal(err)
	}
	return uid
}
