package dashboard

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"strconv"
	"time"

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
	if _, err := r.Read(); err != nil { // header
		return nil, false, err
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
		if len(rec) < 9 {
			continue
		}
		o := state.Outcome{ExternalID: rec[1], DocumentType: rec[2], DocumentID: rec[3], Action: rec[4], Result: state.Result(rec[5]), Message: rec[8]}
		o.Row, _ = strconv.ParseInt(rec[0], 10, 64)
		o.RecordID, _ = strconv.ParseInt(rec[6], 10, 64)
		o.HTTPStatus, _ = strconv.Atoi(rec[7])
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
