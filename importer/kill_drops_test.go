package importer_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
)

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
	kills, _ := e.killLoop(killer{rnd: rand.New(rand.NewPCG(uint64(seed), 1)), maxKills: 10,
		min: 300 * time.Millisecond, spread: 1200 * time.Millisecond,
		env: []string{"IHR_KEY_FILE=" + keyFile, "IHR_KEY_PASS=" + ihrPass}})
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
	keys, err := loadKeys(keyFile, ihrPass)
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
}
