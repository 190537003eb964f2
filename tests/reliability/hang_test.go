package reliability_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
)

// TestNoRunHangsUnderLoad is the reported hang, four times at once on a
// loaded machine: four `ihr-worker run` processes (each its own local
// source and SQLite ledger, one ihr-api for all, the worker's default
// 20 req/s budget), each inbox holding the 100,000-row file whose row 2
// opens a quote that never closes, and a small good file. Meanwhile
// CPU burners (two per core) and a writer that fsyncs in a loop load the
// machine. Every run must end (the harness kills one still running after
// its deadline and fails the test), the broken file in failed/ with one
// report line naming the quote, nothing of it posted, the good file
// archived.
func TestNoRunHangsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loaded-machine run skipped in -short mode")
	}
	bins := binharness.Binaries(t)
	api := binharness.StartAPI(t, binharness.APIOptions{Integrations: []string{integration}})

	var broken strings.Builder
	broken.WriteString("external-id,document-type,document-id,status,contact-alert-type\n")
	for i := 1; i <= 100_000; i++ {
		if i == 2 {
			broken.WriteString("Q-2,InvoiceHeader,2,\"Success,Functional\n")
			continue
		}
		fmt.Fprintf(&broken, "Q-%d,InvoiceHeader,%d,Success,Functional\n", i, i)
	}

	const runs = 4
	type worker struct {
		src *binharness.Source
		env []string
		cfg string
	}
	workers := make([]worker, runs)
	for i := range workers {
		src, env := binharness.NewSource(t, "local")
		src.PutString(t, "inbox/q.csv", broken.String())
		good, _ := binharness.CSV(fmt.Sprintf("G%d", i), 5)
		src.PutString(t, "inbox/good.csv", good)
		// No rate_limit: the default budget is the user's setting.
		cfg := binharness.WorkerConfig(t, t.TempDir(), api.URL, "  api_key: ${K}\n", src, "")
		workers[i] = worker{src: src, env: append(env, "K="+api.Key), cfg: cfg}
	}

	stopLoad := loadMachine(t)
	defer stopLoad()

	results := make([]binharness.Run, runs)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			// Exec fails the test if the run is still going at the
			// deadline: a generous bound that only a hang crosses.
			results[i] = binharness.Exec(t, 3*time.Minute, w.env, bins.Worker, "run", "--config", w.cfg, "--no-progress")
		})
	}
	wg.Wait()
	stopLoad()

	for i, r := range results {
		w := workers[i]
		t.Logf("run %d: exit %d in %v", i, r.Code, r.Elapsed.Round(time.Millisecond))
		if r.Code != 1 {
			t.Errorf("run %d: exit %d, want 1 (a file rejected)\n%s", i, r.Code, binharness.Tail(r.Stderr, 3000))
		}
		if !w.src.Exists(t, "failed/q.csv") || !w.src.Exists(t, "archive/good.csv") {
			t.Errorf("run %d: failed/ %v, archive/ %v", i, w.src.Names(t, "failed"), w.src.Names(t, "archive"))
			continue
		}
		report, err := os.ReadFile(filepath.Join(w.src.Local, "reports", "q.response.csv"))
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(string(report)), "\n"); len(lines) != 2 ||
			!strings.Contains(lines[1], "unclosed quote") || !strings.Contains(lines[1], "line 3, column 21") {
			t.Errorf("run %d: report of q.csv:\n%s", i, report)
		}
	}
	if got := api.CountByFilename(t, "q.csv"); len(got) != 0 {
		t.Errorf("%d external-ids of q.csv posted from a file rejected as a whole", len(got))
	}
	if got := api.CountByFilename(t, "good.csv"); len(got) != runs*5 {
		t.Errorf("good.csv: %d records, want %d", len(got), runs*5)
	}
}

// loadMachine keeps the machine busy, as a stress tool would: two CPU
// burners per core and a writer that fsyncs 1 MiB at a time, so the
// workers' SQLite commits wait behind it. It returns the function that
// stops them (safe to call twice); the test's cleanup stops them too.
func loadMachine(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var cmds []*exec.Cmd
	start := func(script string) {
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		binharness.DieWithTest(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for range 2 * runtime.NumCPU() {
		start("while :; do :; done")
	}
	start(fmt.Sprintf("while :; do dd if=/dev/zero of=%s bs=1M count=8 conv=fsync 2>/dev/null; done",
		filepath.Join(t.TempDir(), "load")))
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			for _, c := range cmds {
				_ = c.Wait()
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
