package apiserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

	// SQLite only: the writer goroutine and its queue.
	units     chan *unit
	stop      chan struct{}
	loopDone  chan struct{}
	syncDone  chan struct{}
	wal       string          // the WAL file's path
	stmts     sync.Map        // query → *sql.Stmt on w
	toPrepare map[string]bool // owned by the writer goroutine
	// batches and units count group commits, for tests and tuning.
	nBatches, nUnits atomic.Int64
	closeOnce        sync.Once
}

// openStore opens "sqlite:PATH" (also "sqlite://PATH" or a bare path) or a
// postgres:// / postgresql:// DSN and applies pending migrations. wrap,
// when not nil, wraps every connection's connector (tests count the
// statements a request issues with it).
func openStore(ctx context.Context, dsn string, wrap func(driver.Connector) driver.Connector) (*store, error) {
	if dsn == "" {
		dsn = "sqlite:ihr-api.db"
	}
	var s *store
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := openDB("pgx", dsn, wrap)
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
		// cache_size is per connection: 16 MiB each for the writer and up
		// to 2×GOMAXPROCS readers. At 64 MiB the caches alone let ihr-api
		// reach 150 MiB serving one index page of big records; the OS page
		// cache keeps the file warm either way.
		base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=cache_size(-16384)"
		// The writer checkpoints when the WAL passes walCheckpointPages:
		// each checkpoint fsyncs twice while holding the only writer, and
		// the default (1,000 pages) did so every ~200 creates.
		w, err := openDB("sqlite", base+"&_txlock=immediate&_pragma=wal_autocheckpoint("+strconv.Itoa(walCheckpointPages)+")", wrap)
		if err != nil {
			return nil, fmt.Errorf("apiserver: open sqlite %s: %w", path, err)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		r, err := openDB("sqlite", base+"&_pragma=query_only(1)", wrap)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("apiserver: open sqlite %s: %w", path, err)
		}
		n := max(2, runtime.GOMAXPROCS(0)*2)
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		r.SetConnMaxIdleTime(0)
		s = &store{d: dialect{}, w: w, r: r, wal: path + "-wal"}
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
	if !s.d.pg {
		s.units = make(chan *unit, maxBatch)
		s.stop = make(chan struct{})
		s.loopDone = make(chan struct{})
		s.toPrepare = map[string]bool{}
		s.syncDone = make(chan struct{})
		go s.writeLoop()
		go s.syncLoop()
	}
	return s, nil
}

// openDB is sql.Open, through wrap when there is one.
func openDB(name, dsn string, wrap func(driver.Connector) driver.Connector) (*sql.DB, error) {
	db, err := sql.Open(name, dsn)
	if err != nil || wrap == nil {
		return db, err
	}
	drv := db.Driver()
	db.Close()
	var c driver.Connector = dsnConnector{dsn, drv}
	if dc, ok := drv.(driver.DriverContext); ok {
		if c, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	}
	return sql.OpenDB(wrap(c)), nil
}

type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

func (s *store) close() error {
	if s.stop != nil {
		s.closeOnce.Do(func() { close(s.stop) })
		<-s.loopDone
		<-s.syncDone
	}
	s.stmts.Range(func(_, v any) bool {
		v.(*sql.Stmt).Close()
		return true
	})
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// txDirect runs fn in one transaction of its own, outside the batcher
// (migrations, before the writer starts).
func (s *store) txDirect(ctx context.Context, fn func(*sql.Tx) error) error {
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

// tx runs fn as one all-or-nothing unit of work. On PostgreSQL that is a
// transaction of its own. On SQLite, where one writer at a time is the
// rule and the commit (a WAL append) is the cost, units queued together
// share one transaction, each inside its own SAVEPOINT: a unit that fails
// is rolled back to its savepoint alone, and nobody is answered before the
// shared COMMIT succeeds. So every call keeps its own atomicity (group
// commit), and the writer commits once per batch instead of once per call.
func (s *store) tx(ctx context.Context, fn func(*wtx) error) error {
	if s.d.pg {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(&wtx{tx: tx, st: s}); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	u := &unit{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.units <- u:
	case <-s.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-u.done:
		return err
	case <-ctx.Done():
		// The writer is held up (another process has the database
		// locked): the unit may still run or be skipped, so the answer
		// is a 503, which clients follow with a lookup, not a refusal.
		return ctx.Err()
	case <-s.loopDone:
		// Closed with u still queued: it never ran.
		select {
		case err := <-u.done:
			return err
		default:
			return errClosed
		}
	}
}

var errClosed = errors.New("apiserver: server closed")

// maxBatch bounds one group commit, so a burst cannot hold the write lock
// (and every waiting caller) for long.
const maxBatch = 128

// maxYields bounds how long a batch waits for callers to join it. (A
// timed join window, 50 µs a caller up to 500 µs, made more creates share
// a commit on a loaded machine but cost a third of the throughput on a
// quiet one: BENCHMARKS.md, "ihr-api".)
const maxYields = 8

type unit struct {
	ctx  context.Context
	fn   func(*wtx) error
	done chan error
	err  error
}

// walCheckpointPages is the WAL size (in 4 KiB pages: 16 MiB) at which
// the writer copies it back into the database.
const walCheckpointPages = 4096

// walSyncEvery bounds what an OS crash or power loss can take from
// SQLite (see syncLoop).
const walSyncEvery = 200 * time.Millisecond

// syncLoop makes answered writes durable against power loss within
// walSyncEvery. With synchronous=NORMAL a COMMIT reaches the WAL file
// (the OS's cache: a crash of this process loses nothing answered) but
// is fsynced only at the next checkpoint; an fsync per commit (FULL)
// would cost ~2 ms per group commit on the writer's path here. This
// goroutine fsyncs the WAL through a descriptor of its own instead,
// beside the writer, never holding it up. close waits for it.
func (s *store) syncLoop() {
	defer close(s.syncDone)
	t := time.NewTicker(walSyncEvery)
	defer t.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Sync()
			f.Close()
		}
	}()
	var synced int64
	for {
		select {
		case <-s.stop:
			<-s.loopDone // the last batch, then the deferred sync
			return
		case <-t.C:
		}
		n := s.nBatches.Load()
		if n == synced {
			continue
		}
		if f == nil {
			var err error
			if f, err = os.Open(s.wal); err != nil {
				continue // not written yet
			}
		}
		if f.Sync() == nil {
			synced = n
		}
	}
}

// writeLoop is the SQLite writer goroutine; close waits for it.
func (s *store) writeLoop() {
	defer close(s.loopDone)
	batch := make([]*unit, 0, maxBatch)
	for {
		select {
		case <-s.stop:
			return
		case u := <-s.units:
			batch = append(batch[:0], u)
		}
		// Let callers that are a moment behind join this commit: a
		// yield costs microseconds, a commit costs a WAL append. Yield
		// again while yielding brings more, so every request this
		// process is already working on joins; a yield that brings none
		// ends the wait, so a lone caller waits for one yield only.
		for range maxYields {
			runtime.Gosched()
			before := len(batch)
		fill:
			for len(batch) < maxBatch {
				select {
				case u := <-s.units:
					batch = append(batch, u)
				default:
					break fill
				}
			}
			if len(batch) == before || len(batch) == maxBatch {
				break
			}
		}
		s.runBatch(batch)
		s.nBatches.Add(1)
		s.nUnits.Add(int64(len(batch)))
		for _, u := range batch {
			u.done <- u.err
		}
		for q := range s.toPrepare {
			if st, err := s.w.PrepareContext(context.Background(), q); err == nil {
				s.stmts.Store(q, st)
			}
			delete(s.toPrepare, q)
		}
	}
}

func (s *store) runBatch(batch []*unit) {
	// The batch outlives any one request; each unit's queries still use
	// its own context, so a caller that goes away only loses its unit.
	tx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		for _, u := range batch {
			u.err = err
		}
		return
	}
	w := &wtx{tx: tx, st: s, batch: context.Background()}
	single := len(batch) == 1
	var ok []*unit
	for _, u := range batch {
		if err := u.ctx.Err(); err != nil {
			u.err = err
			continue
		}
		if !single {
			if _, err := w.ExecContext(w.batch, "SAVEPOINT unit"); err != nil {
				s.abort(tx, batch, err)
				return
			}
		}
		u.err = runUnit(u, w)
		switch {
		case u.err == nil:
			ok = append(ok, u)
			if !single {
				if _, err := w.ExecContext(w.batch, "RELEASE unit"); err != nil {
					s.abort(tx, batch, err)
					return
				}
			}
		case single:
			tx.Rollback()
			return
		default:
			if _, err := w.ExecContext(w.batch, "ROLLBACK TO unit"); err != nil {
				s.abort(tx, batch, err)
				return
			}
			if _, err := w.ExecContext(w.batch, "RELEASE unit"); err != nil {
				s.abort(tx, batch, err)
				return
			}
		}
	}
	if err := tx.Commit(); err != nil {
		for _, u := range ok {
			u.err = err
		}
	}
}

// abort gives up the whole batch: nothing of it is written.
func (s *store) abort(tx *sql.Tx, batch []*unit, err error) {
	tx.Rollback()
	for _, u := range batch {
		if u.err == nil {
			u.err = fmt.Errorf("apiserver: write batch aborted: %w", err)
		}
	}
}

func runUnit(u *unit, w *wtx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("apiserver: panic in write: %v", v)
		}
	}()
	return u.fn(w)
}

// wtx is a write transaction. On SQLite its statements are prepared once
// per connection and reused, which halves the cost of a small insert.
type wtx struct {
	tx *sql.Tx
	st *store
	// batch, when set, replaces the caller's context: a cancelled request
	// must not interrupt the shared SQLite connection mid-batch (an
	// interrupt is connection-wide). Units are checked for cancellation
	// before they start and are short once started.
	batch context.Context
	// bound holds the cached statements already bound to tx: binding
	// allocates, and a batch runs the same few statements per unit.
	bound map[*sql.Stmt]*sql.Stmt
}

func (w *wtx) ctx(ctx context.Context) context.Context {
	if w.batch != nil {
		return w.batch
	}
	return ctx
}

// stmt returns the cached statement for query, bound to tx. A miss runs
// unprepared this time and queues query for the writer to prepare
// between batches: preparing on the DB inside a transaction would wait
// for the one connection the transaction holds.
func (w *wtx) stmt(ctx context.Context, query string) *sql.Stmt {
	if v, ok := w.st.stmts.Load(query); ok {
		// ctx is the batch's own here (stmt is SQLite's, where every
		// write runs in a batch), so a binding outlives no caller.
		db := v.(*sql.Stmt)
		if st, ok := w.bound[db]; ok {
			return st
		}
		st := w.tx.StmtContext(ctx, db)
		if w.bound == nil {
			w.bound = make(map[*sql.Stmt]*sql.Stmt, 4)
		}
		w.bound[db] = st
		return st
	}
	if w.st.toPrepare != nil {
		w.st.toPrepare[query] = true
	}
	return nil
}

// cacheable keeps IN lists of more than one id, whose text varies with
// their length, out of the statement cache.
func (w *wtx) cacheable(query string) bool {
	return !w.st.d.pg && !strings.Contains(query, "?,?")
}

func (w *wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = w.ctx(ctx)
	if w.cacheable(query) {
		if st := w.stmt(ctx, query); st != nil {
			return st.ExecContext(ctx, args...)
		}
	}
	return w.tx.ExecContext(ctx, query, args...)
}

func (w *wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = w.ctx(ctx)
	if w.cacheable(query) {
		if st := w.stmt(ctx, query); st != nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return w.tx.QueryContext(ctx, query, args...)
}

func (w *wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = w.ctx(ctx)
	if w.cacheable(query) {
		if st := w.stmt(ctx, query); st != nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return w.tx.QueryRowContext(ctx, query, args...)
}

// insert runs an INSERT of one row and returns its id. SQLite reports it
// as the last insert rowid; RETURNING there would buffer the returned row
// in a temporary table, which costs the hot create path more than the
// insert's own b-tree work on some tables. PostgreSQL needs RETURNING.
func (w *wtx) insert(ctx context.Context, query string, args ...any) (int64, error) {
	var id int64
	if w.st.d.pg {
		err := w.QueryRowContext(ctx, w.st.d.q(query+" RETURNING id"), args...).Scan(&id)
		return id, err
	}
	res, err := w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// querier is what both *sql.DB and *sql.Tx offer, so the read helpers run
// inside a write transaction (to render what was just written) or outside.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
