package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/dashboard"
	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// agedLedger is a SQLite ledger holding statetest.HistoryFromEnv (a
// year of nightly files by default), with a response report in dir and
// an open file_failed event for each rejected file. Under
// IHR_HISTORY_CACHE it is kept between runs: a directory there that
// already holds one built with the same shape is opened as it is.
func agedLedger(b *testing.B) (l *state.SQLite, h statetest.History, dir string, end time.Time) {
	h, err := statetest.HistoryFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	dir = os.Getenv("IHR_HISTORY_CACHE")
	if dir == "" {
		dir = b.TempDir()
	}
	dir = filepath.Join(dir, "dashboard-"+h.String())
	clock := statetest.NewClock()
	open := func() *state.SQLite {
		l, err := state.OpenSQLite(context.Background(), filepath.Join(dir, "state.db"), state.SQLiteOptions{Now: clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	done := filepath.Join(dir, "built")
	if _, err := os.Stat(done); err == nil {
		end := h.End(clock.Now())
		clock.Set(end)
		return open(), h, dir, end
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "reports"), 0o755); err != nil {
		b.Fatal(err)
	}
	l = open()
	ops, err := state.OpsOf(context.Background(), l)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var werr error
	// Each rejected file leaves its report and its file_failed event,
	// open (no corrected file of the same name came), as serve's would.
	end, err = h.Build(context.Background(), l, clock, 1, func(f state.File) {
		if werr == nil {
			werr = writeReport(filepath.Join(dir, filepath.FromSlash(f.ReportPath)), h)
		}
		if werr == nil {
			_, werr = ops.OpenEvent(context.Background(), state.Event{ID: "file_failed/" + f.Source + "/" + f.Name + "/1",
				Kind: state.EventFileFailed, Source: f.Source, File: f.Name, Detail: fmt.Sprintf("%d failed rows", f.Counts.Failed), OpenedAt: f.FinishedAt})
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d files, %d row outcomes in %s", h.Files(), h.Outcomes(), time.Since(start).Round(time.Second))
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return l, h, dir, end
}

// writeReport writes a rejected file's report as the importer does: every
// row, the failed ones last.
func writeReport(path string, h statetest.History) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := exporter.NewReportWriter(f)
	for r := 1; r <= h.RowsPerFile; r++ {
		l := exporter.ReportLine{Row: r, ExternalID: fmt.Sprintf("E-%d", r), DocumentType: "InvoiceHeader",
			DocumentID: fmt.Sprint(r), Action: "create", Result: state.Created, RecordID: int64(r), HTTPStatus: 201}
		if r > h.RowsPerFile-h.FailedRows {
			l.Result, l.RecordID, l.HTTPStatus, l.Message = state.FailedRow, 0, 422, "Integration is unknown"
		}
		if err := w.Write(l); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// BenchmarkOverviewAged loads the overview 20 times on an aged ledger (a
// year of nightly history by default, see statetest.HistoryFromEnv) and
// reports the p95, the median and the first (cold) load in ms. Each
// iteration starts with a new handler, so its first load is cold.
//
//	go test ./dashboard -run '^$' -bench OverviewAged -benchtime 1x
func BenchmarkOverviewAged(b *testing.B) {
	l, hist, dir, end := agedLedger(b)
	defer l.Close()
	ctx := context.Background()
	ops, err := state.OpsOf(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	st, err := local.New(dir, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// A night of fewer files than FailEvery (a small IHR_HISTORY) has none
	// rejected, so no reasons to show.
	rejected := hist.FailEvery > 0 && hist.FilesPerNight >= hist.FailEvery
	var opened int
	var p95, p50, first []float64
	for b.Loop() {
		h, err := dashboard.New(dashboard.Config{
			Sources: []dashboard.Source{{Name: hist.Source, Expect: "0 2 * * * within 2h", Retain: "archive 90d"}},
			Ops:     ops, Ledger: l, Now: func() time.Time { return end },
			OpenReport: func(ctx context.Context, source, name string) (io.ReadCloser, error) {
				opened++
				return st.Open(ctx, name, 0)
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		var ms []float64
		for range 20 {
			t0 := time.Now()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
			if rec.Code != 200 || strings.Contains(rec.Body.String(), "Integration is unknown") != rejected {
				b.Fatalf("GET / = %d, the rejected files' reasons shown: %v, want %v", rec.Code, !rejected, rejected)
			}
		}
		first = append(first, ms[0])
		slices.Sort(ms)
		p95, p50 = append(p95, ms[18]), append(p50, ms[9]) // nearest rank of 20
	}
	b.ReportMetric(median(p95), "p95-ms")
	b.ReportMetric(median(p50), "p50-ms")
	b.ReportMetric(median(first), "first-ms")
	b.ReportMetric(float64(opened)/float64(20*len(p95)), "reports/load")
}

func median(x []float64) float64 {
	slices.Sort(x)
	return x[len(x)/2]
}
