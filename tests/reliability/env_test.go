package reliability_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

func TestMain(m *testing.M) { binharness.Main(m) }

const integration = "ERP-BENCH"

// pipe is one source on a store, a SQLite ledger and an in-process
// pipeline posting through apiURL (a fault proxy or the server itself).
type pipe struct {
	t      *testing.T
	srv    *apitest.Server
	direct *apiclient.Client // straight to the server, for counting
	store  filestore.Store
	ledger state.Ledger
	src    importer.Source
	im     *importer.Importer
	api    *countingAPI
	// watch, if set, is a file whose place untilDone checks after every
	// pass: exactly one of inbox/, archive/, failed/.
	watch string
}

// apiServer starts an in-process ihr-api with the benchmark integration.
func apiServer(t *testing.T) (*apitest.Server, *apiclient.Client) {
	t.Helper()
	srv := apitest.Start(t)
	c, err := apiclient.New(apiclient.Config{BaseURL: srv.URL, APIKey: srv.APIKey, RateLimit: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.CreateIntegration(ctx, &apiclient.Integration{Code: integration, Name: integration}); err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// clientConfig is a client patient enough for injected faults and quick
// enough for a test: short backoffs, a short settle before the lookup that
// guards a re-sent POST.
func clientConfig(url, key string) apiclient.Config {
	return apiclient.Config{BaseURL: url, APIKey: key, RateLimit: -1, Timeout: 2 * time.Second,
		MaxRetries: 8, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
}

func newPipe(t *testing.T, srv *apitest.Server, direct *apiclient.Client, apiURL string, ccfg func(*apiclient.Config), store filestore.Store) *pipe {
	t.Helper()
	cc := clientConfig(apiURL, srv.APIKey)
	if ccfg != nil {
		ccfg(&cc)
	}
	client, err := apiclient.New(cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ledger.Close() })
	p := &pipe{t: t, srv: srv, direct: direct, store: store, ledger: ledger,
		api: &countingAPI{API: importer.ClientAPI(client)}}
	p.src = importer.Source{Name: "erp", Store: store, Integration: integration}
	p.im = importer.New(importer.Config{Concurrency: 4, Window: 32, BatchSize: 32, FlushInterval: 20 * time.Millisecond},
		p.api, ledger, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), nil)
	return p
}

// untilDone runs passes until the inbox is empty and no file is pending,
// or the deadline passes. Errors of a pass are expected (the faults) and
// logged.
func (p *pipe) untilDone(deadline time.Duration) {
	p.t.Helper()
	end := time.Now().Add(deadline)
	for pass := 1; ; pass++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Until(end)+time.Second)
		sum, err := p.im.RunSource(ctx, p.src)
		cancel()
		if err != nil {
			p.t.Logf("pass %d: %v", pass, err)
		}
		if p.watch != "" {
			p.checkOnePlace("")
		}
		if err == nil && sum.Pending == 0 && len(p.names("inbox")) == 0 {
			return
		}
		if time.Now().After(end) {
			p.t.Fatalf("not done after %v: inbox %v, last summary %+v", deadline, p.names("inbox"), sum)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkOnePlace asserts that p.watch is in exactly one folder (want, if
// given) and that no upload is left half-done under a temporary name.
func (p *pipe) checkOnePlace(want string) {
	p.t.Helper()
	var found []string
	for _, d := range []string{"inbox", "archive", "failed"} {
		for _, n := range p.names(d) {
			if n == p.watch {
				found = append(found, d)
			}
		}
	}
	if len(found) != 1 || (want != "" && found[0] != want) {
		p.t.Fatalf("%s is in %v, want exactly one place%s", p.watch, found, map[bool]string{true: " (" + want + ")"}[want != ""])
	}
}

func (p *pipe) names(dir string) []string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fis, err := p.store.List(ctx, dir)
	if err != nil {
		p.t.Fatalf("list %s: %v", dir, err)
	}
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name)
	}
	return out
}

func (p *pipe) put(name, content string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, d := range []string{"inbox", "archive", "failed", "reports"} {
		if err := p.store.MkdirAll(ctx, d); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := p.store.Write(ctx, "inbox/"+name, strings.NewReader(content)); err != nil {
		p.t.Fatal(err)
	}
}

// checkExactlyOnce asserts the end state of one file: one record per
// external-id on the server, the file in archive/ only, and a complete
// report with every row recorded.
func (p *pipe) checkExactlyOnce(name string, ids []string) {
	p.t.Helper()
	checkServer(p.t, p.direct, name, ids)
	where := map[string]bool{}
	for _, d := range []string{"inbox", "archive", "failed"} {
		for _, n := range p.names(d) {
			if n == name || strings.HasPrefix(n, strings.TrimSuffix(name, ".csv")) {
				if where[d] {
					p.t.Errorf("%s twice in %s", name, d)
				}
				where[d] = true
			}
		}
	}
	if !where["archive"] || where["inbox"] || where["failed"] {
		p.t.Errorf("%s: found in %v, want archive only", name, where)
	}
	lines := p.report(strings.TrimSuffix(name, ".csv") + ".response.csv")
	if len(lines) != len(ids) {
		p.t.Errorf("%s: report has %d lines, want %d", name, len(lines), len(ids))
	}
	for i, l := range lines {
		if i < len(ids) && (l[1] != ids[i] || (l[5] != "created" && l[5] != "already-recorded") || l[6] == "") {
			p.t.Errorf("%s: report line %d: %v", name, i+1, l)
			break
		}
	}
}

func (p *pipe) report(name string) [][]string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := p.store.Open(ctx, "reports/"+name, 0)
	if err != nil {
		p.t.Fatalf("report %s: %v", name, err)
	}
	defer rc.Close()
	recs, err := csv.NewReader(rc).ReadAll()
	if err != nil || len(recs) == 0 {
		p.t.Fatalf("report %s: %v", name, err)
	}
	return recs[1:]
}

// checkServer counts the server's records of one integration_filename:
// exactly one per wanted external-id and nothing else.
func checkServer(t *testing.T, c *apiclient.Client, filename string, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := map[string]int{}
	total := 0
	for r, err := range c.All(ctx, apiclient.NewQuery().Eq("integration-filename", filename)) {
		if err != nil {
			t.Fatal(err)
		}
		got[r.ExternalID]++
		total++
	}
	bad := 0
	for _, id := range ids {
		if got[id] != 1 {
			if bad < 5 {
				t.Errorf("%s: external-id %s has %d records, want 1", filename, id, got[id])
			}
			bad++
		}
	}
	if total != len(ids) || bad > 0 {
		t.Errorf("%s: %d records on the server for %d rows (%d rows wrong)", filename, total, len(ids), bad)
	}
}

// countingAPI counts successful creates and can run a hook after each.
type countingAPI struct {
	importer.API
	mu       sync.Mutex
	creates  int
	onCreate func(n int)
}

func (c *countingAPI) Create(ctx context.Context, a record.Action, r *record.Record) (*record.Record, error) {
	out, err := c.API.Create(ctx, a, r)
	if err != nil && !errors.Is(err, apiclient.ErrAlreadyRecorded) {
		return out, err
	}
	c.mu.Lock()
	c.creates++
	n, hook := c.creates, c.onCreate
	c.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return out, err
}

func rows(prefix string, n int) (string, []string) { return binharness.CSV(prefix, n) }

func fmtName(kind, what string) string { return fmt.Sprintf("%s-%s.csv", kind, what) }
