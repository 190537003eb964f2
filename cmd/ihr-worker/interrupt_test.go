package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
)

// Ctrl-C in the middle of a file: one line says the run was interrupted
// (no Go "context canceled"), exit 3, and status then counts the rows the
// interrupted run recorded instead of showing them all pending.
func TestInterruptThenStatus(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	e := newEnv(t, api, "", "")
	e.drop("big.csv", goodRows("BIG", 400))
	cmd := exec.Command(binharness.Binary(t, "ihr-worker"), "run", "--config", e.config, "--rate-limit", "40")
	cmd.Env = append(os.Environ(), "E2E_API_KEY="+apiKey, "IHR_WORKER_CONFIG=")
	var errb binharness.SyncBuffer
	cmd.Stderr = &errb
	binharness.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once some rows are on the server.
	deadline := time.Now().Add(30 * time.Second)
	for len(records(t, api)) < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("no rows posted:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("exit %d after Ctrl-C, want 3\n%s", code, errb.String())
	}
	if strings.Contains(errb.String(), "context canceled") || strings.Count(errb.String(), "interrupted; the next run resumes") != 1 {
		t.Errorf("Ctrl-C output:\n%s", errb.String())
	}

	posted := int64(len(records(t, api)))
	// The run's own summary counts them too.
	if want := "pending; rows: " + strconv.FormatInt(posted, 10) + " created"; !strings.Contains(errb.String(), want) {
		t.Errorf("run summary lacks %q:\n%s", want, errb.String())
	}
	r := e.worker("status", "--config", e.config, "--json").expect(t, 0)
	var st struct {
		Sources []struct {
			Summary struct {
				Pending int
				Files   []struct {
					Name, Result string
					Rows         int64
					RowsPending  int64 `json:"rows_pending"`
					Counts       struct{ Created int64 }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Sources) != 1 || len(st.Sources[0].Summary.Files) != 1 {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	f := st.Sources[0].Summary.Files[0]
	if f.Result != "pending" || f.Counts.Created != posted || f.RowsPending != 400-posted {
		t.Errorf("interrupted file in status: %+v, server has %d records", f, posted)
	}

	// status checks its flags like every command.
	e.worker("status", "--config", e.config, "--log-level", "bogus").expect(t, 2)

	// The next run finishes the file.
	e.worker("run", "--config", e.config).expect(t, 0)
	if n := len(records(t, api)); n != 400 {
		t.Errorf("server has %d records after the resume, want 400", n)
	}
}
