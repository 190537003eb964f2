package state_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
)

// v2Rows fills a ledger of schema 2 (before fingerprints) as a worker of
// that version left it: one finished file with two recorded rows.
const v2Rows = `INSERT INTO %files (source, name, status, run, rows, n_created, location, archived_to)
	VALUES ('erp', 'daily.csv', 'done', 1, 2, 2, 'archive/daily.csv', 'archive/daily.csv');
INSERT INTO %outcomes (source, filename, key, row, run, external_id, document_type, document_id, action, result, record_id, http_status)
	VALUES ('erp', 'daily.csv', 'INV-1', 1, 1, 'INV-1', 'InvoiceHeader', '1001', 'mark_exported', 'created', 41, 201),
	       ('erp', 'daily.csv', '#row 2', 2, 1, '', 'InvoiceHeader', '1002', 'create', 'created', 42, 201);`

func v2SQL(files, outcomes string) string {
	return strings.NewReplacer("%files", files, "%outcomes", outcomes).Replace(v2Rows)
}

// checkUpgraded: the rows recorded before the upgrade are still there,
// still recognised for the same content (LegacyMatch) and not for other
// content, and new outcomes carry their fingerprint.
func checkUpgraded(t *testing.T, l state.Ledger) {
	t.Helper()
	ctx := context.Background()
	f, err := l.File(ctx, state.FileID{Source: "erp", Name: "daily.csv"})
	if err != nil || f.Status != state.Done || f.Run != 1 {
		t.Fatalf("file after upgrade: %+v, %v", f, err)
	}
	got, err := l.Outcomes(ctx, state.FileID{Source: "erp", Name: "daily.csv"}, []string{"INV-1", state.RowKey(2)})
	if err != nil || len(got) != 2 {
		t.Fatalf("outcomes after upgrade: %v, %v", got, err)
	}
	o := got["INV-1"]
	if o.RecordID != 41 || o.Fingerprint != "" || !o.Result.Recorded() {
		t.Fatalf("INV-1 after upgrade: %+v", o)
	}
	if !o.LegacyMatch("INV-1", "InvoiceHeader", "1001", "mark_exported") {
		t.Fatal("an old outcome is not recognised for the same row")
	}
	if o.LegacyMatch("INV-1", "InvoiceHeader", "1001", "create_alert") {
		t.Fatal("an old outcome passes for a row with another action")
	}
	if r2 := got[state.RowKey(2)]; !r2.LegacyMatch("", "InvoiceHeader", "1002", "create") || r2.LegacyMatch("", "InvoiceHeader", "2002", "create") {
		t.Fatalf("row 2 after upgrade: %+v", r2)
	}
	if _, err := l.Claim(ctx, state.FileID{Source: "erp", Name: "daily.csv"}, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordOutcomes(ctx, state.FileID{Source: "erp", Name: "daily.csv"}.HeldBy("w"), []state.Outcome{{Key: "INV-1", Row: 1, Run: 2,
		ExternalID: "INV-1", Action: "create_alert", Fingerprint: "abc", Result: state.Created, RecordID: 77}}); err != nil {
		t.Fatal(err)
	}
	got, _ = l.Outcomes(ctx, state.FileID{Source: "erp", Name: "daily.csv"}, []string{"INV-1"})
	if got["INV-1"].Fingerprint != "abc" || got["INV-1"].RecordID != 77 {
		t.Fatalf("new outcome: %+v", got["INV-1"])
	}
	if rec, err := l.Recorded(ctx, state.FileID{Source: "erp", Name: "daily.csv"}, []string{"INV-1"}, []string{"abc"}); err != nil || rec["INV-1"] != 77 {
		t.Fatalf("Recorded after upgrade: %v, %v", rec, err)
	}
}

// TestSQLiteUpgradeInPlace: a ledger created by the schema-2 worker opens
// with this one, is migrated in place, and its rows are still recognised.
func TestSQLiteUpgradeInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{state.SQLiteSchemaV2, v2SQL("files", "row_outcomes")} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("building the old ledger: %v", err)
		}
	}
	db.Close()
	l, err := state.OpenSQLite(context.Background(), path, state.SQLiteOptions{})
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer l.Close()
	checkUpgraded(t, l)
	l.Close()
	// Opening again does not migrate twice.
	l2, err := state.OpenSQLite(context.Background(), path, state.SQLiteOptions{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	l2.Close()
}

// TestPostgresUpgradeInPlace is the same upgrade on PostgreSQL.
func TestPostgresUpgradeInPlace(t *testing.T) {
	pg := testservers.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{state.PostgresSchemaV2, v2SQL("ihr_worker_files", "ihr_worker_row_outcomes")} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("building the old ledger: %v", err)
		}
	}
	conn.Close(ctx)
	checkUpgraded(t, openPG(t, dsn, nil))
	openPG(t, dsn, nil) // reopening does not migrate twice
}
