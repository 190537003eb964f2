package main_test

// End-to-end tests of the ihr-worker binary: they build ihr-worker and
// ihr-api, start ihr-api on loopback over SQLite, and run the worker's
// commands as a user would, checking exit codes, output, files and the
// records on the server.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
)

func TestMain(m *testing.M) { binharness.Main(m) }

// apiKey is the ihr-api key; worker configurations read it from
// E2E_API_KEY.
const apiKey = "e2e-key"

// startAPI starts the ihr-api binary (IHR_E2E_API_BIN, if set, instead of
// a build) with the integrations created.
func startAPI(t *testing.T, integrations ...string) *binharness.API {
	t.Helper()
	return binharness.StartAPI(t, binharness.APIOptions{Key: apiKey, Integrations: integrations})
}

func createIntegration(t *testing.T, api *binharness.API, code string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := api.Client().CreateIntegration(ctx, &apiclient.Integration{Code: code, Name: code}); err != nil {
		t.Fatal(err)
	}
}

// records returns every record of the server by external-id (counting
// duplicates).
func records(t *testing.T, api *binharness.API) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]int{}
	for r, err := range api.Client().All(ctx, apiclient.NewQuery()) {
		if err != nil {
			t.Fatal(err)
		}
		out[r.ExternalID]++
	}
	return out
}

// env is one test's configuration: a local source folder, a state file and
// a config file.
type env struct {
	t      *testing.T
	dir    string
	src    string // the source's root folder
	config string
	api    *binharness.API
}

func newEnv(t *testing.T, api *binharness.API, sourceExtra string, apiExtra string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, src: filepath.Join(dir, "erp"), api: api}
	for _, d := range []string{"inbox"} {
		if err := os.MkdirAll(filepath.Join(e.src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://127.0.0.1:1"
	if api != nil {
		url = api.URL
	}
	e.config = filepath.Join(dir, "worker.yaml")
	cfg := fmt.Sprintf(`api:
  url: %s
  api_key: ${E2E_API_KEY}
  rate_limit: 0
  max_retries: 1
%sstate: sqlite:%s
sources:
  - name: erp
    url: file://%s
    integration: ERP-INVOICES
    stable_for: 0s
%s`, url, apiExtra, filepath.Join(dir, "state.db"), filepath.ToSlash(e.src), sourceExtra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// drop writes a CSV file into the inbox.
func (e *env) drop(name, content string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.src, "inbox", name), []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// worker runs the ihr-worker binary and waits for it.
func (e *env) worker(args ...string) result {
	e.t.Helper()
	r := binharness.Exec(e.t, 60*time.Second, []string{"E2E_API_KEY=" + apiKey, "IHR_WORKER_CONFIG="},
		binharness.Binary(e.t, "ihr-worker"), args...)
	return result{r.Code, r.Stdout, r.Stderr}
}

func (r result) expect(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

func header() string {
	return "external-id,document-type,document-id,status,contact-alert-type,response-code,response-message\n"
}

func goodRows(prefix string, n int) string {
	var b strings.Builder
	b.WriteString(header())
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s-%05d,InvoiceHeader,%d,Success,Functional,OK,posted %d\n", prefix, i, 1000+i, i)
	}
	return b.String()
}

// readReport parses a response report into its lines (header dropped).
func readReport(t *testing.T, path string) [][]string {
	t.Helper()
	rows := readCSV(t, path)
	if len(rows) == 0 || strings.Join(rows[0], ",") != "row,external-id,document-type,document-id,action,result,record-id,http-status,message" {
		t.Fatalf("report %s: bad header %v", path, rows)
	}
	return rows[1:]
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestHelpOnEveryCommand(t *testing.T) {
	e := newEnv(t, nil, "", "")
	for _, c := range []string{"", "run", "serve", "reprocess", "validate", "export", "status", "version"} {
		args := []string{"--help"}
		if c != "" {
			args = []string{c, "--help"}
		}
		r := e.worker(args...).expect(t, 0)
		if !strings.Contains(r.stderr, "Usage:") || !strings.Contains(r.stderr, "--config") {
			t.Errorf("%s --help:\n%s", c, r.stderr)
		}
	}
	r := e.worker("--help")
	for _, c := range []string{"run", "serve", "reprocess", "validate", "export", "status"} {
		if !strings.Contains(r.stderr, "  "+c+" ") {
			t.Errorf("root help does not list %s:\n%s", c, r.stderr)
		}
	}
}

func TestUsageAndConfigErrorsExit2(t *testing.T) {
	e := newEnv(t, nil, "    schedule: \"0 25 * * *\"\n", "")
	r := e.worker("run", "--config", e.config).expect(t, 2)
	if !strings.Contains(r.stderr, "sources[0].schedule: invalid cron expression \"0 25 * * *\"") {
		t.Errorf("config error does not name the key:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "worker.yaml:12:") {
		t.Errorf("config error does not give file and line:\n%s", r.stderr)
	}
	e = newEnv(t, nil, "", "")
	cases := [][]string{
		{"run"},                                                            // no --config
		{"run", "--config", e.config, "--bogus"},                           // unknown flag
		{"frobnicate", "--config", e.config},                               // unknown command
		{"reprocess", "--config", e.config, "a.csv"},                       // no --source
		{"reprocess", "--config", e.config, "--source", "erp"},             // no FILE
		{"reprocess", "--config", e.config, "--source", "erp", "nope.csv"}, // no such file
		{"run", "--config", e.config, "--source", "nope"},                  // no such source
		{"run", "--config", e.config, "--concurrency", "0"},                // override fails validation
		{"validate", "--config", e.config, "--source", "erp", filepath.Join(e.dir, "missing.csv")},
		{"export", "--config", e.config, "--to", filepath.Join(e.dir, "x.csv"), "--created-after", "yesterday"},
		{"serve", "--config", e.config}, // a source with neither schedule nor poll
		{"run", "--config", filepath.Join(e.dir, "nope.yaml")},
	}
	for _, args := range cases {
		if r := e.worker(args...); r.code != 2 {
			t.Errorf("ihr-worker %s: exit %d, want 2\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	// Missing environment variable: the key that uses it is named.
	bin := binharness.Binary(t, "ihr-worker")
	cmd := exec.Command(bin, "status", "--config", e.config)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "api.api_key: environment variable E2E_API_KEY is not set") {
		t.Errorf("missing env var: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

func TestRunExitCodes(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")

	// 0: every row recorded, file archived, report written.
	e := newEnv(t, api, "", "")
	e.drop("good.csv", goodRows("G", 5))
	r := e.worker("run", "--config", e.config, "--json").expect(t, 0)
	var sum struct {
		Sources []struct {
			Name    string
			Summary struct {
				Archived, Rejected int
				Rows               struct{ Created int }
			}
		}
		ExitCode int `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	if len(sum.Sources) != 1 || sum.Sources[0].Summary.Archived != 1 || sum.Sources[0].Summary.Rows.Created != 5 {
		t.Errorf("summary: %+v", sum)
	}
	if !exists(filepath.Join(e.src, "archive", "good.csv")) || exists(filepath.Join(e.src, "inbox", "good.csv")) {
		t.Error("good.csv not archived")
	}
	rep := readReport(t, filepath.Join(e.src, "reports", "good.response.csv"))
	if len(rep) != 5 || rep[0][5] != "created" {
		t.Errorf("report: %v", rep)
	}
	// Nothing new: still 0.
	e.worker("run", "--config", e.config).expect(t, 0)

	// 1: rows rejected, the file goes to failed/ with its report.
	e.drop("bad.csv", header()+"B-1,InvoiceHeader,7001,Success,Functional,OK,fine\nB-2,NoSuchType,7002,Success,Functional,OK,bad type\n")
	r = e.worker("run", "--config", e.config).expect(t, 1)
	if !strings.Contains(r.stderr, "bad.csv") || !strings.Contains(r.stderr, "report:") {
		t.Errorf("human summary:\n%s", r.stderr)
	}
	if !exists(filepath.Join(e.src, "failed", "bad.csv")) {
		t.Error("bad.csv not in failed/")
	}
	rep = readReport(t, filepath.Join(e.src, "reports", "bad.response.csv"))
	if len(rep) != 2 || rep[0][5] != "created" || rep[1][5] != "invalid" {
		t.Errorf("report: %v", rep)
	}

	// 3: the API cannot be reached; the file stays in the inbox.
	down := newEnv(t, nil, "", "")
	down.drop("a.csv", goodRows("D", 2))
	r = down.worker("run", "--config", down.config).expect(t, 3)
	if !exists(filepath.Join(down.src, "inbox", "a.csv")) {
		t.Error("a.csv left the inbox although the API was down")
	}
	// 2: the source root does not exist: a configuration error, and no
	// folder is created.
	gone := newEnv(t, api, "", "")
	if err := os.RemoveAll(gone.src); err != nil {
		t.Fatal(err)
	}
	gone.worker("run", "--config", gone.config).expect(t, 2)
	if exists(gone.src) {
		t.Error("run created the missing source root")
	}

	// status explains every file.
	r = e.worker("status", "--config", e.config, "--json").expect(t, 0)
	var st struct {
		Sources []struct {
			Name    string
			Summary struct {
				Archived, Failed int
				Files            []struct{ Name, Result string }
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if len(st.Sources) != 1 || st.Sources[0].Summary.Archived != 1 || st.Sources[0].Summary.Failed != 1 || len(st.Sources[0].Summary.Files) != 2 {
		t.Errorf("status: %+v", st)
	}
	r = e.worker("status", "--config", e.config).expect(t, 0)
	if !strings.Contains(r.stderr, "good.csv") || !strings.Contains(r.stderr, "failed/bad.csv") {
		t.Errorf("status:\n%s", r.stderr)
	}
	if got := records(t, api); len(got) != 6 {
		t.Errorf("server has %d distinct records, want 6: %v", len(got), got)
	}
}

func TestReprocessValidateExport(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	e := newEnv(t, api, "", "")
	// Rows of an integration that does not exist yet fail on the server.
	var b strings.Builder
	b.WriteString("external-id,document-type,document-id,status,contact-alert-type,integration\n")
	for i := 1; i <= 4; i++ {
		code := "ERP-INVOICES"
		if i%2 == 0 {
			code = "ERP-LATER"
		}
		fmt.Fprintf(&b, "R-%d,InvoiceHeader,%d,Success,Functional,%s\n", i, 2000+i, code)
	}
	e.drop("mixed.csv", b.String())
	// An integration that does not exist is a setup error, not the rows':
	// exit 2 naming it, and the file stays in the inbox.
	r := e.worker("run", "--config", e.config).expect(t, 2)
	if !strings.Contains(r.stderr, `integration "ERP-LATER" does not exist`) {
		t.Errorf("the missing integration is not named:\n%s", r.stderr)
	}
	if !exists(filepath.Join(e.src, "inbox", "mixed.csv")) || exists(filepath.Join(e.src, "failed", "mixed.csv")) {
		t.Fatal("mixed.csv left the inbox although the fault is the setup's")
	}

	// validate: a dry run on the file in the inbox (all rows are valid
	// locally), and on a local file with an invalid row.
	r = e.worker("validate", "--config", e.config, "--source", "erp", "inbox/mixed.csv").expect(t, 0)
	if n := strings.Count(r.stdout, ",valid,"); n != 4 {
		t.Errorf("validate report:\n%s", r.stdout)
	}
	local := filepath.Join(e.dir, "local.csv")
	os.WriteFile(local, []byte(header()+"L-1,InvoiceHeader,1,Success,Functional,OK,x\nL-2,InvoiceHeader,notanumber,Success,Functional,OK,x\n"), 0o644)
	r = e.worker("validate", "--config", e.config, "--source", "erp", local, "--json").expect(t, 1)
	var v struct{ Rows, Valid, Invalid int }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Rows != 2 || v.Invalid != 1 {
		t.Errorf("validate --json: %v %s", err, r.stdout)
	}
	if !exists(filepath.Join(e.src, "inbox", "mixed.csv")) {
		t.Error("validate moved the file")
	}

	// reprocess: once the integration exists, the stopped file goes
	// through and the rows already recorded are not posted again.
	createIntegration(t, api, "ERP-LATER")
	r = e.worker("reprocess", "--config", e.config, "--source", "erp", "mixed.csv", "--json").expect(t, 0)
	var sum struct {
		Sources []struct {
			Summary struct {
				Rows struct {
					Created         int
					AlreadyRecorded int `json:"already_recorded"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatal(err, r.stdout)
	}
	// The stopped run may have recorded the ERP-INVOICES rows already;
	// either way every row ends recorded once (checked below).
	if got := sum.Sources[0].Summary.Rows; got.Created+got.AlreadyRecorded != 4 {
		t.Errorf("reprocess rows: %+v", got)
	}
	if !exists(filepath.Join(e.src, "archive", "mixed.csv")) {
		t.Error("mixed.csv not archived after reprocess")
	}
	e.worker("reprocess", "--config", e.config, "--source", "erp", "mixed.csv").expect(t, 0)
	recs := records(t, api)
	for i := 1; i <= 4; i++ {
		if n := recs[fmt.Sprintf("R-%d", i)]; n != 1 {
			t.Errorf("R-%d has %d records, want exactly 1", i, n)
		}
	}

	// export: the records as CSV, filtered.
	out := filepath.Join(e.dir, "exports", "later.csv")
	// export never creates folders: a missing one is a usage error.
	e.worker("export", "--config", e.config, "--to", out).expect(t, 2)
	os.Mkdir(filepath.Dir(out), 0o755)
	r = e.worker("export", "--config", e.config, "--integration", "ERP-LATER", "--created-after", "2000-01-01", "--to", out, "--json").expect(t, 0)
	var ex struct{ Records int }
	json.Unmarshal([]byte(r.stdout), &ex)
	rows := readCSV(t, out)
	if ex.Records != 2 || len(rows) != 3 {
		t.Errorf("export: %s; %d lines", r.stdout, len(rows))
	}
	r = e.worker("export", "--config", e.config, "--status", "Success", "--resolved", "false", "--to", "-").expect(t, 0)
	if n := strings.Count(r.stdout, "\n"); n != 5 {
		t.Errorf("export to stdout: %d lines\n%s", n, r.stdout)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestServeTwoPassesAndSIGTERM runs serve on a per-second schedule: a first
// pass archives one file, a second pass starts on a large file and is
// interrupted by SIGTERM. serve must exit 0 after the rows in flight are
// recorded; a later run finishes the file; every row ends with exactly one
// record.
func TestServeTwoPassesAndSIGTERM(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	// 150 requests/s: the big file takes ~10 s, so SIGTERM lands mid-file.
	// overdue_after 2 s: the big file's pass runs past it and is reported.
	e := newEnv(t, api, "    schedule: \"* * * * * *\"\n    overdue_after: 2s\n", "")
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.Replace(cfg, []byte("rate_limit: 0"), []byte("rate_limit: 150\n  burst: 5"), 1), 0o600)
	e.drop("first.csv", goodRows("F", 3))

	bin := binharness.Binary(t, "ihr-worker")
	port := binharness.FreePort(t)
	cmd := exec.Command(bin, "serve", "--config", e.config, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Env = append(os.Environ(), "E2E_API_KEY="+apiKey)
	var logs binharness.SyncBuffer
	cmd.Stderr = &logs
	binharness.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs.String())
		}
	}()
	metrics := func() string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	metric := func(text, series string) float64 {
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, series+" ") {
				v, _ := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
				return v
			}
		}
		return 0
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, metrics())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("/healthz", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	waitFor("first.csv archived", func() bool { return exists(filepath.Join(e.src, "archive", "first.csv")) })
	// The file is archived a moment before its pass is counted.
	var passes float64
	waitFor("the first pass counted", func() bool {
		passes = metric(metrics(), `ihr_worker_passes_total{result="ok",source="erp"}`)
		return passes >= 1
	})

	const big = 2000
	e.drop("big.csv", goodRows("BIG", big))
	waitFor("a second pass to be mid-file", func() bool {
		m := metrics()
		return metric(m, `ihr_worker_rows_total{result="created",source="erp"}`) >= 3+100
	})
	// Two scheduled passes: one (or more) finished with first.csv, and
	// another one is running on big.csv.
	m := metrics()
	if passes < 1 || metric(m, `ihr_worker_pass_running{source="erp"}`) != 1 {
		t.Errorf("want a finished pass (%v) and one running on big.csv:\n%s", passes, m)
	}
	waitFor("the big file's pass reported overdue", func() bool {
		return metric(metrics(), `ihr_worker_pass_overdue{source="erp"}`) == 1
	})
	if n := metric(metrics(), `ihr_worker_passes_overdue_total{source="erp"}`); n != 1 {
		t.Errorf("passes_overdue_total = %v, want 1 (the quick passes are not overdue)", n)
	}
	if !strings.Contains(logs.String(), `"msg":"pass running past its expected time; it goes on"`) {
		t.Error("no warning in the log for the overdue pass")
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil {
		t.Error(err)
	} else {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(page), `class="tile bad" data-health="running"><b>Pass running</b>`) ||
			!strings.Contains(string(page), "overdue: expected under 2s") {
			t.Errorf("the dashboard does not show the overdue pass:\n%s", page)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("serve exited with %v after SIGTERM", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s of SIGTERM")
	}
	if !exists(filepath.Join(e.src, "inbox", "big.csv")) {
		t.Fatal("big.csv should still be in the inbox after an interrupted pass")
	}
	log := logs.String()
	if !strings.Contains(log, `"msg":"serve stopped"`) {
		t.Errorf("no clean stop in the logs")
	}
	// The logs are JSON in serve.
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("serve log line is not JSON: %s", line)
			break
		}
	}
	for _, f := range []string{"first.csv", "big.csv"} {
		if !strings.Contains(log, `"msg":"processing","source":"erp","file":"`+f+`"`) {
			t.Errorf("serve never processed %s", f)
		}
	}
	before := records(t, api)
	if len(before) <= 3 || len(before) >= 3+big {
		t.Fatalf("SIGTERM did not land mid-file: %d records", len(before))
	}

	// A run finishes the file; no row is lost or recorded twice.
	r := e.worker("run", "--config", e.config, "--rate-limit", "0", "--json").expect(t, 0)
	recs := records(t, api)
	if len(recs) != 3+big {
		t.Errorf("server has %d distinct records, want %d", len(recs), 3+big)
	}
	for k, n := range recs {
		if n != 1 {
			t.Errorf("%s recorded %d times", k, n)
		}
	}
	rep := readReport(t, filepath.Join(e.src, "reports", "big.response.csv"))
	if len(rep) != big {
		t.Fatalf("report has %d lines, want %d", len(rep), big)
	}
	for i, l := range rep {
		if l[0] != strconv.Itoa(i+1) || (l[5] != "created" && l[5] != "already-recorded") {
			t.Fatalf("report line %d: %v", i+1, l)
		}
	}
	if !strings.Contains(r.stdout, `"archived": 1`) {
		t.Errorf("run summary: %s", r.stdout)
	}
}

// mkdirOwned creates dir (and parents below root) owned like root, so the
// server's user (vsftpd's local user) may move files in them.
func mkdirOwned(t *testing.T, root, rel string) string {
	t.Helper()
	fi, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	dir := root
	for _, part := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, part)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Chown(dir, int(st.Uid), int(st.Gid))
	}
	return dir
}

func writeOwned(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Dir(path))
	st := fi.Sys().(*syscall.Stat_t)
	_ = os.Chown(path, int(st.Uid), int(st.Gid))
}

// TestRemoteSources runs one pass over SFTP, FTPS and S3 sources on real
// servers (sshd, vsftpd, versitygw), with secrets from the environment and
// from *_file, and exports to the SFTP server reusing its source settings.
func TestRemoteSources(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	sftp := testservers.StartSFTP(t, testservers.SFTPOptions{})
	ftp := testservers.StartFTP(t)
	s3 := testservers.StartS3(t)

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ftp-password")
	os.WriteFile(pwFile, []byte(ftp.Password+"\n"), 0o600)

	writeOwned(t, filepath.Join(mkdirOwned(t, sftp.Root, "erp/inbox"), "s.csv"), goodRows("SFTP", 3))
	writeOwned(t, filepath.Join(mkdirOwned(t, ftp.Root, "erp/inbox"), "f.csv"), goodRows("FTPS", 3))
	writeOwned(t, filepath.Join(mkdirOwned(t, filepath.Join(s3.Root, s3.Bucket), "erp/inbox"), "3.csv"), goodRows("S3", 3))

	cfg := fmt.Sprintf(`api: {url: %q, api_key: "${E2E_API_KEY}", rate_limit: 0, max_retries: 1}
state: sqlite:%s
sources:
  - name: sftp
    url: sftp://%s@%s%s/erp
    key_file: %s
    known_hosts: %s
    integration: ERP-INVOICES
    stable_for: 0s
  - name: ftps
    url: ftps://%s@%s/erp
    password_file: %s
    ca_file: %s
    integration: ERP-INVOICES
    stable_for: 0s
  - name: s3
    url: s3://%s/erp
    endpoint: %s
    region: %s
    path_style: true
    access_key_id: %s
    secret_access_key: ${E2E_S3_SECRET}
    integration: ERP-INVOICES
    stable_for: 0s
`, api.URL, filepath.Join(dir, "state.db"),
		sftp.User, sftp.Addr, sftp.Root, sftp.KeyFile, sftp.KnownHostsFile,
		ftp.User, ftp.Addr, pwFile, ftp.CAFile,
		s3.Bucket, s3.Endpoint, s3.Region, s3.AccessKey)
	e := &env{t: t, dir: dir, config: filepath.Join(dir, "worker.yaml"), api: api}
	os.WriteFile(e.config, []byte(cfg), 0o600)
	t.Setenv("E2E_S3_SECRET", s3.SecretKey)

	r := e.worker("run", "--config", e.config, "--json").expect(t, 0)
	if strings.Contains(r.stdout+r.stderr, s3.SecretKey) || strings.Contains(r.stdout+r.stderr, ftp.Password) {
		t.Error("a secret appears in the output")
	}
	for _, p := range []string{
		filepath.Join(sftp.Root, "erp/archive/s.csv"), filepath.Join(sftp.Root, "erp/reports/s.response.csv"),
		filepath.Join(ftp.Root, "erp/archive/f.csv"), filepath.Join(ftp.Root, "erp/reports/f.response.csv"),
		filepath.Join(s3.Root, s3.Bucket, "erp/archive/3.csv"), filepath.Join(s3.Root, s3.Bucket, "erp/reports/3.response.csv"),
	} {
		if !exists(p) {
			t.Errorf("missing %s\n%s", p, r.stdout)
		}
	}
	if got := records(t, api); len(got) != 9 {
		t.Errorf("server has %d records, want 9", len(got))
	}

	// export onto the SFTP server, with the sftp source's key and known_hosts.
	to := fmt.Sprintf("sftp://%s@%s%s/exports/all.csv", sftp.User, sftp.Addr, sftp.Root)
	mkdirOwned(t, sftp.Root, "exports")
	e.worker("export", "--config", e.config, "--to", to).expect(t, 0)
	if rows := readCSV(t, filepath.Join(sftp.Root, "exports/all.csv")); len(rows) != 10 {
		t.Errorf("export on SFTP: %d lines, want header + 9", len(rows))
	}
}
