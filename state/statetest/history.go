package statetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// History is the shape of an aged ledger: Nights nightly passes of
// FilesPerNight files, each with RowsPerFile row outcomes; every
// FailEvery-th file of a night was rejected, its last FailedRows rows
// failed with 422 (0: none rejected).
type History struct {
	Source                     string
	Nights                     int
	FilesPerNight, RowsPerFile int
	FailEvery, FailedRows      int
}

// HistorySource is the source AYear's files belong to.
const HistorySource = "erp-history"

// AYear is a year of nightly history of a busy source: 365 nights of 55
// files of 250 rows, 20,075 files and 5,018,750 row outcomes, one file in
// twenty rejected with 10 failed rows.
var AYear = History{Source: HistorySource, Nights: 365, FilesPerNight: 55, RowsPerFile: 250, FailEvery: 20, FailedRows: 10}

// Files is the number of files h holds.
func (h History) Files() int { return h.Nights * h.FilesPerNight }

// Outcomes is the number of row outcomes h holds.
func (h History) Outcomes() int { return h.Files() * h.RowsPerFile }

// String names h's content (what a cached build of it is filed under).
func (h History) String() string {
	return fmt.Sprintf("%s-%dx%dx%d-fail%dx%d", h.Source, h.Nights, h.FilesPerNight, h.RowsPerFile, h.FailEvery, h.FailedRows)
}

// HistoryFromEnv is AYear resized by IHR_HISTORY ("NIGHTS,FILES,ROWS",
// files per night and rows per file, e.g. "30,10,100" for a quick run).
func HistoryFromEnv() (History, error) {
	v := os.Getenv("IHR_HISTORY")
	if v == "" {
		return AYear, nil
	}
	parts := strings.Split(v, ",")
	var n [3]int
	if len(parts) != 3 {
		return History{}, fmt.Errorf("IHR_HISTORY=%q: want NIGHTS,FILES,ROWS", v)
	}
	for i, p := range parts {
		x, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || x <= 0 {
			return History{}, fmt.Errorf("IHR_HISTORY=%q: want three positive numbers", v)
		}
		n[i] = x
	}
	h := AYear
	h.Nights, h.FilesPerNight, h.RowsPerFile = n[0], n[1], n[2]
	return h, nil
}

// Night is the time of night n of a history Build started at start;
// file i of it was written i seconds later.
func (h History) Night(start time.Time, n int) time.Time {
	return start.Add(time.Duration(n) * 24 * time.Hour)
}

// Until is the start for Build whose last night is a day before t.
func (h History) Until(t time.Time) time.Time { return h.Night(t, -h.Nights) }

// End is the time Build leaves its clock at when started at start: 6 h
// after the last night, when that night's work is long done.
func (h History) End(start time.Time) time.Time {
	return h.Night(start, max(h.Nights-1, 0)).Add(6 * time.Hour)
}

// FileName is the name of file i of the night at time night.
func (h History) FileName(night time.Time, i int) string {
	return fmt.Sprintf("invoices-%s-%03d.csv", night.Format("20060102"), i)
}

// Failed reports whether file i of a night was rejected.
func (h History) Failed(i int) bool { return h.FailEvery > 0 && i%h.FailEvery == h.FailEvery-1 }

// Build writes h into l through the Ledger API, as the nightly passes
// would have left it: each file claimed, its rows recorded in one batch,
// finished (done and archived, or failed) and released. The ledger must
// follow clock (its Now): night n is at clock's time plus n days, file i
// of it i seconds later, so first-seen, update and outcome times spread
// over the nights as a real worker's do. workers files are written at
// once (1 for SQLite, whose writes are serial anyway), sharing the second
// of the first of them. report, if not nil, is called (one call at a
// time) with each rejected file as stored. Build leaves clock at, and
// returns, h.End of where it started.
func (h History) Build(ctx context.Context, l state.Ledger, clock *Clock, workers int, report func(state.File)) (time.Time, error) {
	start := clock.Now()
	workers = max(1, workers)
	var mu sync.Mutex // report's
	for n := range h.Nights {
		night := h.Night(start, n)
		for first := 0; first < h.FilesPerNight; first += workers {
			clock.Set(night.Add(time.Duration(first) * time.Second))
			var wg sync.WaitGroup
			errs := make([]error, workers)
			for w := range min(workers, h.FilesPerNight-first) {
				wg.Go(func() {
					f, err := h.file(ctx, l, clock.Now(), night, n, first+w)
					if err == nil && f.Status == state.Failed && report != nil {
						mu.Lock()
						report(f)
						mu.Unlock()
					}
					errs[w] = err
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return time.Time{}, fmt.Errorf("history night %d: %w", n, err)
				}
			}
		}
	}
	end := h.End(start)
	clock.Set(end)
	return end, nil
}

// file writes file i of night n at time at, as a finished pass leaves it.
func (h History) file(ctx context.Context, l state.Ledger, at, night time.Time, n, i int) (state.File, error) {
	name := h.FileName(night, i)
	id := state.FileID{Source: h.Source, Name: name}
	const owner = "history"
	f, err := l.Claim(ctx, id, owner, time.Hour)
	if err != nil {
		return state.File{}, err
	}
	sum := sha256.Sum256([]byte(name))
	f.SHA256, f.Run, f.Rows, f.Size, f.ModTime = hex.EncodeToString(sum[:]), 1, int64(h.RowsPerFile), int64(h.RowsPerFile)*80, at.Add(-time.Minute)
	f.Counts = state.Counts{}
	failed := h.Failed(i)
	outs := make([]state.Outcome, h.RowsPerFile)
	for r := range outs {
		row := int64(r + 1)
		ext := fmt.Sprintf("INV-%d-%d-%d", n, i, row)
		fp := sha256.Sum256([]byte(ext))
		o := state.Outcome{Key: ext, Row: row, Run: 1, ExternalID: ext, DocumentType: "InvoiceHeader",
			DocumentID: strconv.Itoa(n*100000 + i*1000 + r), Action: "create", Fingerprint: hex.EncodeToString(fp[:16]),
			Result: state.Created, RecordID: int64(n)*1_000_000 + int64(i)*1000 + row, HTTPStatus: 201}
		if failed && r >= h.RowsPerFile-h.FailedRows {
			o.Result, o.RecordID, o.HTTPStatus, o.Message = state.FailedRow, 0, 422, "Integration is unknown"
		}
		f.Counts.Add(o.Result)
		outs[r] = o
	}
	if err := l.RecordOutcomes(ctx, id.HeldBy(owner), outs); err != nil {
		return state.File{}, err
	}
	f.Status, f.StartedAt, f.FinishedAt, f.DispatchMark = state.Done, at, at, state.MarkAll
	f.Location, f.ArchivedTo = "archive/"+name, "archive/"+name
	f.ReportPath = "reports/" + strings.TrimSuffix(name, ".csv") + ".response.csv"
	if failed {
		f.Status, f.Location, f.ArchivedTo = state.Failed, "failed/"+name, "failed/"+name
	}
	if err := l.PutFile(ctx, owner, f); err != nil {
		return state.File{}, err
	}
	return f, l.Release(ctx, id.HeldBy(owner), false)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// sqliteHistories caches built SQLite ledgers by shape for the life of
// the test binary: building five million outcomes once is enough.
var sqliteHistories struct {
	mu    sync.Mutex
	paths map[string]string
}

// SQLiteHistory is a path in tb's temp dir to a SQLite ledger holding h,
// its nights at 02:00 up to yesterday's (as of when it was built). With
// IHR_HISTORY_CACHE naming a directory, the ledger is built there once
// per shape and copied for each caller, within the test binary and across
// runs (delete the directory when the schema or the stored form changes);
// without it each caller builds its own in its temp dir, and nothing
// outlives the test.
func SQLiteHistory(tb testing.TB, h History) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "state.db")
	dir := os.Getenv("IHR_HISTORY_CACHE")
	if dir == "" {
		if err := buildSQLite(dst, h); err != nil {
			tb.Fatal(err)
		}
		return dst
	}
	sqliteHistories.mu.Lock()
	defer sqliteHistories.mu.Unlock()
	built := sqliteHistories.paths[h.String()]
	if built == "" {
		built = filepath.Join(dir, "history-"+h.String()+".db")
		if _, err := os.Stat(built); err != nil {
			if err := buildSQLite(built, h); err != nil {
				tb.Fatal(err)
			}
		}
		if sqliteHistories.paths == nil {
			sqliteHistories.paths = map[string]string{}
		}
		sqliteHistories.paths[h.String()] = built
	}
	if err := copyFile(built, dst); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// buildSQLite builds the ledger in memory-backed /dev/shm when there is
// one, where a commit costs no fsync (building is four commits a file),
// then copies it to path.
func buildSQLite(path string, h History) error {
	ctx := context.Background()
	dir := filepath.Dir(path)
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir = "/dev/shm"
	}
	d, err := os.MkdirTemp(dir, "ihr-history-build-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(d)
	tmp := filepath.Join(d, "state.db")
	clock := NewClock()
	clock.Set(h.Until(time.Now().Truncate(24 * time.Hour).Add(2 * time.Hour)))
	l, err := state.OpenSQLite(ctx, tmp, state.SQLiteOptions{Now: clock.Now})
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = h.Build(ctx, l, clock, 1, nil)
	if cerr := l.Close(); err == nil {
		err = cerr // the last close checkpoints the WAL into the file
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "statetest: built a SQLite history of %d files, %d outcomes in %v\n",
		h.Files(), h.Outcomes(), time.Since(start).Round(time.Second))
	if err := copyFile(tmp, path+".part"); err != nil {
		return err
	}
	return os.Rename(path+".part", path)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
