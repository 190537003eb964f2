// Package exporter writes the worker's CSV output: the per-file response
// report (one line per input row, columns fixed by worker.md) and record
// exports. Output is UTF-8, RFC 4180 (CRLF line ends, quoting only where
// needed).
//
// Both writers escape formulas by default (OWASP's CSV-injection rule): a
// cell that carries input text and begins with =, +, -, @, TAB or CR is
// written with a leading ', so a spreadsheet shows it instead of running
// it. SetEscapeFormulas(false) (report.escape_formulas: false) turns that
// off for readers that want the values verbatim.
package exporter

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// ReportHeader is the response report's header; the names are a contract.
var ReportHeader = []string{"row", "external-id", "document-type", "document-id", "action", "result", "record-id", "http-status", "message"}

// ReportLine is one line of a response report. Zero RecordID and
// HTTPStatus are written as empty cells (no record, no API call).
type ReportLine struct {
	Row          int
	ExternalID   string
	DocumentType string
	DocumentID   string
	Action       string
	Result       state.Result // state's words: created | already-recorded | invalid | failed (| valid, dry run)
	RecordID     int64
	HTTPStatus   int
	Message      string
}

// ReportWriter writes a response report. Lines are written in the order
// given; the caller writes them in input order.
type ReportWriter struct {
	w      *csv.Writer
	cells  []string
	header bool
	keep   bool // formulas written verbatim
	dryRun bool // results are valid | invalid
}

// NewReportWriter returns a writer to w. The header is written with the
// first line (or by Flush for an empty report).
func NewReportWriter(w io.Writer) *ReportWriter {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	return &ReportWriter{w: cw, cells: make([]string, len(ReportHeader))}
}

// SetEscapeFormulas turns formula escaping on (the default) or off.
func (rw *ReportWriter) SetEscapeFormulas(on bool) { rw.keep = !on }

// SetDryRun makes the report a dry run's (validate): in the same columns,
// every row's result is state.Valid (it would be posted) or state.Invalid.
func (rw *ReportWriter) SetDryRun(on bool) { rw.dryRun = on }

func (rw *ReportWriter) writeHeader() error {
	if rw.header {
		return nil
	}
	rw.header = true
	return rw.w.Write(ReportHeader)
}

// Write writes one line. It refuses an unknown Result, so that a report
// never carries a value users cannot script against.
func (rw *ReportWriter) Write(l ReportLine) error {
	if !rw.known(l.Result) {
		return fmt.Errorf("exporter: report row %d: unknown result %q", l.Row, l.Result)
	}
	if err := rw.writeHeader(); err != nil {
		return err
	}
	c := rw.cells
	c[0] = strconv.Itoa(l.Row)
	c[1], c[2], c[3], c[4], c[5] = l.ExternalID, l.DocumentType, l.DocumentID, l.Action, string(l.Result)
	c[6], c[7] = "", ""
	if l.RecordID != 0 {
		c[6] = strconv.FormatInt(l.RecordID, 10)
	}
	if l.HTTPStatus != 0 {
		c[7] = strconv.Itoa(l.HTTPStatus)
	}
	c[8] = oneLine(l.Message)
	if !rw.keep {
		for _, i := range []int{1, 2, 3, 4, 8} { // the cells that may carry input
			c[i] = EscapeFormula(c[i])
		}
	}
	return rw.w.Write(c)
}

func (rw *ReportWriter) known(r state.Result) bool {
	if rw.dryRun {
		return r == state.Valid || r == state.Invalid
	}
	switch r {
	case state.Created, state.AlreadyRecorded, state.Invalid, state.FailedRow:
		return true
	}
	return false
}

// Flush writes buffered lines (and the header, if nothing was written)
// and returns the first write error.
func (rw *ReportWriter) Flush() error {
	if err := rw.writeHeader(); err != nil {
		return err
	}
	rw.w.Flush()
	return rw.w.Error()
}

// EscapeFormula prefixes s with ' when a spreadsheet would take it for a
// formula: it begins with =, +, -, @, TAB or CR (OWASP, CSV injection).
func EscapeFormula(s string) string {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// oneLine keeps messages on one physical line, so that a report stays
// readable with line-based tools (grep, wc -l) as well as CSV readers.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)), " ")
}

// RecordColumns is the default column set of a record export, in order.
// response-codes and response-messages hold every response of the record,
// oldest first, one per line within the cell.
var RecordColumns = []string{
	"id", "created-at", "updated-at", "document-type", "document-id", "document-revision",
	"document-status", "external-id", "status", "contact-alert-type", "creation-method",
	"integration", "integration-run-id", "integration-filename", "resolved",
	"response-codes", "response-messages", "created-by", "updated-by",
}

var recordCells = map[string]func(r *record.Record) string{
	"id":                 func(r *record.Record) string { return strconv.FormatInt(r.ID, 10) },
	"created-at":         func(r *record.Record) string { return timeCell(r.CreatedAt) },
	"updated-at":         func(r *record.Record) string { return timeCell(r.UpdatedAt) },
	"document-type":      func(r *record.Record) string { return r.DocumentType },
	"document-id":        func(r *record.Record) string { return intCell(r.DocumentID) },
	"document-revision":  func(r *record.Record) string { return intCell(r.DocumentRevision) },
	"document-status":    func(r *record.Record) string { return r.DocumentStatus },
	"external-id":        func(r *record.Record) string { return r.ExternalID },
	"status":             func(r *record.Record) string { return r.Status },
	"contact-alert-type": func(r *record.Record) string { return r.ContactAlertType },
	"creation-method":    func(r *record.Record) string { return r.CreationMethod },
	"integration": func(r *record.Record) string {
		if r.Integration == nil {
			return ""
		}
		return r.Integration.Code
	},
	"integration-run-id": func(r *record.Record) string {
		if r.IntegrationRunID != nil {
			return intCell(r.IntegrationRunID)
		}
		if r.IntegrationRun != nil && r.IntegrationRun.ID != 0 {
			return strconv.FormatInt(r.IntegrationRun.ID, 10)
		}
		return ""
	},
	"integration-filename": func(r *record.Record) string { return r.IntegrationFilename },
	"resolved":             func(r *record.Record) string { return strconv.FormatBool(r.Resolved) },
	"response-codes": func(r *record.Record) string {
		s := make([]string, len(r.Responses))
		for i, x := range r.Responses {
			s[i] = x.ResponseCode
		}
		return strings.Join(s, "\n")
	},
	"response-messages": func(r *record.Record) string {
		s := make([]string, len(r.Responses))
		for i, x := range r.Responses {
			s[i] = oneLine(x.ResponseMessage)
		}
		return strings.Join(s, "\n")
	},
	"created-by": func(r *record.Record) string { return userCell(r.CreatedBy) },
	"updated-by": func(r *record.Record) string { return userCell(r.UpdatedBy) },
}

func timeCell(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

func intCell(p *int64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(*p, 10)
}

func userCell(u *record.User) string {
	if u == nil {
		return ""
	}
	if u.Login != "" {
		return u.Login
	}
	return strconv.FormatInt(u.ID, 10)
}

// RecordWriter writes records as CSV, one line each, for the export
// command.
type RecordWriter struct {
	w     *csv.Writer
	cols  []func(*record.Record) string
	ours  []bool // the column holds only values the server makes (id, times, resolved)
	cells []string
	keep  bool
}

// serverColumns never carry input text, so they are never escaped.
var serverColumns = map[string]bool{"id": true, "created-at": true, "updated-at": true, "resolved": true}

// SetEscapeFormulas turns formula escaping on (the default) or off.
func (rw *RecordWriter) SetEscapeFormulas(on bool) { rw.keep = !on }

// NewRecordWriter writes the header at once. columns chooses and orders
// the columns (any spelling record.NormalizeKey accepts); nil means
// RecordColumns. An unknown column is an error naming it.
func NewRecordWriter(w io.Writer, columns []string) (*RecordWriter, error) {
	if len(columns) == 0 {
		columns = RecordColumns
	}
	rw := &RecordWriter{w: csv.NewWriter(w), cells: make([]string, len(columns))}
	rw.w.UseCRLF = true
	names := make([]string, len(columns))
	for i, c := range columns {
		n := record.NormalizeKey(c)
		f, ok := recordCells[n]
		if !ok {
			return nil, fmt.Errorf("exporter: unknown column %q (want any of %s)", c, strings.Join(RecordColumns, ", "))
		}
		rw.cols = append(rw.cols, f)
		rw.ours = append(rw.ours, serverColumns[n])
		names[i] = n
	}
	if err := rw.w.Write(names); err != nil {
		return nil, err
	}
	return rw, nil
}

// Write writes one record.
func (rw *RecordWriter) Write(r *record.Record) error {
	for i, f := range rw.cols {
		rw.cells[i] = f(r)
		if !rw.keep && !rw.ours[i] {
			rw.cells[i] = EscapeFormula(rw.cells[i])
		}
	}
	return rw.w.Write(rw.cells)
}

// Flush writes buffered lines and returns the first write error.
func (rw *RecordWriter) Flush() error {
	rw.w.Flush()
	return rw.w.Error()
}
