package importer

// Tests of dispatch's stages on their own (the end-to-end, kill -9 and
// fault suites test them together).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

func TestWindowReaderKeepsToItsSpan(t *testing.T) {
	csv := "external-id,document-type,document-id,status,contact-alert-type,response-message\r\n"
	for i := 1; i <= 6; i++ {
		docID := fmt.Sprint(i)
		if i == 4 {
			docID = "not a number" // does not map: never yielded
		}
		csv += fmt.Sprintf("ID-%d,InvoiceHeader,%s,Success,Functional,ok\r\n", i, docID)
	}
	rd, err := parse.NewReader(strings.NewReader(csv), "auto", parse.Options{File: "f.csv"})
	if err != nil {
		t.Fatal(err)
	}
	mp, err := mapping.New(mapping.Config{}, rd.Header(), "ERP")
	if err != nil {
		t.Fatal(err)
	}
	invalid := 0
	r := &windowReader{rd: rd, mp: mp, first: 2, last: 5, recName: "f.csv", size: 2,
		invalid: func() { invalid++ }, readErr: func(err error) error { return err }}
	var got [][]int64
	for {
		w, err := r.next()
		var rows []int64
		for _, it := range w {
			rows = append(rows, it.row)
			if it.key != state.Key(fmt.Sprintf("ID-%d", it.row), it.row) || it.fp != fingerprint(it.m) {
				t.Fatalf("row %d: key %q fp %q", it.row, it.key, it.fp)
			}
		}
		got = append(got, rows)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[[2 3] [5]]" || invalid != 1 {
		t.Fatalf("windows %v, invalid %d; want [[2 3] [5]], 1", got, invalid)
	}
}

func TestSettledByIsTheOneTable(t *testing.T) {
	m := mapping.Mapped{Action: record.Create, Record: record.Record{ExternalID: "A", DocumentType: "InvoiceHeader"}}
	it := item{row: 7, key: "A", fp: fingerprint(m), m: m}
	const run = 3
	for _, c := range []struct {
		name string
		o    state.Outcome
		ok   bool
		want verdict
	}{
		{"no outcome", state.Outcome{}, false, unsettled},
		{"this run, this row", state.Outcome{Run: run, Row: 7, Result: state.FailedRow}, true, doneThisRun},
		{"this run, earlier row", state.Outcome{Run: run, Row: 2, Result: state.Created, Fingerprint: it.fp}, true, duplicateKey},
		{"earlier run, same content", state.Outcome{Run: 1, Row: 7, Result: state.Created, Fingerprint: it.fp}, true, recordedBefore},
		{"earlier run, other content", state.Outcome{Run: 1, Row: 7, Result: state.Created, Fingerprint: "other"}, true, unsettled},
		{"earlier run failed", state.Outcome{Run: 1, Row: 7, Result: state.FailedRow, Fingerprint: it.fp}, true, unsettled},
	} {
		if got := settledBy(it, c.o, c.ok, run); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// The report reads the same table, with items that work out their
	// fingerprint only when the table asks for it.
	rit := keyedItem(7, m)
	l := resultLine(rowLine(7, m), rit, state.Outcome{Run: 1, Result: state.Created, RecordID: 9, Fingerprint: it.fp}, true, run)
	if l.Result != state.AlreadyRecorded || l.RecordID != 9 || l.Message != msgRecordedBefore {
		t.Fatalf("report line: %+v", l)
	}
	l = resultLine(rowLine(7, m), rit, state.Outcome{Run: 1, Result: state.Created, RecordID: 9, Fingerprint: "other"}, true, run)
	if l.Result != state.FailedRow {
		t.Fatalf("report line, other content: %+v", l)
	}
}

func TestInflightSnapshotOutlivesCommit(t *testing.T) {
	var p inflight
	p.add(map[string]int64{"a": 1, "b": 2})
	s, _ := p.snapshot([]string{"a", "c"})
	// A commit after the snapshot does not take the key out of it, so a
	// ledger read that began before the commit still has it in one place.
	p.committed([]state.Outcome{{Key: "a", Row: 1}, {Key: "b", Row: 5}})
	if len(s) != 1 || s["a"] != 1 {
		t.Fatalf("snapshot %v", s)
	}
	if now, _ := p.snapshot([]string{"a", "b"}); len(now) != 1 || now["b"] != 2 {
		t.Fatalf("after commit %v: b's row 2 is still in flight (row 5 committed)", now)
	}
}

// A fresh span's set remembers committed keys, so plan reads the ledger
// only for a window with one of them, until the set would pass
// maxRemembered: then plan reads it for every window.
func TestInflightRemembersAFreshSpan(t *testing.T) {
	var p inflight
	p.startFresh()
	if _, read := p.snapshot([]string{"a"}); read {
		t.Fatal("a fresh span reads the ledger before any commit")
	}
	p.add(map[string]int64{"a": 1, "b": 2})
	p.committed([]state.Outcome{{Key: "a", Row: 1}})
	if s, read := p.snapshot([]string{"b", "c"}); read || s["b"] != 2 {
		t.Fatalf("keys not committed: %v, read %v", s, read)
	}
	if s, read := p.snapshot([]string{"c", "a"}); !read || len(s) != 0 {
		t.Fatalf("a committed key: %v, read %v; want the ledger read", s, read)
	}
	big := make([]state.Outcome, maxRemembered)
	for i := range big {
		big[i] = state.Outcome{Key: fmt.Sprint("k", i), Row: int64(i + 3)}
	}
	p.committed(big)
	if _, read := p.snapshot([]string{"z"}); !read {
		t.Fatalf("past %d keys plan still skips the ledger", maxRemembered)
	}
}

func TestLanesKeepADocumentTogether(t *testing.T) {
	doc := func(typ string, id int64) mapping.Mapped {
		return mapping.Mapped{Record: record.Record{DocumentType: typ, DocumentID: record.Int64(id)}}
	}
	if l := newLanes(8, false, 256); len(l) != 1 || l.of(doc("A", 1)) != l.of(doc("B", 2)) {
		t.Fatalf("without resolve_previous there is one lane")
	}
	l := newLanes(8, true, 256)
	if len(l) != 8 || l.of(doc("InvoiceHeader", 5)) != l.of(doc("InvoiceHeader", 5)) {
		t.Fatalf("a document's rows share a lane")
	}
	used := map[chan job]bool{}
	for i := range int64(64) {
		used[l.of(doc("InvoiceHeader", i))] = true
	}
	if len(used) < 2 {
		t.Fatalf("documents spread over %d lane(s)", len(used))
	}
	l.close()
}

func TestCollectorBatchesAndStopsAfterAFailure(t *testing.T) {
	collect := func(n int, fail bool) ([]int, error) {
		var sizes []int
		c := &collector{size: 3, every: time.Hour, commit: func(b []state.Outcome) error {
			sizes = append(sizes, len(b))
			if fail {
				return errors.New("ledger down")
			}
			return nil
		}}
		results := make(chan state.Outcome, n)
		for i := range n {
			results <- state.Outcome{Row: int64(i + 1)}
		}
		close(results)
		return sizes, c.run(results)
	}
	if sizes, err := collect(7, false); err != nil || fmt.Sprint(sizes) != "[3 3 1]" {
		t.Fatalf("batches %v, %v; want [3 3 1]", sizes, err)
	}
	if sizes, err := collect(7, true); err == nil || fmt.Sprint(sizes) != "[3]" {
		t.Fatalf("after a failed commit: batches %v, %v; want [3] and the error", sizes, err)
	}
}

func TestPlanSendsOnlyWhatTheLedgerDoesNotSettle(t *testing.T) {
	row := func(n int64, id string) item {
		m := mapping.Mapped{Action: record.Create, Record: record.Record{ExternalID: id, DocumentType: "InvoiceHeader"}}
		return newItem(int(n), m)
	}
	chunk := []item{row(1, "done"), row(2, "old"), row(3, "prior"), row(4, "failed5xx"), row(5, "new"), row(6, "new"), row(7, "flying")}
	const run = 2
	stored := map[string]state.Outcome{
		chunk[0].key: {Run: run, Row: 1, Result: state.Created},                                       // checkpoint
		chunk[1].key: {Run: 1, Row: 2, Result: state.Created, RecordID: 11, Fingerprint: chunk[1].fp}, // same content earlier
		chunk[2].key: {Run: 1, Row: 3, Result: state.Created, RecordID: 12, Fingerprint: "changed"},   // older drop made this content
		chunk[3].key: {Run: 1, Row: 4, Result: state.FailedRow, HTTPStatus: 503, Fingerprint: chunk[3].fp},
	}
	var asked []string
	d := &dispatchRun{im: &Importer{obs: NopObserver{}}, f: &state.File{Run: run}, resumeMark: 0, foundAs: state.Created,
		ledger: fileLedger{
			outcomes: func(_ context.Context, keys []string) (map[string]state.Outcome, error) { return stored, nil },
			recorded: func(_ context.Context, keys, fps []string) (map[string]int64, error) {
				asked = keys
				return map[string]int64{chunk[2].key: 12}, nil
			},
		}}
	d.base = context.Background()
	d.inflight.add(map[string]int64{chunk[6].key: 99}) // an earlier row with this key is in flight
	p, err := d.plan(chunk)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(asked) != fmt.Sprint([]string{chunk[2].key, chunk[3].key}) {
		t.Fatalf("Recorded asked for %v", asked)
	}
	var direct, send []string
	for _, o := range p.direct {
		direct = append(direct, fmt.Sprintf("%d:%s:%d", o.Row, o.Result, o.RecordID))
	}
	for _, j := range p.send {
		send = append(send, fmt.Sprintf("%d:%v:%s", j.row, j.lookupFirst, j.found))
	}
	// Row 1 is the checkpoint, row 6 repeats row 5's key, row 7 row 99's.
	if fmt.Sprint(direct) != "[2:already-recorded:11 3:already-recorded:12]" ||
		fmt.Sprint(send) != "[4:true:already-recorded 5:false:created]" || d.done.Load() != 3 {
		t.Fatalf("direct %v, send %v, done %d", direct, send, d.done.Load())
	}
}
