package importer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// TestHelperProcess is the worker the kill -9 test starts and kills: it is
// not a test on its own (it returns at once without IHR_KILL_HELPER).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("IHR_KILL_HELPER") != "1" {
		return
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	client, err := apiclient.New(apiclient.Config{BaseURL: os.Getenv("IHR_API_URL"), APIKey: os.Getenv("IHR_API_KEY"),
		// A budget keeps the run long enough for a dozen kills to land
		// mid-file however fast the machine is.
		RateLimit: 600, Burst: 20}, nil)
	if err != nil {
		fail(err)
	}
	store, err := local.New(os.Getenv("IHR_ROOT"), zap.NewNop())
	if err != nil {
		fail(err)
	}
	ledger, err := state.OpenSQLite(ctx, os.Getenv("IHR_DB"), state.SQLiteOptions{})
	if err != nil {
		fail(err)
	}
	im := importer.New(importer.Config{Concurrency: 4, Window: 32, BatchSize: 32, FlushInterval: 10 * time.Millisecond},
		importer.ClientAPI(client), ledger, nil, nil)
	src := importer.Source{Name: "erp", Store: store, Integration: integration}
	for range 10 {
		sum, err := im.RunSource(ctx, src)
		if err != nil {
			fail(err)
		}
		if len(sum.Files) == 0 {
			break
		}
	}
	ledger.Close()
	os.Exit(0)
}

// TestKill9 kills a worker process at random instants, again and again,
// then lets one finish: every row must end with exactly one record, every
// report must be complete, every file must be in archive/ exactly once.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop skipped in -short mode")
	}
	e := newEnv(t)
	files := map[string][]string{}
	content, ids := csvRows("BIG", 1, 3000)
	e.drop("z-big.csv", content)
	files["z-big.csv"] = ids
	for i := range 6 {
		name := fmt.Sprintf("a-small-%d.csv", i)
		content, ids := csvRows(fmt.Sprintf("S%d", i), 1, 25)
		e.drop(name, content)
		files[name] = ids
	}
	e.ledger.Close() // the helper needs the ledger's write lock

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 1))
	kills := 0
	for round := 0; round < 40 && kills < 12; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "IHR_KILL_HELPER=1", "IHR_API_URL="+e.srv.URL, "IHR_API_KEY="+e.srv.APIKey,
			"IHR_ROOT="+e.root, "IHR_DB="+e.dbPath)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		delay := time.Duration(50+rnd.IntN(350)) * time.Millisecond
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("helper failed before the kill: %v\n%s", err, stderr.String())
			}
			// It finished everything: nothing left to kill.
			round = 40
		case <-time.After(delay):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	t.Logf("killed the worker %d times", kills)
	if kills < 10 {
		t.Fatalf("only %d kills landed; the worker was too fast for the test", kills)
	}

	e.openLedger()
	if f, err := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "z-big.csv"}); err == nil {
		c, _ := e.ledger.RowCounts(context.Background(), state.FileID{Source: "erp", Name: "z-big.csv"}, 0)
		t.Logf("after the kills: z-big.csv %s at %s, mark %d, %d rows recorded", f.Status, f.Location, f.DispatchMark, c.Total())
	}
	for range 3 {
		if sum := e.run(); len(sum.Files) == 0 {
			break
		}
	}
	for name, ids := range files {
		if !e.exists("archive/"+name) || e.exists("inbox/"+name) || e.exists("failed/"+name) {
			t.Errorf("%s: inbox %v archive %v failed %v", name, e.ls("inbox"), e.ls("archive"), e.ls("failed"))
		}
		lines := e.report(strings.TrimSuffix(name, ".csv") + ".response.csv")
		r := results(lines)
		if len(lines) != len(ids) || r["created"]+r["already-recorded"] != len(ids) {
			t.Errorf("%s: report has %d lines %v, want %d recorded", name, len(lines), r, len(ids))
		}
		for i, l := range lines {
			if l[0] != fmtInt(i+1) || l[1] != ids[i] || l[6] == "" {
				t.Errorf("%s: report line %d: %v", name, i+1, l)
				break
			}
		}
		e.exactlyOnce(name, ids)
		f, err := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: name})
		if err != nil || f.Status != state.Done || f.Destination != "" {
			t.Errorf("%s: ledger %+v %v", name, f, err)
		}
	}
	if got := len(e.ls("archive")); got != len(files) {
		t.Errorf("archive holds %d files, want %d: %v", got, len(files), e.ls("archive"))
	}
	_ = filepath.Join
}
