package state

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ihr-tools/ihr/internal/sqlq"
)

// dialect keeps every SQL difference between SQLite and PostgreSQL in one
// place, as apiserver's does. Statements are written once, with ?
// placeholders and these tokens:
//
//	{t}           table prefix ("" on SQLite, "ihr_worker_" on PostgreSQL)
//	{now}         the statement's clock in Unix nanoseconds (see ledger.nowArg)
//	{bytes}       byte-order collation for ORDER BY
//	{forShare}, {forUpdate}, {skipLocked}
//	              row locks; SQLite's writes are serial and need none
//	{int}, {bool}, {false}, {norowid}, {keepPrint}
//	              DDL types and the schema-3 trigger
//	{unsettled}   SQLite's INDEXED BY the partial index of unmoved files:
//	              without statistics it would rather walk a source's
//	              files by primary key, all of them
//
// Placeholders become $1, $2, … on both databases (SQLite reads $N as the
// N-th argument), {now} always $1, so a statement binds the same
// arguments either way.
type dialect struct {
	pg bool
	r  *strings.Replacer
	// versionTable records the schema version (named before the ledgers
	// shared their code, so it is not simply prefixed).
	versionTable string
}

var (
	sqliteDialect = dialect{r: strings.NewReplacer(
		"{t}", "", "{now}", "$1", "{bytes}", "",
		"{forShare}", "", "{forUpdate}", "", "{skipLocked}", "",
		"{int}", "INTEGER", "{bool}", "INTEGER", "{false}", "0", "{norowid}", " WITHOUT ROWID",
		"{keepPrint}", sqliteKeepPrint, "{unsettled}", " INDEXED BY files_unsettled",
	), versionTable: "schema_version"}

	// pgDialect: {now} is $1 when a clock is injected, else the server's
	// clock; statement_timestamp() is fixed for the statement, so every
	// use in one statement agrees.
	pgDialect = dialect{pg: true, r: strings.NewReplacer(
		"{t}", "ihr_worker_",
		"{now}", `COALESCE($1::bigint, (EXTRACT(EPOCH FROM statement_timestamp())*1000000000)::bigint)`,
		"{bytes}", ` COLLATE "C"`,
		"{forShare}", "FOR SHARE", "{forUpdate}", "FOR UPDATE", "{skipLocked}", "FOR UPDATE SKIP LOCKED",
		"{int}", "BIGINT", "{bool}", "BOOLEAN", "{false}", "FALSE", "{norowid}", "",
		"{keepPrint}", pgKeepPrint, "{unsettled}", "",
	), versionTable: "ihr_worker_schema"}
)

// A recorded content that a later outcome of its key replaces is kept in
// row_prints (Recorded). Only content changes write: the common upserts of
// new keys and unchanged rows cost nothing more.
const sqliteKeepPrint = `CREATE TRIGGER row_prints_keep BEFORE UPDATE ON row_outcomes
	WHEN old.fingerprint <> '' AND old.fingerprint <> new.fingerprint AND old.result IN ('created', 'already-recorded')
	BEGIN
		INSERT OR IGNORE INTO row_prints (source, filename, key, fingerprint, record_id)
		VALUES (old.source, old.filename, old.key, old.fingerprint, old.record_id);
	END;`

const pgKeepPrint = `CREATE FUNCTION ihr_worker_keep_print() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF OLD.fingerprint <> '' AND OLD.fingerprint <> NEW.fingerprint
			AND OLD.result IN ('created', 'already-recorded') THEN
			INSERT INTO ihr_worker_row_prints (source, filename, key, fingerprint, record_id)
			VALUES (OLD.source, OLD.filename, OLD.key, OLD.fingerprint, OLD.record_id)
			ON CONFLICT DO NOTHING;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER ihr_worker_keep_print BEFORE UPDATE ON ihr_worker_row_outcomes
		FOR EACH ROW EXECUTE FUNCTION ihr_worker_keep_print();`

// tokens expands the tokens only, leaving ? as they are: for migrations
// (whose text holds no placeholder, and the PostgreSQL trigger's $$ must
// stay as it is) and for SQLite's own positional ?.
func (d dialect) tokens(s string) string { return d.r.Replace(s) }

// q expands a statement: tokens, then ? → $N (from $2 when it uses
// {now}).
func (d dialect) q(query string) string {
	first := 1
	if strings.Contains(query, "{now}") {
		first = 2
	}
	return sqlq.Number(d.r.Replace(query), first)
}

// chunk bounds how many keys one lookup binds: SQLite binds each key
// (well under its parameter limit), PostgreSQL binds them as one array.
func (d dialect) chunk(n int) int {
	if d.pg {
		return n
	}
	return min(n, 400)
}

// keyList is "col IN (the keys)" and its arguments.
func (d dialect) keyList(col string, keys []string) (string, []any) {
	if d.pg {
		return col + ` = ANY(CAST(? AS text[]))`, []any{keys}
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	return col + ` IN (?` + strings.Repeat(",?", len(keys)-1) + `)`, args
}

// keyLookup is sel (a SELECT whose WHERE names one file, with its
// arguments selArgs) narrowed to the rows of keys, and its arguments.
// On PostgreSQL each key is looked up on its own: a LATERAL probe of the
// full primary key, kept from being flattened into a join by OFFSET 0.
// Given key = ANY(…), or a join it may plan as it likes, the planner of
// a young ledger reads all of the file's outcomes for every window (a
// sequential scan into a hash join is cheaper by its estimates until the
// table holds some 40,000 rows): 120–240 ms a window by 20,000 rows, so
// the first large file's pass cost O(rows²).
func (d dialect) keyLookup(sel string, selArgs []any, keys []string) (string, []any) {
	if d.pg {
		return `SELECT o.* FROM unnest(CAST(? AS text[])) AS k(want) CROSS JOIN LATERAL (` + sel +
			` AND key = k.want OFFSET 0) o`, append([]any{keys}, selArgs...)
	}
	in, args := d.keyList("key", keys)
	return sel + ` AND ` + in, append(selArgs, args...)
}

// pairTable is a (key, fp) table of the pairs for a WITH clause, and its
// arguments.
func (d dialect) pairTable(keys, fps []string) (string, []any) {
	if d.pg {
		return `SELECT * FROM unnest(CAST(? AS text[]), CAST(? AS text[]))`, []any{keys, fps}
	}
	args := make([]any, 0, 2*len(keys))
	for i := range keys {
		args = append(args, keys[i], fps[i])
	}
	return `VALUES (?,?)` + strings.Repeat(",(?,?)", len(keys)-1), args
}

// lockMigrations keeps replicas starting together from migrating at once;
// SQLite's BEGIN IMMEDIATE and the process lock already do.
func (d dialect) lockMigrations(ctx context.Context, c conn) error {
	if !d.pg {
		return nil
	}
	_, err := c.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock))
	return err
}

// pgMigrateLock is the advisory lock key migrations take ("ihrw").
const pgMigrateLock = 0x69687277

// isNoRows: a single-row query found nothing, on either driver.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) }

type scanner interface{ Scan(...any) error }

// resultRows is what database/sql's and pgx's result sets have in common,
// so both ledgers read rows through one loop.
type resultRows interface {
	scanner
	Next() bool
	Err() error
}

// conn runs a statement on either database, inside a transaction or not.
// query's func closes the rows (and ends the statement's timeout).
type conn interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (resultRows, func(), error)
	row(ctx context.Context, q string, args ...any) scanner
}

// database is a conn that can also run fn in one transaction.
type database interface {
	conn
	tx(ctx context.Context, fn func(conn) error) error
}

// sqlConn is a database/sql handle (the SQLite ledger's *sql.DB or *sql.Tx).
type sqlConn interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

type sqliteConn struct{ c sqlConn }

func (d sqliteConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := d.c.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func (d sqliteConn) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	r, err := d.c.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	return r, func() { r.Close() }, nil
}

func (d sqliteConn) row(ctx context.Context, q string, args ...any) scanner {
	return d.c.QueryRowContext(ctx, q, args...)
}

// sqliteDB runs each statement under the ledger's operation timeout: a
// wait for one of the pool's connections, for SQLite's write lock past
// its busy_timeout, or for a stalled disk ends instead of hanging a run.
type sqliteDB struct {
	db      *sql.DB
	timeout time.Duration
}

func (d sqliteDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	ctx, cancel := opContext(ctx, d.timeout)
	defer cancel()
	return sqliteConn{d.db}.exec(ctx, q, args...)
}

func (d sqliteDB) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	ctx, cancel := opContext(ctx, d.timeout)
	r, done, err := sqliteConn{d.db}.query(ctx, q, args...)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return r, func() { done(); cancel() }, nil
}

func (d sqliteDB) row(ctx context.Context, q string, args ...any) scanner {
	ctx, cancel := opContext(ctx, d.timeout)
	return cancelScan{d.db.QueryRowContext(ctx, q, args...), cancel}
}

// tx begins IMMEDIATE (the DSN's _txlock), so a transaction that reads
// before it writes never fails to upgrade its lock.
func (d sqliteDB) tx(ctx context.Context, fn func(conn) error) error {
	ctx, cancel := opContext(ctx, d.timeout)
	defer cancel()
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(sqliteConn{tx}); err != nil {
		return err
	}
	return tx.Commit()
}

// pgTx runs statements inside a pgx transaction, whose context already
// carries the operation's timeout.
type pgTx struct{ tx pgx.Tx }

func (d pgTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	t, err := d.tx.Exec(ctx, q, args...)
	return t.RowsAffected(), err
}

func (d pgTx) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	r, err := d.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	return r, r.Close, nil
}

func (d pgTx) row(ctx context.Context, q string, args ...any) scanner {
	return d.tx.QueryRow(ctx, q, args...)
}

// pgDB runs each statement on the pool under the ledger's operation
// timeout, so a stalled network never hangs a worker.
type pgDB struct{ p *Postgres }

func (d pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	ctx, cancel := opContext(ctx, d.p.timeout)
	defer cancel()
	t, err := d.p.pool.Exec(ctx, q, args...)
	return t.RowsAffected(), err
}

func (d pgDB) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	ctx, cancel := opContext(ctx, d.p.timeout)
	r, err := d.p.pool.Query(ctx, q, args...)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return r, func() { r.Close(); cancel() }, nil
}

func (d pgDB) row(ctx context.Context, q string, args ...any) scanner {
	ctx, cancel := opContext(ctx, d.p.timeout)
	return cancelScan{d.p.pool.QueryRow(ctx, q, args...), cancel}
}

func (d pgDB) tx(ctx context.Context, fn func(conn) error) error {
	ctx, cancel := opContext(ctx, d.p.timeout)
	defer cancel()
	return pgx.BeginFunc(ctx, d.p.pool, func(tx pgx.Tx) error { return fn(pgTx{tx}) })
}

// cancelScan ends a single-row query's timeout once it is read.
type cancelScan struct {
	r      scanner
	cancel context.CancelFunc
}

// DefaultOpTimeout bounds one ledger statement or transaction when the
// caller's context has no earlier deadline.
const DefaultOpTimeout = 30 * time.Second

// opContext is ctx bounded by d, unless ctx already ends sooner.
func opContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

func (c cancelScan) Scan(dest ...any) error {
	defer c.cancel()
	return c.r.Scan(dest...)
}
