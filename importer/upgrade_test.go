package importer_test

import (
	"context"
	"database/sql"
	"testing"
)

// TestLedgerUpgradeKeepsRows: a ledger written before fingerprints (schema
// 2) is upgraded in place when the worker opens it, and the rows it
// recorded are still recognised: the same bytes dropped again post
// nothing, while a changed row is posted.
func TestLedgerUpgradeKeepsRows(t *testing.T) {
	e := newEnv(t)
	v1 := header +
		"UP-1,InvoiceHeader,1,Success,Functional,ok\r\n" +
		"UP-2,InvoiceHeader,2,Error,Functional,tax code missing\r\n"
	e.drop("up.csv", v1)
	if sum := e.run(); sum.Rows.Created != 2 {
		t.Fatalf("first drop: %+v", sum)
	}
	// Turn the ledger back into what a schema-2 worker left: no
	// fingerprints, no history table, none of schema 4's indexes and
	// prune columns, version 2.
	e.ledger.Close()
	db, err := sql.Open("sqlite", "file:"+e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP INDEX files_by_time`, `DROP INDEX files_by_status`, `DROP INDEX files_unsettled`,
		`ALTER TABLE files DROP COLUMN pruned_at`, `ALTER TABLE files DROP COLUMN pruned_run`,
		`DROP TRIGGER row_prints_keep`, `DROP TABLE row_prints`,
		`ALTER TABLE row_outcomes DROP COLUMN fingerprint`,
		`UPDATE schema_version SET version = 2`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	e.openLedger() // the upgrade

	e.drop("up.csv", v1)
	api := &countingAPI{API: e.api}
	e.api = api
	sum := e.run()
	if sum.Rows.AlreadyRecorded != 2 || sum.Rows.Created != 0 {
		t.Fatalf("same bytes after the upgrade: %+v", sum)
	}
	if c, f := api.counts(); c != 0 || f != 0 {
		t.Fatalf("same bytes after the upgrade: %d creates, %d lookups", c, f)
	}
	// UP-2 is now a success (another action): posted.
	e.drop("up.csv", header+
		"UP-1,InvoiceHeader,1,Success,Functional,ok\r\n"+
		"UP-2,InvoiceHeader,2,Success,Functional,posted\r\n")
	sum = e.run()
	if sum.Rows.AlreadyRecorded != 1 || sum.Rows.Created != 1 {
		t.Fatalf("changed row after the upgrade: %+v", sum)
	}
	e.exactlyOnceEach("up.csv", map[string]int{"UP-1": 1, "UP-2": 2})
	var v int
	if err := sqlDB(t, e.dbPath).QueryRowContext(context.Background(), `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil || v != 4 {
		t.Fatalf("schema version %d, %v", v, err)
	}
}

func sqlDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
