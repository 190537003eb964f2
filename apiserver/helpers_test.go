package apiserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// backends runs fn against SQLite and against a real PostgreSQL.
func backends(t *testing.T, fn func(t *testing.T, c *client), opts ...apitest.Option) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newClient(t, apitest.Start(t, opts...)))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := testservers.StartPostgres(t).NewDatabase(t)
		fn(t, newClient(t, apitest.Start(t, append([]apitest.Option{apitest.WithPostgres(dsn)}, opts...)...)))
	})
}

type client struct {
	t  *testing.T
	ts *apitest.Server
	hc *http.Client
	// auth sets the credential on each request; default the API key.
	auth func(*http.Request)
}

func newClient(t *testing.T, ts *apitest.Server) *client {
	c := &client{t: t, ts: ts, hc: &http.Client{Timeout: 30 * time.Second}}
	c.auth = func(r *http.Request) { r.Header.Set("X-COUPA-API-KEY", ts.APIKey) }
	return c
}

type resp struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r resp) String() string { return string(r.Body) }

// do sends a request; hdr is alternating name, value.
func (c *client) do(method, path string, body string, hdr ...string) resp {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.ts.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.auth != nil {
		c.auth(req)
	}
	if body != "" {
		if strings.HasPrefix(strings.TrimSpace(body), "<") {
			req.Header.Set("Content-Type", "application/xml")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// must sends and fails the test unless the status is want.
func (c *client) must(want int, method, path, body string, hdr ...string) resp {
	c.t.Helper()
	r := c.do(method, path, body, hdr...)
	if r.Code != want {
		c.t.Fatalf("%s %s: status %d, want %d\n%s", method, path, r.Code, want, r.Body)
	}
	return r
}

func (c *client) obj(want int, method, path, body string, hdr ...string) map[string]any {
	c.t.Helper()
	r := c.must(want, method, path, body, hdr...)
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		c.t.Fatalf("%s %s: not a JSON object: %v\n%s", method, path, err, r.Body)
	}
	return m
}

func (c *client) list(method, path string, hdr ...string) []map[string]any {
	c.t.Helper()
	r := c.must(http.StatusOK, method, path, "", hdr...)
	var l []map[string]any
	if err := json.Unmarshal(r.Body, &l); err != nil {
		c.t.Fatalf("%s %s: not a JSON array: %v\n%s", method, path, err, r.Body)
	}
	return l
}

// ids lists the record ids an index answers.
func (c *client) ids(query string) []int {
	c.t.Helper()
	var out []int
	for _, m := range c.list("GET", "/api/integration_history_records?"+query) {
		out = append(out, int(m["id"].(float64)))
	}
	return out
}

// count is the number of stored records, read by paging.
func (c *client) count() int {
	c.t.Helper()
	n := 0
	for off := 0; ; off += 50 {
		l := c.list("GET", "/api/integration_history_records?fields=[\"id\"]&offset="+itoa(off))
		n += len(l)
		if len(l) < 50 {
			return n
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func q(s string) string { return url.QueryEscape(s) }

func body(v any) string {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(v)
	return b.String()
}

// rec is a valid create body with overrides.
func rec(kv ...any) string {
	m := map[string]any{"contact-alert-type": "Functional", "document-id": 1, "document-type": "InvoiceHeader"}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
			continue
		}
		m[kv[i].(string)] = kv[i+1]
	}
	return body(m)
}

func num(m map[string]any, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}
