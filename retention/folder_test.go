package retention_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/retention"
)

// counting is a store that counts its listings and the entries they
// returned.
type counting struct {
	filestore.Store
	lists, entries int
}

func (c *counting) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	c.lists++
	fs, err := c.Store.List(ctx, dir)
	c.entries += len(fs)
	return fs, err
}

func (c *counting) Remove(ctx context.Context, name string) error {
	return c.Store.(filestore.Remover).Remove(ctx, name)
}

// archiveOf writes n files into root/archive, modified evenly from now
// back to spread before it, and returns the counting store on root.
func archiveOf(tb testing.TB, root string, n int, spread time.Duration, now time.Time) *counting {
	dir := filepath.Join(root, "archive")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("f%06d.csv", i))
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
		at := now.Add(-spread * time.Duration(i) / time.Duration(n-1))
		if err := os.Chtimes(p, at, at); err != nil {
			tb.Fatal(err)
		}
	}
	st, err := local.New(root, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return &counting{Store: st}
}

func put(t *testing.T, root, name string, mtime time.Time) {
	p := filepath.Join(root, "archive", name)
	if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// dueLeft lists what is in archive/ and past its age at now.
func dueLeft(t *testing.T, root string, age time.Duration, now time.Time) []string {
	es, err := os.ReadDir(filepath.Join(root, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		fi, _ := e.Info()
		if fi.ModTime().Before(now.Add(-age)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestFolderListsOnlyWhatCanBeDue: a folder of N files and one of 10·N
// (all younger than their age) are listed once in 11 hours of passes
// every 5 minutes, not once per pass; when the oldest comes of age the next
// pass lists and deletes it and nothing else; a file a pass puts there
// already of age is deleted at the next listing; one put there by hand
// within a day. After every pass nothing is left that was due and known,
// and nothing was deleted before its age.
func TestFolderListsOnlyWhatCanBeDue(t *testing.T) {
	const age = 90 * 24 * time.Hour
	const spread = age - 12*time.Hour
	start := time.Now().Truncate(time.Second)
	type cost struct{ lists, deleted int }
	var costs [][]cost
	for _, n := range []int{50, 500} {
		root := t.TempDir()
		// The oldest comes of age 12 hours in.
		st := archiveOf(t, root, n, spread, start)
		f := &retention.Folder{Dir: "archive", MaxAge: age}
		var run []cost
		pass := func(now time.Time) {
			t.Helper()
			lists := st.lists
			deleted, listed, err := f.Sweep(context.Background(), st, now, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if listed != (st.lists > lists) {
				t.Fatalf("listed=%v after %d listings", listed, st.lists-lists)
			}
			run = append(run, cost{st.lists - lists, len(deleted)})
		}
		now := start
		for range 11 * 12 { // 11 hours of passes, nothing of age
			pass(now)
			now = now.Add(5 * time.Minute)
		}
		if st.lists != 1 || len(dueLeft(t, root, age, now)) != 0 {
			t.Fatalf("%d files: %d listings in 11 hours with nothing due", n, st.lists)
		}
		// The oldest comes of age: one listing deletes it, only it.
		now = start.Add(age - spread + time.Second)
		pass(now)
		if len(dueLeft(t, root, age, now)) != 0 || run[len(run)-1] != (cost{1, 1}) {
			t.Fatalf("%d files: when the oldest came of age: %+v", n, run[len(run)-1])
		}
		// A pass archives a file already of age: the next listing (an
		// hour on) deletes it.
		put(t, root, "old-arrival.csv", now.Add(-age-time.Hour))
		f.Added(now.Add(-age - time.Hour))
		pass(now.Add(time.Minute))
		pass(now.Add(time.Hour + time.Minute))
		if slices.Contains(dueLeft(t, root, age, now), "old-arrival.csv") {
			t.Fatalf("%d files: a file archived of age is still there", n)
		}
		// A file put there by hand: found by the daily listing.
		now = now.Add(time.Hour + time.Minute)
		put(t, root, "by-hand.csv", now.Add(-age-time.Hour))
		pass(now.Add(time.Hour))
		if !slices.Contains(dueLeft(t, root, age, now), "by-hand.csv") {
			t.Fatalf("%d files: the file put by hand was deleted without a listing", n)
		}
		pass(now.Add(retention.Recheck + time.Second))
		if len(dueLeft(t, root, age, now.Add(retention.Recheck+time.Second))) != 0 {
			t.Fatalf("%d files: the daily listing left a file of age", n)
		}
		// Never anything before its age: what is left is every file not
		// yet due (n in all, less the oldest, the others aged out since).
		es, _ := os.ReadDir(filepath.Join(root, "archive"))
		last := now.Add(retention.Recheck + time.Second)
		for _, e := range es {
			fi, _ := e.Info()
			if fi.ModTime().Before(last.Add(-age)) {
				t.Errorf("%d files: %s is due and kept", n, e.Name())
			}
		}
		want := 0
		for i := range n {
			if !start.Add(-spread * time.Duration(i) / time.Duration(n-1)).Before(last.Add(-age)) {
				want++
			}
		}
		if len(es) != want {
			t.Errorf("%d files: %d left, want %d (the ones not yet of age)", n, len(es), want)
		}
		costs = append(costs, run)
	}
	sum := func(run []cost) (c cost) {
		for _, x := range run {
			c.lists += x.lists
		}
		return c
	}
	if a, b := sum(costs[0]), sum(costs[1]); a.lists != b.lists {
		t.Errorf("listings: %d with 50 files, %d with 500", a.lists, b.lists)
	}
}

// BenchmarkRetentionPass times a pass's retention of a folder of N files
// and of 10·N (IHR_RETENTION_FILES, default 2,000; all younger than their
// age, so nothing is due) in one run, beside a listing of each: what
// every pass cost before Folder remembered when something can be due.
//
//	go test ./retention -run '^$' -bench RetentionPass -benchtime 2000x
func BenchmarkRetentionPass(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("IHR_RETENTION_FILES")); err == nil && v > 1 {
		n = v
	}
	const age = 180 * 24 * time.Hour
	start := time.Now()
	ctx := context.Background()
	type side struct {
		st *counting
		f  *retention.Folder
	}
	var sides []side
	for _, size := range []int{n, 10 * n} {
		st := archiveOf(b, b.TempDir(), size, 170*24*time.Hour, start)
		f := &retention.Folder{Dir: "archive", MaxAge: age}
		if _, _, err := f.Sweep(ctx, st, start, zap.NewNop()); err != nil { // the first pass lists
			b.Fatal(err)
		}
		sides = append(sides, side{st, f})
	}
	pass, list := make([]time.Duration, 2), make([]time.Duration, 2)
	now := start
	for b.Loop() {
		now = now.Add(time.Second) // passes a second apart, for months
		for i, x := range sides {
			t0 := time.Now()
			if _, _, err := x.f.Sweep(ctx, x.st, now, zap.NewNop()); err != nil {
				b.Fatal(err)
			}
			pass[i] += time.Since(t0)
		}
	}
	// The listing every pass made before, timed apart (a few, as it is slow).
	const lists = 5
	for i, x := range sides {
		t0 := time.Now()
		for range lists {
			if _, err := retention.Sweep(ctx, x.st, "archive", age, start, zap.NewNop()); err != nil {
				b.Fatal(err)
			}
		}
		list[i] = time.Since(t0) / lists
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(pass[0])*1000, "pass-1x-ns")
	b.ReportMetric(per(pass[1])*1000, "pass-10x-ns")
	b.ReportMetric(float64(pass[1])/float64(pass[0]), "pass-10x/1x")
	b.ReportMetric(float64(list[0].Microseconds())/1000, "list-1x-ms")
	b.ReportMetric(float64(list[1].Microseconds())/1000, "list-10x-ms")
	b.ReportMetric(float64(list[1])/float64(list[0]), "list-10x/1x")
	b.ReportMetric(float64(sides[0].st.lists+sides[1].st.lists-2-2*lists), "listings-in-passes")
}
