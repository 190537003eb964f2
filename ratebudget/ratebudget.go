// Package ratebudget is one API rate budget shared by every worker replica
// that uses the same API credential, kept in PostgreSQL so that N replicas
// together never exceed the configured requests per second.
//
// The budget is a token bucket in one row (ihr_rate_budget: key, tokens,
// updated_at, rate, burst). A replica reserves a slice of tokens (default
// 5) in one UPDATE that refills the bucket by the time elapsed on the
// database's clock and subtracts the slice, letting the balance go
// negative. The balance it gets back says when each token of the slice
// falls due, and Wait hands them out at those instants: a debt is a queue
// position, so replicas line up behind each other instead of polling, and
// 25 req/s costs 25/slice round trips per second in total, not 25 per
// replica.
//
// Tokens are consumed when reserved, so everything that can go wrong
// (a replica dies holding a slice, a Wait is cancelled, a slice falls due
// while the replica is idle and is dropped) errs on the side of fewer
// requests, never more.
package ratebudget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config describes one shared budget.
type Config struct {
	// Credential identifies the API credential the budget belongs to,
	// e.g. the API URL plus the API key or OAuth client id. Only its
	// SHA-256 is stored (see Key); replicas with the same Credential
	// share one budget.
	Credential string
	// Rate is the budget in requests per second, all replicas together
	// (> 0).
	Rate float64
	// Burst is how many tokens an idle budget saves up (default Slice).
	// Requests that arrive at the server in a burst count against its
	// burst too, so keep it below the server's.
	Burst int
	// Slice is how many tokens one round trip reserves at most (default
	// 200 ms of Rate, between 1 and 100: 5 at 25 req/s): larger slices
	// mean fewer round trips, smaller ones fairer sharing and less waste
	// when a replica goes idle. A replica whose tokens go stale reserves
	// smaller slices (down to 1) until it uses them all again.
	Slice int
	// Grace is how long a reserved token stays usable after it fell due
	// (default 1 s); older ones are dropped rather than sent late in a
	// burst.
	Grace time.Duration
	// OpTimeout bounds each database round trip (default 10 s).
	OpTimeout time.Duration
}

// Limiter is one replica's handle on a shared budget. It satisfies
// apiclient.Limiter and is safe for concurrent use.
type Limiter struct {
	pool  *pgxpool.Pool
	owned bool // Open created pool; Close closes it
	key   string
	cfg   Config

	// sem is the lock on the fields below; a channel rather than a
	// sync.Mutex so a caller whose ctx ends stops waiting for it.
	sem chan struct{}
	// The current slice: token k (next..n) falls due at base + due(k).
	base    time.Time
	balance float64 // bucket balance right after the reservation
	rate    float64 // the budget's rate when reserved
	next, n int
	size    int // the next reservation's size: cfg.Slice, halved by waste
	trips   int64
}

// Key is the stored key of a credential: a SHA-256, so the secret never
// reaches the database.
func Key(credential string) string {
	h := sha256.Sum256([]byte("ihr-ratebudget\x00" + credential))
	return hex.EncodeToString(h[:])
}

// Open connects its own small pool to dsn (as a separate process would)
// and joins the budget.
func Open(ctx context.Context, dsn string, cfg Config) (*Limiter, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("ratebudget: invalid connection string") // pgx may echo the password
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pc.MaxConns = 2 // one reservation at a time per replica, plus slack
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("ratebudget: %s/%s: %w", pc.ConnConfig.Host, pc.ConnConfig.Database, err)
	}
	l, err := New(ctx, pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	l.owned = true
	return l, nil
}

// New joins the budget through an existing pool (e.g. the ledger's). It
// creates the table and the budget's row if needed; the rate and burst of
// the replica that joined last apply to all.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Limiter, error) {
	if cfg.Credential == "" {
		return nil, errors.New("ratebudget: empty credential")
	}
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		return nil, fmt.Errorf("ratebudget: rate %v must be a positive number of requests per second", cfg.Rate)
	}
	if cfg.Slice <= 0 {
		cfg.Slice = min(100, max(1, int(cfg.Rate/5)))
	}
	if cfg.Burst <= 0 {
		cfg.Burst = cfg.Slice
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	l := &Limiter{pool: pool, key: Key(cfg.Credential), cfg: cfg, sem: make(chan struct{}, 1), size: cfg.Slice}
	ctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Replicas starting together would race on CREATE TABLE IF NOT
		// EXISTS (unique violation in pg_type); the lock orders them.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(0x69687262)); err != nil { // "ihrb"
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS ihr_rate_budget (
			key TEXT PRIMARY KEY,
			tokens DOUBLE PRECISION NOT NULL,
			updated_at TIMESTAMPTZ NOT NULL,
			rate DOUBLE PRECISION NOT NULL,
			burst DOUBLE PRECISION NOT NULL)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO ihr_rate_budget (key, tokens, updated_at, rate, burst)
			VALUES ($1, $3, clock_timestamp(), $2, $3)
			ON CONFLICT (key) DO UPDATE SET rate = excluded.rate, burst = excluded.burst,
				tokens = LEAST(ihr_rate_budget.tokens, excluded.burst)`, l.key, cfg.Rate, float64(cfg.Burst))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ratebudget: join budget: %w", err)
	}
	return l, nil
}

// Close releases the pool Open created.
func (l *Limiter) Close() {
	if l.owned {
		l.pool.Close()
	}
}

// RoundTrips is how many reservations this replica made (for metrics and
// the benchmark).
func (l *Limiter) RoundTrips() int64 {
	l.sem <- struct{}{}
	defer func() { <-l.sem }()
	return l.trips
}

// reserveSQL refills by the time elapsed on the database clock and takes
// $2 tokens, in one atomic statement. statement_timestamp() can lag a
// concurrent writer's by the time spent waiting for the row lock, so
// updated_at never moves backwards and a negative elapsed refills nothing:
// the error is always toward fewer tokens.
const reserveSQL = `UPDATE ihr_rate_budget SET
		tokens = LEAST(burst, tokens + rate * GREATEST(0, EXTRACT(EPOCH FROM statement_timestamp() - updated_at)::float8)) - $2,
		updated_at = GREATEST(updated_at, statement_timestamp())
	WHERE key = $1
	RETURNING tokens, rate`

// Wait blocks until this replica may send one request, or ctx ends. A
// database error is retried with backoff until ctx ends, since the ledger
// shares the database and the worker cannot progress without it anyway.
func (l *Limiter) Wait(ctx context.Context) error {
	at, err := l.take(ctx)
	if err != nil {
		return err
	}
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err() // the token is spent: the budget errs low
	}
}

// take assigns the caller the next token of the current slice, reserving a
// new slice when it is used up or stale, and returns when it falls due.
func (l *Limiter) take(ctx context.Context) (time.Time, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	defer func() { <-l.sem }()
	now := time.Now()
	stale := false
	for l.next <= l.n {
		at := l.due(l.next)
		l.next++
		if now.Sub(at) <= l.cfg.Grace {
			return at, nil
		}
		stale = true
	}
	// A slice that went stale was too big for this replica's pace; one
	// whose last token was still fresh when the next was wanted may grow
	// back.
	if stale {
		l.size = max(1, l.size/2)
	} else if l.n > 0 && now.Sub(l.due(l.n)) <= l.cfg.Grace {
		l.size = min(l.cfg.Slice, 2*l.size)
	}
	backoff := 50 * time.Millisecond
	for {
		err := l.reserve(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("ratebudget: reserve: %w", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, fmt.Errorf("ratebudget: reserve: %w", err)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	at := l.due(1)
	l.next = 2
	return at, nil
}

// due is when token k of the slice is covered: the balance before the
// reservation was balance+n, so token k needs k-(balance+n) more tokens
// of refill.
func (l *Limiter) due(k int) time.Time {
	short := float64(k) - (l.balance + float64(l.n))
	if short <= 0 {
		return l.base
	}
	return l.base.Add(time.Duration(short / l.rate * float64(time.Second)))
}

func (l *Limiter) reserve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
	defer cancel()
	var balance, rate float64
	if err := l.pool.QueryRow(ctx, reserveSQL, l.key, float64(l.size)).Scan(&balance, &rate); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("budget row is missing")
		}
		return err
	}
	// The answer left the server at most one round trip ago, so counting
	// from its arrival only ever delays tokens.
	l.base, l.balance, l.rate, l.n, l.next = time.Now(), balance, rate, l.size, 1
	l.trips++
	return nil
}
