package workercli

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// TestSummaryPrintsNamesSafely: a file name carrying a terminal escape, a
// newline or invalid bytes reaches the terminal escaped, in the file line,
// the reason, the error and the report path.
func TestSummaryPrintsNamesSafely(t *testing.T) {
	var out bytes.Buffer
	g := &globals{st: Streams{Err: &out}}
	evil := "x\x1b]0;pwned\x07\n\xff.csv"
	g.printSourceRun(&sourceRun{Name: "erp", src: &config.Source{URL: "file:///srv/drop"}, Summary: importer.Summary{
		Rejected: 1,
		Files: []importer.FileResult{{Name: evil, Status: state.Failed, Reason: evil + ": file is binary",
			Report: "reports/" + evil, Err: errors.New("move " + evil + ": boom")}},
	}})
	s := out.String()
	if strings.ContainsAny(s, "\x1b\x07\xff") || strings.Count(s, "\n") != 3 {
		t.Fatalf("unsafe summary:\n%q", s)
	}
	if !strings.Contains(s, `x\x1b]0;pwned\a\n\xff.csv`) {
		t.Fatalf("name not shown escaped:\n%s", s)
	}
	t.Logf("summary:\n%s", s)
}

// TestStatusPrintsNamesSafely: status reads the ledger (SQLite, as a
// worker left it) and prints a hostile name escaped.
func TestStatusPrintsNamesSafely(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "state.db")
	l, err := state.OpenSQLite(ctx, db, state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evil := "y\x1b[2J\t\xfe.csv"
	f, err := l.Claim(ctx, state.FileID{Source: "erp", Name: evil}, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.Status, f.Location, f.SkipReason = state.Failed, "failed/"+evil, evil+": file is binary"
	if err := l.PutFile(ctx, "w", f); err != nil {
		t.Fatal(err)
	}
	l.Close()
	var out bytes.Buffer
	g := &globals{st: Streams{Err: &out, Out: &out}}
	cfg := &config.Config{State: "sqlite:" + db, Sources: []config.Source{{Name: "erp", URL: "file:///srv/drop"}}}
	q, _ := statusFlags{limit: 50}.query(time.Now())
	if err := g.status(ctx, cfg, "", q); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.ContainsAny(s, "\x1b\xfe") || !strings.Contains(s, `"y\x1b[2J\t\xfe.csv"`) {
		t.Fatalf("unsafe status:\n%q", s)
	}
	t.Logf("status:\n%s", s)
}
