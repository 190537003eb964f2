package state

import (
	"context"
	"strings"
	"sync"
)

// QuerySpy records the statements a SQLite ledger runs and the rows they
// return, so tests can count what a caller reads and check each
// statement's plan (EXPLAIN QUERY PLAN) with the arguments it ran with.
type QuerySpy struct {
	database
	s    *SQLite
	mu   sync.Mutex
	log  []spied
	rows int
}

type spied struct {
	q    string
	args []any
}

// Spy starts recording l's statements.
func Spy(l *SQLite) *QuerySpy {
	s := &QuerySpy{database: l.ledger.db, s: l}
	l.ledger.db = s
	return s
}

func (s *QuerySpy) note(q string, args []any) {
	s.mu.Lock()
	s.log = append(s.log, spied{q, args})
	s.mu.Unlock()
}

func (s *QuerySpy) query(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
	s.note(q, args)
	r, done, err := s.database.query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	return spiedRows{r, s}, done, nil
}

func (s *QuerySpy) row(ctx context.Context, q string, args ...any) scanner {
	s.note(q, args)
	return spiedRow{s.database.row(ctx, q, args...), s}
}

func (s *QuerySpy) exec(ctx context.Context, q string, args ...any) (int64, error) {
	s.note(q, args)
	return s.database.exec(ctx, q, args...)
}

type spiedRows struct {
	resultRows
	s *QuerySpy
}

func (r spiedRows) Next() bool {
	ok := r.resultRows.Next()
	if ok {
		r.s.mu.Lock()
		r.s.rows++
		r.s.mu.Unlock()
	}
	return ok
}

type spiedRow struct {
	scanner
	s *QuerySpy
}

func (r spiedRow) Scan(dest ...any) error {
	err := r.scanner.Scan(dest...)
	if err == nil {
		r.s.mu.Lock()
		r.s.rows++
		r.s.mu.Unlock()
	}
	return err
}

// Reset forgets what was recorded.
func (s *QuerySpy) Reset() {
	s.mu.Lock()
	s.log, s.rows = nil, 0
	s.mu.Unlock()
}

// Counts are the statements run and the rows they returned since Reset.
func (s *QuerySpy) Counts() (statements, rows int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log), s.rows
}

// Plans are the query plans of the statements recorded since Reset, one
// string per statement (its plan's lines joined by "; ").
func (s *QuerySpy) Plans(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	log := append([]spied(nil), s.log...)
	s.mu.Unlock()
	var out []string
	for _, x := range log {
		rows, err := s.s.handle.QueryContext(ctx, "EXPLAIN QUERY PLAN "+x.q, x.args...)
		if err != nil {
			return nil, err
		}
		var lines []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				rows.Close()
				return nil, err
			}
			lines = append(lines, detail)
		}
		rows.Close()
		out = append(out, strings.Join(lines, "; "))
	}
	return out, nil
}
