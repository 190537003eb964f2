// Package deploy holds the deployment files (systemd, Kubernetes,
// Dockerfile, an example configuration); this test keeps them honest: every
// manifest parses, required fields are there, cross-references resolve, and
// every ihr-worker command line in them is accepted by the real CLI.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/internal/workercli"
	"github.com/ihr-tools/ihr/scheduler"
)

// checkCommandLine parses args (without the program name) with the real
// command tree: the command must exist and every flag be known to it.
func checkCommandLine(t *testing.T, where string, args []string) {
	t.Helper()
	root := workercli.NewCommand(workercli.Streams{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Errorf("%s: %q is not an ihr-worker command (%v)", where, args, err)
		return
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("%s: ihr-worker %s: %v", where, strings.Join(args, " "), err)
	}
	if cmd.Flags().Lookup("config") != nil && !cmd.Flags().Changed("config") {
		t.Errorf("%s: ihr-worker %s: no --config", where, strings.Join(args, " "))
	}
}

// flagValue returns the value of --name in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

type manifest struct {
	file string
	doc  map[string]any
}

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if doc == nil {
				continue
			}
			out = append(out, manifest{file: f, doc: doc})
		}
	}
	return out
}

// get walks a decoded document: get(doc, "spec", "template", 0, …).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	}
	return ""
}

func strs(v any) []string {
	var out []string
	for _, e := range asList(v) {
		out = append(out, str(e))
	}
	return out
}

func asList(v any) []any { s, _ := v.([]any); return s }

func TestKubernetesManifests(t *testing.T) {
	ms := loadManifests(t)
	byKind := map[string][]manifest{}
	names := map[string]map[string]manifest{} // kind → name → manifest
	for _, m := range ms {
		kind, name := str(m.doc["kind"]), str(get(m.doc, "metadata", "name"))
		if str(m.doc["apiVersion"]) == "" || kind == "" || name == "" {
			t.Errorf("%s: apiVersion, kind and metadata.name are required", m.file)
			continue
		}
		byKind[kind] = append(byKind[kind], m)
		if names[kind] == nil {
			names[kind] = map[string]manifest{}
		}
		names[kind][name] = m
	}
	for _, kind := range []string{"ConfigMap", "Secret", "CronJob", "Deployment"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("no %s manifest", kind)
		}
	}

	secretKeys := map[string]bool{}
	for _, s := range byKind["Secret"] {
		for _, field := range []string{"stringData", "data"} {
			if m, ok := s.doc[field].(map[string]any); ok {
				for k := range m {
					secretKeys[str(get(s.doc, "metadata", "name"))+"/"+k] = true
				}
			}
		}
	}

	// The ConfigMap's worker.yaml is a valid configuration; *_file secrets
	// point into the Secret's mount, which the test recreates.
	for _, cm := range byKind["ConfigMap"] {
		cfgText := str(get(cm.doc, "data", "worker.yaml"))
		if cfgText == "" {
			t.Errorf("%s: ConfigMap has no data.worker.yaml", cm.file)
			continue
		}
		dir := t.TempDir()
		for k := range secretKeys {
			_, key, _ := strings.Cut(k, "/")
			if err := os.WriteFile(filepath.Join(dir, key), []byte("x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfgText = strings.ReplaceAll(cfgText, "/etc/ihr/secrets/", dir+"/")
		if _, err := config.Parse([]byte(cfgText), config.Options{File: cm.file + ":worker.yaml", LookupEnv: anyEnv}); err != nil {
			t.Errorf("%s: worker.yaml: %v", cm.file, err)
		}
	}

	checkPod := func(m manifest, pod any, wantCommand string) {
		where := m.file + " " + str(m.doc["kind"])
		if get(pod, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext.runAsNonRoot must be true", where)
		}
		volumes := map[string]any{}
		for _, v := range asList(get(pod, "volumes")) {
			volumes[str(get(v, "name"))] = v
			if cm := str(get(v, "configMap", "name")); cm != "" && names["ConfigMap"][cm].doc == nil {
				t.Errorf("%s: volume uses ConfigMap %q, which no manifest defines", where, cm)
			}
			if s := str(get(v, "secret", "secretName")); s != "" && names["Secret"][s].doc == nil {
				t.Errorf("%s: volume uses Secret %q, which no manifest defines", where, s)
			}
			if c := str(get(v, "persistentVolumeClaim", "claimName")); c != "" && names["PersistentVolumeClaim"][c].doc == nil {
				t.Errorf("%s: volume uses claim %q, which no manifest defines", where, c)
			}
		}
		containers := asList(get(pod, "containers"))
		if len(containers) == 0 {
			t.Errorf("%s: no containers", where)
		}
		for _, c := range containers {
			if str(get(c, "image")) == "" {
				t.Errorf("%s: container without image", where)
			}
			args := strs(get(c, "args"))
			if len(args) == 0 || args[0] != wantCommand {
				t.Errorf("%s: args %q should run %q", where, args, wantCommand)
			}
			checkCommandLine(t, where, args)
			for _, vm := range asList(get(c, "volumeMounts")) {
				if _, ok := volumes[str(get(vm, "name"))]; !ok {
					t.Errorf("%s: volumeMount %q has no volume", where, str(get(vm, "name")))
				}
			}
			for _, e := range asList(get(c, "env")) {
				if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
					k := str(get(ref, "name")) + "/" + str(get(ref, "key"))
					if !secretKeys[k] {
						t.Errorf("%s: env %s refers to secret key %s, which the Secret lacks", where, str(get(e, "name")), k)
					}
				}
			}
			if get(c, "securityContext", "allowPrivilegeEscalation") != false {
				t.Errorf("%s: container must set allowPrivilegeEscalation: false", where)
			}
			if wantCommand != "serve" {
				continue
			}
			// Probes hit /healthz on the port serve listens on.
			addr, ok := flagValue(args, "metrics-addr")
			if !ok {
				addr = "127.0.0.1:9847" // serve's default
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: --metrics-addr %q: %v", where, addr, err)
			}
			// The kubelet probes (and Prometheus scrapes) the pod's IP,
			// which serve's loopback default does not answer on.
			if host != "0.0.0.0" && host != "::" {
				t.Errorf("%s: --metrics-addr %q: probes reach the pod IP; listen on 0.0.0.0:PORT", where, addr)
			}
			ports := map[string]string{}
			for _, p := range asList(get(c, "ports")) {
				ports[str(get(p, "name"))] = str(get(p, "containerPort"))
				ports[str(get(p, "containerPort"))] = str(get(p, "containerPort"))
			}
			for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if got := str(get(c, probe, "httpGet", "path")); got != want {
					t.Errorf("%s: %s path = %q, want %s", where, probe, got, want)
				}
				if p := ports[str(get(c, probe, "httpGet", "port"))]; p != port {
					t.Errorf("%s: %s port resolves to %q, serve listens on %q", where, probe, p, port)
				}
			}
		}
	}
	for _, m := range byKind["CronJob"] {
		if _, err := scheduler.ParseSchedule(str(get(m.doc, "spec", "schedule"))); err != nil {
			t.Errorf("%s: spec.schedule: %v", m.file, err)
		}
		if p := str(get(m.doc, "spec", "concurrencyPolicy")); p != "Forbid" {
			t.Errorf("%s: concurrencyPolicy = %q; two runs must not overlap on one ledger", m.file, p)
		}
		pod := get(m.doc, "spec", "jobTemplate", "spec", "template", "spec")
		if rp := str(get(pod, "restartPolicy")); rp != "Never" && rp != "OnFailure" {
			t.Errorf("%s: restartPolicy %q", m.file, rp)
		}
		checkPod(m, pod, "run")
	}
	for _, m := range byKind["Deployment"] {
		sel, _ := get(m.doc, "spec", "selector", "matchLabels").(map[string]any)
		labels, _ := get(m.doc, "spec", "template", "metadata", "labels").(map[string]any)
		if len(sel) == 0 {
			t.Errorf("%s: spec.selector.matchLabels is required", m.file)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pod labels", m.file, k, v)
			}
		}
		checkPod(m, get(m.doc, "spec", "template", "spec"), "serve")
	}
}

// anyEnv pretends every variable is set, so ${VAR} placeholders parse.
func anyEnv(name string) (string, bool) { return "placeholder-" + name, true }

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data, config.Options{File: "config.example.yaml", Dir: ".", LookupEnv: anyEnv})
	if err != nil {
		t.Fatal(err)
	}
	schemes := map[string]bool{}
	for _, s := range c.Sources {
		if u, err := storeurl.Check(s.URL); err == nil {
			schemes[u.Scheme] = true
		}
	}
	for _, want := range []string{"sftp", "ftps", "s3", "file"} {
		if !schemes[want] {
			t.Errorf("the example shows no %s:// source", want)
		}
	}
	// Without the variables it names, the example fails and says which.
	_, err = config.Parse(data, config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "COUPA_CLIENT_ID is not set") {
		t.Errorf("missing variables: %v", err)
	}
}

// unit is a parsed systemd unit file: section → key → values.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Errorf("%s:%d: not a key=value line in a section: %q", file, n, line)
				continue
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func TestSystemdUnits(t *testing.T) {
	services, _ := filepath.Glob("systemd/*.service")
	timers, _ := filepath.Glob("systemd/*.timer")
	if len(services) == 0 || len(timers) == 0 {
		t.Fatal("want at least one service and one timer")
	}
	commands := map[string]string{}
	for _, s := range services {
		u := parseUnit(t, s)
		if u["Unit"]["Description"] == nil || u["Install"] == nil {
			t.Errorf("%s: needs [Unit] Description and an [Install] section", s)
		}
		exec := u["Service"]["ExecStart"]
		if len(exec) != 1 {
			t.Errorf("%s: want exactly one ExecStart, got %d", s, len(exec))
			continue
		}
		fields := strings.Fields(exec[0])
		if !filepath.IsAbs(fields[0]) || filepath.Base(fields[0]) != "ihr-worker" {
			t.Errorf("%s: ExecStart must run ihr-worker by absolute path, got %q", s, fields[0])
		}
		checkCommandLine(t, s, fields[1:])
		commands[filepath.Base(s)] = fields[1]
		if u["Service"]["User"] == nil && u["Service"]["DynamicUser"] == nil {
			t.Errorf("%s: runs as root; set User= or DynamicUser=", s)
		}
	}
	for _, tm := range timers {
		u := parseUnit(t, tm)
		if len(u["Timer"]["OnCalendar"]) == 0 {
			t.Errorf("%s: no OnCalendar", tm)
		}
		target := strings.TrimSuffix(filepath.Base(tm), ".timer") + ".service"
		if v := u["Timer"]["Unit"]; len(v) > 0 {
			target = v[0]
		}
		if cmd, ok := commands[target]; !ok {
			t.Errorf("%s: starts %s, which is not in systemd/", tm, target)
		} else if cmd != "run" {
			t.Errorf("%s: the timer's service should run `ihr-worker run`, runs %q", tm, cmd)
		}
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, entrypoint, cmd string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		word, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			froms = append(froms, rest)
			user = "" // USER applies per stage; the last stage's counts
		case "USER":
			user = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			entrypoint = rest
		case "CMD":
			cmd = rest
		}
	}
	// The binaries come from make release (release_test.go checks the
	// COPY lines, and that they are static), so the image is one stage.
	if len(froms) == 0 {
		t.Fatal("no FROM line")
	}
	if final := froms[len(froms)-1]; !strings.Contains(final, "distroless/static") && !strings.HasPrefix(final, "scratch") {
		t.Errorf("final stage %q: want distroless/static or scratch for a static binary", final)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("final stage USER = %q: must be non-root", user)
	}
	var ep, args []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 || filepath.Base(ep[0]) != "ihr-worker" {
		t.Errorf("ENTRYPOINT %s: want the exec form running ihr-worker (%v)", entrypoint, err)
	}
	if err := json.Unmarshal([]byte(cmd), &args); err != nil {
		t.Errorf("CMD %s: want the exec form: %v", cmd, err)
	}
	checkCommandLine(t, "Dockerfile CMD", args)
}
