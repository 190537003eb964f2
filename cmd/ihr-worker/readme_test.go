package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/launch"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// readmeCommands are the README's "From the demo to your own SFTP source"
// command lines, verbatim: TestREADMEOwnSource checks that the README
// still shows each one, then runs them, from the folder holding
// worker.yaml, against a fresh ihr-api and a real OpenSSH server.
var readmeCommands = struct {
	seed, validate, run, status, reprocess, export string
}{
	seed:      `ihr-api integrations add --db sqlite:ihr-api.db --code ERP-INVOICES --name "ERP invoices"`,
	validate:  `ihr-worker validate --config worker.yaml --source erp-invoices invoices-0601.csv`,
	run:       `ihr-worker run --config worker.yaml`,
	status:    `ihr-worker status --config worker.yaml`,
	reprocess: `ihr-worker reprocess --config worker.yaml --source erp-invoices invoices-0601.csv`,
	export:    `ihr-worker export --config worker.yaml --integration ERP-INVOICES --to records.csv`,
}

// splitCommand splits a README command line into its program and
// arguments (double quotes group words, as in a shell).
func splitCommand(line string) (string, []string) {
	var args []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, any = !quoted, true
		case r == ' ' && !quoted:
			if any || cur.Len() > 0 {
				args = append(args, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
		}
	}
	if any || cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args[0], args[1:]
}

// inDir runs a README command line in dir with env and returns its result.
func inDir(t *testing.T, dir string, env []string, line string) result {
	t.Helper()
	prog, args := splitCommand(line)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binharness.Binary(t, prog), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	binharness.DieWithTest(cmd)
	var out, errb binharness.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("%s: did not run", line)
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

func must(t *testing.T, r result, code int, want ...string) result {
	t.Helper()
	r.expect(t, code)
	for _, w := range want {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", w, r.stdout, r.stderr)
		}
	}
	return r
}

func TestREADMEOwnSource(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{readmeCommands.seed, readmeCommands.validate, readmeCommands.run,
		readmeCommands.status, readmeCommands.reprocess, readmeCommands.export} {
		if !strings.Contains(string(readme), line) {
			t.Errorf("README.md no longer shows `%s`; keep this test and the README in step", line)
		}
	}

	sftp := testservers.StartSFTP(t, testservers.SFTPOptions{})
	dir := t.TempDir()
	const key = "readme-key"

	// A fresh ihr-api, started from the folder as the README has it.
	port := binharness.FreePort(t)
	api := exec.Command(binharness.Binary(t, "ihr-api"), "--db", "sqlite:ihr-api.db", "--addr", fmt.Sprintf("127.0.0.1:%d", port))
	api.Dir, api.Env = dir, append(os.Environ(), "IHR_API_KEYS="+key)
	var apiLogs binharness.SyncBuffer
	api.Stdout, api.Stderr = &apiLogs, &apiLogs
	binharness.DieWithTest(api)
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = api.Wait(); close(exited) }()
	t.Cleanup(func() { launch.Stop(api.Process, exited, 10*time.Second) })
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := launch.WaitAPI(context.Background(), apiURL, key, exited, 10*time.Second); err != nil {
		t.Fatalf("ihr-api did not start: %v\n%s", err, apiLogs.String())
	}

	// The folder on the SFTP server, with a file an hour old (so the
	// default stable_for does not hold it back).
	inbox := mkdirOwned(t, sftp.Root, "Outgoing/InvoiceResults/inbox")
	csv := header() + "INV-1,InvoiceHeader,5001,Success,Functional,OK,posted\n" +
		"INV-2,InvoiceHeader,5002,Error,Functional,E42,price mismatch\n" +
		"INV-3,InvoiceHeader,5003,Success,Functional,OK,posted\n"
	file := filepath.Join(inbox, "invoices-0601.csv")
	writeOwned(t, file, csv)
	hourAgo := time.Now().Add(-time.Hour)
	os.Chtimes(file, hourAgo, hourAgo)

	writeConfig := func(name, url, integration string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf(`api:
  url: %s
  api_key: ${COUPA_API_KEY}
state: sqlite:state.db
sources:
  - name: erp-invoices
    url: %s
    key_file: %s
    known_hosts: %s
    integration: %s
`, apiURL, url, sftp.KeyFile, sftp.KnownHostsFile, integration)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srcURL := fmt.Sprintf("sftp://%s@%s%s/Outgoing/InvoiceResults", sftp.User, sftp.Addr, sftp.Root)
	writeConfig("worker.yaml", srcURL, "ERP-INVOICES")
	env := []string{"COUPA_API_KEY=" + key, "IHR_WORKER_CONFIG="}
	at := func(line string) string { return strings.Replace(line, "worker.yaml", "other.yaml", 1) }

	// Before the integration exists: exit 2, the code and the fix named,
	// the inbox untouched and no folder created.
	must(t, inDir(t, dir, env, readmeCommands.run), 2, `integration "ERP-INVOICES" does not exist`, "ihr-api integrations add")
	if !exists(file) || exists(filepath.Join(sftp.Root, "Outgoing/InvoiceResults/failed")) || exists(filepath.Join(sftp.Root, "Outgoing/InvoiceResults/reports")) {
		t.Fatal("a missing integration touched the source")
	}

	// A mistyped root: exit 2, nothing created on the server.
	writeConfig("other.yaml", strings.Replace(srcURL, "InvoiceResults", "InvoiceResult", 1), "ERP-INVOICES")
	must(t, inDir(t, dir, env, at(readmeCommands.run)), 2, "does not exist")
	if exists(filepath.Join(sftp.Root, "Outgoing/InvoiceResult")) {
		t.Fatal("a mistyped root was created")
	}

	// Seed the integration as the README says, beside the running server.
	must(t, inDir(t, dir, nil, readmeCommands.seed), 0, "integration ERP-INVOICES (id 1): created")

	// validate needs no API credentials: run it without COUPA_API_KEY.
	r := must(t, inDir(t, dir, []string{"COUPA_API_KEY=", "IHR_WORKER_CONFIG="}, readmeCommands.validate), 0,
		"invoices-0601.csv: 3 row(s), 3 valid, 0 invalid")
	if strings.Count(r.stdout, ",valid,") != 3 {
		t.Errorf("validate report:\n%s", r.stdout)
	}

	must(t, inDir(t, dir, env, readmeCommands.run), 0,
		"erp-invoices: 1 file(s): 1 archived, 0 failed, 0 skipped, 0 pending; rows: 3 created, 0 already recorded, 0 invalid, 0 failed")
	if !exists(filepath.Join(sftp.Root, "Outgoing/InvoiceResults/archive/invoices-0601.csv")) ||
		len(readReport(t, filepath.Join(sftp.Root, "Outgoing/InvoiceResults/reports/invoices-0601.response.csv"))) != 3 {
		t.Error("file not archived with its report")
	}
	must(t, inDir(t, dir, env, readmeCommands.status), 0,
		"erp-invoices: 1 file(s) seen: 1 archived, 0 failed, 0 skipped, 0 pending; rows: 3 created")
	must(t, inDir(t, dir, env, readmeCommands.reprocess), 0,
		"rows: 0 created, 3 already recorded, 0 invalid, 0 failed")
	must(t, inDir(t, dir, env, readmeCommands.export), 0, "exported 3 record(s) to "+filepath.Join(dir, "records.csv"))
	if rows := readCSV(t, filepath.Join(dir, "records.csv")); len(rows) != 4 {
		t.Errorf("records.csv: %d lines, want a header and 3", len(rows))
	}
}
