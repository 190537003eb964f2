package apiserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// store owns the database handles. SQLite gets one writer connection (the
// engine allows one writer anyway; queueing in Go is cheaper than
// SQLITE_BUSY retries) and a small pool of read-only connections that WAL
// lets run beside it. PostgreSQL uses one pool for both.
type store struct {
	d dialect
	w *sql.DB // every transaction that writes
	r *sql.DB // reads outside a write transaction
}

// openStore opens "sqlite:PATH" (also "sqlite://PATH" or a bare path) or a
// postgres:// / postgresql:// DSN and applies pending migrations.
func openStore(ctx context.Context, dsn string) (*store, error) {
	if dsn == "" {
		dsn = "sqlite:ihr-api.db"
	}
	var s *store
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("apiserver: open postgres: %w", err)
		}
		db.SetMaxOpenConns(32)
		db.SetMaxIdleConns(32)
		db.SetConnMaxIdleTime(5 * time.Minute)
		s = &store{d: dialect{pg: true}, w: db, r: db}
	default:
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
		if path == "" || path == ":memory:" {
			return nil, errors.New("apiserver: sqlite needs a file path (WAL readers and the writer share it)")
		}
		base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=cache_size(-65536)"
		w, err := sql.Open("sqlite", base+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("apiserver: open sqlite %s: %w", path, err)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("apiserver: open sqlite %s: %w", path, err)
		}
		n := max(2, runtime.GOMAXPROCS(0)*2)
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		r.SetConnMaxIdleTime(0)
		s = &store{d: dialect{}, w: w, r: r}
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.w.PingContext(pctx); err != nil {
		s.close()
		return nil, fmt.Errorf("apiserver: connect %s: %w", s.d, err)
	}
	if err := s.migrate(pctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *store) close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// tx runs fn in one write transaction: every API action is all-or-nothing.
func (s *store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// querier is what both *sql.DB and *sql.Tx offer, so the read helpers run
// inside a write transaction (to render what was just written) or outside.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
