package statetest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// History shapes an aged ledger: Nights nightly passes, each of Files
// files of Rows row outcomes, every FailEvery-th file rejected (its last
// FailedRows rows failed with 422). The defaults are a year of a busy
// source: 365 × 55 files, 250 rows each (20,075 files, 5.0 M outcomes).
type History struct {
	Source     string
	Nights     int
	Files      int // per night
	Rows       int // per file
	FailEvery  int
	FailedRows int
}

// AgedFromEnv is the default History with IHR_AGED_NIGHTS,
// IHR_AGED_FILES (per night) and IHR_AGED_ROWS (per file) applied, so a
// quick run can build a small one.
func AgedFromEnv() History {
	h := History{Source: "erp", Nights: 365, Files: 55, Rows: 250, FailEvery: 20, FailedRows: 10}
	for env, p := range map[string]*int{"IHR_AGED_NIGHTS": &h.Nights, "IHR_AGED_FILES": &h.Files, "IHR_AGED_ROWS": &h.Rows} {
		if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n >= 0 {
			*p = n
		}
	}
	return h
}

// FileName is the name of file i of night n.
func (h History) FileName(night, i int) string { return fmt.Sprintf("INV_%04d_%03d.csv", night, i) }

// Failed reports whether file i of a night was rejected.
func (h History) Failed(i int) bool { return h.FailEvery > 0 && i%h.FailEvery == h.FailEvery-1 }

// Build records h into l through the Ledger API, one night at a time:
// clock (the ledger's) is set to each night's 02:00 plus a second per
// file, so first-seen, update and outcome times spread over the nights as
// a real worker's would. It calls report (if not nil) for each rejected
// file with its name and report path, and returns the clock's time after
// the last night.
func (h History) Build(ctx context.Context, l state.Ledger, clock *Clock, report func(f state.File)) (time.Time, error) {
	start := h.start(clock.Now())
	var record int64
	for n := range h.Nights {
		night := start.Add(time.Duration(n) * 24 * time.Hour)
		for i := range h.Files {
			clock.Set(night.Add(time.Duration(i) * time.Second))
			id := state.FileID{Source: h.Source, Name: h.FileName(n, i)}
			f, err := l.Claim(ctx, id, "aged", time.Hour)
			if err != nil {
				return time.Time{}, err
			}
			failed := h.Failed(i)
			outs := make([]state.Outcome, h.Rows)
			f.Counts = state.Counts{}
			for r := range outs {
				record++
				key := fmt.Sprintf("E-%d-%d-%d", n, i, r+1)
				o := state.Outcome{Key: key, Row: int64(r + 1), Run: 1, ExternalID: key, DocumentType: "InvoiceHeader",
					DocumentID: strconv.Itoa(r + 1), Action: "create", Fingerprint: strconv.FormatInt(record, 36),
					Result: state.Created, RecordID: record, HTTPStatus: 201}
				if failed && r >= h.Rows-h.FailedRows {
					o.Result, o.RecordID, o.HTTPStatus, o.Message = state.FailedRow, 0, 422, "Integration is unknown"
				}
				f.Counts.Add(o.Result)
				outs[r] = o
			}
			if err := l.RecordOutcomes(ctx, id.HeldBy("aged"), outs); err != nil {
				return time.Time{}, err
			}
			f.Status, f.Run, f.Rows = state.Done, 1, int64(h.Rows)
			f.SHA256 = strconv.FormatInt(int64(n*100000+i), 16)
			f.Size, f.ModTime = int64(h.Rows*60), night.Add(-time.Minute)
			f.StartedAt, f.FinishedAt = clock.Now(), clock.Now()
			f.Location, f.ArchivedTo = "archive/"+id.Name, "archive/"+id.Name
			f.ReportPath = "reports/" + id.Name[:len(id.Name)-len(".csv")] + ".response.csv"
			if failed {
				f.Status = state.Failed
				f.Location, f.ArchivedTo = "failed/"+id.Name, "failed/"+id.Name
			}
			if err := l.PutFile(ctx, "aged", f); err != nil {
				return time.Time{}, err
			}
			if err := l.Release(ctx, id.HeldBy("aged"), false); err != nil {
				return time.Time{}, err
			}
			if failed && report != nil {
				report(f)
			}
		}
	}
	end := h.End(start)
	clock.Set(end)
	return end, nil
}

func (h History) start(t time.Time) time.Time { return t.Truncate(24 * time.Hour).Add(2 * time.Hour) }

// End is the time Build leaves a clock at that read t when it began: 08:00
// after the last night.
func (h History) End(t time.Time) time.Time {
	return h.start(t).Add(time.Duration(max(h.Nights-1, 0))*24*time.Hour + 6*time.Hour)
}
