package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresOptions tune OpenPostgres.
type PostgresOptions struct {
	// Now is the clock for leases and timestamps. nil (production) means
	// the database server's clock, so replicas on hosts whose clocks
	// disagree still agree on when a lease expires.
	Now func() time.Time
	// MaxConns bounds the pool (default 8: one claim/heartbeat plus a
	// few concurrent outcome batches per worker).
	MaxConns int32
	// OpTimeout bounds every statement when ctx has no earlier deadline
	// (default 30 s), so a stalled network never hangs a worker.
	OpTimeout time.Duration
}

// Postgres is the ledger shared by several worker replicas. Unlike SQLite
// any number of processes may open it at once: claims are fenced by owner
// and lease in the same statement that writes, so two workers never hold
// the same file, and a dead worker's claim simply expires after its lease,
// after which another worker resumes from the file's dispatch mark and
// stored outcomes.
//
// Its tables are prefixed ihr_worker_ so it can share a database with
// ihr-api (or anything else).
type Postgres struct {
	pool    *pgxpool.Pool
	now     func() time.Time
	timeout time.Duration
	name    string // host/db for errors, never the password
}

// pgMigrations are applied in order under an advisory lock, so replicas
// starting together migrate once.
var pgMigrations = []string{
	// 1: files and row outcomes. Times are Unix nanoseconds, as in the
	// SQLite ledger: timestamptz would round File.ModTime to microseconds.
	`CREATE TABLE ihr_worker_files (
		source TEXT NOT NULL,
		name TEXT NOT NULL,
		size BIGINT NOT NULL DEFAULT 0,
		mtime BIGINT NOT NULL DEFAULT 0,
		sha256 TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL DEFAULT 'seen',
		skip_reason TEXT NOT NULL DEFAULT '',
		run BIGINT NOT NULL DEFAULT 0,
		rows BIGINT NOT NULL DEFAULT 0,
		n_created BIGINT NOT NULL DEFAULT 0,
		n_already BIGINT NOT NULL DEFAULT 0,
		n_invalid BIGINT NOT NULL DEFAULT 0,
		n_failed BIGINT NOT NULL DEFAULT 0,
		dispatch_mark BIGINT NOT NULL DEFAULT 0,
		location TEXT NOT NULL DEFAULT '',
		destination TEXT NOT NULL DEFAULT '',
		archived_to TEXT NOT NULL DEFAULT '',
		report_path TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL DEFAULT '',
		lease_until BIGINT NOT NULL DEFAULT 0,
		first_seen BIGINT NOT NULL DEFAULT 0,
		started_at BIGINT NOT NULL DEFAULT 0,
		finished_at BIGINT NOT NULL DEFAULT 0,
		updated_at BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (source, name)
	);
	CREATE INDEX ihr_worker_files_by_hash ON ihr_worker_files (source, sha256);
	CREATE TABLE ihr_worker_row_outcomes (
		source TEXT NOT NULL,
		filename TEXT NOT NULL,
		key TEXT NOT NULL,
		row BIGINT NOT NULL,
		run BIGINT NOT NULL,
		external_id TEXT NOT NULL DEFAULT '',
		document_type TEXT NOT NULL DEFAULT '',
		document_id TEXT NOT NULL DEFAULT '',
		action TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL,
		record_id BIGINT NOT NULL DEFAULT 0,
		http_status INTEGER NOT NULL DEFAULT 0,
		message TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (source, filename, key)
	);`,
	// 2: ranges of split files.
	`CREATE TABLE ihr_worker_ranges (
		source TEXT NOT NULL,
		name TEXT NOT NULL,
		idx INTEGER NOT NULL,
		run BIGINT NOT NULL,
		first_row BIGINT NOT NULL,
		last_row BIGINT NOT NULL,
		done BOOLEAN NOT NULL DEFAULT FALSE,
		dispatch_mark BIGINT NOT NULL DEFAULT 0,
		owner TEXT NOT NULL DEFAULT '',
		lease_until BIGINT NOT NULL DEFAULT 0,
		updated_at BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (source, name, idx)
	);`,
	// 3: row fingerprints; outcomes stored before have none (LegacyMatch).
	`ALTER TABLE ihr_worker_row_outcomes ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
	CREATE TABLE ihr_worker_row_prints (
		source TEXT NOT NULL,
		filename TEXT NOT NULL,
		key TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		record_id BIGINT NOT NULL,
		PRIMARY KEY (source, filename, key, fingerprint)
	);
	-- A recorded content that a later outcome of its key replaces is kept
	-- in ihr_worker_row_prints (Recorded); only content changes write.
	CREATE FUNCTION ihr_worker_keep_print() RETURNS trigger LANGUAGE plpgsql AS $$
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
		FOR EACH ROW EXECUTE FUNCTION ihr_worker_keep_print();`,
}

// pgMigrateLock is the advisory lock key migrations take ("ihrw").
const pgMigrateLock = 0x69687277

// OpenPostgres connects to the ledger at dsn (postgres://user@host/db?…)
// and brings its schema up to date.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx errors can echo the DSN, password included.
		return nil, errors.New("state: postgres: invalid connection string")
	}
	name := cfg.ConnConfig.Host + "/" + cfg.ConnConfig.Database
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	cfg.MaxConns = 8
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	p := &Postgres{now: opts.Now, timeout: opts.OpTimeout, name: name}
	if p.timeout <= 0 {
		p.timeout = 30 * time.Second
	}
	octx, cancel := p.op(ctx)
	defer cancel()
	p.pool, err = pgxpool.NewWithConfig(octx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: postgres %s: %w", name, err)
	}
	if err := p.migrate(octx); err != nil {
		p.pool.Close()
		return nil, err
	}
	return p, nil
}

func (p *Postgres) op(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= p.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.timeout)
}

func (p *Postgres) migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS ihr_worker_schema (version INTEGER NOT NULL)`); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version),0) FROM ihr_worker_schema`).Scan(&v); err != nil {
			return err
		}
		if v > len(pgMigrations) {
			return fmt.Errorf("schema version %d is newer than this worker (%d)", v, len(pgMigrations))
		}
		for i := v; i < len(pgMigrations); i++ {
			if _, err := tx.Exec(ctx, pgMigrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if v < len(pgMigrations) {
			if _, err := tx.Exec(ctx, `DELETE FROM ihr_worker_schema`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO ihr_worker_schema VALUES ($1)`, len(pgMigrations)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: postgres %s: migrate: %w", p.name, err)
	}
	return nil
}

// openPostgresLedger is Open's postgres:// case; it keeps a failed open
// from returning a non-nil Ledger holding a nil *Postgres.
func openPostgresLedger(ctx context.Context, dsn string) (Ledger, error) {
	p, err := OpenPostgres(ctx, dsn, PostgresOptions{})
	if err != nil {
		return nil, err
	}
	return pgNames{p}, nil
}

// Close closes the pool. Claims stay recorded and expire with their lease.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// nowArg is the $1 of every statement that reads the clock: the injected
// clock's nanoseconds, or NULL to use the server's (see pgNow).
func (p *Postgres) nowArg() any {
	if p.now == nil {
		return nil
	}
	return ns(p.now())
}

// pgNow is "now" in Unix nanoseconds inside a statement: $1 when given,
// else the server clock. statement_timestamp() is fixed for the statement,
// so every use in one statement agrees.
const pgNow = `COALESCE($1::bigint, (EXTRACT(EPOCH FROM statement_timestamp())*1000000000)::bigint)`

func pgSQL(q string) string { return strings.ReplaceAll(q, "{now}", pgNow) }

const pgFileCols = `source, name, size, mtime, sha256, status, skip_reason, run, rows,
	n_created, n_already, n_invalid, n_failed, dispatch_mark, location, destination,
	archived_to, report_path, owner, lease_until, first_seen, started_at, finished_at, updated_at`

// pgClaimSQL takes or creates the claim in one statement: the upsert locks
// the row, and under READ COMMITTED its WHERE is re-checked against the
// latest version, so of two racing claimants exactly one gets a row back.
var pgClaimSQL = pgSQL(`INSERT INTO ihr_worker_files (source, name, status, owner, lease_until, first_seen, updated_at)
	VALUES ($2, $3, 'claimed', $4, {now} + $5, {now}, {now})
	ON CONFLICT (source, name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until,
		updated_at = excluded.updated_at,
		status = CASE ihr_worker_files.status WHEN 'seen' THEN 'claimed' ELSE ihr_worker_files.status END
	WHERE ihr_worker_files.owner = '' OR ihr_worker_files.owner = excluded.owner
		OR ihr_worker_files.lease_until <= excluded.updated_at
	RETURNING ` + pgFileCols)

// Claim implements Ledger.
func (p *Postgres) Claim(ctx context.Context, source, name, owner string, lease time.Duration) (File, error) {
	if owner == "" {
		return File{}, fmt.Errorf("state: claim %s/%s: empty owner", source, name)
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	f, err := scanFile(p.pool.QueryRow(ctx, pgClaimSQL, p.nowArg(), source, name, owner, int64(lease)))
	if errors.Is(err, pgx.ErrNoRows) {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, ErrClaimed)
	}
	if err != nil {
		return File{}, fmt.Errorf("state: claim %s/%s: %w", source, name, err)
	}
	return f, nil
}

// pgOwned is the fencing condition of every owner-guarded write ($1 now,
// $2 source, $3 name, $4 owner).
const pgOwned = `source = $2 AND name = $3 AND owner = $4 AND owner <> '' AND lease_until > {now}`

var pgHeartbeatSQL = pgSQL(`UPDATE ihr_worker_files SET lease_until = {now} + $5 WHERE ` + pgOwned)

// Heartbeat implements Ledger.
func (p *Postgres) Heartbeat(ctx context.Context, source, name, owner string, lease time.Duration) error {
	ctx, cancel := p.op(ctx)
	defer cancel()
	tag, err := p.pool.Exec(ctx, pgHeartbeatSQL, p.nowArg(), source, name, owner, int64(lease))
	if err != nil {
		return fmt.Errorf("state: heartbeat %s/%s: %w", source, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: heartbeat %s/%s: %w", source, name, ErrLeaseLost)
	}
	return nil
}

// Release implements Ledger.
func (p *Postgres) Release(ctx context.Context, source, name, owner string) error {
	ctx, cancel := p.op(ctx)
	defer cancel()
	_, err := p.pool.Exec(ctx, `UPDATE ihr_worker_files SET owner = '', lease_until = 0
		WHERE source = $1 AND name = $2 AND owner = $3`, source, name, owner)
	if err != nil {
		return fmt.Errorf("state: release %s/%s: %w", source, name, err)
	}
	return nil
}

// File implements Ledger.
func (p *Postgres) File(ctx context.Context, source, name string) (File, error) {
	ctx, cancel := p.op(ctx)
	defer cancel()
	f, err := scanFile(p.pool.QueryRow(ctx, `SELECT `+pgFileCols+` FROM ihr_worker_files WHERE source = $1 AND name = $2`, source, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return File{}, fmt.Errorf("state: file %s/%s: %w", source, name, ErrNotFound)
	}
	if err != nil {
		return File{}, fmt.Errorf("state: file %s/%s: %w", source, name, err)
	}
	return f, nil
}

func (p *Postgres) queryFiles(ctx context.Context, what, where string, args ...any) ([]File, error) {
	ctx, cancel := p.op(ctx)
	defer cancel()
	// COLLATE "C": the same byte order as SQLite, whatever the database's
	// locale.
	rows, err := p.pool.Query(ctx, `SELECT `+pgFileCols+` FROM ihr_worker_files WHERE `+where+
		` ORDER BY source COLLATE "C", name COLLATE "C"`, args...)
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
func (p *Postgres) Files(ctx context.Context, source string) ([]File, error) {
	if source == "" {
		return p.queryFiles(ctx, "files", `TRUE`)
	}
	return p.queryFiles(ctx, "files of "+source, `source = $1`, source)
}

// FilesByHash implements Ledger.
func (p *Postgres) FilesByHash(ctx context.Context, source, sha string) ([]File, error) {
	return p.queryFiles(ctx, "files by hash", `source = $1 AND sha256 = $2`, source, sha)
}

var pgPutSQL = pgSQL(`UPDATE ihr_worker_files SET size = $5, mtime = $6, sha256 = $7, status = $8, skip_reason = $9,
		run = $10, rows = $11, n_created = $12, n_already = $13, n_invalid = $14, n_failed = $15,
		dispatch_mark = $16, location = $17, destination = $18, archived_to = $19, report_path = $20,
		started_at = $21, finished_at = $22, updated_at = {now}
	WHERE ` + pgOwned)

// PutFile implements Ledger.
func (p *Postgres) PutFile(ctx context.Context, owner string, f File) error {
	ctx, cancel := p.op(ctx)
	defer cancel()
	tag, err := p.pool.Exec(ctx, pgPutSQL, p.nowArg(), f.Source, f.Name, owner,
		f.Size, ns(f.ModTime), f.SHA256, string(f.Status), f.SkipReason, f.Run, f.Rows,
		f.Counts.Created, f.Counts.AlreadyRecorded, f.Counts.Invalid, f.Counts.Failed, f.DispatchMark,
		f.Location, f.Destination, f.ArchivedTo, f.ReportPath, ns(f.StartedAt), ns(f.FinishedAt))
	if err != nil {
		return fmt.Errorf("state: put %s/%s: %w", f.Source, f.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: put %s/%s: %w", f.Source, f.Name, ErrLeaseLost)
	}
	return nil
}

var pgMarkSQL = pgSQL(`UPDATE ihr_worker_files SET dispatch_mark = $5, updated_at = {now} WHERE ` + pgOwned)

// SetDispatchMark implements Ledger.
func (p *Postgres) SetDispatchMark(ctx context.Context, source, name, owner string, mark int64) error {
	ctx, cancel := p.op(ctx)
	defer cancel()
	tag, err := p.pool.Exec(ctx, pgMarkSQL, p.nowArg(), source, name, owner, mark)
	if err != nil {
		return fmt.Errorf("state: dispatch mark %s/%s: %w", source, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: dispatch mark %s/%s: %w", source, name, ErrLeaseLost)
	}
	return nil
}

// pgRecordSQL writes a whole batch in one statement and one round trip.
// The held CTE share-locks the file row while checking the claim, so a
// takeover (which must update that row) waits for this batch to commit
// and a worker whose lease has passed writes nothing.
var pgRecordSQL = pgRecordSQLFor(`SELECT 1 FROM ihr_worker_files WHERE ` + pgOwned + ` FOR SHARE`)

// pgRecordRangeSQL is pgRecordSQL fenced by a range's claim ($17 its
// index) instead of the file's.
var pgRecordRangeSQL = pgRecordSQLFor(`SELECT 1 FROM ihr_worker_ranges WHERE source = $2 AND name = $3 AND idx = $17
	AND owner = $4 AND owner <> '' AND lease_until > {now} FOR SHARE`)

func pgRecordSQLFor(held string) string {
	return pgSQL(`WITH held AS (
		` + held + `
	)
	INSERT INTO ihr_worker_row_outcomes AS o (source, filename, key, row, run, external_id,
		document_type, document_id, action, result, record_id, http_status, message, fingerprint, updated_at)
	SELECT $2::text, $3::text, u.*, {now}
	FROM unnest($5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[],
		$12::text[], $13::bigint[], $14::int[], $15::text[], $16::text[]) AS u
	WHERE EXISTS (SELECT 1 FROM held)
	ON CONFLICT (source, filename, key) DO UPDATE SET row = excluded.row, run = excluded.run,
		external_id = excluded.external_id, document_type = excluded.document_type,
		document_id = excluded.document_id, action = excluded.action, result = excluded.result,
		record_id = excluded.record_id, http_status = excluded.http_status, message = excluded.message,
		fingerprint = excluded.fingerprint, updated_at = excluded.updated_at`)
}

// RecordOutcomes implements Ledger.
func (p *Postgres) RecordOutcomes(ctx context.Context, source, name, owner string, outs []Outcome) error {
	return p.recordOutcomes(ctx, pgRecordSQL, source, name, owner, outs)
}

// RecordRangeOutcomes implements Ledger.
func (p *Postgres) RecordRangeOutcomes(ctx context.Context, source, name string, index int, owner string, outs []Outcome) error {
	return p.recordOutcomes(ctx, pgRecordRangeSQL, source, name, owner, outs, int32(index))
}

func (p *Postgres) recordOutcomes(ctx context.Context, q, source, name, owner string, outs []Outcome, extra ...any) error {
	if len(outs) == 0 {
		return nil
	}
	// One upsert may not touch a key twice; the last outcome of a key
	// wins, as with the row-by-row SQLite upsert.
	last := make(map[string]int, len(outs))
	for i, o := range outs {
		last[o.Key] = i
	}
	n := len(last)
	keys, exts, types, docs, actions, results, msgs := make([]string, 0, n), make([]string, 0, n),
		make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	fps := make([]string, 0, n)
	rowNs, runs, ids := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	statuses := make([]int32, 0, n)
	for i, o := range outs {
		if last[o.Key] != i {
			continue
		}
		keys, rowNs, runs, exts = append(keys, o.Key), append(rowNs, o.Row), append(runs, o.Run), append(exts, o.ExternalID)
		types, docs, actions = append(types, o.DocumentType), append(docs, o.DocumentID), append(actions, o.Action)
		results, ids = append(results, string(o.Result)), append(ids, o.RecordID)
		statuses, msgs = append(statuses, int32(o.HTTPStatus)), append(msgs, o.Message)
		fps = append(fps, o.Fingerprint)
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	args := append([]any{p.nowArg(), source, name, owner,
		keys, rowNs, runs, exts, types, docs, actions, results, ids, statuses, msgs, fps}, extra...)
	tag, err := p.pool.Exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: record rows of %s/%s: %w", source, name, ErrLeaseLost)
	}
	return nil
}

// Outcomes implements Ledger.
func (p *Postgres) Outcomes(ctx context.Context, source, filename string, keys []string) (map[string]Outcome, error) {
	out := make(map[string]Outcome, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT key, row, run, external_id, document_type, document_id, action,
			fingerprint, result, record_id, http_status, message, updated_at
		FROM ihr_worker_row_outcomes WHERE source = $1 AND filename = $2 AND key = ANY($3::text[])`,
		source, filename, keys)
	if err != nil {
		return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
	}
	defer rows.Close()
	for rows.Next() {
		o := Outcome{Source: source, Filename: filename}
		var result string
		var status int32
		var updated int64
		if err := rows.Scan(&o.Key, &o.Row, &o.Run, &o.ExternalID, &o.DocumentType, &o.DocumentID, &o.Action,
			&o.Fingerprint, &result, &o.RecordID, &status, &o.Message, &updated); err != nil {
			return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
		}
		o.Result, o.HTTPStatus, o.UpdatedAt = Result(result), int(status), fromNS(updated)
		out[o.Key] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
	}
	return out, nil
}

// Recorded implements Ledger: the last outcomes and the contents kept
// when they were replaced (ihr_worker_row_prints).
func (p *Postgres) Recorded(ctx context.Context, source, filename string, keys, fingerprints []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(keys) == 0 {
		return out, nil
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	rows, err := p.pool.Query(ctx, `WITH w AS (SELECT * FROM unnest($3::text[], $4::text[]) AS w(key, fp))
		SELECT r.key, r.record_id FROM ihr_worker_row_prints r JOIN w ON r.key = w.key AND r.fingerprint = w.fp
		WHERE r.source = $1 AND r.filename = $2
		UNION ALL
		SELECT o.key, o.record_id FROM ihr_worker_row_outcomes o JOIN w ON o.key = w.key AND o.fingerprint = w.fp
		WHERE o.source = $1 AND o.filename = $2 AND o.result IN ('created', 'already-recorded')`,
		source, filename, keys, fingerprints)
	if err != nil {
		return nil, fmt.Errorf("state: recorded rows of %s/%s: %w", source, filename, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var id int64
		if err := rows.Scan(&k, &id); err != nil {
			return nil, fmt.Errorf("state: recorded rows of %s/%s: %w", source, filename, err)
		}
		out[k] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: recorded rows of %s/%s: %w", source, filename, err)
	}
	return out, nil
}

// RowCounts implements Ledger.
func (p *Postgres) RowCounts(ctx context.Context, source, filename string, run int64) (Counts, error) {
	ctx, cancel := p.op(ctx)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT result, COUNT(*) FROM ihr_worker_row_outcomes
		WHERE source = $1 AND filename = $2 AND ($3::bigint = 0 OR run = $3) GROUP BY result`, source, filename, run)
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

const pgRangeCols = `source, name, run, idx, first_row, last_row, done, dispatch_mark, owner, lease_until, updated_at`

// pgRangeOwned fences writes to a range ($1 now, $2 source, $3 name, $4
// index, $5 owner).
const pgRangeOwned = `source = $2 AND name = $3 AND idx = $4 AND owner = $5 AND owner <> '' AND lease_until > {now}`

// SplitFile implements Ledger.
func (p *Postgres) SplitFile(ctx context.Context, source, name, owner string, size int64) ([]Range, error) {
	if size <= 0 {
		return nil, fmt.Errorf("state: split %s/%s: range size %d", source, name, size)
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	var out []Range
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var run, rows, mark, now int64
		// FOR UPDATE: the split is decided under the file's row lock.
		err := tx.QueryRow(ctx, pgSQL(`SELECT run, rows, dispatch_mark, {now} FROM ihr_worker_files WHERE `+pgOwned+` FOR UPDATE`),
			p.nowArg(), source, name, owner).Scan(&run, &rows, &mark, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		existing, err := p.queryRanges(ctx, tx, source, name)
		if err != nil {
			return err
		}
		if len(existing) > 0 && existing[0].Run == run {
			out = existing
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM ihr_worker_ranges WHERE source = $1 AND name = $2`, source, name); err != nil {
			return err
		}
		out = splitRows(source, name, run, rows, size, mark)
		for i := range out {
			g := &out[i]
			g.UpdatedAt = fromNS(now)
			if _, err := tx.Exec(ctx, `INSERT INTO ihr_worker_ranges (source, name, idx, run, first_row, last_row, dispatch_mark, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, source, name, int32(g.Index), g.Run, g.First, g.Last, g.DispatchMark, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: split %s/%s: %w", source, name, err)
	}
	return out, nil
}

func (p *Postgres) queryRanges(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, source, name string) ([]Range, error) {
	rows, err := q.Query(ctx, `SELECT `+pgRangeCols+` FROM ihr_worker_ranges WHERE source = $1 AND name = $2 ORDER BY idx`, source, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return collect(rows, scanPGRange)
}

func scanPGRange(r scanner) (Range, error) {
	var g Range
	var idx int32
	var lease, updated int64
	err := r.Scan(&g.Source, &g.Name, &g.Run, &idx, &g.First, &g.Last, &g.Done, &g.DispatchMark,
		&g.Owner, &lease, &updated)
	g.Index, g.LeaseUntil, g.UpdatedAt = int(idx), fromNS(lease), fromNS(updated)
	return g, err
}

// Ranges implements Ledger.
func (p *Postgres) Ranges(ctx context.Context, source, name string) ([]Range, error) {
	ctx, cancel := p.op(ctx)
	defer cancel()
	out, err := p.queryRanges(ctx, p.pool, source, name)
	if err != nil {
		return nil, fmt.Errorf("state: ranges of %s/%s: %w", source, name, err)
	}
	return out, nil
}

// pgClaimRangeSQL picks and takes a range in one statement. SKIP LOCKED
// lets racing claimants pass over each other's pick instead of queueing
// behind it, and the re-check of the locked row keeps two of them from
// ever taking the same range.
// The pick is a CTE so it is evaluated once: as a FROM subquery the
// planner may rescan it for every candidate row and take them all.
var pgClaimRangeSQL = pgSQL(`WITH pick AS (
		SELECT idx FROM ihr_worker_ranges
		WHERE source = $2 AND name = $3 AND run = $4 AND NOT done
			AND (owner = '' OR owner = $5 OR lease_until <= {now})
		ORDER BY owner = $5 DESC, idx LIMIT 1 FOR UPDATE SKIP LOCKED
	)
	UPDATE ihr_worker_ranges AS r SET owner = $5, lease_until = {now} + $6, updated_at = {now}
	FROM pick
	WHERE r.source = $2 AND r.name = $3 AND r.idx = pick.idx
	RETURNING r.source, r.name, r.run, r.idx, r.first_row, r.last_row, r.done, r.dispatch_mark, r.owner,
		r.lease_until, r.updated_at`)

// ClaimRange implements Ledger.
func (p *Postgres) ClaimRange(ctx context.Context, source, name string, run int64, owner string, lease time.Duration) (Range, error) {
	if owner == "" {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: empty owner", source, name)
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	g, err := scanPGRange(p.pool.QueryRow(ctx, pgClaimRangeSQL, p.nowArg(), source, name, run, owner, int64(lease)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, ErrNotFound)
	}
	if err != nil {
		return Range{}, fmt.Errorf("state: claim a range of %s/%s: %w", source, name, err)
	}
	return g, nil
}

func (p *Postgres) rangeExec(ctx context.Context, what, q, source, name string, index int, owner string, args ...any) error {
	ctx, cancel := p.op(ctx)
	defer cancel()
	tag, err := p.pool.Exec(ctx, q, append([]any{p.nowArg(), source, name, int32(index), owner}, args...)...)
	if err != nil {
		return fmt.Errorf("state: %s range %d of %s/%s: %w", what, index, source, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: %s range %d of %s/%s: %w", what, index, source, name, ErrLeaseLost)
	}
	return nil
}

var (
	pgHeartbeatRangeSQL = pgSQL(`UPDATE ihr_worker_ranges SET lease_until = {now} + $6 WHERE ` + pgRangeOwned)
	pgRangeMarkSQL      = pgSQL(`UPDATE ihr_worker_ranges SET dispatch_mark = $6, updated_at = {now} WHERE ` + pgRangeOwned)
	pgFinishRangeSQL    = pgSQL(`UPDATE ihr_worker_ranges SET done = TRUE, owner = '', lease_until = 0, updated_at = {now}
		WHERE ` + pgRangeOwned)
)

// HeartbeatRange implements Ledger.
func (p *Postgres) HeartbeatRange(ctx context.Context, source, name string, index int, owner string, lease time.Duration) error {
	return p.rangeExec(ctx, "heartbeat", pgHeartbeatRangeSQL, source, name, index, owner, int64(lease))
}

// SetRangeMark implements Ledger.
func (p *Postgres) SetRangeMark(ctx context.Context, source, name string, index int, owner string, mark int64) error {
	return p.rangeExec(ctx, "dispatch mark", pgRangeMarkSQL, source, name, index, owner, mark)
}

// ReleaseRange implements Ledger.
func (p *Postgres) ReleaseRange(ctx context.Context, source, name string, index int, owner string, done bool) error {
	if done {
		return p.rangeExec(ctx, "finish", pgFinishRangeSQL, source, name, index, owner)
	}
	ctx, cancel := p.op(ctx)
	defer cancel()
	_, err := p.pool.Exec(ctx, `UPDATE ihr_worker_ranges SET owner = '', lease_until = 0
		WHERE source = $1 AND name = $2 AND idx = $3 AND owner = $4`, source, name, int32(index), owner)
	if err != nil {
		return fmt.Errorf("state: release range %d of %s/%s: %w", index, source, name, err)
	}
	return nil
}

var _ Ledger = (*Postgres)(nil)
