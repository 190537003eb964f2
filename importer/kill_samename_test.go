package importer_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// TestKill9SameNameTwice: daily.csv arrives three times with different
// content under the same name (rows keyed by row number, so every drop has
// the same keys), the worker killed with SIGKILL again and again through
// all of it; the third drop even replaces the second in the inbox while
// the second is half done. Afterwards every row of every drop that was
// processed has exactly one record, and nothing is duplicated.
func TestKill9SameNameTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop skipped in -short mode")
	}
	const n = 1200
	e := newEnv(t)
	drop := func(first int) []int {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = first + i
		}
		p := filepath.Join(e.root, "inbox", "daily.csv")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(docRows(ids...)), 0o644); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	e.ledger.Close() // the helper needs the ledger's write lock
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 2))

	dayA := drop(100_000)
	kA, _ := e.killLoop(killer{rnd: rnd, maxKills: 1000})
	dayB := drop(200_000)
	kB, finishedB := e.killLoop(killer{rnd: rnd, maxKills: 2 + rnd.IntN(3)})
	replaced := false
	if !finishedB {
		// Replace B in the inbox while it is half done, as an ERP that
		// re-exports under the same name would.
		l, err := state.OpenSQLite(context.Background(), e.dbPath, state.SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f, _ := l.File(context.Background(), state.FileID{Source: "erp", Name: "daily.csv"})
		l.Close()
		replaced = f.Status == state.Processing && path.Dir(f.Location) == "inbox"
		t.Logf("B after %d kills: %s at %s, mark %d; replaced by C: %v", kB, f.Status, f.Location, f.DispatchMark, replaced)
	}
	if !replaced {
		e.killLoop(killer{rnd: rnd, maxKills: 1000}) // let B finish before C arrives
	}
	dayC := drop(300_000)
	kC, _ := e.killLoop(killer{rnd: rnd, maxKills: 1000})
	t.Logf("kills: A %d, B %d, C %d", kA, kB, kC)
	if kA+kB+kC < 6 {
		t.Fatalf("only %d kills landed; the worker was too fast for the test", kA+kB+kC)
	}

	e.openLedger()
	for range 3 {
		if sum := e.run(); len(sum.Files) == 0 {
			break
		}
	}
	got := e.byDocument("daily.csv")
	check := func(day string, ids []int, atMostOnce bool) (posted int) {
		for _, id := range ids {
			c := got[int64(id)]
			switch {
			case c > 1:
				t.Errorf("%s: document %d has %d records", day, id, c)
			case c == 0 && !atMostOnce:
				t.Errorf("%s: document %d has no record", day, id)
			}
			posted += c
		}
		return posted
	}
	pa := check("A", dayA, false)
	pb := check("B", dayB, replaced)
	pc := check("C", dayC, false)
	total := 0
	for _, c := range got {
		total += c
	}
	t.Logf("records: A %d, B %d (replaced: %v), C %d; %d in all, for %d documents", pa, pb, replaced, pc, total, len(got))
	if total != pa+pb+pc {
		t.Errorf("%d records on the server, %d accounted for", total, pa+pb+pc)
	}
	if len(e.ls("inbox")) != 0 {
		t.Errorf("inbox: %v", e.ls("inbox"))
	}
	// One complete report per archived drop, each for its own content.
	drops := 3
	if replaced {
		drops = 2
	}
	if a := e.ls("archive"); len(a) != drops {
		t.Errorf("archive: %v, want %d drops", a, drops)
	}
	// A kill during an upload may leave the store's hidden temporary file
	// behind; List never shows it, and only the reports count.
	var reports []string
	for _, r := range e.ls("reports") {
		if !strings.HasPrefix(r, ".") {
			reports = append(reports, r)
		}
	}
	if len(reports) != drops {
		t.Fatalf("reports: %v, want %d", reports, drops)
	}
	firsts := map[string]bool{}
	for _, r := range reports {
		lines := e.report(r)
		res := results(lines)
		if len(lines) != n || res["created"]+res["already-recorded"] != n {
			t.Errorf("%s: %d lines %v", r, len(lines), res)
			continue
		}
		firsts[lines[0][3]] = true
	}
	want := []string{"100000", "300000"}
	if !replaced {
		want = append(want, "200000")
	}
	for _, w := range want {
		if !firsts[w] {
			t.Errorf("no report starts with document %s: %v", w, firsts)
		}
	}
}
