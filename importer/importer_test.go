package importer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/fixtures"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("INV", 1, 40)
	e.drop("invoices.csv", content)
	e.drop("notes.txt", "not matched by the include glob")
	sum := e.run()
	if sum.Archived != 1 || sum.Rows.Created != 40 || !sum.Clean() {
		t.Fatalf("summary: %+v", sum)
	}
	if !e.exists("archive/invoices.csv") || e.exists("inbox/invoices.csv") || !e.exists("inbox/notes.txt") {
		t.Fatalf("folders: inbox %v archive %v", e.ls("inbox"), e.ls("archive"))
	}
	lines := e.report("invoices.response.csv")
	if len(lines) != 40 || results(lines)["created"] != 40 {
		t.Fatalf("report: %v", results(lines))
	}
	for i, l := range lines {
		if l[0] != itoa(i+1) || l[1] != ids[i] || l[2] != "InvoiceHeader" || l[6] == "" || l[7] != "201" {
			t.Fatalf("report line %d: %v", i+1, l)
		}
	}
	if l := lines[4]; l[4] != "create_alert" { // status Error → create_alert
		t.Fatalf("row 5 action: %v", l)
	}
	if l := lines[0]; l[4] != "mark_exported" {
		t.Fatalf("row 1 action: %v", l)
	}
	e.exactlyOnce("invoices.csv", ids)
	f, err := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "invoices.csv"})
	if err != nil || f.Status != state.Done || f.Counts.Created != 40 || f.Rows != 40 || f.Location != "archive/invoices.csv" ||
		f.ReportPath != "reports/invoices.response.csv" || len(f.SHA256) != 64 || f.Owner != "" {
		t.Fatalf("ledger: %+v %v", f, err)
	}
	if e.obs.rows[state.Created] != 40 || e.obs.started != 1 || e.obs.done != 1 {
		t.Fatalf("observer: %+v", e.obs)
	}

	// A second pass finds nothing to do; a new file with the same name
	// whose rows were all recorded is archived under a suffixed name.
	if sum := e.run(); len(sum.Files) != 0 {
		t.Fatalf("second pass: %+v", sum)
	}
	e.drop("invoices.csv", content)
	sum = e.run()
	if sum.Archived != 1 || sum.Rows.AlreadyRecorded != 40 {
		t.Fatalf("re-drop: %+v", sum)
	}
	if got := e.ls("archive"); len(got) != 2 {
		t.Fatalf("archive: %v", got)
	}
	e.exactlyOnce("invoices.csv", ids)
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

func TestBadInputs(t *testing.T) {
	e := newEnv(t)
	type want struct {
		whole    bool   // one-line report
		reason   string // in the whole-file message
		invalid  int    // invalid lines
		created  int
		archived bool
	}
	cases := map[string]want{
		"empty.csv":              {whole: true, reason: "empty"},
		"bom-only.csv":           {whole: true, reason: "empty"},
		"blank-lines.csv":        {whole: true, reason: "empty"},
		"binary.csv":             {whole: true, reason: "binary"},
		"header-only.csv":        {whole: true, reason: "no data rows"},
		"no-header.csv":          {whole: true, reason: "missing required column"},
		"missing-column.csv":     {whole: true, reason: "missing required column"},
		"utf16.csv":              {whole: true, reason: "UTF-16"},
		"ragged.csv":             {invalid: 2, created: 3},
		"bad-quoting.csv":        {invalid: 2, created: 2},
		"invalid-utf8.csv":       {invalid: 1, created: 2},
		"wrong-encoding.csv":     {invalid: 1, created: 1},
		"duplicate-ids.csv":      {invalid: 2, created: 4},
		"invalid-values.csv":     {invalid: 6, created: 1},
		"unterminated-quote.csv": {whole: true, reason: "the quote at line 3, column 21 is never closed"},
	}
	for name := range cases {
		b, err := os.ReadFile(fixtures.Path("bad", name))
		if err != nil {
			t.Fatal(err)
		}
		e.drop(name, string(b))
	}
	e.src.AllowDuplicateContent = true // several fixtures are byte-identical in spirit, not in content; be safe
	sum := e.run()
	if len(sum.Files) != len(cases) {
		t.Fatalf("processed %d files, want %d: %+v", len(sum.Files), len(cases), sum)
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			rep := strings.TrimSuffix(name, ".csv") + ".response.csv"
			lines := e.report(rep)
			if !e.exists("failed/"+name) || e.exists("inbox/"+name) {
				t.Fatalf("not in failed/: failed=%v", e.ls("failed"))
			}
			if w.whole {
				if len(lines) != 1 || lines[0][5] != "invalid" || !strings.Contains(lines[0][8], w.reason) {
					t.Fatalf("report: %v", lines)
				}
				if len(e.records(name)) != 0 {
					t.Fatal("records created for a rejected file")
				}
				return
			}
			r := results(lines)
			if r["invalid"] != w.invalid || r["created"] != w.created || len(lines) != w.invalid+w.created {
				t.Fatalf("results %v, want invalid %d created %d: %v", r, w.invalid, w.created, lines)
			}
			if got := len(e.records(name)); got != w.created {
				t.Fatalf("%d records on the server, want %d", got, w.created)
			}
			for _, l := range lines {
				if l[5] == "invalid" && l[8] == "" {
					t.Fatalf("invalid line without a message: %v", l)
				}
			}
		})
	}
	lines := e.report("duplicate-ids.response.csv")
	if lines[2][5] != "invalid" || !strings.Contains(lines[2][8], "duplicate external-id") {
		t.Fatalf("duplicate row: %v", lines[2])
	}
}

func TestCorrectedFileRedrop(t *testing.T) {
	e := newEnv(t)
	v1 := header +
		"C-1,InvoiceHeader,1,Success,Functional,ok\r\n" +
		"C-2,InvoiceHeadr,2,Success,Functional,typo in type\r\n" +
		"C-3,InvoiceHeader,3,Success,Functional,ok\r\n" +
		"C-4,InvoiceHeader,x4,Success,Functional,bad id\r\n"
	e.drop("batch.csv", v1)
	sum := e.run()
	if sum.Rejected != 1 || sum.Rows.Created != 2 || sum.Rows.Invalid != 2 {
		t.Fatalf("v1: %+v", sum)
	}
	if !e.exists("failed/batch.csv") {
		t.Fatal("v1 not in failed/")
	}
	// The corrected file: fixed rows, reordered, one new row.
	v2 := header +
		"C-3,InvoiceHeader,3,Success,Functional,ok\r\n" +
		"C-2,InvoiceHeader,2,Success,Functional,fixed\r\n" +
		"C-1,InvoiceHeader,1,Success,Functional,ok\r\n" +
		"C-4,InvoiceHeader,4,Success,Functional,fixed\r\n" +
		"C-5,InvoiceHeader,5,Success,Functional,new\r\n"
	e.drop("batch.csv", v2)
	api := &countingAPI{API: e.api}
	e.api = api
	sum = e.run()
	if sum.Archived != 1 || sum.Rows.Created != 3 || sum.Rows.AlreadyRecorded != 2 {
		t.Fatalf("v2: %+v", sum)
	}
	if c, f := api.counts(); c != 3 || f != 0 {
		t.Fatalf("v2 made %d creates and %d lookups, want 3 and 0", c, f)
	}
	lines := e.report(path.Base(sum.Files[0].Report))
	want := []string{"already-recorded", "created", "already-recorded", "created", "created"}
	for i, l := range lines {
		if l[5] != want[i] {
			t.Fatalf("v2 report line %d: %v", i+1, l)
		}
	}
	if lines[0][6] == "" {
		t.Fatalf("already-recorded without record id: %v", lines[0])
	}
	e.exactlyOnce("batch.csv", []string{"C-1", "C-2", "C-3", "C-4", "C-5"})
	if !e.exists(sum.Files[0].MovedTo) || !e.exists("failed/batch.csv") || len(e.report("batch.response.csv")) != 4 {
		t.Fatalf("archive %v failed %v", e.ls("archive"), e.ls("failed"))
	}
}

func TestSameContentUnderNewName(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("S", 1, 5)
	e.drop("a.csv", content)
	e.run()
	e.drop("b.csv", content)
	sum := e.run()
	if sum.Skipped != 1 || sum.Rows.Total() != 0 {
		t.Fatalf("duplicate: %+v", sum)
	}
	lines := e.report("b.response.csv")
	if len(lines) != 1 || !strings.Contains(lines[0][8], "same content") || !strings.Contains(lines[0][8], "a.csv") {
		t.Fatalf("report: %v", lines)
	}
	if !e.exists("failed/b.csv") || len(e.records("b.csv")) != 0 {
		t.Fatal("duplicate processed or not in failed/")
	}
	f, _ := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "b.csv"})
	if f.Status != state.Skipped || !strings.Contains(f.SkipReason, "a.csv") {
		t.Fatalf("ledger: %+v", f)
	}
	// Allowed by the setting: processed as its own file.
	e.src.AllowDuplicateContent = true
	e.drop("c.csv", content)
	if sum := e.run(); sum.Archived != 1 || sum.Rows.Created != 5 {
		t.Fatalf("allowed duplicate: %+v", sum)
	}
	e.exactlyOnce("a.csv", ids)
	e.exactlyOnce("c.csv", ids)
}

func TestResumeAtCheckpoint(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("K", 1, 200)
	e.drop("big.csv", content)
	// The API goes down after 120 creates: the run stops, keeps the file.
	api := &countingAPI{API: e.api, failAfter: 120}
	e.api = api
	sum, err := e.importer().RunSource(context.Background(), e.src)
	if !errors.Is(err, importer.ErrAPIUnavailable) {
		t.Fatalf("want ErrAPIUnavailable, got %v (%+v)", err, sum)
	}
	if !e.exists("inbox/big.csv") || e.exists("reports/big.response.csv") {
		t.Fatal("an interrupted file must stay in the inbox without a report")
	}
	f, _ := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "big.csv"})
	if f.Status != state.Processing || f.DispatchMark < 120 {
		t.Fatalf("ledger after the outage: %+v", f)
	}
	c, _ := e.ledger.RowCounts(context.Background(), state.FileID{Source: "erp", Name: "big.csv"}, f.Run)
	before, _ := api.counts()
	if c.Created != int64(before) || before < 120 {
		t.Fatalf("recorded %+v before the outage, want all %d creates", c, before)
	}
	// The API is back: the run resumes at the checkpoint.
	api2 := &countingAPI{API: e.api.(*countingAPI).API}
	e.api = api2
	sum = e.run()
	if sum.Archived != 1 || sum.Rows.Created != 200 {
		t.Fatalf("resumed: %+v", sum)
	}
	creates, finds := api2.counts()
	if creates != 200-before {
		t.Fatalf("resume created %d, want %d", creates, 200-before)
	}
	// Only rows dispatched but unrecorded when it stopped (at most a
	// window per worker) are looked up; rows 1–120 are not.
	if finds > int(f.DispatchMark)-before {
		t.Fatalf("resume looked up %d rows, mark %d", finds, f.DispatchMark)
	}
	e.exactlyOnce("big.csv", ids)
	if lines := e.report("big.response.csv"); len(lines) != 200 || results(lines)["created"] != 200 {
		t.Fatalf("report: %v", results(lines))
	}
}

func TestCancelFinishesInFlightAndResumes(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("T", 1, 150)
	e.drop("t.csv", content)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := &countingAPI{API: e.api, onCreate: func(n int) {
		if n == 50 {
			cancel() // SIGTERM
		}
	}}
	e.api = api
	sum, err := e.importer().RunSource(ctx, e.src)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if sum.Pending != 1 || !e.exists("inbox/t.csv") {
		t.Fatalf("cancelled: %+v inbox %v", sum, e.ls("inbox"))
	}
	creates, _ := api.counts()
	f, _ := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "t.csv"})
	c, _ := e.ledger.RowCounts(context.Background(), state.FileID{Source: "erp", Name: "t.csv"}, f.Run)
	if int(c.Created) != creates || f.Owner != "" {
		t.Fatalf("in-flight rows not all recorded: %d creates, ledger %+v, owner %q", creates, c, f.Owner)
	}
	e.api = api.API
	if sum := e.run(); sum.Archived != 1 || sum.Rows.Created != 150 {
		t.Fatalf("resumed: %+v", sum)
	}
	e.exactlyOnce("t.csv", ids)
}

func TestReprocess(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("R", 1, 10)
	e.drop("r.csv", content)
	e.run()
	api := &countingAPI{API: e.api}
	e.api = api
	res, err := e.importer().Reprocess(context.Background(), e.src, "r.csv")
	if err != nil || res.Status != state.Done || res.Counts.AlreadyRecorded != 10 {
		t.Fatalf("reprocess: %+v %v", res, err)
	}
	if c, f := api.counts(); c != 0 || f != 0 {
		t.Fatalf("reprocess called the API: %d creates %d lookups", c, f)
	}
	if !e.exists("archive/r.csv") || len(e.ls("archive")) != 1 {
		t.Fatalf("archive: %v", e.ls("archive"))
	}
	// The same drop run again rewrites its own report.
	if res.Report != "reports/r.response.csv" || len(e.ls("reports")) != 1 ||
		results(e.report("r.response.csv"))["already-recorded"] != 10 {
		t.Fatalf("report %s; reports %v", res.Report, e.ls("reports"))
	}
	if _, err := e.importer().Reprocess(context.Background(), e.src, "nope.csv"); !errors.Is(err, importer.ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	e.exactlyOnce("r.csv", ids)
}

func TestValidateDryRun(t *testing.T) {
	e := newEnv(t)
	b, _ := os.ReadFile(fixtures.Path("bad", "duplicate-ids.csv"))
	e.drop("v.csv", string(b))
	var out bytes.Buffer
	api := &countingAPI{API: e.api}
	e.api = api
	res, err := e.importer().Validate(context.Background(), e.src, e.store, "inbox/v.csv", &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != state.Failed || res.Counts.Invalid != 2 || res.Rows != 6 {
		t.Fatalf("validate: %+v\n%s", res, out.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 7 {
		t.Fatalf("validate printed %d lines:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "duplicate external-id") || !strings.Contains(out.String(), ",valid,") {
		t.Fatalf("output:\n%s", out.String())
	}
	if c, f := api.counts(); c+f != 0 || !e.exists("inbox/v.csv") || e.exists("reports/v.response.csv") {
		t.Fatal("validate must not call the API, move or report")
	}
	var whole bytes.Buffer
	e.drop("empty.csv", "")
	if res, err := e.importer().Validate(context.Background(), e.src, e.store, "inbox/empty.csv", &whole); err != nil || res.Status != state.Failed || !strings.Contains(whole.String(), "empty") {
		t.Fatalf("empty: %+v %v %s", res, err, whole.String())
	}
}

// moveThenFail performs a Move and then reports failure, as a crash right
// after the rename would look.
type moveThenFail struct {
	filestore.Store
	armed bool
}

func (m *moveThenFail) Move(ctx context.Context, src, dst string) error {
	if err := m.Store.Move(ctx, src, dst); err != nil {
		return err
	}
	if m.armed {
		m.armed = false
		return errors.New("connection lost after rename")
	}
	return nil
}

func TestCrashBetweenMoveAndDone(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("M", 1, 5)
	e.drop("m.csv", content)
	e.src.Store = &moveThenFail{Store: e.store, armed: true}
	if _, err := e.importer().RunSource(context.Background(), e.src); err == nil {
		t.Fatal("want the move error")
	}
	f, _ := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "m.csv"})
	if f.Destination != "archive/m.csv" || f.Location != "inbox/m.csv" || !e.exists("archive/m.csv") {
		t.Fatalf("after the failed move: %+v", f)
	}
	e.run() // reconciles
	f, _ = e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "m.csv"})
	if f.Destination != "" || f.Location != "archive/m.csv" || f.Status != state.Done || len(e.ls("archive")) != 1 {
		t.Fatalf("after reconcile: %+v archive %v", f, e.ls("archive"))
	}
	e.exactlyOnce("m.csv", ids)
}

func TestResolvePrevious(t *testing.T) {
	e := newEnv(t)
	e.src.ResolvePrevious = true
	e.drop("1.csv", header+"A-1,InvoiceHeader,77,Error,Functional,failed in ERP\r\n")
	e.run()
	e.drop("2.csv", header+"A-2,InvoiceHeader,77,Success,Functional,fixed\r\n")
	e.run()
	r1 := e.records("1.csv")
	r2 := e.records("2.csv")
	if len(r1) != 1 || !r1[0].Resolved || len(r2) != 1 || r2[0].Resolved {
		t.Fatalf("resolve_previous: %+v %+v", r1, r2)
	}
}

func TestStableAndMarkers(t *testing.T) {
	e := newEnv(t)
	e.src.StableFor = 150 * 1e6 // 150ms
	content, _ := csvRows("W", 1, 3)
	e.drop("w.csv", content)
	e.drop("x.csv", content+"W-9,InvoiceHeader,9,Success,Functional,m\r\n")
	e.drop("x.csv.done", "")
	sum := e.run()
	if sum.Archived != 2 {
		t.Fatalf("stable files not taken: %+v", sum)
	}
	if !e.exists("archive/x.csv.done") || e.exists("inbox/x.csv.done") {
		t.Fatalf("marker not moved: inbox %v archive %v", e.ls("inbox"), e.ls("archive"))
	}
}

func TestChangedContentAfterInterruptedRun(t *testing.T) {
	e := newEnv(t)
	v1, _ := csvRows("X", 1, 100)
	e.drop("x.csv", v1)
	api := &countingAPI{API: e.api, failAfter: 40}
	e.api = api
	if _, err := e.importer().RunSource(context.Background(), e.src); !errors.Is(err, importer.ErrAPIUnavailable) {
		t.Fatalf("want ErrAPIUnavailable, got %v", err)
	}
	// Before the file could resume, the ERP replaced it: same keys plus
	// more, other order. Any key of the old run may have been sent, so
	// every unrecorded key is looked up before it is created.
	v2, ids := csvRows("X", 1, 120)
	lines := strings.Split(strings.TrimSuffix(v2, "\r\n"), "\r\n")
	for i, j := 1, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	e.drop("x.csv", strings.Join(lines, "\r\n")+"\r\n")
	e.api = api.API
	sum := e.run()
	if sum.Archived != 1 || sum.Rows.Created+sum.Rows.AlreadyRecorded != 120 {
		t.Fatalf("v2: %+v", sum)
	}
	e.exactlyOnce("x.csv", ids)
}

func TestHugeField(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(e.root, "inbox", "huge.csv")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := fixtures.WriteHugeField(w, 40<<20, true); err != nil {
		t.Fatal(err)
	}
	w.Close()
	sum := e.run()
	if sum.Rejected != 1 || sum.Rows.Created != 2 || sum.Rows.Invalid != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	lines := e.report("huge.response.csv")
	if len(lines) != 3 || lines[1][5] != "invalid" || !strings.Contains(lines[1][8], "too long") {
		t.Fatalf("report: %v", lines)
	}
	e.exactlyOnce("huge.csv", []string{"H-1", "H-3"})
}

func TestResolvePreviousWithinOneFile(t *testing.T) {
	e := newEnv(t)
	e.src.ResolvePrevious = true
	var b strings.Builder
	b.WriteString(header)
	for d := 1; d <= 20; d++ {
		b.WriteString("E-" + fmtInt(d) + ",InvoiceHeader," + fmtInt(d) + ",Error,Functional,failed\r\n")
		b.WriteString("S-" + fmtInt(d) + ",InvoiceHeader," + fmtInt(d) + ",Success,Functional,ok\r\n")
	}
	e.drop("mixed.csv", b.String())
	if sum := e.run(); sum.Rows.Created != 40 {
		t.Fatalf("%+v", sum)
	}
	for _, r := range e.records("mixed.csv") {
		if wantResolved := strings.HasPrefix(r.ExternalID, "E-"); r.Resolved != wantResolved {
			t.Errorf("%s resolved=%v", r.ExternalID, r.Resolved)
		}
	}
}

// hostileLister adds names to every listing that a faulty store might let
// through; the importer must pass over them, not claim them.
type hostileLister struct{ filestore.Store }

func (h hostileLister) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	fis, err := h.Store.List(ctx, dir)
	for _, n := range []string{"a\x00.csv", "../up.csv", "x/y.csv", "..", `c:\evil.csv`} {
		fis = append(fis, filestore.FileInfo{Name: n, Size: 10, ModTime: time.Now().Add(-time.Hour)})
	}
	return fis, err
}

func TestHostileListedNamesAreSkipped(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("H", 1, 3)
	e.drop("good.csv", content)
	e.src.Store = hostileLister{e.store}
	sum := e.run()
	if sum.Archived != 1 || len(sum.Files) != 1 || !sum.Clean() {
		t.Fatalf("summary: %+v", sum)
	}
	e.exactlyOnce("good.csv", ids)
}

// TestDuplicateKeyAfterItsCommit: in a file name's first run plan does not
// read the ledger (the in-flight set keeps what the run committed), so a
// key repeated windows after its first row, whose outcome is committed by
// then, is still refused, in that run and in a re-drop's.
func TestDuplicateKeyAfterItsCommit(t *testing.T) {
	e := newEnv(t)
	body, ids := csvRows("D", 1, 79)
	body += "D-1,InvoiceHeader,999,Success,Functional,repeats row 1\r\n"
	for _, name := range []string{"dup.csv", "dup.csv"} { // first run, then a re-drop
		e.drop(name, body)
		sum := e.run()
		if sum.Rejected != 1 || sum.Rows.Invalid != 1 {
			t.Fatalf("%+v", sum)
		}
		lines := e.report("dup.response.csv")
		if last := lines[len(lines)-1]; last[5] != "invalid" || !strings.Contains(last[8], "duplicate external-id") {
			t.Fatalf("row 80: %v", last)
		}
		e.exactlyOnce("dup.csv", ids)
	}
}

// Every line of a report names the record the server holds for its row:
// in a first run, whose report takes its outcomes from what the run
// committed, and in a re-drop, whose report reads earlier runs' outcomes
// from the ledger.
func TestReportNamesTheServersRecords(t *testing.T) {
	e := newEnv(t)
	body, ids := csvRows("R", 1, 700) // three windows and a part
	for run, want := range []string{"created", "already-recorded"} {
		e.drop("ids.csv", body)
		e.run()
		byID := map[string]string{}
		for _, r := range e.records("ids.csv") {
			byID[r.ExternalID] = fmtInt(int(r.ID))
		}
		reports := e.ls("reports") // the re-drop's report has a timestamp
		if len(reports) != run+1 {
			t.Fatalf("run %d: reports %v", run+1, reports)
		}
		lines := e.report(reports[0])
		if len(lines) != len(ids) {
			t.Fatalf("run %d: %d report lines, want %d", run+1, len(lines), len(ids))
		}
		for _, l := range lines {
			if l[5] != want || l[6] != byID[l[1]] || byID[l[1]] == "" {
				t.Fatalf("run %d: line %v: want %s with the server's record %q", run+1, l, want, byID[l[1]])
			}
		}
	}
}
