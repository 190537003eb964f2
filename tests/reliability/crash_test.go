package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
)

// TestKill9Binary starts the built ihr-worker on a local source against
// the built ihr-api and SIGKILLs it at random instants, again and again,
// then lets runs finish: every row of every file has exactly one record,
// every file is archived once with a complete report. (importer's own
// kill test does the same in-process; this one is the deployed binary,
// with its CLI wiring, real process start-up and the SQLite ledger file.)
func TestKill9Binary(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop skipped in -short mode")
	}
	t.Parallel()
	bins := binharness.Binaries(t)
	api := binharness.StartAPI(t, binharness.APIOptions{Integrations: []string{integration}})
	src, env := binharness.NewSource(t, "local")
	cfg := binharness.WorkerConfig(t, t.TempDir(), api.URL, "  api_key: ${K}\n  rate_limit: 0\n  concurrency: 4\n", src, "")
	env = append(env, "K="+api.Key)

	files := map[string][]string{}
	for i, n := range []int{6000, 40, 40, 2000} {
		name := fmt.Sprintf("crash-%d.csv", i)
		content, ids := binharness.CSV(fmt.Sprintf("K%d", i), n)
		src.PutString(t, "inbox/"+name, content)
		files[name] = ids
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 9))
	kills := 0
	for round := 0; round < 30 && kills < 10; round++ {
		cmd := exec.Command(bins.Worker, "run", "--config", cfg, "--no-progress", "--log-level", "warn")
		cmd.Env = append(os.Environ(), env...)
		var out binharness.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		binharness.DieWithTest(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("worker failed before the kill: %v\n%s", err, out.String())
			}
			round = 30 // finished everything: nothing left to kill
		case <-time.After(time.Duration(80+rnd.IntN(600)) * time.Millisecond):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	t.Logf("killed the worker %d times", kills)
	if kills < 5 {
		t.Fatalf("only %d kills landed; the worker was too fast for the test", kills)
	}
	var last binharness.Run
	for range 4 {
		last = binharness.Exec(t, 2*time.Minute, env, bins.Worker, "run", "--config", cfg, "--no-progress", "--log-level", "warn")
		if last.Code == 0 && len(src.Names(t, "inbox")) == 0 {
			break
		}
	}
	if last.Code != 0 {
		t.Fatalf("final run exit %d:\n%s", last.Code, last.Stderr)
	}
	archived := strings.Join(src.Names(t, "archive"), ",")
	for name, ids := range files {
		checkServer(t, api.Client(), name, ids)
		if src.Exists(t, "inbox/"+name) || src.Exists(t, "failed/"+name) || !src.Exists(t, "archive/"+name) {
			t.Errorf("%s: archive holds %s; inbox %v failed %v", name, archived, src.Names(t, "inbox"), src.Names(t, "failed"))
		}
		b, err := os.ReadFile(filepath.Join(src.Local, "reports", strings.TrimSuffix(name, ".csv")+".response.csv"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != len(ids)+1 {
			t.Errorf("%s: report has %d lines, want %d", name, len(lines)-1, len(ids))
		}
		for _, l := range lines[1:] {
			if !strings.Contains(l, ",created,") && !strings.Contains(l, ",already-recorded,") {
				t.Errorf("%s: report line %q", name, l)
				break
			}
		}
	}
	if n := len(src.Names(t, "archive")); n != len(files) {
		t.Errorf("archive holds %d files (%s), want %d", n, archived, len(files))
	}
}
