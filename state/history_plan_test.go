package state_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// planHistory is the history TestPassPlans runs on: IHR_HISTORY, else a
// small one (the plans do not depend on the size: SQLite plans by the
// indexes there are, and PostgreSQL is asked with sequential scans
// disabled, so a scan it still chooses means no index can serve).
func planHistory(t *testing.T) statetest.History {
	if os.Getenv("IHR_HISTORY") == "" {
		h := statetest.AYear
		h.Nights, h.FilesPerNight, h.RowsPerFile = 20, 10, 50
		return h
	}
	h, err := statetest.HistoryFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// passStatements runs two passes on l (a new file, then the same file
// dropped again, whose rows are all found already recorded) and
// returns every distinct statement they ran, with the rows each read in
// total.
func passStatements(t *testing.T, l state.Ledger, rows int) (map[string]*state.Statement, int) {
	t.Helper()
	got := map[string]*state.Statement{}
	var seen []*state.Statement
	state.Trace(l, func(s *state.Statement) { seen = append(seen, s) })
	root := t.TempDir()
	store, err := local.New(root, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	im := importer.New(importer.Config{}, &countingAPI{}, l, nil, nil)
	src := importer.Source{Name: statetest.HistorySource, Store: store}
	var b strings.Builder
	b.WriteString("external-id,document-type,document-id,status,contact-alert-type\r\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "PLAN-%d,InvoiceHeader,%d,Success,Functional\r\n", i, i)
	}
	for i := range 2 {
		if err := os.WriteFile(filepath.Join(root, "inbox", "plan.csv"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		sum, err := im.RunSource(context.Background(), src)
		if err != nil || len(sum.Files) != 1 || sum.Rows.Total() != int64(rows) {
			t.Fatalf("pass %d: %+v %v", i, sum, err)
		}
	}
	total := 0
	for _, s := range seen {
		total += s.Rows
		if g := got[s.SQL]; g != nil {
			g.Rows += s.Rows
			continue
		}
		c := *s
		got[s.SQL] = &c
	}
	return got, total
}

// statusStatements are the reads status makes of a source (history.go's
// functions, as internal/workercli calls them).
func statusStatements(t *testing.T, l state.Ledger) map[string]*state.Statement {
	t.Helper()
	ctx := context.Background()
	got := map[string]*state.Statement{}
	state.Trace(l, func(s *state.Statement) { got[s.SQL] = s })
	src := statetest.HistorySource
	month := time.Now().Add(-30 * 24 * time.Hour)
	pending := []state.Status{state.Seen, state.Claimed, state.Processing}
	for _, q := range []state.FileQuery{
		{Source: src}, {Source: src, Since: month}, {Source: src, Since: month, Until: time.Now()},
		{Source: src, Statuses: []state.Status{state.Failed}}, {Source: src, Statuses: pending, Limit: 1000},
	} {
		if _, _, err := state.FilePage(ctx, l, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []state.FileQuery{{Source: src, Since: month, Statuses: []state.Status{state.Done, state.Failed, state.Skipped}},
		{Source: src, Statuses: pending}} {
		if _, err := state.FileTotals(ctx, l, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := state.Sources(ctx, l); err != nil {
		t.Fatal(err)
	}
	return got
}

var historyTables = `(ihr_worker_)?(files|row_outcomes|row_prints|ranges)\b`

// TestPassPlans: every statement a pass issues on an aged ledger, and
// every read of status, finds its rows through an index (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on
// PostgreSQL), and the rows the passes read are the same on a fresh
// ledger as on the aged one: nothing a pass does grows with history.
func TestPassPlans(t *testing.T) {
	h := planHistory(t)
	const rows = 600 // more than one dispatch window
	t.Run("sqlite", func(t *testing.T) {
		path := statetest.SQLiteHistory(t, h)
		l, err := state.OpenSQLite(context.Background(), path, state.SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		stmts, aged := passStatements(t, l, rows)
		for q, s := range statusStatements(t, l) {
			stmts[q] = s
		}
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		scan := regexp.MustCompile(`^SCAN ` + historyTables)
		// A source's files walked by primary key: all of its history.
		bySource := regexp.MustCompile(`^SEARCH files USING INDEX sqlite_autoindex_files_1 \(source=\?\)$`)
		for q, s := range stmts {
			r, err := db.Query("EXPLAIN QUERY PLAN "+q, s.Args...)
			if err != nil {
				t.Fatalf("explain %s: %v", q, err)
			}
			var plan []string
			for r.Next() {
				var id, parent, notused int
				var detail string
				if err := r.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
				if scan.MatchString(detail) || bySource.MatchString(detail) {
					t.Errorf("full scan: %s\n  in %s", detail, oneLine(q))
				}
			}
			r.Close()
			t.Logf("%d row(s) read by %s\n    %s", s.Rows, oneLine(q), strings.Join(plan, "\n    "))
		}
		fresh, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), state.SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		_, onFresh := passStatements(t, fresh, rows)
		t.Logf("%d distinct statements; rows read: %d on the aged ledger (%d files, %d outcomes), %d on a fresh one",
			len(stmts), aged, h.Files(), h.Outcomes(), onFresh)
		if aged != onFresh {
			t.Errorf("the passes read %d rows on the aged ledger, %d on a fresh one", aged, onFresh)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		pg := testservers.StartPostgres(t)
		dsn := pg.NewDatabase(t)
		clock := statetest.NewClock()
		clock.Set(h.Until(time.Now().Truncate(24 * time.Hour).Add(2 * time.Hour)))
		if _, err := h.Build(ctx, openPG(t, dsn, clock.Now), clock, 4, nil); err != nil {
			t.Fatal(err)
		}
		l, err := state.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		stmts, aged := passStatements(t, l, rows)
		for q, s := range statusStatements(t, l) {
			stmts[q] = s
		}
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "ANALYZE"); err != nil {
			t.Fatal(err)
		}
		scan := regexp.MustCompile(`Seq Scan on ` + historyTables)
		for q, s := range stmts {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				t.Fatal(err)
			}
			r, err := tx.Query(ctx, "EXPLAIN "+q, s.Args...)
			if err != nil {
				t.Fatalf("explain %s: %v", q, err)
			}
			var plan []string
			for r.Next() {
				var line string
				if err := r.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
				if scan.MatchString(line) {
					t.Errorf("full scan: %s\n  in %s", strings.TrimSpace(line), oneLine(q))
				}
			}
			r.Close()
			tx.Rollback(ctx)
			t.Logf("%d row(s) read by %s\n    %s", s.Rows, oneLine(q), strings.Join(plan, "\n    "))
		}
		fresh, err := state.Open(ctx, pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		_, onFresh := passStatements(t, fresh, rows)
		t.Logf("%d distinct statements; rows read: %d on the aged ledger (%d files, %d outcomes), %d on a fresh one",
			len(stmts), aged, h.Files(), h.Outcomes(), onFresh)
		if aged != onFresh {
			t.Errorf("the passes read %d rows on the aged ledger, %d on a fresh one", aged, onFresh)
		}
	})
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
