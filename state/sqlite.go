package state

import (
	"context"
	"database/sql"
	"errors"
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
	db   *sql.DB
	now  func() time.Time
	lock *os.File
	path string
}

var migrations = []string{
	// 1: files and row outcomes.
	`CREATE TABLE files (
		source TEXT NOT NULL,
		name TEXT NOT NULL,
		size INTEGER NOT NULL DEFAULT 0,
		mtime INTEGER NOT NULL DEFAULT 0,
		sha256 TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL DEFAULT 'seen',
		skip_reason TEXT NOT NULL DEFAULT '',
		run INTEGER NOT NULL DEFAULT 0,
		rows INTEGER NOT NULL DEFAULT 0,
		n_created INTEGER NOT NULL DEFAULT 0,
		n_already INTEGER NOT NULL DEFAULT 0,
		n_invalid INTEGER NOT NULL DEFAULT 0,
		n_failed INTEGER NOT NULL DEFAULT 0,
		dispatch_mark INTEGER NOT NULL DEFAULT 0,
		location TEXT NOT NULL DEFAULT '',
		destination TEXT NOT NULL DEFAULT '',
		archived_to TEXT NOT NULL DEFAULT '',
		report_path TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL DEFAULT '',
		lease_until INTEGER NOT NULL DEFAULT 0,
		first_seen INTEGER NOT NULL DEFAULT 0,
		started_at INTEGER NOT NULL DEFAULT 0,
		finished_at INTEGER NOT NULL DEFAULT 0,
		updated_at INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (source, name)
	);
	CREATE INDEX files_by_hash ON files (source, sha256);
	CREATE TABLE row_outcomes (
		source TEXT NOT NULL,
		filename TEXT NOT NULL,
		key TEXT NOT NULL,
		row INTEGER NOT NULL,
		run INTEGER NOT NULL,
		external_id TEXT NOT NULL DEFAULT '',
		document_type TEXT NOT NULL DEFAULT '',
		document_id TEXT NOT NULL DEFAULT '',
		action TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL,
		record_id INTEGER NOT NULL DEFAULT 0,
		http_status INTEGER NOT NULL DEFAULT 0,
		message TEXT NOT NULL DEFAULT '',
		updated_at INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (source, filename, key)
	) WITHOUT ROWID;`,
	// 2: ranges of split files.
	`CREATE TABLE ranges (
		source TEXT NOT NULL,
		name TEXT NOT NULL,
		idx INTEGER NOT NULL,
		run INTEGER NOT NULL,
		first_row INTEGER NOT NULL,
		last_row INTEGER NOT NULL,
		done INTEGER NOT NULL DEFAULT 0,
		dispatch_mark INTEGER NOT NULL DEFAULT 0,
		owner TEXT NOT NULL DEFAULT '',
		lease_until INTEGER NOT NULL DEFAULT 0,
		updated_at INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (source, name, idx)
	);`,
	// 3: row fingerprints (issue: same name, new content). Outcomes
	// stored before have none and are matched by LegacyMatch.
	`ALTER TABLE row_outcomes ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
	CREATE TABLE row_prints (
		source TEXT NOT NULL,
		filename TEXT NOT NULL,
		key TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		record_id INTEGER NOT NULL,
		PRIMARY KEY (source, filename, key, fingerprint)
	) WITHOUT ROWID;
	-- A recorded content that a later outcome of its key replaces is kept
	-- here (Recorded). Only content changes write: the common upserts of
	-- new keys and unchanged rows cost nothing more.
	CREATE TRIGGER row_prints_keep BEFORE UPDATE ON row_outcomes
	WHEN old.fingerprint <> '' AND old.fingerprint <> new.fingerprint AND old.result IN ('created', 'already-recorded')
	BEGIN
		INSERT OR IGNORE INTO row_prints (source, filename, key, fingerprint, record_id)
		VALUES (old.source, old.filename, old.key, old.fingerprint, old.record_id);
	END;`,
}

// OpenSQLite opens (creating if needed) the ledger at path and brings its
// schema up to date.
func OpenSQLite(ctx context.Context, path string, opts SQLiteOptions) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("state: empty sqlite path")
	}
	s := &SQLite{now: opts.Now, path: path}
	if s.now == nil {
		s.now = time.Now
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
	s.db = db
	if !opts.ReadOnly {
		if err := s.migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
		// We hold the write lock, so no other process is working: any
		// claim still recorded was left by a crash.
		for _, q := range []string{`UPDATE files SET owner='', lease_until=0 WHERE owner<>''`,
			`UPDATE ranges SET owner='', lease_until=0 WHERE owner<>''`} {
			if _, err := db.ExecContext(ctx, q); err != nil {
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

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: migrate %s: %w", s.path, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("state: migrate: %w", err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version),0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("state: migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("state: %s has schema version %d, newer than this worker (%d)", s.path, v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("state: migration %d: %w", i+1, err)
		}
	}
	if v < len(migrations) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
			return fmt.Errorf("state: migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (?)`, len(migrations)); err != nil {
			return fmt.Errorf("state: migrate: %w", err)
		}
	}
	return tx.Commit()
}

// Close closes the database and releases the process lock.
func (s *SQLite) Close() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
	}
	s.unlock()
	return err
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

const fileCols = `source, name, size, mtime, sha256, status, skip_reason, run, rows,
	n_created, n_already, n_invalid, n_failed, dispatch_mark, location, destination,
	archived_to, report_path, owner, lease_until, first_seen, started_at, finished_at, updated_at`

type scanner interface{ Scan(...any) error }

// resultRows is what database/sql's and pgx's result sets have in common,
// so both ledgers read rows through one loop.
type resultRows interface {
	scanner
	Next() bool
	Err() error
}

// collect scans every row of rows with scan.
func collect[T any](rows resultRows, scan func(scanner) (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// countRows reads (result, count) rows of a GROUP BY result query.
func countRows(rows resultRows) (Counts, error) {
	var c Counts
	for rows.Next() {
		var r string
		var n int64
		if err := rows.Scan(&r, &n); err != nil {
			return Counts{}, err
		}
		switch Result(r) {
		case Created:
			c.Created = n
		case AlreadyRecorded:
			c.AlreadyRecorded = n
		case Invalid:
			c.Invalid = n
		case FailedRow:
			c.Failed = n
		}
	}
	return c, rows.Err()
}

func scanFile(r scanner) (File, error) {
	var f File
	var mtime, lease, first, started, finished, updated int64
	var status string
	err := r.Scan(&f.Source, &f.Name, &f.Size, &mtime, &f.SHA256, &status, &f.SkipReason, &f.Run, &f.Rows,
		&f.Counts.Created, &f.Counts.AlreadyRecorded, &f.Counts.Invalid, &f.Counts.Failed,
		&f.DispatchMark, &f.Location, &f.Destination, &f.ArchivedTo, &f.ReportPath,
		&f.Owner, &lease, &first, &started, &finished, &updated)
	if err != nil {
		return File{}, err
	}
	f.Status = Status(status)
	f.ModTime, f.LeaseUntil, f.FirstSeen = fromNS(mtime), fromNS(lease), fromNS(first)
	f.StartedAt, f.FinishedAt, f.UpdatedAt = fromNS(started), fromNS(finished), fromNS(updated)
	return f, nil
}

// Claim implements Ledger.
func (s *SQLite) Claim(ctx context.Context, source, name, owner string, lease time.Duration) (File, error) {
	if owner == "" {
		return File{}, fmt.Errorf("state: claim %s/%s: empty owner", source, name)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO files (source, name, status, first_seen, updated_at)
		VALUES (?, ?, 'seen', ?, ?) ON CONFLICT (source, name) DO NOTHING`, source, name, ns(now), ns(now)); err != nil {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE files SET owner=?, lease_until=?, updated_at=?,
			status = CASE status WHEN 'seen' THEN 'claimed' ELSE status END
		WHERE source=? AND name=? AND (owner='' OR owner=? OR lease_until<=?)`,
		owner, ns(now.Add(lease)), ns(now), source, name, owner, ns(now))
	if err != nil {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, ErrClaimed)
	}
	f, err := scanFile(tx.QueryRowContext(ctx, `SELECT `+fileCols+` FROM files WHERE source=? AND name=?`, source, name))
	if err != nil {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, err)
	}
	if err := tx.Commit(); err != nil {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, err)
	}
	return f, nil
}

// Heartbeat implements Ledger.
func (s *SQLite) Heartbeat(ctx context.Context, source, name, owner string, lease time.Duration) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE files SET lease_until=? WHERE source=? AND name=? AND owner=? AND lease_until>?`,
		ns(now.Add(lease)), source, name, owner, ns(now))
	if err != nil {
		return fmt.Errorf("state: heartbeat %s/%s: %w", source, name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: heartbeat %s/%s: %w", source, name, ErrLeaseLost)
	}
	return nil
}

// Release implements Ledger.
func (s *SQLite) Release(ctx context.Context, source, name, owner string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE files SET owner='', lease_until=0 WHERE source=? AND name=? AND owner=?`, source, name, owner)
	if err != nil {
		return fmt.Errorf("state: release %s/%s: %w", source, name, err)
	}
	return nil
}

// File implements Ledger.
func (s *SQLite) File(ctx context.Context, source, name string) (File, error) {
	f, err := scanFile(s.db.QueryRowContext(ctx, `SELECT `+fileCols+` FROM files WHERE source=? AND name=?`, source, name))
	if errors.Is(err, sql.ErrNoRows) {
		return File{}, fmt.Errorf("state: file %s/%s: %w", source, name, ErrNotFound)
	}
	if err != nil {
		return File{}, fmt.Errorf("state: file %s/%s: %w", source, name, err)
	}
	return f, nil
}

func (s *SQLite) queryFiles(ctx context.Context, what, q string, args ...any) ([]File, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+fileCols+` FROM files WHERE `+q+` ORDER BY source, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", what, err)
	}
	defer rows.Close()
	out, err := collect(rows, scanFile)
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", what, err)
	}
	return out, nil
}

// Files implements Ledger.
func (s *SQLite) Files(ctx context.Context, source string) ([]File, error) {
	if source == "" {
		return s.queryFiles(ctx, "files", `1=1`)
	}
	return s.queryFiles(ctx, "files of "+source, `source=?`, source)
}

// FilesByHash implements Ledger.
func (s *SQLite) FilesByHash(ctx context.Context, source, sha string) ([]File, error) {
	return s.queryFiles(ctx, "files by hash", `source=? AND sha256=?`, source, sha)
}

// ownedWhere is the fencing condition of every owner-guarded write.
const ownedWhere = `source=? AND name=? AND owner=? AND owner<>'' AND lease_until>?`

// PutFile implements Ledger.
func (s *SQLite) PutFile(ctx context.Context, owner string, f File) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE files SET size=?, mtime=?, sha256=?, status=?, skip_reason=?, run=?, rows=?,
		n_created=?, n_already=?, n_invalid=?, n_failed=?, dispatch_mark=?, location=?, destination=?,
		archived_to=?, report_path=?, started_at=?, finished_at=?, updated_at=?
		WHERE `+ownedWhere,
		f.Size, ns(f.ModTime), f.SHA256, string(f.Status), f.SkipReason, f.Run, f.Rows,
		f.Counts.Created, f.Counts.AlreadyRecorded, f.Counts.Invalid, f.Counts.Failed, f.DispatchMark,
		f.Location, f.Destination, f.ArchivedTo, f.ReportPath, ns(f.StartedAt), ns(f.FinishedAt), ns(now),
		f.Source, f.Name, owner, ns(now))
	if err != nil {
		return fmt.Errorf("state: put %s/%s: %w", f.Source, f.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: put %s/%s: %w", f.Source, f.Name, ErrLeaseLost)
	}
	return nil
}

// SetDispatchMark implements Ledger.
func (s *SQLite) SetDispatchMark(ctx context.Context, source, name, owner string, mark int64) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE files SET dispatch_mark=?, updated_at=? WHERE `+ownedWhere,
		mark, ns(now), source, name, owner, ns(now))
	if err != nil {
		return fmt.Errorf("state: dispatch mark %s/%s: %w", source, name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: dispatch mark %s/%s: %w", source, name, ErrLeaseLost)
	}
	return nil
}

// RecordOutcomes implements Ledger.
func (s *SQLite) RecordOutcomes(ctx context.Context, source, name, owner string, outs []Outcome) error {
	now := s.now()
	return s.recordOutcomes(ctx, source, name, outs, now, `SELECT COUNT(*) FROM files WHERE `+ownedWhere,
		source, name, owner, ns(now))
}

// RecordRangeOutcomes implements Ledger.
func (s *SQLite) RecordRangeOutcomes(ctx context.Context, source, name string, index int, owner string, outs []Outcome) error {
	now := s.now()
	return s.recordOutcomes(ctx, source, name, outs, now, `SELECT COUNT(*) FROM ranges WHERE `+rangeOwnedWhere,
		source, name, index, owner, ns(now))
}

// recordOutcomes writes outs in one transaction if the claim query
// (a COUNT) finds the claim held.
func (s *SQLite) recordOutcomes(ctx context.Context, source, name string, outs []Outcome, now time.Time, heldQuery string, heldArgs ...any) error {
	if len(outs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, err)
	}
	defer tx.Rollback()
	var held int
	if err := tx.QueryRowContext(ctx, heldQuery, heldArgs...).Scan(&held); err != nil {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, err)
	}
	if held == 0 {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, ErrLeaseLost)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO row_outcomes (source, filename, key, row, run, external_id,
			document_type, document_id, action, fingerprint, result, record_id, http_status, message, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (source, filename, key) DO UPDATE SET row=excluded.row, run=excluded.run,
			external_id=excluded.external_id, document_type=excluded.document_type,
			document_id=excluded.document_id, action=excluded.action, fingerprint=excluded.fingerprint,
			result=excluded.result,
			record_id=excluded.record_id, http_status=excluded.http_status, message=excluded.message,
			updated_at=excluded.updated_at`)
	if err != nil {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, err)
	}
	defer stmt.Close()
	for _, o := range outs {
		if _, err := stmt.ExecContext(ctx, source, name, o.Key, o.Row, o.Run, o.ExternalID, o.DocumentType,
			o.DocumentID, o.Action, o.Fingerprint, string(o.Result), o.RecordID, o.HTTPStatus, o.Message, ns(now)); err != nil {
			return fmt.Errorf("state: record row %d of %s/%s: %w", o.Row, source, name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, err)
	}
	return nil
}

// Outcomes implements Ledger. Keys are looked up in chunks so one call can
// cover a whole dispatch window.
func (s *SQLite) Outcomes(ctx context.Context, source, filename string, keys []string) (map[string]Outcome, error) {
	out := make(map[string]Outcome, len(keys))
	const chunk = 400 // well under SQLite's bound-parameter limit
	for len(keys) > 0 {
		n := min(chunk, len(keys))
		part := keys[:n]
		keys = keys[n:]
		args := make([]any, 0, n+2)
		args = append(args, source, filename)
		for _, k := range part {
			args = append(args, k)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT key, row, run, external_id, document_type, document_id, action,
				fingerprint, result, record_id, http_status, message, updated_at
			FROM row_outcomes WHERE source=? AND filename=? AND key IN (?`+strings.Repeat(",?", n-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
		}
		for rows.Next() {
			o := Outcome{Source: source, Filename: filename}
			var result string
			var updated int64
			if err := rows.Scan(&o.Key, &o.Row, &o.Run, &o.ExternalID, &o.DocumentType, &o.DocumentID, &o.Action,
				&o.Fingerprint, &result, &o.RecordID, &o.HTTPStatus, &o.Message, &updated); err != nil {
				rows.Close()
				return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
			}
			o.Result, o.UpdatedAt = Result(result), fromNS(updated)
			out[o.Key] = o
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
		}
	}
	return out, nil
}

// Recorded implements Ledger: the last outcomes and the contents kept
// when they were replaced (row_prints).
func (s *SQLite) Recorded(ctx context.Context, source, filename string, keys, fingerprints []string) (map[string]int64, error) {
	out := map[string]int64{}
	const chunk = 400 // two parameters a pair, well under SQLite's limit
	for len(keys) > 0 {
		n := min(chunk, len(keys))
		args := make([]any, 0, 2*n+4)
		for i := range n {
			args = append(args, keys[i], fingerprints[i])
		}
		args = append(args, source, filename, source, filename)
		keys, fingerprints = keys[n:], fingerprints[n:]
		rows, err := s.db.QueryContext(ctx, `WITH w(key, fp) AS (VALUES (?,?)`+strings.Repeat(",(?,?)", n-1)+`)
			SELECT p.key, p.record_id FROM row_prints p JOIN w ON p.key = w.key AND p.fingerprint = w.fp
			WHERE p.source = ? AND p.filename = ?
			UNION ALL
			SELECT o.key, o.record_id FROM row_outcomes o JOIN w ON o.key = w.key AND o.fingerprint = w.fp
			WHERE o.source = ? AND o.filename = ? AND o.result IN ('created', 'already-recorded')`, args...)
		if err != nil {
			return nil, fmt.Errorf("state: recorded rows of %s/%s: %w", source, filename, err)
		}
		for rows.Next() {
			var k string
			var id int64
			if err := rows.Scan(&k, &id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("state: recorded rows of %s/%s: %w", source, filename, err)
			}
			out[k] = id
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("state: recorded rows of %s/%s: %w", source, filename, err)
		}
	}
	return out, nil
}

// RowCounts implements Ledger.
func (s *SQLite) RowCounts(ctx context.Context, source, filename string, run int64) (Counts, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT result, COUNT(*) FROM row_outcomes
		WHERE source=? AND filename=? AND (?=0 OR run=?) GROUP BY result`, source, filename, run, run)
	if err != nil {
		return Counts{}, fmt.Errorf("state: row counts of %s/%s: %w", source, filename, err)
	}
	defer rows.Close()
	c, err := countRows(rows)
	if err != nil {
		return Counts{}, fmt.Errorf("state: row counts of %s/%s: %w", source, filename, err)
	}
	return c, nil
}

// rangeOwnedWhere fences writes to a range as ownedWhere does for files.
const rangeOwnedWhere = `source=? AND name=? AND idx=? AND owner=? AND owner<>'' AND lease_until>?`

const rangeCols = `source, name, run, idx, first_row, last_row, done, dispatch_mark, owner, lease_until, updated_at`

func scanRange(r scanner) (Range, error) {
	var g Range
	var lease, updated int64
	err := r.Scan(&g.Source, &g.Name, &g.Run, &g.Index, &g.First, &g.Last, &g.Done, &g.DispatchMark,
		&g.Owner, &lease, &updated)
	g.LeaseUntil, g.UpdatedAt = fromNS(lease), fromNS(updated)
	return g, err
}

// splitRows cuts rows 1..rows into ranges of at most size rows.
func splitRows(source, name string, run, rows, size, mark int64) []Range {
	var out []Range
	for first := int64(1); first <= rows; first += size {
		out = append(out, Range{Source: source, Name: name, Run: run, Index: len(out), First: first,
			Last: min(first+size-1, rows), DispatchMark: mark})
	}
	return out
}

// SplitFile implements Ledger.
func (s *SQLite) SplitFile(ctx context.Context, source, name, owner string, size int64) ([]Range, error) {
	if size <= 0 {
		return nil, fmt.Errorf("state: split %s/%s: range size %d", source, name, size)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("state: split %s/%s: %w", source, name, err)
	}
	defer tx.Rollback()
	var run, rows, mark int64
	err = tx.QueryRowContext(ctx, `SELECT run, rows, dispatch_mark FROM files WHERE `+ownedWhere,
		source, name, owner, ns(now)).Scan(&run, &rows, &mark)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("state: split %s/%s: %w", source, name, ErrLeaseLost)
	}
	if err != nil {
		return nil, fmt.Errorf("state: split %s/%s: %w", source, name, err)
	}
	existing, err := s.queryRanges(ctx, tx, source, name)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 && existing[0].Run == run {
		return existing, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM ranges WHERE source=? AND name=?`, source, name); err != nil {
		return nil, fmt.Errorf("state: split %s/%s: %w", source, name, err)
	}
	out := splitRows(source, name, run, rows, size, mark)
	for i := range out {
		out[i].UpdatedAt = fromNS(ns(now))
		g := out[i]
		if _, err := tx.ExecContext(ctx, `INSERT INTO ranges (source, name, idx, run, first_row, last_row, dispatch_mark, updated_at)
			VALUES (?,?,?,?,?,?,?,?)`, source, name, g.Index, g.Run, g.First, g.Last, g.DispatchMark, ns(now)); err != nil {
			return nil, fmt.Errorf("state: split %s/%s: %w", source, name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("state: split %s/%s: %w", source, name, err)
	}
	return out, nil
}

type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func (s *SQLite) queryRanges(ctx context.Context, q queryer, source, name string) ([]Range, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+rangeCols+` FROM ranges WHERE source=? AND name=? ORDER BY idx`, source, name)
	if err != nil {
		return nil, fmt.Errorf("state: ranges of %s/%s: %w", source, name, err)
	}
	defer rows.Close()
	out, err := collect(rows, scanRange)
	if err != nil {
		return nil, fmt.Errorf("state: ranges of %s/%s: %w", source, name, err)
	}
	return out, nil
}

// Ranges implements Ledger.
func (s *SQLite) Ranges(ctx context.Context, source, name string) ([]Range, error) {
	return s.queryRanges(ctx, s.db, source, name)
}

// ClaimRange implements Ledger.
func (s *SQLite) ClaimRange(ctx context.Context, source, name string, run int64, owner string, lease time.Duration) (Range, error) {
	if owner == "" {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: empty owner", source, name)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, err)
	}
	defer tx.Rollback()
	var idx int
	err = tx.QueryRowContext(ctx, `SELECT idx FROM ranges WHERE source=? AND name=? AND run=? AND done=0
			AND (owner='' OR owner=? OR lease_until<=?)
		ORDER BY owner=? DESC, idx LIMIT 1`, source, name, run, owner, ns(now), owner).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, ErrNotFound)
	}
	if err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ranges SET owner=?, lease_until=?, updated_at=? WHERE source=? AND name=? AND idx=?`,
		owner, ns(now.Add(lease)), ns(now), source, name, idx); err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, err)
	}
	g, err := scanRange(tx.QueryRowContext(ctx, `SELECT `+rangeCols+` FROM ranges WHERE source=? AND name=? AND idx=?`, source, name, idx))
	if err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, err)
	}
	if err := tx.Commit(); err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, err)
	}
	return g, nil
}

// HeartbeatRange implements Ledger.
func (s *SQLite) HeartbeatRange(ctx context.Context, source, name string, index int, owner string, lease time.Duration) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE ranges SET lease_until=? WHERE `+rangeOwnedWhere,
		ns(now.Add(lease)), source, name, index, owner, ns(now))
	return rangeResult(res, err, "heartbeat", source, name, index)
}

// SetRangeMark implements Ledger.
func (s *SQLite) SetRangeMark(ctx context.Context, source, name string, index int, owner string, mark int64) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE ranges SET dispatch_mark=?, updated_at=? WHERE `+rangeOwnedWhere,
		mark, ns(now), source, name, index, owner, ns(now))
	return rangeResult(res, err, "dispatch mark", source, name, index)
}

// ReleaseRange implements Ledger.
func (s *SQLite) ReleaseRange(ctx context.Context, source, name string, index int, owner string, done bool) error {
	now := s.now()
	if done {
		res, err := s.db.ExecContext(ctx, `UPDATE ranges SET done=1, owner='', lease_until=0, updated_at=? WHERE `+rangeOwnedWhere,
			ns(now), source, name, index, owner, ns(now))
		return rangeResult(res, err, "finish", source, name, index)
	}
	_, err := s.db.ExecContext(ctx, `UPDATE ranges SET owner='', lease_until=0 WHERE source=? AND name=? AND idx=? AND owner=?`,
		source, name, index, owner)
	if err != nil {
		return fmt.Errorf("state: release range %d of %s/%s: %w", index, source, name, err)
	}
	return nil
}

func rangeResult(res sql.Result, err error, what, source, name string, index int) error {
	if err != nil {
		return fmt.Errorf("state: %s range %d of %s/%s: %w", what, index, source, name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: %s range %d of %s/%s: %w", what, index, source, name, ErrLeaseLost)
	}
	return nil
}

var _ Ledger = (*SQLite)(nil)
