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
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// TestHelperProcessDrops is the worker TestKill9EncryptedGzip kills: it
// decrypts with the key file in IHR_KEY_FILE (passphrase in
// IHR_KEY_PASS). Not a test on its own.
func TestHelperProcessDrops(t *testing.T) {
	if os.Getenv("IHR_KILL_DROPS_HELPER") != "1" {
		return
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	client, err := apiclient.New(apiclient.Config{BaseURL: os.Getenv("IHR_API_URL"), APIKey: os.Getenv("IHR_API_KEY"),
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
	kf, err := os.Open(os.Getenv("IHR_KEY_FILE"))
	if err != nil {
		fail(err)
	}
	keys, err := unwrap.LoadPrivateKeys(kf, kf.Name(), []byte(os.Getenv("IHR_KEY_PASS")))
	kf.Close()
	if err != nil {
		fail(err)
	}
	im := importer.New(importer.Config{Concurrency: 4, Window: 32, BatchSize: 32, FlushInterval: 10 * time.Millisecond},
		importer.ClientAPI(client), ledger, nil, nil)
	src := importer.Source{Name: "erp", Store: store, Integration: integration, Include: "*",
		Unwrap: unwrap.Config{Decrypt: keys}}
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

// TestKill9EncryptedGzip kills a worker again and again while it posts a
// gzip file GnuPG encrypted, then lets one finish: every row ends with
// exactly one record and the report is complete.
func TestKill9EncryptedGzip(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop skipped in -short mode")
	}
	g := testservers.StartGPG(t)
	g.GenKey(ihrUID, testservers.KeyCurve25519, ihrPass)
	keyFile := g.ExportSecret(ihrUID, ihrPass, false)
	e := newEnv(t)
	name := "z-big.csv.gz.pgp"
	content, ids := csvRows("EGZ", 1, 5000)
	e.drop(name, string(g.Encrypt(gzipped(content), ihrUID, "", "", false)))
	e.ledger.Close() // the helper needs the ledger's write lock

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 1))
	kills := 0
	for round := 0; round < 40 && kills < 10; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessDrops$")
		cmd.Env = append(os.Environ(), "IHR_KILL_DROPS_HELPER=1", "IHR_API_URL="+e.srv.URL, "IHR_API_KEY="+e.srv.APIKey,
			"IHR_ROOT="+e.root, "IHR_DB="+e.dbPath, "IHR_KEY_FILE="+keyFile, "IHR_KEY_PASS="+ihrPass)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		delay := time.Duration(300+rnd.IntN(1200)) * time.Millisecond
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("helper failed before the kill: %v\n%s", err, stderr.String())
			}
			round = 40
		case <-time.After(delay):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	t.Logf("killed the worker %d times", kills)
	if kills < 5 {
		t.Fatalf("only %d kills landed; the worker was too fast for the test", kills)
	}

	e.openLedger()
	if f, err := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: name}); err == nil {
		c, _ := e.ledger.RowCounts(context.Background(), state.FileID{Source: "erp", Name: name}, 0)
		t.Logf("after the kills: %s at %s, mark %d, %d rows recorded", f.Status, f.Location, f.DispatchMark, c.Total())
	}
	e.src.Include = "*"
	kf, err := os.Open(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := unwrap.LoadPrivateKeys(kf, keyFile, []byte(ihrPass))
	kf.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.src.Unwrap.Decrypt = keys
	for range 3 {
		if sum := e.run(); len(sum.Files) == 0 {
			break
		}
	}
	if !e.exists("archive/"+name) || e.exists("inbox/"+name) {
		t.Errorf("inbox %v archive %v failed %v", e.ls("inbox"), e.ls("archive"), e.ls("failed"))
	}
	lines := e.report(name + ".response.csv")
	r := results(lines)
	if len(lines) != len(ids) || r["created"]+r["already-recorded"] != len(ids) {
		t.Errorf("report has %d lines %v, want %d recorded", len(lines), r, len(ids))
	}
	e.exactlyOnce(name, ids)
	_ = filepath.Join
}
