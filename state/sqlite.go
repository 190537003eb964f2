package state

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLiteOptions tune OpenSQLite.
type SQLiteOptions struct {
	// ReadOnly opens the ledger for reading only (the status command while
	// a worker runs): no lock is taken and nothing is written.
	ReadOnly bool
	// Now is the clock for leases and timestamps; nil means time.Now.
	Now func() time.Time
	// OpTimeout bounds every statement and transaction when ctx has no
	// earlier deadline (DefaultOpTimeout).
	OpTimeout time.Duration
}

// Open opens the ledger a configuration names: "sqlite:/path/state.db"
// (or a bare path), or "postgres://…" for the PostgreSQL ledger that
// several replicas share (OpenPostgres).
func Open(ctx context.Context, dsn string) (Ledger, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgresLedger(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite://"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite://"), SQLiteOptions{})
	case strings.HasPrefix(dsn, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), SQLiteOptions{})
	case strings.Contains(dsn, "://"):
		return nil, fmt.Errorf("state: unsupported state URL scheme in %q", dsn)
	}
	return OpenSQLite(ctx, dsn, SQLiteOptions{})
}

// SQLite is the embedded ledger. Only one process may have a database open
// for writing: OpenSQLite takes an exclusive OS lock on PATH.lock, and
// because of it clears every claim a crashed predecessor left.
type SQLite struct {
	ledger
	handle *sql.DB // the ledger's database (ledger.db wraps it)
	now    func() time.Time
	lock   *os.File
	path   string
	// timeout bounds each statement and transaction (SQLiteOptions.OpTimeout).
	timeout time.Duration
	// upsert is write's statement of insertRows outcomes, prepared once:
	// SQLite takes about a millisecond to compile its 960 values.
	upsert *sql.Stmt
}

// OpenSQLite opens (creating if needed) the ledger at path and brings its
// schema up to date.
func OpenSQLite(ctx context.Context, path string, opts SQLiteOptions) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("state: empty sqlite path")
	}
	s := &SQLite{now: opts.Now, path: path, timeout: opts.OpTimeout}
	if s.now == nil {
		s.now = time.Now
	}
	if s.timeout <= 0 {
		s.timeout = DefaultOpTimeout
	}
	if !opts.ReadOnly {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("state: %w", err)
			}
		}
		f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o640)
		if err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		if err := lockFile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("state: %s: %w", path, ErrLocked)
		}
		s.lock = f
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit survives power loss, which the dispatch mark needs;
	// row outcomes are batched so the fsync cost is per batch, not per row.
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	if opts.ReadOnly {
		q.Set("mode", "ro")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		s.unlock()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s.handle = db
	s.ledger = ledger{d: sqliteDialect, db: sqliteDB{db: db, timeout: s.timeout}, nowArg: func() any { return ns(s.now()) }, write: s.write}
	if !opts.ReadOnly {
		if err := s.migrate(ctx, s.path); err != nil {
			s.Close()
			return nil, err
		}
		if s.upsert, err = db.PrepareContext(ctx, s.insert(insertRows)); err != nil {
			s.Close()
			return nil, fmt.Errorf("state: open %s: %w", path, err)
		}
		// We hold the write lock, so no other process is working: any
		// claim still recorded was left by a crash.
		for _, q := range []string{`UPDATE files SET owner='', lease_until=0 WHERE owner<>''`,
			`UPDATE ranges SET owner='', lease_until=0 WHERE owner<>''`} {
			if _, err := s.ledger.db.exec(ctx, q); err != nil {
				s.Close()
				return nil, fmt.Errorf("state: clear stale claims: %w", err)
			}
		}
	} else if err := db.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLite) unlock() {
	if s.lock != nil {
		unlockFile(s.lock)
		s.lock.Close()
		s.lock = nil
	}
}

// Close closes the database and releases the process lock.
func (s *SQLite) Close() error {
	var err error
	if s.upsert != nil {
		s.upsert.Close()
	}
	if s.handle != nil {
		err = s.handle.Close()
	}
	s.unlock()
	return err
}

// write is the SQLite ledger's batch writer: multi-row upserts inside one
// transaction, which commits (one fsync) for the whole batch. The fence
// and the rows share one clock reading.
//
// Rows go insertRows to a statement because each statement the driver
// runs costs about as much again as a row's B-tree work (database/sql's
// locking, and the driver's watch of ctx: a goroutine per statement).
// SQLite applies a statement's rows in order, so a key twice in a batch
// ends with its last outcome, as row by row.
func (s *SQLite) write(ctx context.Context, id FileID, fence string, fenceArgs []any, outs []Outcome) (bool, error) {
	ctx, cancel := opContext(ctx, s.timeout)
	defer cancel()
	now := ns(s.now())
	tx, err := s.handle.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var one int
	err = tx.QueryRowContext(ctx, s.d.q(fence), append([]any{now}, fenceArgs...)...).Scan(&one)
	if isNoRows(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var full *sql.Stmt // s.upsert on the transaction's connection
	args := make([]any, 0, min(len(outs), insertRows)*outcomeArgs)
	for len(outs) > 0 {
		n := min(len(outs), insertRows)
		args = args[:0]
		for _, o := range outs[:n] {
			args = append(args, id.Source, id.Name, o.Key, o.Row, o.Run, storedExternalID(o.Key, o.ExternalID), o.DocumentType,
				o.DocumentID, o.Action, o.Fingerprint, string(o.Result), o.RecordID, o.HTTPStatus, o.Message, now)
		}
		if n == insertRows {
			if full == nil {
				full = tx.StmtContext(ctx, s.upsert)
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, s.insert(n), args...)
		}
		if err != nil {
			return false, fmt.Errorf("rows %d-%d: %w", outs[0].Row, outs[n-1].Row, err)
		}
		outs = outs[n:]
	}
	return true, tx.Commit()
}

// insertRows is how many outcomes one statement upserts (write), and
// outcomeArgs the values each takes: 64 rows are 960 values, far below
// SQLite's limit of 32,766.
const (
	insertRows  = 64
	outcomeArgs = 15
)

// insert is the upsert of n outcomes. Tokens only: the ? stay SQLite's
// own positional parameters, which bind without the name lookup $N costs
// per parameter and row.
func (s *SQLite) insert(n int) string {
	var b strings.Builder
	b.WriteString(outcomeInsert)
	b.WriteString(" VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteByte(' ')
	b.WriteString(outcomeUpsert)
	return s.d.tokens(b.String())
}

var _ Ledger = (*SQLite)(nil)
