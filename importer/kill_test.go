package importer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// TestHelperProcess is the worker the kill -9 tests start and kill: it is
// not a test on its own (it returns at once without IHR_KILL_HELPER). With
// IHR_KEY_FILE (passphrase in IHR_KEY_PASS) it decrypts, and takes every
// name, as an encrypted drop's name does not end in .csv.
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
	if name := os.Getenv("IHR_KEY_FILE"); name != "" {
		keys, err := loadKeys(name, os.Getenv("IHR_KEY_PASS"))
		if err != nil {
			fail(err)
		}
		src.Include, src.Unwrap.Decrypt = "*", keys
	}
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
	kills, _ := e.killLoop(killer{rnd: rand.New(rand.NewPCG(uint64(seed), 1)), maxKills: 12})
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
}

// killer says how killLoop kills: at most maxKills kills, each after a
// random delay of min+[0,spread) (default 50 ms + [0,350 ms)), with env
// added to the helper's environment.
type killer struct {
	rnd         *rand.Rand
	maxKills    int
	min, spread time.Duration
	env         []string
}

// killLoop starts the helper worker (TestHelperProcess) and kills it at a
// random instant, again and again, until it finishes on its own or
// maxKills kills landed. After 40 kills it lets the worker finish. It
// reports the kills and whether the worker finished.
func (e *env) killLoop(k killer) (kills int, finished bool) {
	e.t.Helper()
	if k.spread == 0 {
		k.min, k.spread = 50*time.Millisecond, 350*time.Millisecond
	}
	for round := 0; ; round++ {
		if kills >= k.maxKills {
			return kills, false
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "IHR_KILL_HELPER=1", "IHR_API_URL="+e.srv.URL, "IHR_API_KEY="+e.srv.APIKey,
			"IHR_ROOT="+e.root, "IHR_DB="+e.dbPath)
		cmd.Env = append(cmd.Env, k.env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			e.t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				e.t.Fatalf("helper failed: %v\n%s", err, stderr.String())
			}
			return kills, true
		case <-time.After(k.min + time.Duration(k.rnd.Int64N(int64(k.spread)))):
			if round >= 40 {
				if err := <-done; err != nil {
					e.t.Fatalf("helper failed: %v\n%s", err, stderr.String())
				}
				return kills, true
			}
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
}

// loadKeys reads an armored or binary private key file, as a source's
// decrypt.key_file is read.
func loadKeys(name, pass string) (openpgp.EntityList, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return unwrap.LoadPrivateKeys(f, name, []byte(pass))
}
