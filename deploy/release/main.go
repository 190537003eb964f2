// Command release builds a release of ihr into dist/: the binaries for each
// platform, a CycloneDX SBOM per binary, the .deb and .rpm packages, and
// SHA256SUMS over all of them. `make release VERSION=x.y.z` runs it:
//
//	go run . -version 1.2.3 [-repo ../..] [-dist DIR] [-platforms linux/amd64,…]
//	         [-formats deb,rpm] [-sbom=true] [-list]
//
// It is its own module so that nfpm and cyclonedx-gomod, which only the
// release needs, stay out of the main module's dependency graph (and so out
// of the binaries, their SBOMs and govulncheck's findings).
//
// Builds reproduce: -trimpath, -buildvcs=false, -buildid=, CGO_ENABLED=0,
// a fixed GOAMD64/GOARM64, and the date embedded is the commit's, not the
// clock's. The same commit built with the same Go release gives the same
// bytes anywhere; the package files' times are the commit's too.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/CycloneDX/cyclonedx-gomod/pkg/generate/bin"
	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	_ "github.com/goreleaser/nfpm/v2/rpm"
	"github.com/rs/zerolog"
)

// A program and the platforms it is released for. ihr-api is also built
// for desktops: it is the sandbox developers run next to their ERP tests.
type program struct {
	name      string
	platforms []string
}

var programs = []program{
	{"ihr-worker", []string{"linux/amd64", "linux/arm64"}},
	{"ihr-api", []string{"linux/amd64", "linux/arm64", "darwin/arm64", "windows/amd64"}},
}

// packageArchs are the platforms that get a .deb and an .rpm: those both
// programs are built for.
var packageArchs = []string{"amd64", "arm64"}

const buildinfoPkg = "github.com/ihr-tools/ihr/internal/buildinfo"

type options struct {
	version, repo, dist string
	commit, date        string
	platforms           []string // empty: all
	formats             []string
	sbom, list          bool
}

func main() {
	var o options
	var platforms, formats string
	flag.StringVar(&o.version, "version", "", "the release's version, x.y.z (a leading v is dropped)")
	flag.StringVar(&o.repo, "repo", "../..", "the repository to build")
	flag.StringVar(&o.dist, "dist", "", "where the artifacts go (default REPO/dist); the release's own files there are replaced")
	flag.StringVar(&o.commit, "commit", "", "the commit to embed (default: git rev-parse HEAD, -dirty when the tree has changes)")
	flag.StringVar(&o.date, "date", "", "the date to embed, RFC 3339 (default: the commit's time, else $SOURCE_DATE_EPOCH)")
	flag.StringVar(&platforms, "platforms", "", "build only these GOOS/GOARCH, comma-separated (default: every released platform)")
	flag.StringVar(&formats, "formats", "deb,rpm", "packages to make for the linux platforms built, comma-separated (empty: none)")
	flag.BoolVar(&o.sbom, "sbom", true, "write a CycloneDX SBOM next to each binary")
	flag.BoolVar(&o.list, "list", false, "print the names of the files a full release writes into dist/, and build nothing")
	flag.Parse()
	o.platforms = splitList(platforms)
	o.formats = splitList(formats)
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var semver = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

func run(ctx context.Context, o options, out io.Writer) error {
	o.version = strings.TrimPrefix(o.version, "v")
	if !semver.MatchString(o.version) {
		return fmt.Errorf("-version %q: want x.y.z (make release VERSION=1.2.3)", o.version)
	}
	repo, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repo, "cmd", "ihr-worker")); err != nil {
		return fmt.Errorf("-repo %s: not the ihr repository (%v)", o.repo, err)
	}
	dist := o.dist
	if dist == "" {
		dist = filepath.Join(repo, "dist")
	}
	if dist, err = filepath.Abs(dist); err != nil {
		return err
	}
	for _, f := range o.formats {
		if f != "deb" && f != "rpm" {
			return fmt.Errorf("-formats: %q is not deb or rpm", f)
		}
	}

	if o.list {
		names, err := allArtifacts(repo, o.version)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(out, n)
		}
		return nil
	}

	commit, date, err := source(ctx, repo, o.commit, o.date)
	if err != nil {
		return err
	}
	if err := cleanDist(dist); err != nil {
		return err
	}
	fmt.Fprintf(out, "release %s: commit %s, %s, into %s\n", o.version, commit, date.Format(time.RFC3339), dist)

	built := map[string]bool{} // GOOS/GOARCH of the linux builds, for the packages
	var written []string
	for _, p := range programs {
		for _, plat := range p.platforms {
			if len(o.platforms) > 0 && !slices.Contains(o.platforms, plat) {
				continue
			}
			name := binaryName(p.name, plat)
			if err := build(ctx, repo, p.name, plat, filepath.Join(dist, name), o.version, commit, date); err != nil {
				return err
			}
			written = append(written, name)
			fmt.Fprintln(out, "  built", name)
			if o.sbom {
				if err := writeSBOM(filepath.Join(dist, name), o.version, date); err != nil {
					return fmt.Errorf("%s: SBOM: %w", name, err)
				}
				written = append(written, name+".cdx.json")
			}
			built[plat] = true
		}
	}
	for _, arch := range packageArchs {
		if !built["linux/"+arch] {
			continue
		}
		for _, format := range o.formats {
			name, err := writePackage(repo, dist, format, arch, o.version, date)
			if err != nil {
				return fmt.Errorf("%s %s package: %w", format, arch, err)
			}
			written = append(written, name)
			fmt.Fprintln(out, "  packaged", name)
		}
	}
	if len(written) == 0 {
		return fmt.Errorf("-platforms %v: none of them is released", o.platforms)
	}
	if err := writeSums(dist, written); err != nil {
		return err
	}
	fmt.Fprintf(out, "  %d files and SHA256SUMS in %s\n", len(written), dist)
	return nil
}

// binaryName is how a binary is called in dist/: ihr-worker_linux_amd64,
// ihr-api_windows_amd64.exe. deploy/Dockerfile copies these names.
func binaryName(prog, platform string) string {
	goos, goarch, _ := strings.Cut(platform, "/")
	n := prog + "_" + goos + "_" + goarch
	if goos == "windows" {
		n += ".exe"
	}
	return n
}

// allArtifacts lists what a full release writes, in SHA256SUMS's order.
func allArtifacts(repo, version string) ([]string, error) {
	var names []string
	for _, p := range programs {
		for _, plat := range p.platforms {
			n := binaryName(p.name, plat)
			names = append(names, n, n+".cdx.json")
		}
	}
	for _, arch := range packageArchs {
		for _, format := range []string{"deb", "rpm"} {
			info, pkgr, err := packageInfo(repo, "", format, arch, version, time.Unix(0, 0))
			if err != nil {
				return nil, err
			}
			names = append(names, pkgr.ConventionalFileName(info))
		}
	}
	names = append(names, "SHA256SUMS")
	return names, nil
}

// source finds the commit and its time, which make the build reproducible:
// the date embedded is when the code was committed, not when it was built.
func source(ctx context.Context, repo, commit, date string) (string, time.Time, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...)
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	var when time.Time
	if date != "" {
		t, err := time.Parse(time.RFC3339, date)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("-date %q: %w", date, err)
		}
		when = t
	}
	if commit == "" || when.IsZero() {
		line, err := git("show", "-s", "--format=%H %ct", "HEAD")
		if err == nil {
			h, ct, _ := strings.Cut(line, " ")
			if commit == "" {
				commit = h
				// Uncommitted changes to tracked files: say so, the bytes
				// are not the commit's.
				if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
					commit += "-dirty"
				}
			}
			if when.IsZero() {
				sec, err := strconv.ParseInt(ct, 10, 64)
				if err != nil {
					return "", time.Time{}, fmt.Errorf("git commit time %q: %w", ct, err)
				}
				when = time.Unix(sec, 0)
			}
		} else if sde := os.Getenv("SOURCE_DATE_EPOCH"); when.IsZero() && sde != "" {
			sec, err := strconv.ParseInt(sde, 10, 64)
			if err != nil {
				return "", time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", sde, err)
			}
			when = time.Unix(sec, 0)
		}
		if commit == "" {
			commit = "unknown"
		}
		if when.IsZero() {
			return "", time.Time{}, errors.New("no git history and no -date or SOURCE_DATE_EPOCH: the build date would be the clock's, and builds would not reproduce")
		}
	}
	return commit, when.UTC(), nil
}

// cleanDist removes the files an earlier release wrote, and nothing else.
func cleanDist(dist string) error {
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && (n == "SHA256SUMS" || strings.HasPrefix(n, "ihr-") || strings.HasPrefix(n, "ihr_")) {
			if err := os.Remove(filepath.Join(dist, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

func build(ctx context.Context, repo, prog, platform, out, version, commit string, date time.Time) error {
	goos, goarch, _ := strings.Cut(platform, "/")
	ldflags := strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", buildinfoPkg + ".version=" + version,
		"-X", buildinfoPkg + ".commit=" + commit,
		"-X", buildinfoPkg + ".date=" + date.Format(time.RFC3339),
	}, " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/"+prog)
	cmd.Dir = repo
	// Everything that changes the bytes is fixed here, whatever the
	// caller's environment says (GOFLAGS could add -race or -tags).
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch,
		"GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %v\n%s", prog, platform, err, stderr.Bytes())
	}
	return nil
}

// writeSBOM writes NAME.cdx.json from the binary's own build information:
// exactly the modules linked into it, at their versions and go.sum hashes,
// and the binary's hashes. Serial number and timestamp derive from the
// binary and the commit, so a rebuild writes the same SBOM.
func writeSBOM(binary, version string, date time.Time) error {
	gen, err := bin.NewGenerator(binary,
		bin.WithLogger(zerolog.Nop()),
		bin.WithIncludeStdlib(true),
		bin.WithVersionOverride("v"+version))
	if err != nil {
		return err
	}
	bom, err := gen.Generate()
	if err != nil {
		return err
	}
	sum, err := fileSHA256(binary)
	if err != nil {
		return err
	}
	bom.SerialNumber = "urn:uuid:" + uuidV5(sum)
	bom.Metadata.Timestamp = date.Format(time.RFC3339)
	bom.Metadata.Tools = &cdx.ToolsChoice{Components: &[]cdx.Component{{
		Type: cdx.ComponentTypeApplication, Group: "github.com/CycloneDX", Name: "cyclonedx-gomod", Version: gomodVersion(),
	}}}
	f, err := os.Create(binary + ".cdx.json")
	if err != nil {
		return err
	}
	enc := cdx.NewBOMEncoder(f, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.Encode(bom); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// gomodVersion is the cyclonedx-gomod this program was built with.
func gomodVersion() string {
	return dependencyVersion("github.com/CycloneDX/cyclonedx-gomod")
}

// uuidV5 is a name-based UUID (RFC 9562 §5.5) over the binary's hash: the
// same binary always gets the same serial number.
func uuidV5(name string) string {
	ns := []byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8} // the URL namespace
	h := sha1.Sum(append(ns, []byte("ihr-release:"+name)...))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// packageInfo reads nfpm.yaml for one format and architecture.
func packageInfo(repo, binDir, format, arch, version string, date time.Time) (*nfpm.Info, nfpm.Packager, error) {
	vars := map[string]string{"VERSION": version, "ARCH": arch, "BIN": binDir, "REPO": repo}
	data, err := os.ReadFile(filepath.Join(repo, "deploy", "release", "nfpm.yaml"))
	if err != nil {
		return nil, nil, err
	}
	// Expanded as a whole (nfpm expands only some fields), and only these
	// variables: the caller's environment does not change the package.
	var unknown []string
	text := os.Expand(string(data), func(k string) string {
		v, ok := vars[k]
		if !ok {
			unknown = append(unknown, k)
		}
		return v
	})
	if len(unknown) > 0 {
		return nil, nil, fmt.Errorf("nfpm.yaml: unknown variables %v", unknown)
	}
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(text), func(k string) string { return vars[k] })
	if err != nil {
		return nil, nil, fmt.Errorf("nfpm.yaml: %w", err)
	}
	info, err := cfg.Get(format)
	if err != nil {
		return nil, nil, err
	}
	info.MTime = date
	info.Target = ""
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return nil, nil, err
	}
	return nfpm.WithDefaults(info), pkgr, nil
}

func writePackage(repo, dist, format, arch, version string, date time.Time) (string, error) {
	info, pkgr, err := packageInfo(repo, dist, format, arch, version, date)
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	name := pkgr.ConventionalFileName(info)
	f, err := os.Create(filepath.Join(dist, name))
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeSums writes SHA256SUMS in sha256sum's format, so that
// `sha256sum -c --ignore-missing SHA256SUMS` checks a download.
func writeSums(dist string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dist, n))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(b.String()), 0o644)
}

// dependencyVersion is the version of module path this program was built
// with, from its build information.
func dependencyVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}
