// Command ihr-demo is `make demo`: it builds ihr-api and ihr-worker, starts
// ihr-api on SQLite, drops the sample files of fixtures/demo into local
// source folders, runs the worker once, prints the summary and where the
// reports are, and stops ihr-api. It needs nothing but Go.
//
// Run from the repository root: go run ./cmd/ihr-demo [-dir demo]
// Everything it creates is under -dir, which it empties first.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/internal/launch"
)

func main() {
	dir := flag.String("dir", "demo", "folder for the binaries, databases, sources and reports (emptied first)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// The demo's integrations: the sources' default code and the one the
// payments file names in its integration column.
var integrations = []string{"ERP-DEMO", "ERP-PAYMENTS"}

func say(format string, args ...any) { fmt.Fprintf(os.Stderr, format, args...) }

func run(ctx context.Context, dir string) error {
	if _, err := os.Stat("fixtures/demo"); err != nil {
		return errors.New("run me from the repository root (fixtures/demo not found)")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	bin := filepath.Join(dir, "bin")
	say("==> building ihr-api and ihr-worker into %s\n", bin)
	for _, c := range []string{"ihr-api", "ihr-worker"} {
		if err := launch.Build(ctx, "", c, filepath.Join(bin, c), os.Stderr); err != nil {
			return err
		}
	}

	addr, err := launch.FreeAddr()
	if err != nil {
		return err
	}
	key := "demo-" + rand.Text()
	apiURL := "http://" + addr
	say("==> starting ihr-api on %s (SQLite: %s)\n", apiURL, filepath.Join(dir, "api.db"))
	apiLog, err := os.Create(filepath.Join(dir, "ihr-api.log"))
	if err != nil {
		return err
	}
	defer apiLog.Close()
	// The key goes through a file, never argv, where every process
	// listing would show it.
	keyFile := filepath.Join(dir, "api-keys")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return err
	}
	api := exec.Command(filepath.Join(bin, "ihr-api"), "--addr", addr, "--api-key-file", keyFile, "--db", "sqlite:"+filepath.Join(dir, "api.db"))
	api.Stdout, api.Stderr = apiLog, apiLog
	if err := api.Start(); err != nil {
		return err
	}
	apiDone := make(chan struct{})
	go func() { _ = api.Wait(); close(apiDone) }()
	defer func() {
		launch.Stop(api.Process, apiDone, 10*time.Second)
		say("==> ihr-api stopped (its log: %s)\n", apiLog.Name())
	}()
	if err := launch.WaitAPI(ctx, apiURL, key, apiDone, 20*time.Second); err != nil {
		return err
	}
	client, err := apiclient.New(apiclient.Config{BaseURL: apiURL, APIKey: key}, nil)
	if err != nil {
		return err
	}
	for _, code := range integrations {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.CreateIntegration(cctx, &apiclient.Integration{Code: code, Name: code + " (demo)"})
		cancel()
		if err != nil {
			return fmt.Errorf("create integration %s: %w", code, err)
		}
	}

	cfg, err := writeSources(dir, apiURL)
	if err != nil {
		return err
	}
	say("==> configuration: %s\n", cfg)
	say("==> ihr-worker run --config %s\n\n", cfg)
	worker := exec.CommandContext(ctx, filepath.Join(bin, "ihr-worker"), "run", "--config", cfg, "--log-level", "warn")
	worker.Env = append(os.Environ(), "IHR_DEMO_API_KEY="+key)
	worker.Stdout, worker.Stderr = os.Stdout, os.Stderr
	err = worker.Run()
	code := worker.ProcessState.ExitCode()
	say("\n==> ihr-worker exited with %d (0: all recorded, 1: some rows rejected, see the reports)\n", code)
	if err != nil && code != 1 {
		return fmt.Errorf("ihr-worker run: %w", err)
	}
	reports, _ := filepath.Glob(filepath.Join(dir, "sources", "*", "reports", "*.csv"))
	say("==> response reports:\n")
	for _, r := range reports {
		say("    %s\n", r)
	}
	say(`==> next:
    %[1]s/bin/ihr-worker status --config %[2]s
    %[1]s/bin/ihr-worker validate --config %[2]s --source erp-results fixtures/demo/erp-invoice-results.csv
    then copy deploy/config.example.yaml, point a source at your SFTP server and run
    ihr-worker run --config your.yaml (README: "From the demo to your own SFTP source")
`, dir, cfg)
	return nil
}

// writeSources lays out one folder per demo source, copies the sample
// files into their inboxes and writes the worker's configuration.
func writeSources(dir, apiURL string) (string, error) {
	src := func(name string) string { return filepath.Join(dir, "sources", name) }
	mapping, err := os.ReadFile("fixtures/demo/coupa-invoice-export.mapping.yaml")
	if err != nil {
		return "", err
	}
	files := map[string][]string{
		"erp-results":  {"erp-invoice-results.csv", "erp-payments-bom.csv"},
		"erp-japan":    {"sjis-purchase-orders.csv"},
		"coupa-export": {"coupa-invoice-export.csv"},
	}
	for s, names := range files {
		if err := os.MkdirAll(filepath.Join(src(s), "inbox"), 0o755); err != nil {
			return "", err
		}
		for _, n := range names {
			if err := copyFile(filepath.Join("fixtures/demo", n), filepath.Join(src(s), "inbox", n)); err != nil {
				return "", err
			}
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Written by make demo. Each source is a local folder with inbox/,
# archive/, failed/ and reports/; see deploy/config.example.yaml for SFTP,
# FTPS and S3.
api:
  url: %s
  api_key: ${IHR_DEMO_API_KEY}
state: sqlite:%s
sources:
  - name: erp-results
    url: file://%s
    integration: ERP-DEMO
    stable_for: 0s          # the files are complete already
  - name: erp-japan
    url: file://%s
    integration: ERP-DEMO
    encoding: shift_jis
    stable_for: 0s
  - name: coupa-export
    url: file://%s
    integration: ERP-DEMO
    stable_for: 0s
`, apiURL, filepath.Join(dir, "state.db"), filepath.ToSlash(src("erp-results")), filepath.ToSlash(src("erp-japan")), filepath.ToSlash(src("coupa-export")))
	for _, line := range strings.Split(strings.TrimRight(string(mapping), "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString("    " + line + "\n")
	}
	cfg := filepath.Join(dir, "worker.yaml")
	return cfg, os.WriteFile(cfg, b.Bytes(), 0o600)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
