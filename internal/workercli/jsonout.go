package workercli

import (
	"time"

	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// One vocabulary for every --json summary (run, reprocess, status), so a
// script reads the same words whichever command it ran. A file's result
// is one of:
//
//	archived   every row recorded; the file is in archive/
//	failed     rows or the whole file rejected; the file is in failed/
//	skipped    not processed (its content was already seen)
//	pending    not finished yet (interrupted, or a source/API outage):
//	           the next pass resumes it
//	elsewhere  another live worker holds it
//
// A source's summary counts its files by those words; rows are counted by
// their report result (created, already_recorded, invalid, failed). Where
// a file is now is "location"; its report is "report".

// jsonFile is one file in a --json summary.
type jsonFile struct {
	Name        string       `json:"name"`
	Result      string       `json:"result"`
	Rows        int64        `json:"rows"`
	Counts      state.Counts `json:"counts"`
	RowsPending int64        `json:"rows_pending"`
	Location    string       `json:"location,omitempty"`
	Report      string       `json:"report,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	Error       string       `json:"error,omitempty"`
	FirstSeen   *time.Time   `json:"first_seen,omitempty"`
	FinishedAt  *time.Time   `json:"finished_at,omitempty"`
}

// jsonSummary is one source's files and counts in a --json summary.
type jsonSummary struct {
	Files       []jsonFile   `json:"files"`
	Archived    int          `json:"archived"`
	Failed      int          `json:"failed"`
	Skipped     int          `json:"skipped"`
	Pending     int          `json:"pending"`
	Elsewhere   int          `json:"elsewhere"`
	Rows        state.Counts `json:"rows"`
	RowsPending int64        `json:"rows_pending"`
}

func (s *jsonSummary) add(f jsonFile) {
	s.Files = append(s.Files, f)
	switch f.Result {
	case "archived":
		s.Archived++
	case "failed":
		s.Failed++
	case "skipped":
		s.Skipped++
	case "elsewhere":
		s.Elsewhere++
	default:
		s.Pending++
	}
	s.Rows.Plus(f.Counts)
	s.RowsPending += f.RowsPending
}

// runSummaryJSON turns a pass's Summary into the shared vocabulary.
func runSummaryJSON(sum importer.Summary) jsonSummary {
	out := jsonSummary{Files: []jsonFile{}}
	for _, f := range sum.Files {
		jf := jsonFile{
			Name: f.Name, Result: fileResult(f.Status), Rows: f.Rows, Counts: f.Counts,
			Location: f.MovedTo, Report: f.Report, Reason: f.Reason,
		}
		if f.Err != nil {
			jf.Error = f.Err.Error()
		}
		if jf.Result == "pending" {
			jf.RowsPending = max(0, f.Rows-f.Counts.Total())
		}
		out.add(jf)
	}
	return out
}
