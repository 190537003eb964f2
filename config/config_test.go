package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"go.yaml.in/yaml/v3"

	"github.com/ihr-tools/ihr/apiclient"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const full = `
api:
  url: https://acme.coupahost.com
  oauth:
    client_id: worker
    client_secret: ${SECRET}
    scopes: [core.integration.write, core.integration.read]
    auth_method: client_secret_basic
  rate_limit: 20
  burst: 30
  concurrency: 8
  timeout: 45s
state: sqlite:/var/lib/ihr/state.db
sources:
  - name: erp-invoices
    url: sftp://coupa@sftp.example.com:22/Outgoing/InvoiceResults
    integration: ERP-INVOICES
    include: "*.csv"
    encoding: auto
    mapping:
      columns: {document-id: "ID", external_id: "ERP Doc No", response-message: "Message"}
      defaults: {document-type: InvoiceHeader, contact-alert-type: Functional, status: Success}
      actions: {Success: mark_exported, Error: create_alert, "*": create}
    schedule: "0 2 * * *"
    poll: 30s
    resolve_previous: true
    stable_for: 1m
    folders: {inbox: in, archive: done, failed: bad, reports: out}
    key_file: keys/id_ed25519
    known_hosts: /etc/ihr/known_hosts
  - name: s3-results
    url: s3://bucket/prefix
    endpoint: http://127.0.0.1:9000
    region: us-east-1
    path_style: true
    access_key_id: AKIA
    secret_access_key: ${S3_SECRET}
    allow_duplicate_content: true
  - name: ftp
    url: ftps://user@ftp.example.com/x
    password: ${FTP_PASS}
    ca_file: ca.pem
    insecure_skip_verify: false
`

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(full), Options{Dir: "/etc/ihr", LookupEnv: env(map[string]string{
		"SECRET": "s3cr3t", "S3_SECRET": "abc/def", "FTP_PASS": "p$w",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if c.API.OAuth.ClientSecret.Reveal() != "s3cr3t" || c.API.OAuth.TokenURL != "https://acme.coupahost.com/oauth2/token" || c.API.OAuth.AuthMethod != "client_secret_basic" {
		t.Errorf("oauth = %+v", c.API.OAuth)
	}
	if c.API.RateLimit != 20 || c.API.Burst != 30 || c.API.Concurrency != 8 || c.API.Timeout != 45*time.Second {
		t.Errorf("api = %+v", c.API)
	}
	s := c.Sources[0]
	if s.Poll != 30*time.Second || s.StableFor != time.Minute || !s.ResolvePrevious || s.Schedule != "0 2 * * *" {
		t.Errorf("source = %+v", s)
	}
	if s.Mapping.Columns["external-id"] != "ERP Doc No" || s.Mapping.Defaults["document-type"] != "InvoiceHeader" || s.Mapping.Actions["*"] != "create" {
		t.Errorf("mapping = %+v", s.Mapping)
	}
	if s.Folders != (Folders{"in", "done", "bad", "out"}) {
		t.Errorf("folders = %+v", s.Folders)
	}
	if s.KeyFile != "/etc/ihr/keys/id_ed25519" || s.KnownHosts != "/etc/ihr/known_hosts" {
		t.Errorf("paths not resolved against the config folder: %q %q", s.KeyFile, s.KnownHosts)
	}
	s3 := c.Sources[1]
	if s3.SecretAccessKey.Reveal() != "abc/def" || !s3.PathStyle || !s3.AllowDuplicateContent {
		t.Errorf("s3 = %+v", s3)
	}
	// defaults
	if s3.Include != "*.csv" || s3.Encoding != "auto" || s3.StableFor != DefaultStableFor || s3.Folders.Inbox != "inbox" || s3.Folders.Reports != "reports" {
		t.Errorf("defaults not applied: %+v", s3)
	}
	if got := c.Sources[2].Password.Reveal(); got != "p$w" {
		t.Errorf("password = %q", got)
	}
	if got, ok := c.Source("s3-results"); !ok || got.Name != "s3-results" {
		t.Error("Source lookup failed")
	}
}

func TestJSONIsAccepted(t *testing.T) {
	c, err := Parse([]byte(`{"api": {"url": "http://127.0.0.1:8080", "api_key": "k", "rate_limit": "5"},
		"state": "sqlite:s.db", "sources": [{"name": "a", "url": "file:///data/a", "poll": "10s"}]}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.API.RateLimit != 5 || c.API.Burst != 5 || c.Sources[0].Poll != 10*time.Second {
		t.Errorf("%+v", c)
	}
}

// minimal is a valid file; tests append or replace parts of it.
const minimal = `api:
  url: http://127.0.0.1:8080
  api_key: k
state: sqlite:state.db
sources:
  - name: a
    url: file:///data/a
`

func parseErr(t *testing.T, doc string, e map[string]string) error {
	t.Helper()
	_, err := Parse([]byte(doc), Options{File: "w.yaml", LookupEnv: env(e)})
	if err == nil {
		t.Fatalf("accepted:\n%s", doc)
	}
	return err
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"bad cron", minimal + "  - name: b\n    url: file:///b\n    schedule: \"0 25 * * *\"\n",
			`w.yaml:10: sources[1].schedule: invalid cron expression "0 25 * * *"`},
		{"unknown key", strings.Replace(minimal, "    url: file", "    pasword: x\n    url: file", 1),
			`w.yaml:7: sources[0].pasword: unknown key (did you mean "password"?)`},
		{"unknown top key", minimal + "sauces: []\n", `w.yaml:8: sauces: unknown key`},
		// Store URLs are judged by storeurl, as Open will judge them.
		{"sftp without user", strings.Replace(minimal, "file:///data/a", "sftp://h/x", 1), `w.yaml:7: sources[0].url: no user`},
		// Mapping blocks are judged by mapping.Check, as the pipeline will.
		{"bad default id", minimal + "    mapping: {defaults: {document-id: x1}}\n", `sources[0].mapping.defaults["document-id"]: "x1" is not an integer`},
		{"missing env", strings.Replace(minimal, "api_key: k", "api_key: ${COUPA_API_KEY}", 1),
			`w.yaml:3: api.api_key: environment variable COUPA_API_KEY is not set`},
		{"bad duration", minimal + "    poll: 30\n", `w.yaml:8: sources[0].poll: invalid duration "30"`},
		{"negative split", minimal + "    split_rows: -5\n", `sources[0].split_rows: must not be negative (0 = never split), got -5`},
		{"bad bool", minimal + "    resolve_previous: maybe\n", `sources[0].resolve_previous: expected true or false`},
		{"bad int", strings.Replace(minimal, "api_key: k", "api_key: k\n  concurrency: lots", 1), `api.concurrency: expected a whole number`},
		{"missing url", strings.Replace(minimal, "  url: http://127.0.0.1:8080\n", "", 1), `api.url: is required`},
		{"bad scheme", strings.Replace(minimal, "file:///data/a", "gopher://x/a", 1), `w.yaml:7: sources[0].url: unsupported scheme "gopher"`},
		{"misplaced store key", minimal + "    ca_file: /x.pem\n", `sources[0].ca_file: applies to ftps sources only`},
		{"dup name", minimal + "  - name: a\n    url: file:///b\n", `sources[1].name: "a" is already the name of sources[0]`},
		{"dup key", minimal + "    url: file:///c\n", `sources[0].url: repeated key (first at line 7)`},
		{"both secret forms", strings.Replace(minimal, "api_key: k", "api_key: k\n  api_key_file: /k", 1), `api.api_key_file: set either api_key or api_key_file, not both`},
		{"secret file missing", strings.Replace(minimal, "api_key: k", "api_key_file: /nonexistent/key", 1), `api.api_key_file: open /nonexistent/key`},
		{"no auth", strings.Replace(minimal, "  api_key: k\n", "", 1), `api.api_key: set api_key (or api_key_file), or oauth`},
		{"oauth incomplete", strings.Replace(minimal, "api_key: k", "oauth: {client_id: x}", 1), `api.oauth.client_secret: is required`},
		{"bad oauth auth method", strings.Replace(minimal, "api_key: k", "oauth: {client_id: x, client_secret: y, auth_method: private_key_jwt}", 1), `api.oauth.auth_method: must be client_secret_post or client_secret_basic, got "private_key_jwt"`},
		{"bad state", strings.Replace(minimal, "sqlite:state.db", "mysql://x", 1), `state: must start with sqlite: or postgres://`},
		{"no sources", strings.Split(minimal, "sources:")[0], `sources: at least one source is required`},
		{"bad encoding", minimal + "    encoding: latin1\n", `sources[0].encoding: unsupported encoding "latin1"`},
		{"bad action", minimal + "    mapping: {actions: {Error: explode}}\n", `sources[0].mapping.actions["Error"]: "explode" is not an action`},
		{"bad element", minimal + "    mapping: {columns: {doc-id: X}}\n", `sources[0].mapping.columns["doc-id"]: not an element a column can feed`},
		{"bad document type", minimal + "    mapping: {defaults: {document_type: Invoices}}\n", `"Invoices" is not one of the 31 document types`},
		{"folder escapes", minimal + "    folders: {inbox: ../x}\n", `sources[0].folders.inbox: "../x" must be a relative path inside the source`},
		{"folders collide", minimal + "    folders: {archive: reports}\n", `sources[0].folders.reports: "reports" is also the archive folder`},
		{"password in url", strings.Replace(minimal, "file:///data/a", "sftp://u:hunter2@h/x", 1), `sources[0].url: must not carry a password`},
		{"wrong shape", strings.Replace(minimal, "api_key: k", "api_key: [k]", 1), `api.api_key: expected a single value, got a list`},
		{"not yaml", "api: [", `not valid YAML`},
		{"empty", "", `the file is empty`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := parseErr(t, tc.doc, nil)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks a password: %v", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *config.Error", err)
			}
		})
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	doc := minimal + "    poll: 30\n    schedule: nope\n  - url: file:///b\n"
	err := parseErr(t, doc, nil)
	// Decoding errors come first; validation then runs on a valid decode only.
	if !strings.Contains(err.Error(), "sources[0].poll") {
		t.Fatalf("%v", err)
	}
	err = parseErr(t, minimal+"    schedule: nope\n  - url: file:///b\n", nil)
	for _, want := range []string{"sources[0].schedule", "sources[1].name: is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestExpand(t *testing.T) {
	e := env(map[string]string{"A": "1", "EMPTY": ""})
	cases := map[string]string{
		"x${A}y":          "x1y",
		"${A}${A}":        "11",
		"$A":              "$A",
		"p$w0rd":          "p$w0rd",
		"$${A}":           "${A}",
		"${B:-def}":       "def",
		"${EMPTY:-def}":   "def",
		"${EMPTY}":        "",
		"${A:-def}":       "1",
		"no vars at all.": "no vars at all.",
	}
	for in, want := range cases {
		got, err := expand(in, e)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${B}", "${", "${A", "${1A}", "${}"} {
		if _, err := expand(in, e); err == nil {
			t.Errorf("expand(%q) succeeded", in)
		}
	}
}

func TestExpandedValuesAreTyped(t *testing.T) {
	doc := strings.Replace(minimal, "api_key: k", "api_key: k\n  rate_limit: ${RATE}\n  concurrency: ${CONC}", 1) + "    resolve_previous: ${RP}\n    poll: ${POLL}\n"
	c, err := Parse([]byte(doc), Options{LookupEnv: env(map[string]string{"RATE": "2.5", "CONC": "3", "RP": "true", "POLL": "1m"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.API.RateLimit != 2.5 || c.API.Burst != 3 || c.API.Concurrency != 3 || !c.Sources[0].ResolvePrevious || c.Sources[0].Poll != time.Minute {
		t.Fatalf("%+v %+v", c.API, c.Sources[0])
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("client_secret", "cs\n")
	write("pass", "pw\r\n")
	write("s3", "sk")
	write("apikey", "ak\n")
	cfgPath := filepath.Join(dir, "worker.yaml")
	write("worker.yaml", `api:
  url: https://x.example.com
  oauth: {client_id: id, client_secret_file: client_secret}
state: postgres://ihr@db/ihr
sources:
  - {name: a, url: "sftp://u@h/x", password_file: pass, insecure_ignore_host_key: true}
  - {name: b, url: "s3://b/p", access_key_id: AK, secret_access_key_file: `+filepath.Join(dir, "s3")+`}
`)
	c, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.OAuth.ClientSecret.Reveal() != "cs" || c.Sources[0].Password.Reveal() != "pw" || c.Sources[1].SecretAccessKey.Reveal() != "sk" {
		t.Fatalf("secrets: %q %q %q", c.API.OAuth.ClientSecret.Reveal(), c.Sources[0].Password.Reveal(), c.Sources[1].SecretAccessKey.Reveal())
	}
	if got := c.API.OAuth.Scopes; len(got) != 2 || got[0] != "core.integration.write" {
		t.Fatalf("default scopes = %v", got)
	}

	write("worker2.yaml", strings.Replace(minimal, "api_key: k", "api_key_file: apikey", 1))
	c, err = Load(filepath.Join(dir, "worker2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.APIKey.Reveal() != "ak" {
		t.Fatalf("api key = %q", c.API.APIKey.Reveal())
	}

	write("empty", "\n")
	write("worker3.yaml", strings.Replace(minimal, "api_key: k", "api_key_file: empty", 1))
	if _, err := Load(filepath.Join(dir, "worker3.yaml")); err == nil || !strings.Contains(err.Error(), "api.api_key_file:") {
		t.Fatalf("empty secret file: %v", err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	doc := strings.Replace(minimal, "api_key: k", "api_key: TOPSECRET-1", 1) + "  - {name: s, url: \"sftp://u@h/x\", password: TOPSECRET-2}\n"
	c, err := Parse([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(c)
	y, _ := yaml.Marshal(c)
	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Info("config", zap.Any("config", c), zap.Any("api", c.API), zap.Stringer("key", c.API.APIKey))
	var logged strings.Builder
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, e := range logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			t.Fatal(err)
		}
		logged.Write(buf.Bytes())
	}
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", *c), "%#v": fmt.Sprintf("%#v", c.API), "%s": fmt.Sprintf("%s", c.API.APIKey),
		"json": string(j), "yaml": string(y), "zap": logged.String(),
	} {
		if strings.Contains(out, "TOPSECRET") {
			t.Errorf("%s output leaks a secret: %s", name, out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s output does not show the redaction: %s", name, out)
		}
	}
	if Secret("").String() != "" {
		t.Error("an unset secret should print empty")
	}
}

func TestMergeKeys(t *testing.T) {
	doc := `api: {url: "http://127.0.0.1:1", api_key: k}
state: sqlite:x.db
common: &sftp
  known_hosts: /etc/kh
  key_file: /etc/key
sources: []
`
	// "common" is not a key; anchors must live inside sources.
	if _, err := Parse([]byte(doc), Options{}); err == nil || !strings.Contains(err.Error(), "common: unknown key") {
		t.Fatalf("%v", err)
	}
	doc = `api: {url: "http://127.0.0.1:1", api_key: k}
state: sqlite:x.db
sources:
  - &first {name: a, url: "sftp://u@h/a", known_hosts: /etc/kh, key_file: /etc/key}
  - {<<: *first, name: b, url: "sftp://u@h/b"}
`
	c, err := Parse([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Sources[1]; b.Name != "b" || b.KnownHosts != "/etc/kh" || b.URL != "sftp://u@h/b" {
		t.Fatalf("%+v", b)
	}
}

func TestRedactURL(t *testing.T) {
	s := Source{Name: "a", URL: "ftp://u:hunter2@h/"}
	if strings.Contains(s.String(), "hunter2") {
		t.Fatal(s.String())
	}
}

func TestValidateAfterOverride(t *testing.T) {
	c, err := Parse([]byte(minimal), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.API.Concurrency = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "api.concurrency") {
		t.Fatalf("%v", err)
	}
}

// Credentials never go in cleartext to a host that is not loopback unless
// the configuration says so, and then Warnings says it on every start.
func TestCleartextCredentials(t *testing.T) {
	api := func(url string) string { return strings.Replace(minimal, "http://127.0.0.1:8080", url, 1) }
	refused := []struct{ name, doc, want string }{
		{"api url", api("http://ihr.example.com:8080"), `api.url: http:// to ihr.example.com would send the credentials in cleartext; use https://`},
		{"api url IP", api("http://10.0.0.5"), `api.url: http:// to 10.0.0.5`},
		{"unspecified", api("http://0.0.0.0:8080"), `api.url: http:// to 0.0.0.0`},
		{"token url", strings.Replace(minimal, "api_key: k", "oauth: {client_id: x, client_secret: y, token_url: \"http://auth.example.com/token\"}", 1),
			`api.oauth.token_url: http:// to auth.example.com would send the client secret in cleartext`},
		{"ftp password", strings.Replace(minimal, "file:///data/a", "ftp://u@ftp.example.com/x", 1) + "    password: hunter2\n",
			`sources[0].url: ftp:// to ftp.example.com would send the password in cleartext; use ftps://`},
		{"ftp override elsewhere", minimal + "    allow_insecure_ftp: true\n", `sources[0].allow_insecure_ftp: applies to ftp sources only`},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if err := parseErr(t, tc.doc, nil); !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://127.1.2.3", "http://[::1]:80", "http://localhost:8080", "http://api.localhost", "https://ihr.example.com"} {
		c, err := Parse([]byte(api(u)), Options{File: "w.yaml", LookupEnv: env(nil)})
		if err != nil {
			t.Errorf("%s refused: %v", u, err)
		} else if w := c.Warnings(); len(w) != 0 {
			t.Errorf("%s: warnings %v", u, w)
		}
	}
	ftpOK := strings.Replace(minimal, "file:///data/a", "ftp://u@127.0.0.1/x", 1) + "    password: p\n"
	if _, err := Parse([]byte(ftpOK), Options{File: "w.yaml", LookupEnv: env(nil)}); err != nil {
		t.Errorf("ftp:// to loopback refused: %v", err)
	}
	allowed := strings.Replace(api("http://ihr.example.com"), "api_key: k", "api_key: k\n  allow_insecure_http: true", 1)
	allowed = strings.Replace(allowed, "file:///data/a", "ftp://u@ftp.example.com/x", 1) + "    password: p\n    allow_insecure_ftp: true\n"
	c, err := Parse([]byte(allowed), Options{File: "w.yaml", LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "api.url: credentials go to ihr.example.com in cleartext") || !strings.Contains(w, "sources[0].url: the FTP password goes to ftp.example.com") {
		t.Errorf("warnings:\n%s", w)
	}
}

// The api block's defaults are the API client's, and the encodings are
// the parser's: one place for each.
func TestDefaultsAndEncodingsComeFromTheirPackages(t *testing.T) {
	c, err := Parse([]byte(minimal+"    encoding: CP932\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := c.API
	if a.RateLimit != apiclient.DefaultRateLimit || a.Burst != apiclient.DefaultBurst(apiclient.DefaultRateLimit) ||
		a.Concurrency != apiclient.DefaultConcurrency || a.Timeout != apiclient.DefaultTimeout || a.MaxRetries != apiclient.DefaultMaxRetries {
		t.Errorf("api defaults %+v", a)
	}
	if c.Sources[0].Encoding != "shift_jis" {
		t.Errorf("encoding %q, want the parser's canonical shift_jis", c.Sources[0].Encoding)
	}
}

// Sources of one SFTP account (host, port, user: as the store shares its
// connections) must agree on max_connections, however the port is
// spelled; FTP sources share nothing, so theirs may differ.
func TestMaxConnectionsPerAccount(t *testing.T) {
	two := func(url1, url2 string) string {
		src := func(name, url string, max int) string {
			return fmt.Sprintf("  - name: %s\n    url: %s\n    password: p\n    max_connections: %d\n", name, url, max)
		}
		return strings.TrimSuffix(minimal, "  - name: a\n    url: file:///data/a\n") + src("a", url1, 5) + src("b", url2, 3)
	}
	for _, c := range [][2]string{{"sftp://u@h/a", "sftp://u@h:22/b"}, {"sftp://u@H:2222/a", "sftp://u@h:2222/b"}} {
		doc := strings.ReplaceAll(two(c[0], c[1]), "    password: p\n", "    password: p\n    insecure_ignore_host_key: true\n")
		if err := parseErr(t, doc, nil); !strings.Contains(err.Error(), "sources[1].max_connections: 3 differs from sources[0]") {
			t.Errorf("%s and %s: %v", c[0], c[1], err)
		}
	}
	for _, c := range [][2]string{{"sftp://u@h/a", "sftp://v@h/b"}, {"sftp://u@h/a", "sftp://u@h:2222/b"}, {"ftps://u@h/a", "ftps://u@h/b"}} {
		doc := two(c[0], c[1])
		if strings.HasPrefix(c[0], "sftp") {
			doc = strings.ReplaceAll(doc, "    password: p\n", "    password: p\n    insecure_ignore_host_key: true\n")
		}
		if _, err := Parse([]byte(doc), Options{File: "w.yaml", LookupEnv: env(nil)}); err != nil {
			t.Errorf("%s and %s are not one account: %v", c[0], c[1], err)
		}
	}
}
