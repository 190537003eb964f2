package state

import "testing"

// TestDialectQ: one statement text becomes each database's, {now} always
// the first argument so both bind the same argument list.
func TestDialectQ(t *testing.T) {
	for _, c := range []struct {
		d        dialect
		in, want string
	}{
		{sqliteDialect, `SELECT ? FROM {t}files WHERE a = ?`, `SELECT $1 FROM files WHERE a = $2`},
		{pgDialect, `SELECT ? FROM {t}files WHERE a = ?`, `SELECT $1 FROM ihr_worker_files WHERE a = $2`},
		{sqliteDialect, `UPDATE {t}files SET l = {now} + ? WHERE o = ? AND l > {now}`,
			`UPDATE files SET l = $1 + $2 WHERE o = $3 AND l > $1`},
		{pgDialect, `SELECT 1 FROM {t}files WHERE l > {now} {forShare}`,
			`SELECT 1 FROM ihr_worker_files WHERE l > COALESCE($1::bigint, (EXTRACT(EPOCH FROM statement_timestamp())*1000000000)::bigint) FOR SHARE`},
		{sqliteDialect, `SELECT 1 FROM {t}files WHERE l > {now} {forShare}`, `SELECT 1 FROM files WHERE l > $1 `},
		{sqliteDialect, `ORDER BY name{bytes}`, `ORDER BY name`},
		{pgDialect, `ORDER BY name{bytes}`, `ORDER BY name COLLATE "C"`},
	} {
		if got := c.d.q(c.in); got != c.want {
			t.Errorf("%v q(%q)\n got %q\nwant %q", c.d.pg, c.in, got, c.want)
		}
	}
}

// TestDialectLists: SQLite binds each key, PostgreSQL one array.
func TestDialectLists(t *testing.T) {
	keys, fps := []string{"a", "b", "c"}, []string{"1", "2", "3"}
	if q, args := sqliteDialect.keyList("key", keys); q != `key IN (?,?,?)` || len(args) != 3 {
		t.Errorf("sqlite keyList = %q %v", q, args)
	}
	if q, args := pgDialect.keyList("key", keys); q != `key = ANY(CAST(? AS text[]))` || len(args) != 1 {
		t.Errorf("pg keyList = %q %v", q, args)
	}
	if q, args := sqliteDialect.pairTable(keys, fps); q != `VALUES (?,?),(?,?),(?,?)` || len(args) != 6 || args[1] != "1" {
		t.Errorf("sqlite pairTable = %q %v", q, args)
	}
	if _, args := pgDialect.pairTable(keys, fps); len(args) != 2 {
		t.Errorf("pg pairTable args = %v", args)
	}
	if sqliteDialect.chunk(1000) != 400 || pgDialect.chunk(1000) != 1000 {
		t.Error("chunk sizes")
	}
}
