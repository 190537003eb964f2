package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every base image is pinned by digest: a tag can be moved to other bytes,
// a digest cannot.
func TestDockerfileBaseImagesPinnedByDigest(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`^FROM\s+\S+@sha256:[0-9a-f]{64}(\s+AS\s+\S+)?$`)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			continue
		}
		n++
		if !pinned.MatchString(line) {
			t.Errorf("Dockerfile: %q is not pinned by digest (IMAGE:TAG@sha256:<64 hex>)", line)
		}
	}
	if n == 0 {
		t.Fatal("Dockerfile: no FROM line")
	}
}

// Kubernetes images name a release (a version tag or a digest), never
// :latest or no tag at all; readiness asks /readyz, liveness /healthz.
func TestKubernetesImagesPinnedAndProbes(t *testing.T) {
	version := regexp.MustCompile(`:v?\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$`)
	probes := 0
	for _, m := range loadManifests(t) {
		spec := get(m.doc, "spec", "template", "spec")
		if spec == nil {
			spec = get(m.doc, "spec", "jobTemplate", "spec", "template", "spec")
		}
		for _, c := range asList(get(spec, "containers")) {
			img := str(get(c, "image"))
			if !version.MatchString(img) {
				t.Errorf("%s: image %q is not pinned to a version or digest", m.file, img)
			}
			if rp := get(c, "readinessProbe"); rp != nil {
				probes++
				if p := str(get(rp, "httpGet", "path")); p != "/readyz" {
					t.Errorf("%s: readiness probe on %q, want /readyz (per-source health)", m.file, p)
				}
				if p := str(get(c, "livenessProbe", "httpGet", "path")); p != "/healthz" {
					t.Errorf("%s: liveness probe on %q, want the cheap /healthz", m.file, p)
				}
			}
		}
	}
	if probes == 0 {
		t.Error("no container with a readiness probe (the serve Deployment should have one)")
	}
}
