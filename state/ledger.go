package state

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ledger is the Ledger both databases share: every statement is written
// once in the dialect's tokens (dialect.go) and every row loop once.
// SQLite and Postgres embed it and keep only what truly differs: how they
// open and close, whose clock a lease follows, and how a batch of row
// outcomes is written (one array statement on PostgreSQL, a prepared
// upsert per row on SQLite).
type ledger struct {
	d  dialect
	db database
	// nowArg is the value of {now}: the injected clock's nanoseconds, or
	// nil for the database server's clock (PostgreSQL in production).
	nowArg func() any
	// write upserts outs of file id in one transaction, unless fence (a
	// query that returns a row while the claim is held) returns none; it
	// reports whether the claim was held.
	write func(ctx context.Context, id FileID, fence string, fenceArgs []any, outs []Outcome) (bool, error)
}

// stmt expands q for the database and puts {now}'s value first.
func (l *ledger) stmt(q string, args []any) (string, []any) {
	if strings.Contains(q, "{now}") {
		return l.d.q(q), append([]any{l.nowArg()}, args...)
	}
	if !l.d.pg {
		// SQLite binds a positional ? directly; a numbered $N is found by
		// a linear scan of the statement's names, which makes a window's
		// key list (hundreds of parameters) quadratic.
		return l.d.tokens(q), args
	}
	return l.d.q(q), args
}

func (l *ledger) exec(ctx context.Context, c conn, q string, args ...any) (int64, error) {
	q, args = l.stmt(q, args)
	return c.exec(ctx, q, args...)
}

func (l *ledger) row(ctx context.Context, c conn, q string, args ...any) scanner {
	q, args = l.stmt(q, args)
	return c.row(ctx, q, args...)
}

// each calls fn for every row q returns.
func (l *ledger) each(ctx context.Context, c conn, q string, args []any, fn func(scanner) error) error {
	q, args = l.stmt(q, args)
	rows, done, err := c.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer done()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// all scans every row q returns with scan.
func all[T any](ctx context.Context, l *ledger, c conn, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	var out []T
	err := l.each(ctx, c, q, args, func(r scanner) error {
		v, err := scan(r)
		out = append(out, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// schema is the ledger's migrations, applied in order in one
// transaction. Times are Unix nanoseconds: timestamptz would round
// File.ModTime to microseconds.
var schema = []string{
	// 1: files and row outcomes.
	`CREATE TABLE {t}files (
		source TEXT NOT NULL,
		name TEXT NOT NULL,
		size {int} NOT NULL DEFAULT 0,
		mtime {int} NOT NULL DEFAULT 0,
		sha256 TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL DEFAULT 'seen',
		skip_reason TEXT NOT NULL DEFAULT '',
		run {int} NOT NULL DEFAULT 0,
		rows {int} NOT NULL DEFAULT 0,
		n_created {int} NOT NULL DEFAULT 0,
		n_already {int} NOT NULL DEFAULT 0,
		n_invalid {int} NOT NULL DEFAULT 0,
		n_failed {int} NOT NULL DEFAULT 0,
		dispatch_mark {int} NOT NULL DEFAULT 0,
		location TEXT NOT NULL DEFAULT '',
		destination TEXT NOT NULL DEFAULT '',
		archived_to TEXT NOT NULL DEFAULT '',
		report_path TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL DEFAULT '',
		lease_until {int} NOT NULL DEFAULT 0,
		first_seen {int} NOT NULL DEFAULT 0,
		started_at {int} NOT NULL DEFAULT 0,
		finished_at {int} NOT NULL DEFAULT 0,
		updated_at {int} NOT NULL DEFAULT 0,
		PRIMARY KEY (source, name)
	);
	CREATE INDEX {t}files_by_hash ON {t}files (source, sha256);
	CREATE TABLE {t}row_outcomes (
		source TEXT NOT NULL,
		filename TEXT NOT NULL,
		key TEXT NOT NULL,
		row {int} NOT NULL,
		run {int} NOT NULL,
		external_id TEXT NOT NULL DEFAULT '',
		document_type TEXT NOT NULL DEFAULT '',
		document_id TEXT NOT NULL DEFAULT '',
		action TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL,
		record_id {int} NOT NULL DEFAULT 0,
		http_status INTEGER NOT NULL DEFAULT 0,
		message TEXT NOT NULL DEFAULT '',
		updated_at {int} NOT NULL DEFAULT 0,
		PRIMARY KEY (source, filename, key)
	){norowid};`,
	// 2: ranges of split files.
	`CREATE TABLE {t}ranges (
		source TEXT NOT NULL,
		name TEXT NOT NULL,
		idx INTEGER NOT NULL,
		run {int} NOT NULL,
		first_row {int} NOT NULL,
		last_row {int} NOT NULL,
		done {bool} NOT NULL DEFAULT {false},
		dispatch_mark {int} NOT NULL DEFAULT 0,
		owner TEXT NOT NULL DEFAULT '',
		lease_until {int} NOT NULL DEFAULT 0,
		updated_at {int} NOT NULL DEFAULT 0,
		PRIMARY KEY (source, name, idx)
	);`,
	// 3: row fingerprints (same name, new content). Outcomes stored
	// before have none and are matched by LegacyMatch.
	`ALTER TABLE {t}row_outcomes ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
	CREATE TABLE {t}row_prints (
		source TEXT NOT NULL,
		filename TEXT NOT NULL,
		key TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		record_id {int} NOT NULL,
		PRIMARY KEY (source, filename, key, fingerprint)
	){norowid};
	{keepPrint}`,
	// 4: a long history (history.go): pages of a source's files newest
	// first, by status, the files a crash left unmoved, and when a file's
	// row outcomes were pruned, and of which run.
	`CREATE INDEX {t}files_by_time ON {t}files (source, updated_at DESC, name{bytes});
	CREATE INDEX {t}files_by_status ON {t}files (source, status, updated_at);
	CREATE INDEX {t}files_unsettled ON {t}files (source) WHERE destination <> '';
	ALTER TABLE {t}files ADD COLUMN pruned_at {int} NOT NULL DEFAULT 0;
	ALTER TABLE {t}files ADD COLUMN pruned_run {int} NOT NULL DEFAULT 0;`,
}

// migrate brings the schema up to date; where names the database in
// errors.
func (l *ledger) migrate(ctx context.Context, where string) error {
	vt := l.d.versionTable
	err := l.db.tx(ctx, func(c conn) error {
		if err := l.d.lockMigrations(ctx, c); err != nil {
			return err
		}
		if _, err := c.exec(ctx, `CREATE TABLE IF NOT EXISTS `+vt+` (version INTEGER NOT NULL)`); err != nil {
			return err
		}
		var v int
		if err := c.row(ctx, `SELECT COALESCE(MAX(version),0) FROM `+vt).Scan(&v); err != nil {
			return err
		}
		if v > len(schema) {
			return fmt.Errorf("schema version %d is newer than this worker (%d)", v, len(schema))
		}
		for i := v; i < len(schema); i++ {
			if _, err := c.exec(ctx, l.d.tokens(schema[i])); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if v == len(schema) {
			return nil
		}
		if _, err := c.exec(ctx, `DELETE FROM `+vt); err != nil {
			return err
		}
		_, err := c.exec(ctx, `INSERT INTO `+vt+` VALUES ($1)`, len(schema))
		return err
	})
	if err != nil {
		return fmt.Errorf("state: %s: migrate: %w", where, err)
	}
	return nil
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

const rangeCols = `source, name, run, idx, first_row, last_row, done, dispatch_mark, owner, lease_until, updated_at`

const outcomeCols = `key, row, run, external_id, document_type, document_id, action,
	fingerprint, result, record_id, http_status, message, updated_at`

// heldFile finds a file's row while owner is on it (source, name, owner),
// heldRange a range's (source, name, index, owner), whatever their lease;
// with live added they are the fence of every owner-guarded write.
// ownedFile is the file's fence.
const (
	heldFile  = `source = ? AND name = ? AND owner = ?`
	heldRange = `source = ? AND name = ? AND idx = ? AND owner = ?`
	live      = ` AND owner <> '' AND lease_until > {now}`
	ownedFile = heldFile + live
)

// outcomeUpsert is the insert of one row outcome (the writers supply its
// values) and what a newer outcome of a key replaces.
const (
	outcomeInsert = `INSERT INTO {t}row_outcomes (source, filename, ` + outcomeCols + `)`
	outcomeUpsert = `ON CONFLICT (source, filename, key) DO UPDATE SET row = excluded.row, run = excluded.run,
		external_id = excluded.external_id, document_type = excluded.document_type,
		document_id = excluded.document_id, action = excluded.action, fingerprint = excluded.fingerprint,
		result = excluded.result, record_id = excluded.record_id, http_status = excluded.http_status,
		message = excluded.message, updated_at = excluded.updated_at`
)

// A row's key is its external-id (Key) but for rows without one, so
// storing both kept every external-id twice, about a tenth of an
// outcome's bytes. external_id is stored empty when it equals the key;
// an empty external-id under a key that is not a RowKey (which Key never
// makes) is stored as noExternalID. Outcomes stored before keep both and
// read as they are.
const noExternalID = "\x01"

func storedExternalID(key, ext string) string {
	switch {
	case ext == key && !strings.HasPrefix(key, rowKeyPrefix):
		return ""
	case ext == "" && !strings.HasPrefix(key, rowKeyPrefix):
		return noExternalID
	}
	return ext
}

func loadedExternalID(key, stored string) string {
	switch {
	case stored == noExternalID:
		return ""
	case stored == "" && !strings.HasPrefix(key, rowKeyPrefix):
		return key
	}
	return stored
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

func scanRange(r scanner) (Range, error) {
	var g Range
	var lease, updated int64
	err := r.Scan(&g.Source, &g.Name, &g.Run, &g.Index, &g.First, &g.Last, &g.Done, &g.DispatchMark,
		&g.Owner, &lease, &updated)
	g.LeaseUntil, g.UpdatedAt = fromNS(lease), fromNS(updated)
	return g, err
}

// scanOutcome reads outcomeCols.
func scanOutcome(r scanner) (Outcome, error) {
	var o Outcome
	var result string
	var updated int64
	err := r.Scan(&o.Key, &o.Row, &o.Run, &o.ExternalID, &o.DocumentType, &o.DocumentID, &o.Action,
		&o.Fingerprint, &result, &o.RecordID, &o.HTTPStatus, &o.Message, &updated)
	o.Result, o.UpdatedAt, o.ExternalID = Result(result), fromNS(updated), loadedExternalID(o.Key, o.ExternalID)
	return o, err
}

// claimSQL takes or creates the claim in one statement: the upsert locks
// the row, and (on PostgreSQL, under READ COMMITTED) its WHERE is
// re-checked against the latest version, so of two racing claimants
// exactly one gets a row back.
const claimSQL = `INSERT INTO {t}files (source, name, status, owner, lease_until, first_seen, updated_at)
	VALUES (?, ?, 'claimed', ?, {now} + ?, {now}, {now})
	ON CONFLICT (source, name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until,
		updated_at = excluded.updated_at,
		status = CASE {t}files.status WHEN 'seen' THEN 'claimed' ELSE {t}files.status END
	WHERE {t}files.owner = '' OR {t}files.owner = excluded.owner
		OR {t}files.lease_until <= excluded.updated_at
	RETURNING ` + fileCols

// Claim implements Ledger.
func (l *ledger) Claim(ctx context.Context, id FileID, owner string, lease time.Duration) (File, error) {
	if owner == "" {
		return File{}, fmt.Errorf("state: claim %s: empty owner", id)
	}
	f, err := scanFile(l.row(ctx, l.db, claimSQL, id.Source, id.Name, owner, int64(lease)))
	if isNoRows(err) {
		return File{}, fmt.Errorf("state: claim %s: %w", id, ErrClaimed)
	}
	if err != nil {
		return File{}, fmt.Errorf("state: claim %s: %w", id, err)
	}
	return f, nil
}

// fenced runs an owner-guarded write: ErrLeaseLost when it changed
// nothing.
func (l *ledger) fenced(ctx context.Context, what string, q string, args ...any) error {
	n, err := l.exec(ctx, l.db, q, args...)
	if err != nil {
		return fmt.Errorf("state: %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("state: %s: %w", what, ErrLeaseLost)
	}
	return nil
}

// held is claim c's row: the table holding what c claims, the condition
// that finds the row while c's owner is on it (heldFile or heldRange), and
// that condition's arguments. cond+live is the fence.
func held(c Claim) (table, cond string, args []any) {
	if i, ok := c.Range(); ok {
		return `{t}ranges`, heldRange, []any{c.File.Source, c.File.Name, i, c.Owner}
	}
	return `{t}files`, heldFile, []any{c.File.Source, c.File.Name, c.Owner}
}

// Heartbeat implements Ledger.
func (l *ledger) Heartbeat(ctx context.Context, c Claim, lease time.Duration) error {
	table, cond, args := held(c)
	return l.fenced(ctx, "heartbeat "+c.String(), `UPDATE `+table+` SET lease_until = {now} + ? WHERE `+cond+live,
		append([]any{int64(lease)}, args...)...)
}

// Release implements Ledger. Only done is fenced: giving back a claim that
// is already gone leaves nothing to undo, but a range marked done must
// have been finished by its holder.
func (l *ledger) Release(ctx context.Context, c Claim, done bool) error {
	table, cond, args := held(c)
	if done {
		if _, ok := c.Range(); !ok {
			return fmt.Errorf("state: finish %s: only a range is marked done", c)
		}
		return l.fenced(ctx, "finish "+c.String(), `UPDATE {t}ranges SET done = TRUE, owner = '', lease_until = 0, updated_at = {now}
			WHERE `+cond+live, args...)
	}
	if _, err := l.exec(ctx, l.db, `UPDATE `+table+` SET owner = '', lease_until = 0 WHERE `+cond, args...); err != nil {
		return fmt.Errorf("state: release %s: %w", c, err)
	}
	return nil
}

// File implements Ledger.
func (l *ledger) File(ctx context.Context, id FileID) (File, error) {
	f, err := scanFile(l.row(ctx, l.db, `SELECT `+fileCols+` FROM {t}files WHERE source = ? AND name = ?`, id.Source, id.Name))
	if isNoRows(err) {
		return File{}, fmt.Errorf("state: file %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return File{}, fmt.Errorf("state: file %s: %w", id, err)
	}
	return f, nil
}

// files lists files by source and name, in byte order on both databases.
func (l *ledger) files(ctx context.Context, what, where string, args ...any) ([]File, error) {
	out, err := all(ctx, l, l.db, scanFile, `SELECT `+fileCols+` FROM {t}files `+where+` ORDER BY source{bytes}, name{bytes}`, args...)
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", what, err)
	}
	return out, nil
}

// Files implements Ledger.
func (l *ledger) Files(ctx context.Context, source string) ([]File, error) {
	if source == "" {
		return l.files(ctx, "files", "")
	}
	return l.files(ctx, "files of "+source, `WHERE source = ?`, source)
}

// FilesByHash implements Ledger. The few files found are sorted here:
// asked for them in name order, SQLite walks every file of the source
// by its primary key rather than take the hash index, which made each
// file's pass cost O(the source's history).
func (l *ledger) FilesByHash(ctx context.Context, source, sha string) ([]File, error) {
	out, err := all(ctx, l, l.db, scanFile, `SELECT `+fileCols+` FROM {t}files WHERE source = ? AND sha256 = ?`, source, sha)
	if err != nil {
		return nil, fmt.Errorf("state: files by hash: %w", err)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// PutFile implements Ledger.
func (l *ledger) PutFile(ctx context.Context, owner string, f File) error {
	return l.putFile(ctx, "put", "", owner, f)
}

// PutFileAndRelease implements Ledger: PutFile and Release in one
// statement, so a file's last write costs one commit, not two.
func (l *ledger) PutFileAndRelease(ctx context.Context, owner string, f File) error {
	return l.putFile(ctx, "put and release", "owner = '', lease_until = 0, ", owner, f)
}

// putFile is PutFile's statement; also sets the columns of set.
func (l *ledger) putFile(ctx context.Context, what, set, owner string, f File) error {
	return l.fenced(ctx, what+" "+f.ID().String(), `UPDATE {t}files SET size = ?, mtime = ?, sha256 = ?, status = ?,
			skip_reason = ?, run = ?, rows = ?, n_created = ?, n_already = ?, n_invalid = ?, n_failed = ?,
			dispatch_mark = ?, location = ?, destination = ?, archived_to = ?, report_path = ?,
			started_at = ?, finished_at = ?, `+set+`updated_at = {now}
		WHERE `+ownedFile,
		f.Size, ns(f.ModTime), f.SHA256, string(f.Status), f.SkipReason, f.Run, f.Rows,
		f.Counts.Created, f.Counts.AlreadyRecorded, f.Counts.Invalid, f.Counts.Failed, f.DispatchMark,
		f.Location, f.Destination, f.ArchivedTo, f.ReportPath, ns(f.StartedAt), ns(f.FinishedAt),
		f.Source, f.Name, owner)
}

// SetMark implements Ledger.
func (l *ledger) SetMark(ctx context.Context, c Claim, mark int64) error {
	table, cond, args := held(c)
	return l.fenced(ctx, "dispatch mark "+c.String(), `UPDATE `+table+` SET dispatch_mark = ?, updated_at = {now} WHERE `+cond+live,
		append([]any{mark}, args...)...)
}

// RecordOutcomes implements Ledger. The fence share-locks the claimed row
// (the file's or the range's) on PostgreSQL, so a takeover (which must
// update that row) waits for the batch to commit and a worker whose lease
// has passed writes nothing.
func (l *ledger) RecordOutcomes(ctx context.Context, c Claim, outs []Outcome) error {
	table, cond, args := held(c)
	return l.record(ctx, c.File, `SELECT 1 FROM `+table+` WHERE `+cond+live+` {forShare}`, args, outs)
}

func (l *ledger) record(ctx context.Context, id FileID, fence string, fenceArgs []any, outs []Outcome) error {
	if len(outs) == 0 {
		return nil
	}
	held, err := l.write(ctx, id, fence, fenceArgs, outs)
	if err != nil {
		return fmt.Errorf("state: record rows of %s: %w", id, err)
	}
	if !held {
		return fmt.Errorf("state: record rows of %s: %w", id, ErrLeaseLost)
	}
	return nil
}

// Outcomes implements Ledger. Keys are looked up in chunks (dialect.chunk)
// so one call can cover a whole dispatch window.
func (l *ledger) Outcomes(ctx context.Context, id FileID, keys []string) (map[string]Outcome, error) {
	out := make(map[string]Outcome, len(keys))
	for len(keys) > 0 {
		n := l.d.chunk(len(keys))
		q, args := l.d.keyLookup(`SELECT `+outcomeCols+` FROM {t}row_outcomes WHERE source = ? AND filename = ?`,
			[]any{id.Source, id.Name}, keys[:n])
		keys = keys[n:]
		err := l.each(ctx, l.db, q, args, func(r scanner) error {
			o, err := scanOutcome(r)
			o.Source, o.Filename = id.Source, id.Name
			out[o.Key] = o
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("state: outcomes of %s: %w", id, err)
		}
	}
	return out, nil
}

// Recorded implements Ledger: the last outcomes and the contents kept
// when they were replaced (row_prints).
func (l *ledger) Recorded(ctx context.Context, id FileID, keys, fingerprints []string) (map[string]int64, error) {
	out := map[string]int64{}
	for len(keys) > 0 {
		n := l.d.chunk(len(keys))
		w, args := l.d.pairTable(keys[:n], fingerprints[:n])
		keys, fingerprints = keys[n:], fingerprints[n:]
		err := l.each(ctx, l.db, `WITH w(key, fp) AS (`+w+`)
			SELECT p.key, p.record_id FROM {t}row_prints p JOIN w ON p.key = w.key AND p.fingerprint = w.fp
			WHERE p.source = ? AND p.filename = ?
			UNION ALL
			SELECT o.key, o.record_id FROM {t}row_outcomes o JOIN w ON o.key = w.key AND o.fingerprint = w.fp
			WHERE o.source = ? AND o.filename = ? AND o.result IN ('created', 'already-recorded')`,
			append(args, id.Source, id.Name, id.Source, id.Name), func(r scanner) error {
				var k string
				var rec int64
				err := r.Scan(&k, &rec)
				out[k] = rec
				return err
			})
		if err != nil {
			return nil, fmt.Errorf("state: recorded rows of %s: %w", id, err)
		}
	}
	return out, nil
}

// RowCounts implements Ledger.
func (l *ledger) RowCounts(ctx context.Context, id FileID, run int64) (Counts, error) {
	var c Counts
	err := l.each(ctx, l.db, `SELECT result, COUNT(*) FROM {t}row_outcomes
		WHERE source = ? AND filename = ? AND (CAST(? AS BIGINT) = 0 OR run = ?) GROUP BY result`,
		[]any{id.Source, id.Name, run, run}, func(r scanner) error {
			var res string
			var n int64
			err := r.Scan(&res, &n)
			switch Result(res) {
			case Created:
				c.Created = n
			case AlreadyRecorded:
				c.AlreadyRecorded = n
			case Invalid:
				c.Invalid = n
			case FailedRow:
				c.Failed = n
			}
			return err
		})
	if err != nil {
		return Counts{}, fmt.Errorf("state: row counts of %s: %w", id, err)
	}
	return c, nil
}

// splitRows cuts rows 1..rows into ranges of at most size rows.
func splitRows(id FileID, run, rows, size, mark int64) []Range {
	var out []Range
	for first := int64(1); first <= rows; first += size {
		out = append(out, Range{Source: id.Source, Name: id.Name, Run: run, Index: len(out), First: first,
			Last: min(first+size-1, rows), DispatchMark: mark})
	}
	return out
}

const rangesSQL = `SELECT ` + rangeCols + ` FROM {t}ranges WHERE source = ? AND name = ? ORDER BY idx`

// SplitFile implements Ledger. The split is decided under the file's row
// lock (FOR UPDATE on PostgreSQL; SQLite's transactions are serial).
func (l *ledger) SplitFile(ctx context.Context, id FileID, owner string, size int64) ([]Range, error) {
	if size <= 0 {
		return nil, fmt.Errorf("state: split %s: range size %d", id, size)
	}
	var out []Range
	err := l.db.tx(ctx, func(c conn) error {
		var run, rows, mark, now int64
		err := l.row(ctx, c, `SELECT run, rows, dispatch_mark, {now} FROM {t}files WHERE `+ownedFile+` {forUpdate}`,
			id.Source, id.Name, owner).Scan(&run, &rows, &mark, &now)
		if isNoRows(err) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		existing, err := all(ctx, l, c, scanRange, rangesSQL, id.Source, id.Name)
		if err != nil {
			return err
		}
		if len(existing) > 0 && existing[0].Run == run {
			out = existing
			return nil
		}
		if _, err := l.exec(ctx, c, `DELETE FROM {t}ranges WHERE source = ? AND name = ?`, id.Source, id.Name); err != nil {
			return err
		}
		out = splitRows(id, run, rows, size, mark)
		for i := range out {
			g := &out[i]
			g.UpdatedAt = fromNS(now)
			if _, err := l.exec(ctx, c, `INSERT INTO {t}ranges (source, name, idx, run, first_row, last_row, dispatch_mark, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, id.Source, id.Name, g.Index, g.Run, g.First, g.Last, g.DispatchMark, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: split %s: %w", id, err)
	}
	return out, nil
}

// Ranges implements Ledger.
func (l *ledger) Ranges(ctx context.Context, id FileID) ([]Range, error) {
	out, err := all(ctx, l, l.db, scanRange, rangesSQL, id.Source, id.Name)
	if err != nil {
		return nil, fmt.Errorf("state: ranges of %s: %w", id, err)
	}
	return out, nil
}

// claimRangeSQL picks and takes a range in one statement. On PostgreSQL
// SKIP LOCKED lets racing claimants pass over each other's pick instead
// of queueing behind it, and the re-check of the locked row keeps two of
// them from ever taking the same range. The pick is a CTE so it is
// evaluated once: as a FROM subquery the planner may rescan it for every
// candidate row and take them all.
const claimRangeSQL = `WITH pick AS (
		SELECT idx AS pick_idx FROM {t}ranges
		WHERE source = ? AND name = ? AND run = ? AND done = FALSE
			AND (owner = '' OR owner = ? OR lease_until <= {now})
		ORDER BY owner = ? DESC, idx LIMIT 1 {skipLocked}
	)
	UPDATE {t}ranges SET owner = ?, lease_until = {now} + ?, updated_at = {now}
	FROM pick
	WHERE source = ? AND name = ? AND idx = pick.pick_idx
	RETURNING ` + rangeCols

// ClaimRange implements Ledger.
func (l *ledger) ClaimRange(ctx context.Context, id FileID, run int64, owner string, lease time.Duration) (Range, error) {
	if owner == "" {
		return Range{}, fmt.Errorf("state: claim a range of %s: empty owner", id)
	}
	g, err := scanRange(l.row(ctx, l.db, claimRangeSQL, id.Source, id.Name, run, owner, owner,
		owner, int64(lease), id.Source, id.Name))
	if isNoRows(err) {
		return Range{}, fmt.Errorf("state: claim a range of %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s: %w", id, err)
	}
	return g, nil
}
