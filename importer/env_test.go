package importer_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

const integration = "ERP-INVOICES"

// env is one source on a local folder, a real ihr-api and a SQLite ledger.
type env struct {
	t      *testing.T
	srv    *apitest.Server
	client *apiclient.Client
	root   string
	store  filestore.Store
	dbPath string
	ledger state.Ledger
	src    importer.Source
	cfg    importer.Config
	api    importer.API
	obs    *countingObserver
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, srv: apitest.Start(t), root: t.TempDir(), obs: &countingObserver{}}
	var err error
	e.client, err = apiclient.New(apiclient.Config{BaseURL: e.srv.URL, APIKey: e.srv.APIKey, RateLimit: -1,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreateIntegration(context.Background(), &apiclient.Integration{Code: integration, Name: "ERP invoices"}); err != nil {
		t.Fatal(err)
	}
	e.store = e.newStore()
	e.dbPath = filepath.Join(t.TempDir(), "state.db")
	e.openLedger()
	e.api = importer.ClientAPI(e.client)
	e.src = importer.Source{Name: "erp", Store: e.store, Integration: integration, Encoding: "auto"}
	e.cfg = importer.Config{Concurrency: 4, Window: 16, BatchSize: 16, FlushInterval: 20 * time.Millisecond}
	return e
}

func (e *env) newStore() filestore.Store {
	s, err := local.New(e.root, zap.NewNop())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) openLedger() {
	l, err := state.OpenSQLite(context.Background(), e.dbPath, state.SQLiteOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.ledger = l
	e.t.Cleanup(func() { l.Close() })
}

func (e *env) importer() *importer.Importer {
	return importer.New(e.cfg, e.api, e.ledger, zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel)), e.obs)
}

func (e *env) run() importer.Summary {
	e.t.Helper()
	sum, err := e.importer().RunSource(context.Background(), e.src)
	if err != nil {
		e.t.Fatalf("RunSource: %v", err)
	}
	return sum
}

func (e *env) drop(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.root, "inbox", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(e.root, rel))
	return err == nil
}

func (e *env) ls(dir string) []string {
	ents, _ := os.ReadDir(filepath.Join(e.root, dir))
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

// report reads reports/<name>.response.csv without its header.
func (e *env) report(name string) [][]string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, "reports", name))
	if err != nil {
		e.t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil {
		e.t.Fatalf("report %s: %v", name, err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "row,external-id,document-type,document-id,action,result,record-id,http-status,message" {
		e.t.Fatalf("report %s header: %v", name, recs)
	}
	return recs[1:]
}

// results counts a report's lines by result.
func results(lines [][]string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		m[l[5]]++
	}
	return m
}

// records lists the server's records of one file.
func (e *env) records(filename string) []*record.Record {
	e.t.Helper()
	var out []*record.Record
	q := apiclient.NewQuery().Eq("integration-filename", filename)
	for r, err := range e.client.All(context.Background(), q) {
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// exactlyOnce checks that the server holds exactly one record per wanted
// external-id of the file, and nothing else.
func (e *env) exactlyOnce(filename string, wantIDs []string) {
	e.t.Helper()
	recs := e.records(filename)
	got := map[string]int{}
	for _, r := range recs {
		got[r.ExternalID]++
	}
	for _, id := range wantIDs {
		if got[id] != 1 {
			e.t.Errorf("%s: external-id %q has %d records, want 1", filename, id, got[id])
		}
	}
	if len(recs) != len(wantIDs) {
		e.t.Errorf("%s: %d records on the server, want %d", filename, len(recs), len(wantIDs))
	}
}

const header = "external-id,document-type,document-id,status,contact-alert-type,response-message\r\n"

// csvRows builds a canonical file with rows first..last.
func csvRows(prefix string, first, last int) (string, []string) {
	var b strings.Builder
	b.WriteString(header)
	var ids []string
	for i := first; i <= last; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		status := "Success"
		if i%5 == 0 {
			status = "Error"
		}
		fmt.Fprintf(&b, "%s,InvoiceHeader,%d,%s,Functional,message %d\r\n", id, i, status, i)
		ids = append(ids, id)
	}
	return b.String(), ids
}

type countingObserver struct {
	mu      sync.Mutex
	started int
	done    int
	rows    map[state.Result]int
}

func (o *countingObserver) FileStarted(string, string, int64) {
	o.mu.Lock()
	o.started++
	o.mu.Unlock()
}
func (o *countingObserver) RowDone(_, _ string, r state.Result) {
	o.mu.Lock()
	if o.rows == nil {
		o.rows = map[state.Result]int{}
	}
	o.rows[r]++
	o.mu.Unlock()
}
func (o *countingObserver) Progress(string, string, int64, int64) {}
func (o *countingObserver) FileDone(string, string, importer.FileResult) {
	o.mu.Lock()
	o.done++
	o.mu.Unlock()
}

// countingAPI wraps an API to count calls and inject failures.
type countingAPI struct {
	importer.API
	mu      sync.Mutex
	creates int
	finds   int
	// failAfter > 0: every Create after that many succeeded ones fails as
	// if the API were down.
	failAfter int
	// onCreate runs after each successful create (e.g. to cancel a ctx).
	onCreate func(n int)
}

var errDown = &apiclient.Error{Status: 0, Method: "POST", Path: "/api/integration_history_records", Err: errors.New("connection refused")}

func (c *countingAPI) Create(ctx context.Context, a record.Action, r *record.Record) (*record.Record, error) {
	c.mu.Lock()
	if c.failAfter > 0 && c.creates >= c.failAfter {
		c.mu.Unlock()
		return nil, errDown
	}
	c.mu.Unlock()
	out, err := c.API.Create(ctx, a, r)
	c.mu.Lock()
	if err == nil {
		c.creates++
	}
	n := c.creates
	c.mu.Unlock()
	if err == nil && c.onCreate != nil {
		c.onCreate(n)
	}
	return out, err
}

func (c *countingAPI) FindExisting(ctx context.Context, r *record.Record) (*record.Record, error) {
	c.mu.Lock()
	c.finds++
	c.mu.Unlock()
	return c.API.FindExisting(ctx, r)
}

func (c *countingAPI) counts() (creates, finds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.creates, c.finds
}

func sorted(s []string) []string { s = append([]string(nil), s...); sort.Strings(s); return s }
