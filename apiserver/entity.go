package apiserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// entity is what the handlers of records, integrations and runs share:
// how a resource's rows are read, what each row owns in other tables and
// how a row is printed. Show, index and the write actions differ only in
// the work they do inside their transaction.
type entity[T any] struct {
	res    *resource // name is the root element; cols["id"] the primary key
	plural string    // root of an index in XML
	sel    string    // SELECT … FROM …, without WHERE
	scan   func(scanner) (*T, error)
	render func(*T) object
	// id, when set, lets return_object=limited answer without rendering
	// the whole row (the batch worker's creates ask for it).
	id func(*T) int64
	// children fills in what rows own in other tables (responses,
	// contacts), for all of xs in one query, and hands each row to each,
	// in the order of xs, as soon as its children are all read. each
	// returning true ends the query at that row; n counts the rows handed
	// over. nil when rows own nothing. See streamChildren.
	children func(ctx context.Context, d dialect, q querier, xs []*T, each func(*T) (stop bool)) (n int, err error)
}

// all is the each of a caller that takes every row.
func all[T any](*T) bool { return false }

type scanner interface{ Scan(...any) error }

func (e *entity[T]) root() string { return e.res.name }

// load reads one row with its children; errNotFound if there is none.
func (e *entity[T]) load(ctx context.Context, d dialect, q querier, id int64) (*T, error) {
	x, err := e.scan(q.QueryRowContext(ctx, d.q(e.sel+" WHERE "+e.res.cols["id"].sql+" = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err == nil && e.children != nil {
		_, err = e.children(ctx, d, q, []*T{x}, all[T])
	}
	if err != nil {
		return nil, err
	}
	return x, nil
}

// index is GET on the collection: Coupa's query syntax, then every
// matching row with its children, in a bounded number of queries
// whatever the page holds: one for the page's rows (small and bounded),
// one for the children of all of them. Children arrive in page order and
// each row is rendered as soon as its own are read, so memory holds one
// record's children and the encoded answer up to holdAt. The answer goes
// to the client only between queries, so a slow reader never holds a
// database connection (a slow-reading client would otherwise pin a reader
// of the small SQLite pool, and the WAL behind it). A page whose answer
// passes holdAt (records filled to the response caps) ends the children
// query at a row, sends what it has and reads the rest of the page's
// children in further queries, each for no more records than fitted in
// the one before (so heavy records are not read or sorted twice).
func (e *entity[T]) index(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(e.res, s.st.d, r.URL.Query())
		if err != nil {
			s.fail(w, r, e.root(), err)
			return
		}
		ctx := r.Context()
		text, args := q.sql(e.sel, e.res.cols["id"].sql)
		xs, err := queryAll(ctx, s.st.r, s.st.d.q(text), args, e.scan)
		if err != nil {
			s.fail(w, r, e.root(), err)
			return
		}
		lw := startList(w, r, e.plural, e.root(), len(xs), q.out)
		if lw == nil {
			return
		}
		put := func(x *T) bool {
			lw.put(e.render(x))
			return lw.b.Len() >= holdAt
		}
		for chunk := len(xs); len(xs) > 0; {
			n := len(xs)
			if e.children != nil {
				part := xs[:min(chunk, len(xs))]
				if n, err = e.children(ctx, s.st.d, s.st.r, part, put); err != nil {
					lw.abort(s, err)
				}
				if n < len(part) {
					// Heavy records: ask for no more of them at once
					// than fitted, so no query reads (or sorts) the
					// children of the whole rest of the page again.
					chunk = max(1, n)
				}
			} else {
				for _, x := range xs {
					put(x)
				}
			}
			clear(xs[:n]) // written: let them go
			xs = xs[n:]
			if err := lw.flush(); err != nil {
				lw.abort(s, err)
			}
		}
		if err := lw.end(); err != nil {
			lw.abort(s, err)
		}
	}
}

// holdAt bounds the encoded answer an index holds while its children
// query is open (see index).
const holdAt = 256 << 10

// show is GET /:id.
func (e *entity[T]) show(s *Server) http.HandlerFunc {
	return e.serve(s, byID, func(r *http.Request, id int64, _ map[string]any) (*T, error) {
		return e.load(r.Context(), s.st.d, s.st.r, id)
	})
}

// single is what a single-object route reads before its work runs, and
// the status it answers with.
type single struct {
	code     int
	id, body bool
}

var (
	byID         = single{code: http.StatusOK, id: true}             // show, resolve
	byIDWithBody = single{code: http.StatusOK, id: true, body: true} // update, run transitions
	creating     = single{code: http.StatusCreated, body: true}
)

// serve answers a single-object route. The output options are parsed
// first (a bad fields or return_object is a 400 before any work), then the
// path's {id} and the body where the route has them; act does the work
// and returns the row to print, or an error fail maps to a status.
func (e *entity[T]) serve(s *Server, how single, act func(r *http.Request, id int64, body map[string]any) (*T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := parseOutput(r.URL.Query())
		if err == nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			err = out.forRead()
		}
		var id int64
		if err == nil && how.id {
			id, err = pathID(r)
		}
		var body map[string]any
		if err == nil && how.body {
			body, err = s.readBody(w, r, e.root())
		}
		var x *T
		if err == nil {
			x, err = act(r, id, body)
		}
		if err != nil {
			s.fail(w, r, e.root(), err)
			return
		}
		var obj object
		if out.ret == "limited" && e.id != nil {
			// shape keeps the id (or, when fields leaves it out,
			// nothing) of a full rendering too.
			obj = object{{"id", e.id(x)}}
		} else {
			obj = e.render(x)
		}
		respond(w, r, how.code, e.root(), obj, out)
	}
}

// queryAll runs a SELECT and scans every row.
func queryAll[T any](ctx context.Context, q querier, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var xs []T
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return xs, rows.Err()
}

// streamChildren reads, in one query, the rows of a child table that
// belong to parents, and hands each parent to each, in the order of
// parents, once its children are attached. query selects the parent's id
// first and ends with the column it is compared to ("… WHERE
// record_id"); a parent's children come in id order and add attaches
// each. each returning true while the query is open ends it there: n is
// then how many parents were handed over, and the caller asks again for
// parents[n:]. Parents without children are handed over too. A query for
// several parents reads at most childRowsPerQuery rows; past that it ends
// before the parent it was reading, which the next call reads again.
func streamChildren[P, C any](ctx context.Context, d dialect, q querier, parents []*P, idOf func(*P) int64,
	query string, scan func(scanner) (parent int64, child C, err error), add func(*P, C), each func(*P) bool) (n int, err error) {
	if len(parents) == 0 {
		return 0, nil
	}
	args := make([]any, len(parents), 2*len(parents)+1)
	for i, p := range parents {
		args[i] = idOf(p)
	}
	text := query + " IN (?) ORDER BY id"
	limit := 0
	if len(parents) > 1 {
		col := query[strings.LastIndexByte(query, ' ')+1:]
		ascending := true
		for i := 1; i < len(parents) && ascending; i++ {
			ascending = idOf(parents[i-1]) < idOf(parents[i])
		}
		var b strings.Builder
		b.WriteString(query)
		b.WriteString(" IN (")
		b.WriteString(strings.TrimSuffix(strings.Repeat("?,", len(parents)), ","))
		if ascending {
			// Page order is the child index's order: no sort.
			b.WriteString(") ORDER BY " + col + ", id")
		} else {
			// Page order, which order_by may make anything but id
			// order. The LIMIT bounds what the engine holds to sort.
			b.WriteString(") ORDER BY CASE " + col)
			for i, p := range parents {
				fmt.Fprintf(&b, " WHEN ? THEN %d", i)
				args = append(args, idOf(p))
			}
			b.WriteString(" END, id")
		}
		b.WriteString(" LIMIT ?")
		limit = childRowsPerQuery
		args = append(args, limit)
		text = b.String()
	}
	rows, err := q.QueryContext(ctx, d.q(text), args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	// pending are the children of parents[n], attached once all are read.
	var pending []C
	read := 0
	for rows.Next() {
		pid, c, err := scan(rows)
		if err != nil {
			return n, err
		}
		read++
		for n < len(parents) && idOf(parents[n]) != pid {
			for _, c := range pending {
				add(parents[n], c)
			}
			pending = pending[:0]
			n++
			if each(parents[n-1]) {
				return n, nil
			}
		}
		if n == len(parents) {
			return n, fmt.Errorf("apiserver: child of %d out of page order", pid)
		}
		pending = append(pending, c)
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	rows.Close()
	if limit > 0 && read == limit {
		return n, nil // parents[n] may have more: read again
	}
	for ; n < len(parents); n++ {
		for _, c := range pending {
			add(parents[n], c)
		}
		pending = nil
		each(parents[n])
	}
	return n, nil
}

// childRowsPerQuery bounds the child rows one query for several parents
// reads; above MaxResponsesPerRecord, so one record's children always fit.
const childRowsPerQuery = 2 * MaxResponsesPerRecord

// updateByID runs UPDATE table SET sets WHERE id = ?; errNotFound when
// no row has id.
func updateByID(ctx context.Context, d dialect, tx *wtx, table, sets string, args []any, id int64) error {
	res, err := tx.ExecContext(ctx, d.q(`UPDATE `+table+` SET `+sets+` WHERE id = ?`), append(args, id)...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// by is the caller as the created_by/updated_by columns store it: NULL
// for what a principal lacks.
func (p principal) by() (sqlInt, sqlString) {
	return sqlInt{Int64: p.userID, Valid: p.userID != 0}, sqlString{String: p.login, Valid: p.login != ""}
}

// write runs fn as one unit of work and reads back, inside it, the row fn
// names: a write answers with what it committed.
func (e *entity[T]) write(ctx context.Context, s *Server, fn func(tx *wtx) (id int64, err error)) (*T, error) {
	var x *T
	err := s.st.tx(ctx, func(tx *wtx) error {
		id, err := fn(tx)
		if err == nil {
			x, err = e.load(ctx, s.st.d, tx, id)
		}
		return err
	})
	return x, err
}
