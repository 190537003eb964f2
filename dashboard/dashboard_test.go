package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/dashboard"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// seed records what a few passes leave: an archived file, a failed one
// and one in progress, plus a missed delivery.
func seed(t *testing.T, l state.Ledger, ops state.Ops) {
	ctx := context.Background()
	put := func(name string, st state.Status, rows int64, outs []state.Outcome, report, reason string) {
		f, err := l.Claim(ctx, state.FileID{Source: "erp", Name: name}, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f.Status, f.Run, f.Rows, f.ReportPath, f.SkipReason = state.Processing, 1, rows, report, reason
		if err := l.PutFile(ctx, "w", f); err != nil {
			t.Fatal(err)
		}
		if err := l.RecordOutcomes(ctx, state.FileID{Source: "erp", Name: name}.HeldBy("w"), outs); err != nil {
			t.Fatal(err)
		}
		if st != state.Processing {
			f.Status = st
			for _, o := range outs {
				f.Counts.Add(o.Result)
			}
			if err := l.PutFile(ctx, "w", f); err != nil {
				t.Fatal(err)
			}
			if err := l.Release(ctx, state.FileID{Source: "erp", Name: name}.HeldBy("w"), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	ok := func(k string, row int64) state.Outcome {
		return state.Outcome{Key: k, Row: row, Run: 1, Result: state.Created, HTTPStatus: 201, RecordID: row}
	}
	put("good.csv", state.Done, 2, []state.Outcome{ok("g1", 1), ok("g2", 2)}, "reports/good.response.csv", "")
	put("whole.csv", state.Failed, 0, nil, "reports/whole.response.csv", "no header row")
	put("rows.csv", state.Failed, 0, nil, "reports/rows.response.csv", "") // its reason quotes its report
	put("big.csv", state.Processing, 10, []state.Outcome{ok("b1", 1), ok("b2", 2), ok("b3", 3),
		{Key: "b4", Row: 4, Run: 1, Result: state.FailedRow, HTTPStatus: 422, Message: "Integration is unknown"}}, "", "")
	if _, err := ops.OpenEvent(ctx, state.Event{ID: "delivery_missed/erp/x", Kind: state.EventDeliveryMissed, Source: "erp", Detail: "no file arrived between 02:00 and 04:00"}); err != nil {
		t.Fatal(err)
	}
	if err := ops.PutHealth(ctx, state.Health{Source: "erp", LastPass: time.Now(), StoreReachable: true, APIReachable: false, Error: "API unreachable", Failures: 2}); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, h http.Handler, path string, auth func(*http.Request)) (int, string) {
	req := httptest.NewRequest("GET", path, nil)
	if auth != nil {
		auth(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func check(t *testing.T, l state.Ledger) {
	ops, err := state.OpsOf(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, l, ops)
	var opened atomic.Int32
	h, err := dashboard.New(dashboard.Config{
		Sources: []dashboard.Source{{Name: "erp", URL: "sftp://coupa@sftp.example.com/Outgoing", Expect: "0 2 * * * within 2h"}},
		Ops:     ops, Ledger: l,
		OpenReport: func(ctx context.Context, source, name string) (io.ReadCloser, error) {
			opened.Add(1)
			return io.NopCloser(strings.NewReader("row,external-id,document-type,document-id,action,result,record-id,http-status,message\n0,,,,,invalid,,,no header row\n")), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	code, page := get(t, h, "/", nil)
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	// rows.csv is listed as recent and as failed; its report is read once.
	if n := opened.Load(); n != 1 {
		t.Errorf("the overview opened %d reports, want 1", n)
	}
	// A finished run's report does not change: the next loads open none.
	if code, again := get(t, h, "/", nil); code != 200 || !strings.Contains(again, "first: row 0 invalid: no header row") {
		t.Fatalf("second GET / = %d without the reason from the report", code)
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("two loads opened %d reports, want 1", n)
	}
	// A new run of the file has a new report: it is read again.
	id := state.FileID{Source: "erp", Name: "rows.csv"}
	f, err := l.Claim(context.Background(), id, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.Run, f.FinishedAt = 2, time.Now()
	if err := l.PutFile(context.Background(), "w", f); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(context.Background(), id.HeldBy("w"), false); err != nil {
		t.Fatal(err)
	}
	get(t, h, "/", nil)
	if n := opened.Load(); n != 2 {
		t.Errorf("after a new run: %d reports opened, want 2", n)
	}
	for _, want := range []string{
		`<td class="progress-text">4 / 10</td>`,                       // in progress: rows done of total
		`<td class="reason">no header row</td>`,                       // failed, with its reason
		`href="/report?source=erp&amp;name=whole.csv&amp;download=1"`, // and its report
		`<span class="c-created" title="created">2 created</span>`,    // recent, with counts
		`data-event="delivery_missed"`,
		`data-health="api"><b>API</b> unreachable`,
		`HTTP 422`, `HTTP 201`, // the API chart's legend
	} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if code, page := get(t, h, "/file?source=erp&name=big.csv", nil); code != 200 || !strings.Contains(page, "Integration is unknown") ||
		strings.Index(page, `data-row="4"`) > strings.Index(page, `data-row="1"`) {
		t.Errorf("file page (%d): the failed row is not first", code)
	}
	if code, _ := get(t, h, "/file?source=other&name=big.csv", nil); code != 404 {
		t.Errorf("unknown source: %d", code)
	}
	if code, body := get(t, h, "/report?source=erp&name=whole.csv&download=1", nil); code != 200 || !strings.Contains(body, "no header row") {
		t.Errorf("report: %d %q", code, body)
	}
	if code, _ := get(t, h, "/static/style.css", nil); code != 200 {
		t.Errorf("style: %d", code)
	}
}

func TestOverviewSQLite(t *testing.T) {
	l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(t, l)
}

func TestOverviewPostgres(t *testing.T) {
	pg := testservers.StartPostgres(t)
	l, err := state.Open(context.Background(), pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(t, l)
}

func TestAuth(t *testing.T) {
	l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ops, _ := state.OpsOf(context.Background(), l)
	for _, c := range []struct {
		name string
		auth dashboard.Auth
		ok   []func(*http.Request)
		bad  []func(*http.Request)
	}{
		{"token", dashboard.Auth{Token: "s3cret"},
			[]func(*http.Request){
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") },
				func(r *http.Request) { r.SetBasicAuth("anyone", "s3cret") },
			},
			[]func(*http.Request){nil,
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") },
				func(r *http.Request) { r.SetBasicAuth("s3cret", "") },
			}},
		{"basic", dashboard.Auth{Username: "ops", Password: "pw"},
			[]func(*http.Request){func(r *http.Request) { r.SetBasicAuth("ops", "pw") }},
			[]func(*http.Request){nil,
				func(r *http.Request) { r.SetBasicAuth("ops", "nope") },
				func(r *http.Request) { r.SetBasicAuth("other", "pw") },
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer pw") },
			}},
	} {
		h, err := dashboard.New(dashboard.Config{Sources: []dashboard.Source{{Name: "erp"}}, Ops: ops, Ledger: l, Auth: c.auth})
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range c.ok {
			if code, _ := get(t, h, "/", a); code != 200 {
				t.Errorf("%s: good credentials #%d: %d", c.name, i, code)
			}
		}
		for i, a := range c.bad {
			if code, _ := get(t, h, "/", a); code != 401 {
				t.Errorf("%s: bad credentials #%d: %d", c.name, i, code)
			}
		}
	}
}
