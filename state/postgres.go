package state

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	ledger
	pool    *pgxpool.Pool
	now     func() time.Time
	timeout time.Duration
	name    string // host/db for errors, never the password
}

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
		p.timeout = DefaultOpTimeout
	}
	p.ledger = ledger{d: pgDialect, db: pgDB{p}, nowArg: p.clock, write: p.write}
	octx, cancel := opContext(ctx, p.timeout)
	defer cancel()
	p.pool, err = pgxpool.NewWithConfig(octx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: postgres %s: %w", name, err)
	}
	if err := p.migrate(octx, "postgres "+name); err != nil {
		p.pool.Close()
		return nil, err
	}
	return p, nil
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

// clock is the value of {now}: the injected clock's nanoseconds, or NULL
// to use the server's.
func (p *Postgres) clock() any {
	if p.now == nil {
		return nil
	}
	return ns(p.now())
}

// write is the PostgreSQL ledger's batch writer: the whole batch in one
// statement and one round trip, the rows bound as arrays. The fence is a
// CTE, so a batch whose claim is not held inserts nothing.
func (p *Postgres) write(ctx context.Context, id FileID, fence string, fenceArgs []any, outs []Outcome) (bool, error) {
	// One upsert may not touch a key twice; the last outcome of a key
	// wins, as with SQLite's row-by-row upsert.
	last := make(map[string]int, len(outs))
	for i, o := range outs {
		last[o.Key] = i
	}
	n := len(last)
	keys, exts, types, docs, actions, fps, results, msgs := make([]string, 0, n), make([]string, 0, n),
		make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
		make([]string, 0, n), make([]string, 0, n)
	rowNs, runs, ids := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	statuses := make([]int32, 0, n)
	for i, o := range outs {
		if last[o.Key] != i {
			continue
		}
		keys, rowNs, runs, exts = append(keys, o.Key), append(rowNs, o.Row), append(runs, o.Run), append(exts, storedExternalID(o.Key, o.ExternalID))
		types, docs, actions = append(types, o.DocumentType), append(docs, o.DocumentID), append(actions, o.Action)
		fps, results, ids = append(fps, o.Fingerprint), append(results, string(o.Result)), append(ids, o.RecordID)
		statuses, msgs = append(statuses, int32(o.HTTPStatus)), append(msgs, o.Message)
	}
	q, args := p.stmt(`WITH held AS (`+fence+`)
		`+outcomeInsert+`
		SELECT ?::text, ?::text, u.*, {now}
		FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[],
			?::text[], ?::text[], ?::bigint[], ?::int[], ?::text[]) AS u
		WHERE EXISTS (SELECT 1 FROM held)
		`+outcomeUpsert, append(fenceArgs, id.Source, id.Name,
		keys, rowNs, runs, exts, types, docs, actions, fps, results, ids, statuses, msgs))
	n64, err := p.db.exec(ctx, q, args...)
	return n64 > 0, err
}

var _ Ledger = (*Postgres)(nil)
