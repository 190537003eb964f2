package state_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// small is a short history: n nights of 10 files of 3 rows.
func small(nights int) statetest.History {
	return statetest.History{Source: "erp", Nights: nights, FilesPerNight: 10, RowsPerFile: 3, FailEvery: 5, FailedRows: 1}
}

// windowReads runs the operator's windowed reads on an aged ledger: the
// dashboard's (recent files, the 24 h counts) and the expected-delivery
// watcher's (arrivals).
func windowReads(t *testing.T, ops state.Ops, h statetest.History, start, end time.Time) {
	ctx := context.Background()
	night := func(n int) time.Time { return h.Night(start, n) }
	name := func(n, i int) string { return h.FileName(night(n), i) }
	if fs, err := ops.RecentFiles(ctx, h.Source, 15); err != nil || len(fs) != 15 || fs[0].Name != name(h.Nights-1, h.FilesPerNight-1) {
		t.Fatalf("recent files: %v %v", len(fs), err)
	}
	hc, err := ops.Hourly(ctx, end.Add(-24*time.Hour))
	var n int64
	for _, c := range hc {
		n += c.N
	}
	if err != nil || n != int64(h.FilesPerNight*h.RowsPerFile) {
		t.Fatalf("hourly: %d outcomes in the last 24 h (%v), want a night's %d", n, err, h.FilesPerNight*h.RowsPerFile)
	}
	for _, c := range []struct {
		from, to time.Time
		want     string
	}{
		{time.Time{}, time.Time{}, name(0, 0)},                                                         // the first ever
		{night(h.Nights - 2).Add(-time.Hour), night(h.Nights - 2).Add(time.Hour), name(h.Nights-2, 0)}, // a window
		{night(h.Nights - 1).Add(time.Second), time.Time{}, name(h.Nights-1, 1)},                       // since
		{night(h.Nights - 1).Add(-time.Hour), night(h.Nights - 1).Add(-time.Minute), ""},               // none in the window
		{end, time.Time{}, ""},
	} {
		f, ok, err := ops.FirstArrival(ctx, h.Source, c.from, c.to)
		if err != nil || ok != (c.want != "") || f.Name != c.want {
			t.Fatalf("first arrival in [%s, %s): %q %v %v, want %q", c.from, c.to, f.Name, ok, err, c.want)
		}
	}
	if _, ok, err := ops.FirstArrival(ctx, "other", time.Time{}, time.Time{}); ok || err != nil {
		t.Fatalf("another source's arrival: %v %v", ok, err)
	}
}

// agedSQLite is a SQLite ledger holding h, with the times h's Build
// started and ended at.
func agedSQLite(t *testing.T, h statetest.History) (l *state.SQLite, start, end time.Time) {
	clock := statetest.NewClock()
	l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	start = clock.Now()
	end, err = h.Build(context.Background(), l, clock, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l, start, end
}

// TestWindowReadsDoNotGrowWithHistory: on ledgers of N and 10·N files,
// the dashboard's and the watcher's reads run the same statements and
// read the same number of rows, and no statement scans a table: each
// plan searches an index.
func TestWindowReadsDoNotGrowWithHistory(t *testing.T) {
	ctx := context.Background()
	type cost struct{ statements, rows int }
	var costs []cost
	for _, nights := range []int{5, 50} {
		h := small(nights)
		l, start, end := agedSQLite(t, h)
		ops, err := state.OpsOf(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		spy := state.Spy(l)
		windowReads(t, ops, h, start, end)
		s, r := spy.Counts()
		costs = append(costs, cost{s, r})
		plans, err := spy.Plans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range plans {
			if strings.HasPrefix(p, "SCAN ") || strings.Contains(p, "; SCAN ") || !strings.Contains(p, "INDEX") {
				t.Errorf("%d files: a statement reads the whole table: %s", h.Files(), p)
			}
		}
		if nights == 5 {
			t.Logf("plans: %s", strings.Join(plans, "\n"))
		}
	}
	t.Logf("statements, rows read: %+v with 50 files, %+v with 500", costs[0], costs[1])
	if costs[0] != costs[1] {
		t.Errorf("statements and rows read: %+v with 50 files, %+v with 500", costs[0], costs[1])
	}
}

// TestWindowReadsPostgres: the same answers from the PostgreSQL ledger.
func TestWindowReadsPostgres(t *testing.T) {
	pg := testservers.StartPostgres(t)
	clock := statetest.NewClock()
	l := openPG(t, pg.NewDatabase(t), clock.Now)
	h := small(5)
	start := clock.Now()
	end, err := h.Build(context.Background(), l, clock, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := state.OpsOf(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	windowReads(t, ops, h, start, end)
}
