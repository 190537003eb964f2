package importer_test

// End-to-end tests of issue 12 (same file name, new content): each runs the
// pipeline against an in-process ihr-api and a real store (a local folder,
// or the SFTP server where said), and checks the records on the server, the
// reports in reports/ and the files' places.

import (
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/filestore/storetest"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// noIDHeader: a layout without external-id, so rows are keyed by number.
const noIDHeader = "document-type,document-id,status,contact-alert-type,response-message\r\n"

// docRows builds a file without external-id carrying the given document ids.
func docRows(ids ...int) string {
	var b strings.Builder
	b.WriteString(noIDHeader)
	for _, id := range ids {
		fmt.Fprintf(&b, "InvoiceHeader,%d,Success,Functional,exported %d\r\n", id, id)
	}
	return b.String()
}

// byDocument counts the server's records of one file by document id.
func (e *env) byDocument(filename string) map[int64]int {
	e.t.Helper()
	out := map[int64]int{}
	for _, r := range e.records(filename) {
		if r.DocumentID != nil {
			out[*r.DocumentID]++
		}
	}
	return out
}

// reportOf reads the report a file's result names.
func (e *env) reportOf(r importer.FileResult) [][]string {
	e.t.Helper()
	if r.Report == "" {
		e.t.Fatalf("%s: no report", r.Name)
	}
	return e.report(path.Base(r.Report))
}

// TestNightlySameNameWithoutExternalID: day 2's daily.csv, keyed by row
// number like day 1's but with other documents, is posted in full; day 1's
// report stays as it was and day 2's pairs with its archived name.
func TestNightlySameNameWithoutExternalID(t *testing.T) {
	e := newEnv(t)
	e.drop("daily.csv", docRows(1001, 1002))
	day1 := e.run()
	if day1.Archived != 1 || day1.Rows.Created != 2 {
		t.Fatalf("day 1: %+v", day1)
	}
	rep1 := e.report("daily.response.csv")

	e.drop("daily.csv", docRows(2001, 2002))
	day2 := e.run()
	if day2.Archived != 1 || day2.Rows.Created != 2 || day2.Rows.AlreadyRecorded != 0 || !day2.Clean() {
		t.Fatalf("day 2: %+v", day2)
	}
	got := e.byDocument("daily.csv")
	for _, id := range []int64{1001, 1002, 2001, 2002} {
		if got[id] != 1 {
			t.Errorf("document %d has %d records, want 1 (all: %v)", id, got[id], got)
		}
	}
	if len(got) != 4 {
		t.Errorf("records by document: %v", got)
	}
	r2 := day2.Files[0]
	stem := strings.TrimSuffix(path.Base(r2.MovedTo), ".csv")
	if r2.Report != "reports/"+stem+".response.csv" || stem == "daily" || !e.exists(r2.MovedTo) || !e.exists("archive/daily.csv") {
		t.Fatalf("day 2 moved to %s, report %s: they do not pair", r2.MovedTo, r2.Report)
	}
	lines := e.reportOf(r2)
	if len(lines) != 2 || results(lines)["created"] != 2 || lines[0][3] != "2001" || lines[1][3] != "2002" {
		t.Fatalf("day 2 report: %v", lines)
	}
	if again := e.report("daily.response.csv"); fmt.Sprint(again) != fmt.Sprint(rep1) {
		t.Fatalf("day 1's report changed:\n%v\n%v", rep1, again)
	}
	t.Logf("day 1: %d created; day 2: %d created, %d already recorded; reports %s and %s",
		day1.Rows.Created, day2.Rows.Created, day2.Rows.AlreadyRecorded, day1.Files[0].Report, r2.Report)
}

// TestNightlySameNameWithExternalID: INV-1002 was an Error on day 1 and is
// a Success on day 2: it is posted (marking the document exported), while
// INV-1001, unchanged, is already recorded.
func TestNightlySameNameWithExternalID(t *testing.T) {
	e := newEnv(t)
	e.drop("daily.csv", header+
		"INV-1001,InvoiceHeader,1001,Success,Functional,ok\r\n"+
		"INV-1002,InvoiceHeader,1002,Error,Functional,tax code missing\r\n")
	if sum := e.run(); sum.Rows.Created != 2 {
		t.Fatalf("day 1: %+v", sum)
	}
	e.drop("daily.csv", header+
		"INV-1001,InvoiceHeader,1001,Success,Functional,ok\r\n"+
		"INV-1002,InvoiceHeader,1002,Success,Functional,posted\r\n")
	api := &countingAPI{API: e.api}
	e.api = api
	day2 := e.run()
	if day2.Rows.Created != 1 || day2.Rows.AlreadyRecorded != 1 || !day2.Clean() {
		t.Fatalf("day 2: %+v", day2)
	}
	if c, f := api.counts(); c != 1 || f != 0 {
		t.Fatalf("day 2 made %d creates and %d lookups, want 1 and 0", c, f)
	}
	lines := e.reportOf(day2.Files[0])
	if lines[0][5] != "already-recorded" || lines[1][5] != "created" || lines[1][4] != "mark_exported" {
		t.Fatalf("day 2 report: %v", lines)
	}
	var statuses []string
	for _, r := range e.records("daily.csv") {
		if r.ExternalID == "INV-1002" {
			statuses = append(statuses, r.Status)
		}
	}
	sort.Strings(statuses)
	if fmt.Sprint(statuses) != "[Error Success]" {
		t.Fatalf("INV-1002 records: %v, want one Error and one Success", statuses)
	}
	// mark_exported reached the API: the document is exported.
	recs, err := e.client.Index(context.Background(), apiclient.NewQuery().Eq("external-id", "INV-1002").Eq("status", "Success"))
	if err != nil || len(recs) != 1 {
		t.Fatalf("INV-1002 Success: %v, %v", recs, err)
	}
	e.exactlyOnceEach("daily.csv", map[string]int{"INV-1001": 1, "INV-1002": 2})
}

// exactlyOnceEach checks the number of records per external-id.
func (e *env) exactlyOnceEach(filename string, want map[string]int) {
	e.t.Helper()
	got := map[string]int{}
	for _, r := range e.records(filename) {
		got[r.ExternalID]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("%s: records per external-id %v, want %v", filename, got, want)
	}
}

// TestIdenticalRedrop: the same bytes dropped again post nothing and ask
// the API nothing; the second drop has its own report.
func TestIdenticalRedrop(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("SAME", 1, 30)
	e.drop("same.csv", content)
	if sum := e.run(); sum.Rows.Created != 30 {
		t.Fatalf("first: %+v", sum)
	}
	e.drop("same.csv", content)
	api := &countingAPI{API: e.api}
	e.api = api
	sum := e.run()
	if sum.Archived != 1 || sum.Rows.AlreadyRecorded != 30 || sum.Rows.Created != 0 || !sum.Clean() {
		t.Fatalf("re-drop: %+v", sum)
	}
	if c, f := api.counts(); c != 0 || f != 0 {
		t.Fatalf("re-drop made %d creates and %d lookups, want none", c, f)
	}
	if lines := e.reportOf(sum.Files[0]); len(lines) != 30 || results(lines)["already-recorded"] != 30 || lines[0][6] == "" {
		t.Fatalf("re-drop report: %v", results(lines))
	}
	if len(e.report("same.response.csv")) != 30 || len(e.ls("reports")) != 2 {
		t.Fatalf("reports: %v", e.ls("reports"))
	}
	e.exactlyOnce("same.csv", ids)
}

// TestContentBackAfterChange: a row whose content comes back after another
// drop changed it is the same row: already recorded, not posted again.
func TestContentBackAfterChange(t *testing.T) {
	e := newEnv(t)
	a := header + "K-1,InvoiceHeader,1,Error,Functional,first\r\n"
	b := header + "K-1,InvoiceHeader,1,Error,Functional,second\r\n"
	for i, content := range []string{a, b, a} {
		e.drop("k.csv", content)
		sum := e.run()
		want := [3]int64{1, 1, 0}[i]
		if sum.Rows.Created != want {
			t.Fatalf("drop %d: %+v, want %d created", i+1, sum, want)
		}
	}
	e.exactlyOnceEach("k.csv", map[string]int{"K-1": 2})
}

// TestLostAnswerMatchesContent: after an ambiguous outcome the lookup
// finds only a record with the row's content, never an earlier drop's
// record of the same key with other content.
func TestLostAnswerMatchesContent(t *testing.T) {
	e := newEnv(t)
	e.drop("daily.csv", header+"INV-1002,InvoiceHeader,1002,Error,Functional,tax code missing\r\n")
	if sum := e.run(); sum.Rows.Created != 1 {
		t.Fatalf("day 1: %+v", sum)
	}
	ctx := context.Background()
	day2 := &record.Record{ExternalID: "INV-1002", DocumentType: "InvoiceHeader", DocumentID: record.Int64(1002),
		Status: "Success", ContactAlertType: "Functional", IntegrationFilename: "daily.csv",
		Integration: &record.IntegrationRef{Code: integration},
		Responses:   []record.Response{{ResponseMessage: "posted"}}}
	found, err := e.client.FindExisting(ctx, day2)
	if err != nil || found != nil {
		t.Fatalf("day 2's row matched day 1's record: %+v, %v", found, err)
	}
	created, err := e.client.Create(ctx, record.MarkExported, day2)
	if err != nil {
		t.Fatal(err)
	}
	found, err = e.client.FindExisting(ctx, day2)
	if err != nil || found == nil || found.ID != created.ID {
		t.Fatalf("lookup of day 2's own record: %+v, %v (want id %d)", found, err, created.ID)
	}
}

// TestReportNamesNeverCollide: with include "*", a.csv and a.CSV (names
// that differ only in case) get reports of their own, and a second drop
// of a.csv never overwrites the first's.
func TestReportNamesNeverCollide(t *testing.T) {
	e := newEnv(t)
	e.src.Include = "*"
	e.drop("a.csv", header+"LOW-1,InvoiceHeader,1,Success,Functional,lower\r\n")
	e.drop("a.CSV", header+"UP-1,InvoiceHeader,2,Success,Functional,upper\r\n")
	sum := e.run()
	if sum.Archived != 2 || sum.Rows.Created != 2 {
		t.Fatalf("summary: %+v", sum)
	}
	reports := map[string]string{}
	for _, f := range sum.Files {
		reports[f.Name] = f.Report
	}
	if reports["a.csv"] == reports["a.CSV"] {
		t.Fatalf("one report for both: %v", reports)
	}
	if l := e.report(path.Base(reports["a.csv"])); l[0][1] != "LOW-1" {
		t.Fatalf("a.csv's report: %v", l)
	}
	if l := e.report(path.Base(reports["a.CSV"])); l[0][1] != "UP-1" {
		t.Fatalf("a.CSV's report: %v", l)
	}
	// A rejected drop, then the same name again: the report that explained
	// the rejection stays.
	e.drop("a.csv", header+"LOW-2,InvoiceHeadr,3,Success,Functional,typo\r\n")
	rej := e.run()
	if rej.Rejected != 1 {
		t.Fatalf("rejected drop: %+v", rej)
	}
	e.drop("a.csv", header+"LOW-2,InvoiceHeader,3,Success,Functional,fixed\r\n")
	fixed := e.run()
	if fixed.Archived != 1 || fixed.Rows.Created != 1 {
		t.Fatalf("fixed drop: %+v", fixed)
	}
	if l := e.reportOf(rej.Files[0]); l[0][5] != "invalid" {
		t.Fatalf("the rejection's report was overwritten: %v", l)
	}
	if rej.Files[0].Report == fixed.Files[0].Report || len(e.ls("reports")) != 4 {
		t.Fatalf("reports: %v", e.ls("reports"))
	}
	t.Logf("reports: %v", e.ls("reports"))
}

// longName is a 255-byte file name, the longest most stores allow.
func longName() string {
	return strings.Repeat("x", 255-len(".csv")) + ".csv"
}

// TestLongNameNotStuck: a 255-byte name is archived and reported (its
// report name shortened with a hash), on a local folder and over SFTP,
// and so is a second drop of it.
func TestLongNameNotStuck(t *testing.T) {
	for _, store := range []string{"local", "sftp"} {
		t.Run(store, func(t *testing.T) {
			e := newEnv(t)
			if store == "sftp" {
				srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
				st, err := sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
					KnownHosts: srv.KnownHostsFile, Root: srv.Root}, zap.NewNop())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				e.src.Store = filestore.WithRetry(st, filestore.DefaultRetryPolicy(), zaptest.NewLogger(t))
				e.root = srv.Root
			}
			name := longName()
			for drop := 1; drop <= 2; drop++ {
				e.drop(name, header+fmt.Sprintf("LONG-%d,InvoiceHeader,%d,Success,Functional,ok\r\n", drop, drop))
				sum, err := e.importer().RunSource(context.Background(), e.src)
				if err != nil || sum.Archived != 1 || !sum.Clean() {
					t.Fatalf("drop %d: %+v, %v", drop, sum, err)
				}
				r := sum.Files[0]
				rep := path.Base(r.Report)
				if len(rep) > 255 || !strings.HasSuffix(rep, ".response.csv") || !strings.Contains(rep, "~") {
					t.Fatalf("drop %d: report name %q (%d bytes)", drop, rep, len(rep))
				}
				if len(path.Base(r.MovedTo)) > 255 || !e.exists(r.MovedTo) {
					t.Fatalf("drop %d: moved to %q", drop, r.MovedTo)
				}
				if l := e.report(rep); len(l) != 1 || l[0][1] != fmt.Sprintf("LONG-%d", drop) {
					t.Fatalf("drop %d report: %v", drop, l)
				}
			}
			if len(e.ls("inbox")) != 0 || len(e.ls("archive")) != 2 || len(e.ls("reports")) != 2 {
				t.Fatalf("inbox %v archive %v reports %v", e.ls("inbox"), e.ls("archive"), e.ls("reports"))
			}
		})
	}
}

// TestFormulaCells: input cells a spreadsheet would run are written with
// a leading ' in the report; with escape_formulas off they are verbatim.
// (Mapping trims values, so TAB and CR are covered by package exporter's
// tests.)
func TestFormulaCells(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			e := newEnv(t)
			e.src.KeepFormulas = keep
			e.drop("f.csv", header+
				"\"=HYPERLINK(\"\"http://evil\"\")\",InvoiceHeader,1,Success,Functional,ok\r\n"+
				"+cmd,InvoiceHeader,2,Success,Functional,ok\r\n"+
				"-2+3,InvoiceHeader,3,Success,Functional,ok\r\n"+
				"@SUM(A1),InvoiceHeader,4,Success,Functional,ok\r\n"+
				"plain,InvoiceHeader,6,Success,Functional,ok\r\n"+
				"=bad,Nope,7,Success,Functional,ok\r\n")
			sum := e.run()
			if sum.Rows.Created != 5 || sum.Rows.Invalid != 1 {
				t.Fatalf("summary: %+v", sum)
			}
			lines := e.report("f.response.csv")
			want := []string{"=HYPERLINK(\"http://evil\")", "+cmd", "-2+3", "@SUM(A1)", "plain", "=bad"}
			for i, w := range want {
				if !keep && w != "plain" {
					w = "'" + w
				}
				if lines[i][1] != w {
					t.Errorf("row %d external-id cell %q, want %q", i+1, lines[i][1], w)
				}
			}
			// The server got the values as they were.
			recs := e.records("f.csv")
			var got []string
			for _, r := range recs {
				got = append(got, r.ExternalID)
			}
			sort.Strings(got)
			if got[0] != "+cmd" || got[1] != "-2+3" || got[2] != `=HYPERLINK("http://evil")` {
				t.Fatalf("records: %q", got)
			}
		})
	}
}

// TestUnclosedQuote100k: the quote left open on row 2 of 100,000 rows
// swallows the rest of the file, so the file is rejected as a whole in its
// first pass: nothing is posted, it goes to failed/, and its one-line
// report names the unclosed quote and the line where it opened. (Posting
// the 99,999 other rows at a 20 req/s budget took over an hour.)
func TestUnclosedQuote100k(t *testing.T) {
	const n = 100_000
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("external-id,document-type,document-id,status,contact-alert-type\n")
	for i := 1; i <= n; i++ {
		if i == 2 {
			b.WriteString("Q-2,InvoiceHeader,2,\"Success,Functional\n")
			continue
		}
		fmt.Fprintf(&b, "Q-%d,InvoiceHeader,%d,Success,Functional\n", i, i)
	}
	e.drop("q.csv", b.String())
	sum := e.run()
	if sum.Rejected != 1 || sum.Rows.Total() != 0 || !e.exists("failed/q.csv") {
		t.Fatalf("want q.csv rejected whole, nothing posted: %+v (failed/: %v)", sum, e.ls("failed"))
	}
	lines := e.report("q.response.csv")
	if len(lines) != 1 || lines[0][5] != "invalid" ||
		!strings.Contains(lines[0][8], "row 2 (line 3, column 21)") || !strings.Contains(lines[0][8], "unclosed quote") ||
		!strings.Contains(lines[0][8], "none of its rows is posted") {
		t.Fatalf("report: %v", lines)
	}
	t.Logf("report: %s", lines[0][8])
	if got := len(e.records("q.csv")); got != 0 {
		t.Fatalf("%d records posted from a file rejected as a whole", got)
	}
}

// TestUnprintableAndInvalidNames: names with terminal escapes and names
// that are not UTF-8 are processed, keep distinct integration_filenames
// and print escaped.
func TestUnprintableAndInvalidNames(t *testing.T) {
	for _, ledger := range []string{"sqlite", "postgres"} {
		t.Run(ledger, func(t *testing.T) { testUnprintableAndInvalidNames(t, ledger) })
	}
}

func testUnprintableAndInvalidNames(t *testing.T, ledger string) {
	e := newEnv(t)
	if ledger == "postgres" {
		pg := testservers.StartPostgres(t)
		l, err := state.Open(context.Background(), pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		e.ledger = l
	}
	e.src.Include = "*"
	names := []string{"caf\xe9.csv", "caf\xe8.csv", "red\x1b[31m.csv"}
	for i, n := range names {
		e.drop(n, header+fmt.Sprintf("N-%d,InvoiceHeader,%d,Success,Functional,ok\r\n", i, i+1))
	}
	sum := e.run()
	if sum.Archived != 3 || sum.Rows.Created != 3 {
		t.Fatalf("summary: %+v", sum)
	}
	ctx := context.Background()
	seen := map[string]string{}
	for r, err := range e.client.All(ctx, apiclient.NewQuery()) {
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[r.IntegrationFilename]; dup {
			t.Fatalf("%s and %s share integration_filename %q", prev, r.ExternalID, r.IntegrationFilename)
		}
		seen[r.IntegrationFilename] = r.ExternalID
	}
	if len(seen) != 3 {
		t.Fatalf("integration_filenames: %q", seen)
	}
	for _, n := range names {
		s := importer.SafeName(n)
		if strings.ContainsAny(s, "\x1b") || !strings.HasPrefix(s, `"`) {
			t.Errorf("SafeName(%q) = %s", n, s)
		}
	}
	if importer.SafeName("plain name.csv") != "plain name.csv" {
		t.Error("a plain name is changed")
	}
	if got := importer.SafeText("bad\x1b[2J name \xff"); got != `bad\x1b[2J name \xff` {
		t.Errorf("SafeText = %s", got)
	}
	for _, n := range names {
		if !e.exists(filepath.Join("archive", n)) {
			t.Errorf("%q not archived: %q", n, e.ls("archive"))
		}
	}
}

// cutOnReport cuts the SFTP connection in the middle of the first report
// upload (the store underneath filestore.WithRetry).
type cutOnReport struct {
	filestore.Store
	faults *storetest.Faults
	once   sync.Once
	fired  bool
}

func (c *cutOnReport) Write(ctx context.Context, name string, r io.Reader) error {
	if strings.HasPrefix(name, "reports/") {
		c.once.Do(func() {
			c.faults.CutWriteAfter(2000)
			c.fired = true
		})
	}
	return c.Store.Write(ctx, name, r)
}

// TestReportUploadRetried: a connection cut in the middle of the report's
// upload is retried like every other write (the report is spooled, so it
// can be sent again), and the report arrives whole.
func TestReportUploadRetried(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	e := newEnv(t)
	faults := storetest.NewFaults()
	st, err := sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
		KnownHosts: srv.KnownHostsFile, Root: srv.Root, DialContext: faults.DialContext}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cut := &cutOnReport{Store: st, faults: faults}
	e.src.Store = filestore.WithRetry(cut, filestore.RetryPolicy{Attempts: 5, Initial: 50 * time.Millisecond, Max: time.Second}, zap.NewNop())
	e.root = srv.Root
	content, ids := csvRows("UP", 1, 400) // a report of some 20 kB
	e.drop("up.csv", content)
	sum := e.run()
	if sum.Archived != 1 || sum.Rows.Created != 400 || !sum.Clean() {
		t.Fatalf("summary: %+v", sum)
	}
	if !cut.fired || faults.Cuts() != 1 {
		t.Fatalf("the upload was not cut: fired %v, cuts %d", cut.fired, faults.Cuts())
	}
	lines := e.report("up.response.csv")
	if len(lines) != 400 || results(lines)["created"] != 400 {
		t.Fatalf("report after the retried upload: %d lines %v", len(lines), results(lines))
	}
	e.exactlyOnce("up.csv", ids)
	t.Logf("connection cut %d time(s) during the report upload; report complete with %d lines", faults.Cuts(), len(lines))
}

// replaceOnReport drops new content under the same name in the inbox
// while the first drop's report is being written, just before its move.
type replaceOnReport struct {
	filestore.Store
	e    *env
	with string
	once sync.Once
}

func (r *replaceOnReport) Write(ctx context.Context, name string, body io.Reader) error {
	err := r.Store.Write(ctx, name, body)
	if strings.HasPrefix(name, "reports/") {
		r.once.Do(func() {
			time.Sleep(10 * time.Millisecond) // a visibly newer mtime
			r.e.drop("daily.csv", r.with)
		})
	}
	return err
}

// TestReplacedBeforeMove: a new drop that replaces the file in the inbox
// while the worker finishes the old one is not archived unposted: it
// stays in the inbox, and the next pass posts its rows.
func TestReplacedBeforeMove(t *testing.T) {
	e := newEnv(t)
	e.src.Store = &replaceOnReport{Store: e.store, e: e, with: docRows(2001, 2002, 2003)}
	e.drop("daily.csv", docRows(1001, 1002))
	first := e.run()
	if first.Rows.Created != 2 || !e.exists("inbox/daily.csv") {
		t.Fatalf("first pass: %+v; inbox %v", first, e.ls("inbox"))
	}
	second := e.run()
	if second.Archived != 1 || second.Rows.Created != 3 || len(e.ls("inbox")) != 0 {
		t.Fatalf("second pass: %+v; inbox %v", second, e.ls("inbox"))
	}
	got := e.byDocument("daily.csv")
	for _, id := range []int64{1001, 1002, 2001, 2002, 2003} {
		if got[id] != 1 {
			t.Errorf("document %d: %d records", id, got[id])
		}
	}
	if len(e.ls("reports")) != 2 {
		t.Fatalf("reports: %v", e.ls("reports"))
	}
}
