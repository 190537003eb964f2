package exporter

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

func TestReport(t *testing.T) {
	var b bytes.Buffer
	w := NewReportWriter(&b)
	lines := []ReportLine{
		{Row: 1, ExternalID: "AP-1", DocumentType: "InvoiceHeader", DocumentID: "5101", Action: "mark_exported", Result: state.Created, RecordID: 42, HTTPStatus: 201},
		{Row: 2, ExternalID: "AP-1", DocumentType: "InvoiceHeader", DocumentID: "5101", Action: "mark_exported", Result: state.Invalid,
			Message: `duplicate external-id "AP-1" (first at row 1)`},
		{Row: 3, ExternalID: "東京,1", Result: state.FailedRow, HTTPStatus: 503, Message: "Service Unavailable\r\nretry later"},
		{Row: 4, Result: state.AlreadyRecorded, RecordID: 7},
	}
	for _, l := range lines {
		if err := w.Write(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "row,external-id,document-type,document-id,action,result,record-id,http-status,message\r\n" +
		"1,AP-1,InvoiceHeader,5101,mark_exported,created,42,201,\r\n" +
		"2,AP-1,InvoiceHeader,5101,mark_exported,invalid,,,\"duplicate external-id \"\"AP-1\"\" (first at row 1)\"\r\n" +
		"3,\"東京,1\",,,,failed,,503,Service Unavailable retry later\r\n" +
		"4,,,,,already-recorded,7,,\r\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(recs) != 5 || recs[2][8] != `duplicate external-id "AP-1" (first at row 1)` {
		t.Errorf("round trip: %v %q", err, recs)
	}

	if err := NewReportWriter(&b).Write(ReportLine{Row: 1, Result: "ok"}); err == nil {
		t.Error("unknown result accepted")
	}
	// An empty report still has its header.
	b.Reset()
	if err := NewReportWriter(&b).Flush(); err != nil || b.String() != strings.Join(ReportHeader, ",")+"\r\n" {
		t.Errorf("empty report %q %v", b.String(), err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestReportWriteError(t *testing.T) {
	w := NewReportWriter(failWriter{})
	w.Write(ReportLine{Row: 1, Result: state.Created}) //nolint:errcheck // buffered; Flush reports
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Flush: %v", err)
	}
}

func TestRecords(t *testing.T) {
	at := time.Date(2024, 6, 30, 10, 12, 3, 0, time.FixedZone("", -7*3600))
	r := &record.Record{
		ID: 9, CreatedAt: &at, UpdatedAt: &at, DocumentType: "InvoiceHeader", DocumentID: record.Int64(5101),
		ExternalID: "AP-1", Status: "Error", ContactAlertType: "Functional",
		Integration: &record.IntegrationRef{Code: "ERP"}, IntegrationFilename: "inv.csv", Resolved: true,
		Responses: []record.Response{{ResponseCode: "E-1", ResponseMessage: "first"}, {ResponseCode: "OK", ResponseMessage: "fixed\nnow"}},
		CreatedBy: &record.User{ID: 3, Login: "api"},
	}
	var b bytes.Buffer
	w, err := NewRecordWriter(&b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(&record.Record{ID: 10}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for i, c := range recs[0] {
		got[c] = recs[1][i]
	}
	want := map[string]string{
		"id": "9", "created-at": "2024-06-30T10:12:03-07:00", "document-type": "InvoiceHeader", "document-id": "5101",
		"document-revision": "", "external-id": "AP-1", "status": "Error", "integration": "ERP",
		"integration-filename": "inv.csv", "resolved": "true", "response-codes": "E-1\nOK",
		"response-messages": "first\nfixed now", "created-by": "api", "updated-by": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(recs) != 3 || recs[2][0] != "10" {
		t.Errorf("second record %q", recs[2:])
	}

	b.Reset()
	w, err = NewRecordWriter(&b, []string{"ID", "External_ID"})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(r) //nolint:errcheck
	w.Flush()  //nolint:errcheck
	if b.String() != "id,external-id\r\n9,AP-1\r\n" {
		t.Errorf("chosen columns: %q", b.String())
	}
	if _, err := NewRecordWriter(&b, []string{"id", "colour"}); err == nil || !strings.Contains(err.Error(), `"colour"`) {
		t.Errorf("unknown column: %v", err)
	}
}

func TestFormulaEscaping(t *testing.T) {
	for in, want := range map[string]string{"=1+2": "'=1+2", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)",
		"\tx": "'\tx", "\rx": "'\rx", "plain": "plain", "": "", "a=b": "a=b"} {
		if got := EscapeFormula(in); got != want {
			t.Errorf("EscapeFormula(%q) = %q, want %q", in, got, want)
		}
	}
	var b strings.Builder
	w := NewReportWriter(&b)
	if err := w.Write(ReportLine{Row: 1, ExternalID: "=cmd", DocumentType: "@x", Action: "+a", Result: state.Invalid, Message: "-m", RecordID: 5}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if line := strings.Split(b.String(), "\r\n")[1]; line != "1,'=cmd,'@x,,'+a,invalid,5,,'-m" {
		t.Fatalf("escaped report line %q", line)
	}
	b.Reset()
	w = NewReportWriter(&b)
	w.SetEscapeFormulas(false)
	w.Write(ReportLine{Row: 1, ExternalID: "=cmd", Result: state.Invalid})
	w.Flush()
	if line := strings.Split(b.String(), "\r\n")[1]; line != "1,=cmd,,,,invalid,,," {
		t.Fatalf("verbatim report line %q", line)
	}

	b.Reset()
	rw, err := NewRecordWriter(&b, []string{"id", "external-id", "status", "response-messages"})
	if err != nil {
		t.Fatal(err)
	}
	r := &record.Record{ID: 7, ExternalID: "=HYPERLINK(1)", Status: "\tSuccess", Responses: []record.Response{{ResponseMessage: "@here"}}}
	rw.Write(r)
	rw.Flush()
	if line := strings.Split(b.String(), "\r\n")[1]; line != "7,'=HYPERLINK(1),'\tSuccess,'@here" {
		t.Fatalf("escaped export line %q", line)
	}
	b.Reset()
	rw, _ = NewRecordWriter(&b, []string{"external-id"})
	rw.SetEscapeFormulas(false)
	rw.Write(r)
	rw.Flush()
	if line := strings.Split(b.String(), "\r\n")[1]; line != "=HYPERLINK(1)" {
		t.Fatalf("verbatim export line %q", line)
	}
}
