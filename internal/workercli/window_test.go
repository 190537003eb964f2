package workercli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/retention"
	"github.com/ihr-tools/ihr/scheduler"
	"github.com/ihr-tools/ihr/sla"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// countingOps counts the watcher's ledger reads: calls, and rows given
// back.
type countingOps struct {
	state.Ops
	calls, rows int
}

func (c *countingOps) FirstArrival(ctx context.Context, source string, from, to time.Time) (state.File, bool, error) {
	c.calls++
	f, ok, err := c.Ops.FirstArrival(ctx, source, from, to)
	if ok {
		c.rows++
	}
	return f, ok, err
}

func (c *countingOps) Events(ctx context.Context, source string, openOnly bool, limit int) ([]state.Event, error) {
	c.calls++
	es, err := c.Ops.Events(ctx, source, openOnly, limit)
	c.rows += len(es)
	return es, err
}

func (c *countingOps) OpenEvent(ctx context.Context, e state.Event) (bool, error) {
	c.calls++
	return c.Ops.OpenEvent(ctx, e)
}

func (c *countingOps) CloseEvent(ctx context.Context, id string, at time.Time) (bool, error) {
	c.calls++
	return c.Ops.CloseEvent(ctx, id, at)
}

func (c *countingOps) RecentFiles(ctx context.Context, source string, limit int) ([]state.File, error) {
	c.calls++
	fs, err := c.Ops.RecentFiles(ctx, source, limit)
	c.rows += len(fs)
	return fs, err
}

// agedWatcher is an operator watching h's source (a file expected daily
// at 02:00 within 2 h) on a ledger holding h, and the ledger's clock.
func agedWatcher(tb testing.TB, h statetest.History) (*operator, *countingOps, *state.SQLite, *statetest.Clock, time.Time) {
	ctx := context.Background()
	clock := statetest.NewClock()
	l, err := state.OpenSQLite(ctx, filepath.Join(tb.TempDir(), "s.db"), state.SQLiteOptions{Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	end, err := h.Build(ctx, l, clock, 1, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ops, err := state.OpsOf(ctx, l)
	if err != nil {
		tb.Fatal(err)
	}
	c := &countingOps{Ops: ops}
	// started after the checks below: windows are judged only since the
	// source's first file, which takes the lookup of its earliest.
	o := &operator{ops: c, om: newOpsMetrics(prometheus.NewRegistry()), log: zap.NewNop(),
		started: end.Add(30 * 24 * time.Hour), now: clock.Now}
	return o, c, l, clock, end
}

func dailyExpect(tb testing.TB) sla.Expect {
	sched, err := scheduler.ParseSchedule("CRON_TZ=UTC 0 2 * * *")
	if err != nil {
		tb.Fatal(err)
	}
	return sla.Expect{Schedule: sched, Within: 2 * time.Hour}
}

// TestExpectTickDoesNotGrowWithHistory: the expected-delivery watcher's
// tick makes the same ledger reads, returning the same number of rows,
// on a history of N files and of 10·N (each read is an indexed lookup:
// see state's TestWindowReadsDoNotGrowWithHistory), and still judges
// right: a met window, a missed one noted once, then closed by a late
// file.
func TestExpectTickDoesNotGrowWithHistory(t *testing.T) {
	type cost struct{ calls, rows int }
	var costs [][]cost
	for _, nights := range []int{10, 100} {
		h := statetest.History{Source: "erp", Nights: nights, FilesPerNight: 5}
		o, c, l, clock, end := agedWatcher(t, h)
		s, e := &config.Source{Name: "erp"}, dailyExpect(t)
		var run []cost
		tick := func() {
			c.calls, c.rows = 0, 0
			o.checkExpect(context.Background(), s, e)
			run = append(run, cost{c.calls, c.rows})
		}
		// The open misses, read past the counting.
		missed := func() int {
			es, err := c.Ops.Events(context.Background(), "erp", true, 10)
			if err != nil {
				t.Fatal(err)
			}
			return len(es)
		}
		tick() // last night's window was met
		if missed() != 0 {
			t.Fatalf("%d nights: a met window reported missed", nights)
		}
		clock.Set(end.Add(24 * time.Hour)) // the next night brought nothing
		tick()
		tick()
		if missed() != 1 {
			t.Fatalf("%d nights: the missed window: %d open misses, want 1", nights, missed())
		}
		if _, err := l.Claim(context.Background(), state.FileID{Source: "erp", Name: "late.csv"}, "w", time.Minute); err != nil {
			t.Fatal(err)
		}
		tick()
		if missed() != 0 {
			t.Fatalf("%d nights: the late file did not end the miss", nights)
		}
		costs = append(costs, run)
	}
	t.Logf("reads per tick (calls, rows) at 50 files: %v", costs[0])
	for i := range costs[0] {
		if costs[0][i] != costs[1][i] {
			t.Errorf("tick %d: %+v at 50 files, %+v at 500", i, costs[0][i], costs[1][i])
		}
	}
}

// BenchmarkExpectTick times one watcher tick on histories of N and 10·N
// files (statetest.HistoryFromEnv without rows: a year of 55 files a
// night by default, and a tenth of it) in one run, beside what listing
// the source's files (the tick before it used indexed lookups) costs on
// each.
//
//	go test ./internal/workercli -run '^$' -bench ExpectTick -benchtime 200x
func BenchmarkExpectTick(b *testing.B) {
	full, err := statetest.HistoryFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	full.RowsPerFile = 0
	tenth := full
	tenth.Nights = max(full.Nights/10, 1)
	type side struct {
		o     *operator
		l     *state.SQLite
		files int
	}
	var sides []side
	for _, h := range []statetest.History{tenth, full} {
		o, _, l, _, _ := agedWatcher(b, h)
		sides = append(sides, side{o, l, h.Files()})
	}
	s, e := &config.Source{Name: full.Source}, dailyExpect(b)
	tick, list := make([]time.Duration, 2), make([]time.Duration, 2)
	ctx := context.Background()
	for b.Loop() {
		for i, x := range sides {
			t0 := time.Now()
			x.o.checkExpect(ctx, s, e)
			tick[i] += time.Since(t0)
			t0 = time.Now()
			if _, err := x.l.Files(ctx, full.Source); err != nil {
				b.Fatal(err)
			}
			list[i] += time.Since(t0)
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(tick[0]), "tick-1x-ms")
	b.ReportMetric(per(tick[1]), "tick-10x-ms")
	b.ReportMetric(float64(tick[1])/float64(tick[0]), "tick-10x/1x")
	b.ReportMetric(per(list[0]), "files-1x-ms")
	b.ReportMetric(per(list[1]), "files-10x-ms")
	b.ReportMetric(float64(list[1])/float64(list[0]), "files-10x/1x")
	b.Logf("1x: %d files, 10x: %d files", sides[0].files, sides[1].files)
}

// TestRetainAfterPass: serve's retention lists a folder after the first
// pass, not after the next ones while nothing can be due; a file a pass
// archives already past its age (its modification time, as the ledger
// knows it, is that old) is deleted at the next listing an hour on, while
// one put there by hand waits for the daily listing.
func TestRetainAfterPass(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	l, err := state.OpenSQLite(ctx, filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := local.New(root, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &config.Source{Name: "erp", Folders: config.Folders{Archive: "archive", Reports: "reports"},
		Retain: &config.Retain{Archive: 90 * 24 * time.Hour, Reports: 180 * 24 * time.Hour}}
	now := time.Now()
	w := &worker{ledger: l, log: zap.NewNop(), stores: map[string]filestore.Store{"erp": st}}
	o := &operator{w: w, om: newOpsMetrics(prometheus.NewRegistry()), log: zap.NewNop(), now: func() time.Time { return now },
		retained: map[string][]retainedFolder{}}
	o.retained["erp"] = []retainedFolder{
		{"archive", &retention.Folder{Dir: "archive", MaxAge: s.Retain.Archive}},
		{"reports", &retention.Folder{Dir: "reports", MaxAge: s.Retain.Reports}},
	}
	put := func(name string, age time.Duration) {
		p := filepath.Join(root, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, now.Add(-age), now.Add(-age))
	}
	day := 24 * time.Hour
	put("archive/young.csv", day)
	put("archive/old.csv", 91*day)
	o.retain(ctx, s, &sourceRun{}) // the first pass lists
	if exists(root, "archive/old.csv") || !exists(root, "archive/young.csv") {
		t.Fatal("the first pass did not apply retention")
	}
	// A pass archives a file modified 100 days ago; someone drops another
	// by hand.
	id := state.FileID{Source: "erp", Name: "backfill.csv"}
	f, err := l.Claim(ctx, id, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.ModTime, f.Status = now.Add(-100*day), state.Done
	if err := l.PutFile(ctx, "w", f); err != nil {
		t.Fatal(err)
	}
	put("archive/backfill.csv", 100*day)
	sr := &sourceRun{Summary: importer.Summary{Files: []importer.FileResult{{Source: "erp", Name: "backfill.csv", Status: state.Done,
		MovedTo: "archive/backfill.csv", Report: "reports/backfill.response.csv"}}}}
	now = now.Add(time.Hour + time.Minute)
	o.retain(ctx, s, sr)
	if exists(root, "archive/backfill.csv") || !exists(root, "archive/young.csv") {
		t.Error("a file archived past its age was kept, or what is not due deleted")
	}
	// A file dropped by hand: the passes do not know it.
	put("archive/by-hand.csv", 100*day)
	now = now.Add(2 * time.Hour)
	o.retain(ctx, s, &sourceRun{})
	if !exists(root, "archive/by-hand.csv") {
		t.Error("listed without cause")
	}
	now = now.Add(retention.Recheck)
	o.retain(ctx, s, &sourceRun{})
	if exists(root, "archive/by-hand.csv") || !exists(root, "archive/young.csv") {
		t.Error("the daily listing did not delete the file put there by hand, or deleted what is not due")
	}
}

func exists(root, name string) bool {
	_, err := os.Stat(filepath.Join(root, filepath.FromSlash(name)))
	return err == nil
}
