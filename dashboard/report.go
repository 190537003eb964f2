package dashboard

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/state"
)

// reportRows reads a file's response report, the complete record of its
// rows (invalid rows never reach the ledger, which keeps only what was
// sent). It returns up to limit rows, the invalid and failed ones first,
// and whether there were more. With firstBad it stops at the first
// invalid or failed row.
func (h *handler) reportRows(ctx context.Context, f state.File, limit int, firstBad bool) ([]state.Outcome, bool, error) {
	if h.c.OpenReport == nil || f.ReportPath == "" {
		return nil, false, errors.New("no report")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := h.c.OpenReport(ctx, f.Source, f.ReportPath)
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	r := csv.NewReader(rc)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, false, err
	}
	// Columns by name, as exporter.ReportHeader defines them, so the page
	// follows the report's contract rather than an order copied here.
	col, err := reportColumns(header)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", f.ReportPath, err)
	}
	var bad, good []state.Outcome
	more := false
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, err
		}
		if len(rec) < len(exporter.ReportHeader) {
			continue
		}
		cell := func(name string) string { return rec[col[name]] }
		o := state.Outcome{ExternalID: cell("external-id"), DocumentType: cell("document-type"), DocumentID: cell("document-id"),
			Action: cell("action"), Result: state.Result(cell("result")), Message: cell("message")}
		o.Row, _ = strconv.ParseInt(cell("row"), 10, 64)
		o.RecordID, _ = strconv.ParseInt(cell("record-id"), 10, 64)
		o.HTTPStatus, _ = strconv.Atoi(cell("http-status"))
		if o.Result.Recorded() {
			if firstBad {
				continue
			}
			if len(bad)+len(good) < limit {
				good = append(good, o)
			} else {
				more = true
			}
			continue
		}
		if firstBad {
			return []state.Outcome{o}, false, nil
		}
		// Bad rows displace good ones: they are what the page is for.
		switch {
		case len(bad)+len(good) < limit:
		case len(good) > 0:
			good, more = good[:len(good)-1], true
		default:
			more = true
			continue
		}
		bad = append(bad, o)
	}
	return append(bad, good...), more, nil
}

// reportColumns finds each column of exporter.ReportHeader in header.
func reportColumns(header []string) (map[string]int, error) {
	at := make(map[string]int, len(header))
	for i, h := range header {
		at[h] = i
	}
	col := make(map[string]int, len(exporter.ReportHeader))
	for _, name := range exporter.ReportHeader {
		i, ok := at[name]
		if !ok {
			return nil, fmt.Errorf("not a response report: no %q column", name)
		}
		col[name] = i
	}
	return col, nil
}
