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

// HistorySize is the shape of a ledger's past: nights of files, each file
// with its rows' outcomes.
type HistorySize struct{ Nights, FilesPerNight, RowsPerFile int }

// AYear is a year of nightly history: 365 nights of 55 files of 250 rows,
// 20,075 files and 5,018,750 row outcomes.
var AYear = HistorySize{Nights: 365, FilesPerNight: 55, RowsPerFile: 250}

// Files is the number of files h holds.
func (h HistorySize) Files() int { return h.Nights * h.FilesPerNight }

// Outcomes is the number of row outcomes h holds.
func (h HistorySize) Outcomes() int { return h.Files() * h.RowsPerFile }

// String is "NIGHTS,FILES,ROWS", as IHR_HISTORY spells it.
func (h HistorySize) String() string {
	return fmt.Sprintf("%d,%d,%d", h.Nights, h.FilesPerNight, h.RowsPerFile)
}

// HistoryFromEnv is the size IHR_HISTORY asks for ("NIGHTS,FILES,ROWS",
// e.g. "30,10,100" for a quick run), else AYear.
func HistoryFromEnv() (HistorySize, error) {
	v := os.Getenv("IHR_HISTORY")
	if v == "" {
		return AYear, nil
	}
	parts := strings.Split(v, ",")
	var n [3]int
	if len(parts) != 3 {
		return HistorySize{}, fmt.Errorf("IHR_HISTORY=%q: want NIGHTS,FILES,ROWS", v)
	}
	for i, p := range parts {
		x, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || x <= 0 {
			return HistorySize{}, fmt.Errorf("IHR_HISTORY=%q: want three positive numbers", v)
		}
		n[i] = x
	}
	return HistorySize{Nights: n[0], FilesPerNight: n[1], RowsPerFile: n[2]}, nil
}

// HistorySource is the source BuildHistory's files belong to.
const HistorySource = "erp-history"

// BuildHistory writes h into l through the Ledger API, one night a day
// ending the day before clock's time (which it leaves as it found it):
// each file claimed, its rows recorded in one batch, finished (one file in
// twenty with an invalid row, so failed; the others done) and released, as a pass leaves it. The
// ledger must follow clock (its Now), so that each file and outcome
// carries its night's time. workers files are written at once (1 for
// SQLite, whose writes are serial anyway).
func BuildHistory(ctx context.Context, l state.Ledger, clock *Clock, h HistorySize, workers int) error {
	end := clock.Now()
	night0 := end.Add(-time.Duration(h.Nights) * 24 * time.Hour)
	clock.Set(night0)
	defer clock.Set(end)
	workers = max(1, workers)
	for n := range h.Nights {
		clock.Set(night0.Add(time.Duration(n) * 24 * time.Hour))
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < h.FilesPerNight && errs[w] == nil; i += workers {
					errs[w] = historyFile(ctx, l, clock.Now(), n, i, h.RowsPerFile)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("history night %d: %w", n, err)
			}
		}
	}
	return nil
}

// historyFile is file i of night n, as a finished pass leaves it.
func historyFile(ctx context.Context, l state.Ledger, at time.Time, n, i, rows int) error {
	name := fmt.Sprintf("invoices-%s-%03d.csv", at.Format("20060102"), i)
	id := state.FileID{Source: HistorySource, Name: name}
	const owner = "history"
	f, err := l.Claim(ctx, id, owner, time.Hour)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(name))
	f.SHA256, f.Run, f.Rows, f.Size, f.ModTime = hex.EncodeToString(sum[:]), 1, int64(rows), int64(rows)*80, at
	f.StartedAt, f.Status = at, state.Processing
	outs := make([]state.Outcome, rows)
	for r := range outs {
		row := int64(r + 1)
		ext := fmt.Sprintf("INV-%d-%d-%d", n, i, row)
		fp := sha256.Sum256([]byte(ext))
		o := state.Outcome{Key: ext, Row: row, Run: 1, ExternalID: ext, DocumentType: "InvoiceHeader",
			DocumentID: strconv.Itoa(n*100000 + i*1000 + r), Action: "create", Fingerprint: hex.EncodeToString(fp[:16]),
			Result: state.Created, RecordID: int64(n)*1_000_000 + int64(i)*1000 + row, HTTPStatus: 201}
		if i%20 == 19 && r == rows/2 {
			o.Result, o.RecordID, o.HTTPStatus, o.Message = state.Invalid, 0, 0, "document-id: not a number"
		}
		f.Counts.Add(o.Result)
		outs[r] = o
	}
	if err := l.RecordOutcomes(ctx, id.HeldBy(owner), outs); err != nil {
		return err
	}
	f.Status, f.FinishedAt, f.DispatchMark = state.Done, at.Add(time.Minute), state.MarkAll
	f.Location, f.ArchivedTo = "archive/"+name, "archive/"+name
	f.ReportPath = "archive/" + strings.TrimSuffix(name, ".csv") + ".response.csv"
	if f.Counts.Invalid > 0 {
		f.Status, f.Location, f.ArchivedTo = state.Failed, "failed/"+name, "failed/"+name
		f.ReportPath = "failed/" + strings.TrimSuffix(name, ".csv") + ".response.csv"
	}
	if err := l.PutFile(ctx, owner, f); err != nil {
		return err
	}
	return l.Release(ctx, id.HeldBy(owner), false)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// sqliteHistories caches built SQLite ledgers by size for the life of the
// test binary: building five million outcomes once is enough.
var sqliteHistories struct {
	mu    sync.Mutex
	paths map[string]string
}

// SQLiteHistory is a path in tb's temp dir to a SQLite ledger holding h
// (HistorySource's files, up to yesterday). With IHR_HISTORY_CACHE naming
// a directory, the ledger is built there once per size and copied for
// each caller, within the test binary and across runs (delete the
// directory when the schema or the stored form changes); without it each
// caller builds its own in its temp dir, and nothing outlives the test.
func SQLiteHistory(tb testing.TB, h HistorySize) string {
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
		built = filepath.Join(dir, "history-"+strings.ReplaceAll(h.String(), ",", "x")+".db")
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
func buildSQLite(path string, h HistorySize) error {
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
	clock.Set(time.Now().Truncate(24 * time.Hour).Add(2 * time.Hour))
	l, err := state.OpenSQLite(ctx, tmp, state.SQLiteOptions{Now: clock.Now})
	if err != nil {
		return err
	}
	start := time.Now()
	err = BuildHistory(ctx, l, clock, h, 1)
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
