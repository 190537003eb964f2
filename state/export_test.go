package state

import "context"

// Exported for the external tests of the in-place upgrade only.

// SQLiteSchemaV2 is the schema this package created before fingerprints
// (migrations 1 and 2), kept so that tests can build a ledger as an older
// worker left it and check that it upgrades in place.
var SQLiteSchemaV2 = sqliteDialect.tokens(schema[0]) + "\n" + sqliteDialect.tokens(schema[1]) +
	"\nCREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2);"

// PostgresSchemaV2 is the schema this package created before fingerprints
// (migrations 1 and 2), for tests of the in-place upgrade.
var PostgresSchemaV2 = pgDialect.tokens(schema[0]) + "\n" + pgDialect.tokens(schema[1]) +
	"\nCREATE TABLE ihr_worker_schema (version INTEGER NOT NULL); INSERT INTO ihr_worker_schema VALUES (2);"

// Statement is one statement a ledger ran, as the database saw it, and
// the rows it returned.
type Statement struct {
	SQL  string
	Args []any
	Rows int
}

// Trace makes l report every statement it runs through its database
// handle to fn (SQLite's batch upsert, which goes to the driver directly,
// is not seen; PostgreSQL's is). For tests that check what a pass asks.
func Trace(l Ledger, fn func(*Statement)) {
	var led *ledger
	switch x := l.(type) {
	case *SQLite:
		led = &x.ledger
	case *Postgres:
		led = &x.ledger
	case pgNames:
		led = &x.ledger
	default:
		panic("state.Trace: not a ledger of this package")
	}
	led.db = traceDB{db: led.db, fn: fn}
}

type traceDB struct {
	db database
	fn func(*Statement)
}

type traceConn struct {
	c  conn
	fn func(*Statement)
}

type countRows struct {
	resultRows
	s *Statement
}

func (r countRows) Next() bool {
	ok := r.resultRows.Next()
	if ok {
		r.s.Rows++
	}
	return ok
}

type countRow struct {
	r scanner
	s *Statement
}

func (r countRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if err == nil {
		r.s.Rows++
	}
	return err
}

func (t traceConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	t.fn(&Statement{SQL: q, Args: args})
	return t.c.exec(ctx, q, args...)
}

func (t traceConn) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	s := &Statement{SQL: q, Args: args}
	r, done, err := t.c.query(ctx, q, args...)
	if err != nil {
		t.fn(s)
		return nil, nil, err
	}
	return countRows{r, s}, func() { done(); t.fn(s) }, nil
}

func (t traceConn) row(ctx context.Context, q string, args ...any) scanner {
	s := &Statement{SQL: q, Args: args}
	defer t.fn(s) // Rows is read after the scan, through the pointer
	return countRow{t.c.row(ctx, q, args...), s}
}

func (t traceDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return traceConn{t.db, t.fn}.exec(ctx, q, args...)
}

func (t traceDB) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	return traceConn{t.db, t.fn}.query(ctx, q, args...)
}

func (t traceDB) row(ctx context.Context, q string, args ...any) scanner {
	return traceConn{t.db, t.fn}.row(ctx, q, args...)
}

func (t traceDB) tx(ctx context.Context, fn func(conn) error) error {
	return t.db.tx(ctx, func(c conn) error { return fn(traceConn{c, t.fn}) })
}
