package apiserver

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// An index page costs a fixed number of statements, whatever the page
// holds: one for the page's rows, one for all their children (responses,
// contacts), with every filter and ordering the query syntax allows. Each
// request's statements are counted below database/sql, at the driver, so
// nothing the server issues is missed. IHR_COUNT_RECORDS sets how many
// further records (without responses) the table holds besides the page's
// own (default 20,000; 1000000 for the figure at 1 M).
func TestIndexQueriesPerPage(t *testing.T) {
	extra := 20_000
	if v := os.Getenv("IHR_COUNT_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("IHR_COUNT_RECORDS=%q: %v", v, err)
		}
		extra = n
	}
	for _, eng := range []string{"sqlite", "postgres"} {
		t.Run(eng, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "count.db")
			if eng == "postgres" {
				dsn = testservers.StartPostgres(t).NewDatabase(t)
			}
			var n atomic.Int64
			const key = "count-key"
			srv, err := New(context.Background(), Config{DB: dsn, APIKeys: []string{key},
				wrapConn: func(c driver.Connector) driver.Connector { return countConnector{c, &n} }})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(srv.Handler())
			t.Cleanup(func() { hs.Close(); srv.Close() })
			call := func(method, path string, body any, accept string) (int, []byte, int64) {
				t.Helper()
				var rd io.Reader
				if body != nil {
					b, _ := json.Marshal(body)
					rd = bytes.NewReader(b)
				}
				req, _ := http.NewRequest(method, hs.URL+path, rd)
				req.Header.Set("X-COUPA-API-KEY", key)
				req.Header.Set("Content-Type", "application/json")
				if accept != "" {
					req.Header.Set("Accept", accept)
				}
				before := n.Load()
				res, err := hs.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				out, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				return res.StatusCode, out, n.Load() - before
			}

			// Bulk rows first, so the page's records are the newest ids.
			if extra > 0 {
				bulkRecords(t, srv.st, extra)
			}
			for _, code := range []string{"INT-A", "INT-B"} {
				if st, out, _ := call("POST", "/api/integrations", map[string]any{"code": code, "name": code + " name", "contacts": []any{
					map[string]any{"name": "Tech", "email": "t@x", "contact-alert-type": "Technical"},
					map[string]any{"name": "Func", "email": "f@x", "contact-alert-type": "Functional"},
				}}, ""); st != 201 {
					t.Fatalf("integration: %d %s", st, out)
				}
			}
			// 60 records, most with responses (0–3 each, so some parents
			// have none between others that have some).
			for i := range 60 {
				var resps []any
				for j := range i % 4 {
					resps = append(resps, map[string]any{"response-code": fmt.Sprintf("R%d", j), "response-message": fmt.Sprintf("msg %d.%d", i, j)})
				}
				status := "Success"
				if i%3 == 0 {
					status = "Error"
				}
				rec := map[string]any{"contact-alert-type": "Functional", "document-type": "InvoiceHeader", "document-id": 1000 + i%7,
					"external-id": fmt.Sprintf("Q-%02d", 59-i), "status": status, "responses": resps,
					"integration": map[string]any{"code": []string{"INT-A", "INT-B"}[i%2]}}
				if st, out, _ := call("POST", "/api/integration_history_records", rec, ""); st != 201 {
					t.Fatalf("record %d: %d %s", i, st, out)
				}
			}

			const maxQueries = 3
			ihr := "/api/integration_history_records"
			cases := []struct {
				query, accept string
				compare       bool // each item equals show of its id
				want          int  // items expected
			}{
				{"dir=desc", "", true, 50},
				{"limit=50&order_by=created_at&dir=desc", "", true, 50},
				{"external-id[starts_with]=Q-&order_by=external-id", "", true, 50},
				{"external-id[starts_with]=Q-&order_by=external-id&dir=desc&offset=5", "", true, 50},
				{"status=Error&external-id[starts_with]=Q-&order_by=updated-at&dir=desc", "", true, 20},
				{"responses[response-code]=R2&order_by=document-id", "", true, 15},
				{"integration[code]=INT-B&resolved=false&document-id[gt_or_eq]=1002", "", true, 0},
				{"document-type[in]=InvoiceHeader,ExpenseReport&external-id[contains]=q-&created-at[gt]=2000-01-01", "", true, 50},
				{"external-id[starts_with]=Q-&return_object=shallow", "", false, 50},
				{"external-id[starts_with]=Q-&" + url.Values{"fields": {`["id",{"responses":["response-code"]}]`}}.Encode(), "", false, 50},
				{"external-id[starts_with]=Q-&dir=desc", "application/xml", false, -1},
			}
			for _, c := range cases {
				st, out, q := call("GET", ihr+"?"+c.query, nil, c.accept)
				if st != 200 {
					t.Fatalf("%q: %d %.300s", c.query, st, out)
				}
				t.Logf("%s %q: %d statements", eng, c.query, q)
				if q > maxQueries {
					t.Errorf("%q: %d statements for one page, want at most %d", c.query, q, maxQueries)
				}
				if c.want < 0 {
					continue
				}
				var items []map[string]any
				if err := json.Unmarshal(out, &items); err != nil {
					t.Fatalf("%q: %v", c.query, err)
				}
				if c.want > 0 && len(items) != c.want {
					t.Fatalf("%q: %d items, want %d", c.query, len(items), c.want)
				}
				withResps := 0
				for _, it := range items {
					if rs, _ := it["responses"].([]any); len(rs) > 0 {
						withResps++
					}
					if !c.compare {
						continue
					}
					_, one, _ := call("GET", fmt.Sprintf("%s/%d", ihr, int64(it["id"].(float64))), nil, "")
					var want map[string]any
					json.Unmarshal(one, &want)
					if !reflect.DeepEqual(it, want) {
						t.Fatalf("%q: item %v differs from its show:\n%v\n%v", c.query, it["id"], it, want)
					}
				}
				if len(items) >= 20 && withResps < len(items)/2 {
					t.Fatalf("%q: only %d of %d items have responses; the page does not test children", c.query, withResps, len(items))
				}
			}
			st, out, q := call("GET", "/api/integrations?order_by=code&dir=desc", nil, "")
			t.Logf("%s integrations index: %d statements", eng, q)
			if st != 200 || !bytes.Contains(out, []byte(`"t@x"`)) {
				t.Fatalf("integrations index: %d %.300s", st, out)
			}
			if q > maxQueries {
				t.Errorf("integrations index: %d statements, want at most %d", q, maxQueries)
			}
		})
	}
}

// bulkRecords inserts n records straight through SQL: the point is the
// table's size, not how it was filled.
func bulkRecords(t *testing.T, st *store, n int) {
	t.Helper()
	start := time.Now()
	sel := `SELECT 'Functional', i, 'InvoiceHeader', 'BULK-' || i, 'file-' || (i / 1000) || '.csv', CASE WHEN i % 10 = 0 THEN 'Error' ELSE 'Success' END, 0, 1700000000 + i, 1700000000 + i, 'bulk', 'bulk'`
	q := `INSERT INTO integration_history_records (contact_alert_type, document_id, document_type, external_id, integration_filename, status, resolved, created_at, updated_at, created_by_login, updated_by_login) `
	if st.d.pg {
		q += sel + ` FROM generate_series(1, ` + strconv.Itoa(n) + `) AS i`
	} else {
		q = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ` + strconv.Itoa(n) + `) ` + q + sel + ` FROM n`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := st.w.ExecContext(ctx, q); err != nil {
		t.Fatalf("bulk load: %v", err)
	}
	if st.d.pg {
		st.w.ExecContext(ctx, `ANALYZE integration_history_records`)
	} else {
		st.w.ExecContext(ctx, `ANALYZE`)
	}
	t.Logf("bulk-loaded %d records in %v", n, time.Since(start).Round(time.Millisecond))
}

// countConnector counts every statement its connections execute, whether
// sent directly or through a prepared statement. Everything else passes
// through to the real driver, so the server behaves as it does unwrapped.
type countConnector struct {
	c driver.Connector
	n *atomic.Int64
}

func (c countConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.c.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countConn{conn, c.n}, nil
}

func (c countConnector) Driver() driver.Driver { return c.c.Driver() }

type countConn struct {
	driver.Conn
	n *atomic.Int64
}

func (c *countConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	qc, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := qc.QueryContext(ctx, q, args)
	if err != driver.ErrSkip {
		c.n.Add(1)
	}
	return rows, err
}

func (c *countConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	ec, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := ec.ExecContext(ctx, q, args)
	if err != driver.ErrSkip {
		c.n.Add(1)
	}
	return res, err
}

func (c *countConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if pc, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = pc.PrepareContext(ctx, q)
	} else {
		st, err = c.Conn.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	return &countStmt{st, c.n}, nil
}

func (c *countConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *countConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if bc, ok := c.Conn.(driver.ConnBeginTx); ok {
		return bc.BeginTx(ctx, opts)
	}
	return c.Conn.Begin() //nolint:staticcheck // the fallback database/sql itself uses
}

func (c *countConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *countConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *countConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *countConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type countStmt struct {
	driver.Stmt
	n *atomic.Int64
}

func (s *countStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.n.Add(1)
	if ec, ok := s.Stmt.(driver.StmtExecContext); ok {
		return ec.ExecContext(ctx, args)
	}
	return s.Stmt.Exec(values(args)) //nolint:staticcheck // the fallback database/sql itself uses
}

func (s *countStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.n.Add(1)
	if qc, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return qc.QueryContext(ctx, args)
	}
	return s.Stmt.Query(values(args)) //nolint:staticcheck // the fallback database/sql itself uses
}

func (s *countStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func values(args []driver.NamedValue) []driver.Value {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		out[i] = a.Value
	}
	return out
}

// A children query ended early (the answer passed holdAt) resumes where
// it stopped: every parent is handed over once, in page order, with all
// of its children and only its own.
func TestStreamChildrenResumes(t *testing.T) {
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	want := map[int64][]string{}
	for i := range 12 {
		var id int64
		if err := st.w.QueryRowContext(ctx, `INSERT INTO integration_history_records (document_type, created_at, updated_at) VALUES ('InvoiceHeader', 0, 0) RETURNING id`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		for j := range (i * 5) % 4 {
			code := fmt.Sprintf("%d.%d", id, j)
			if _, err := st.w.ExecContext(ctx, `INSERT INTO record_responses (record_id, response_code, created_at, updated_at) VALUES (?, ?, 0, 0)`, id, code); err != nil {
				t.Fatal(err)
			}
			want[id] = append(want[id], code)
		}
	}
	for _, order := range [][]int64{
		{7, 3, 12, 1, 2, 9, 11, 4, 5, 10, 8, 6}, // an order_by other than id
		{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, // id order: no sort
	} {
		streamInOrder(t, st, order, want)
	}
}

func streamInOrder(t *testing.T, st *store, order []int64, want map[int64][]string) {
	ctx := context.Background()
	var page []*recordRow
	for _, id := range order {
		page = append(page, &recordRow{ID: id})
	}
	for stopEvery := 1; stopEvery <= 13; stopEvery++ {
		xs := make([]*recordRow, len(page))
		for i, p := range page {
			xs[i] = &recordRow{ID: p.ID}
		}
		var got []int64
		queries := 0
		for rest := xs; len(rest) > 0; {
			n, err := records.children(ctx, st.d, st.r, rest, func(x *recordRow) bool {
				got = append(got, x.ID)
				return len(got)%stopEvery == 0
			})
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("no progress")
			}
			rest = rest[n:]
			queries++
		}
		for i, x := range xs {
			if got[i] != x.ID {
				t.Fatalf("stop every %d: handed over %v, want page order", stopEvery, got)
			}
			var codes []string
			for _, r := range x.Responses {
				codes = append(codes, r.Code.String)
			}
			if !reflect.DeepEqual(codes, want[x.ID]) {
				t.Fatalf("stop every %d: record %d has %v, want %v", stopEvery, x.ID, codes, want[x.ID])
			}
		}
		if len(got) != len(xs) {
			t.Fatalf("stop every %d: %d handed over, want %d", stopEvery, len(got), len(xs))
		}
		if stopEvery == 13 && queries != 1 {
			t.Fatalf("never stopped, yet %d queries", queries)
		}
	}
}

// Past childRowsPerQuery rows a query ends before the parent it was
// reading; the next reads that parent again, so none is cut short.
func TestStreamChildrenRowBound(t *testing.T) {
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite:"+filepath.Join(t.TempDir(), "b.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	tx, err := st.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int{}
	for i := range 6 {
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO integration_history_records (document_type, created_at, updated_at) VALUES ('InvoiceHeader', 0, 0) RETURNING id`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		n := []int{MaxResponsesPerRecord, 3, MaxResponsesPerRecord, MaxResponsesPerRecord - 1, 0, 7}[i]
		for j := range n {
			if _, err := tx.ExecContext(ctx, `INSERT INTO record_responses (record_id, response_code, created_at, updated_at) VALUES (?, ?, 0, 0)`, id, strconv.Itoa(j)); err != nil {
				t.Fatal(err)
			}
		}
		want[id] = n
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]int64{{1, 2, 3, 4, 5, 6}, {6, 4, 3, 1, 2, 5}} {
		xs := make([]*recordRow, len(order))
		for i, id := range order {
			xs[i] = &recordRow{ID: id}
		}
		var got []int64
		queries := 0
		for rest := xs; len(rest) > 0; queries++ {
			n, err := records.children(ctx, st.d, st.r, rest, func(x *recordRow) bool {
				got = append(got, x.ID)
				return false
			})
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("no progress")
			}
			rest = rest[n:]
		}
		if !reflect.DeepEqual(got, order) {
			t.Fatalf("handed over %v, want %v", got, order)
		}
		for _, x := range xs {
			if len(x.Responses) != want[x.ID] {
				t.Fatalf("order %v: record %d has %d responses, want %d", order, x.ID, len(x.Responses), want[x.ID])
			}
			for j, r := range x.Responses {
				if r.Code.String != strconv.Itoa(j) {
					t.Fatalf("record %d: response %d is %q", x.ID, j, r.Code.String)
				}
			}
		}
		if queries < 2 {
			t.Fatalf("order %v: %d query for %d child rows, want the row bound to split it", order, queries, 3*MaxResponsesPerRecord+9)
		}
		t.Logf("order %v: %d queries", order, queries)
	}
}
