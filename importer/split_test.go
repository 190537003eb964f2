package importer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// TestMain shares one PostgreSQL cluster among the tests that need one.
func TestMain(m *testing.M) { testservers.Main(m) }

// checkReport checks a complete report: one line per row, in order, each
// recorded with a record id.
func (e *env) checkReport(report string, ids []string) {
	e.t.Helper()
	lines := e.report(report)
	if len(lines) != len(ids) {
		e.t.Fatalf("%s: %d lines, want %d", report, len(lines), len(ids))
	}
	for i, l := range lines {
		if l[0] != itoa(i+1) || l[1] != ids[i] || (l[5] != "created" && l[5] != "already-recorded") || l[6] == "" {
			e.t.Fatalf("%s line %d: %v", report, i+1, l)
		}
	}
}

// TestSplitOneWorker: with SQLite (one process) a split file's ranges are
// simply taken one after the other, and the result is the same as
// without splitting: one report, one record per row, the file archived.
func TestSplitOneWorker(t *testing.T) {
	e := newEnv(t)
	e.src.SplitRows = 70
	content, ids := csvRows("SPL", 1, 300)
	e.drop("split.csv", content)
	sum := e.run()
	if sum.Archived != 1 || sum.Rows.Created != 300 || !sum.Clean() {
		t.Fatalf("summary: %+v", sum)
	}
	e.checkReport("split.response.csv", ids)
	e.exactlyOnce("split.csv", ids)
	rs, err := e.ledger.Ranges(context.Background(), state.FileID{Source: "erp", Name: "split.csv"})
	if err != nil || len(rs) != 5 || rs[4].First != 281 || rs[4].Last != 300 {
		t.Fatalf("ranges: %+v, %v", rs, err)
	}
	for _, r := range rs {
		if !r.Done || r.Owner != "" {
			t.Fatalf("range %d not done and released: %+v", r.Index, r)
		}
	}
	f, _ := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "split.csv"})
	if f.Status != state.Done || f.Location != "archive/split.csv" || f.Counts.Created != 300 || f.Owner != "" {
		t.Fatalf("ledger: %+v", f)
	}
	if e.obs.started != 1 || e.obs.done != 1 || e.obs.rows[state.Created] != 300 {
		t.Fatalf("observer: %+v", e.obs)
	}
}

// TestSplitResumesAfterCancel: SIGTERM in the middle of a range leaves the
// run split and resumable; the next pass finishes it without posting any
// row twice.
func TestSplitResumesAfterCancel(t *testing.T) {
	e := newEnv(t)
	e.src.SplitRows = 50
	content, ids := csvRows("SRC", 1, 200)
	e.drop("s.csv", content)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := &countingAPI{API: e.api, onCreate: func(n int) {
		if n == 75 {
			cancel()
		}
	}}
	e.api = api
	if _, err := e.importer().RunSource(ctx, e.src); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	sum := e.run()
	if sum.Archived != 1 || !sum.Clean() {
		t.Fatalf("resumed: %+v", sum)
	}
	if creates, _ := api.counts(); creates != 200 {
		t.Fatalf("%d creates for 200 rows", creates)
	}
	e.checkReport("s.response.csv", ids)
	e.exactlyOnce("s.csv", ids)
}

// TestSplitNotWithRepeatedIDs: a file whose external-ids repeat is not
// split, so its first row still wins and later ones are invalid.
func TestSplitNotWithRepeatedIDs(t *testing.T) {
	e := newEnv(t)
	e.src.SplitRows = 10
	content, _ := csvRows("DUP", 1, 40)
	content += "DUP-3,InvoiceHeader,3,Success,Functional,again\r\n"
	e.drop("dup.csv", content)
	sum := e.run()
	if sum.Rejected != 1 || sum.Rows.Created != 40 || sum.Rows.Invalid != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	if rs, _ := e.ledger.Ranges(context.Background(), state.FileID{Source: "erp", Name: "dup.csv"}); len(rs) != 0 {
		t.Fatalf("split a file with a repeated external-id: %+v", rs)
	}
	if l := e.report("dup.response.csv")[40]; l[5] != "invalid" || !strings.Contains(l[8], "first at row 3") {
		t.Fatalf("repeated row: %v", l)
	}
}

var errCrashed = errors.New("test: worker crashed")

// crashLedger is a worker's connection to the shared ledger that goes
// dead when the worker "crashes": no write, heartbeat or release gets
// through any more, as if the process had been killed.
type crashLedger struct {
	state.Ledger
	dead *atomic.Bool
}

func (l crashLedger) err() error {
	if l.dead.Load() {
		return errCrashed
	}
	return nil
}

func (l crashLedger) Claim(ctx context.Context, id state.FileID, o string, d time.Duration) (state.File, error) {
	if err := l.err(); err != nil {
		return state.File{}, err
	}
	return l.Ledger.Claim(ctx, id, o, d)
}
func (l crashLedger) Heartbeat(ctx context.Context, c state.Claim, d time.Duration) error {
	if err := l.err(); err != nil {
		return err
	}
	return l.Ledger.Heartbeat(ctx, c, d)
}
func (l crashLedger) Release(ctx context.Context, c state.Claim, done bool) error {
	if err := l.err(); err != nil {
		return err
	}
	return l.Ledger.Release(ctx, c, done)
}
func (l crashLedger) PutFile(ctx context.Context, o string, f state.File) error {
	if err := l.err(); err != nil {
		return err
	}
	return l.Ledger.PutFile(ctx, o, f)
}
func (l crashLedger) SetMark(ctx context.Context, c state.Claim, m int64) error {
	if err := l.err(); err != nil {
		return err
	}
	return l.Ledger.SetMark(ctx, c, m)
}
func (l crashLedger) RecordOutcomes(ctx context.Context, c state.Claim, outs []state.Outcome) error {
	if err := l.err(); err != nil {
		return err
	}
	return l.Ledger.RecordOutcomes(ctx, c, outs)
}
func (l crashLedger) SplitFile(ctx context.Context, id state.FileID, o string, size int64) ([]state.Range, error) {
	if err := l.err(); err != nil {
		return nil, err
	}
	return l.Ledger.SplitFile(ctx, id, o, size)
}
func (l crashLedger) ClaimRange(ctx context.Context, id state.FileID, run int64, o string, d time.Duration) (state.Range, error) {
	if err := l.err(); err != nil {
		return state.Range{}, err
	}
	return l.Ledger.ClaimRange(ctx, id, run, o, d)
}

// crashAPI counts a worker's successful creates and "crashes" the worker
// after the crashAt-th: calls already on the wire complete on the server,
// later ones never leave, and the ledger connection dies with them.
type crashAPI struct {
	importer.API
	crashAt int64
	creates atomic.Int64
	finds   atomic.Int64
	dead    *atomic.Bool
}

func (a *crashAPI) Create(ctx context.Context, act record.Action, r *record.Record) (*record.Record, error) {
	if a.dead.Load() {
		return nil, errDown
	}
	out, err := a.API.Create(ctx, act, r)
	if err == nil && a.creates.Add(1) == a.crashAt {
		a.dead.Store(true)
	}
	return out, err
}

func (a *crashAPI) FindExisting(ctx context.Context, r *record.Record) (*record.Record, error) {
	if a.dead.Load() {
		return nil, errDown
	}
	a.finds.Add(1)
	return a.API.FindExisting(ctx, r)
}

// TestSplitThreeWorkersOneCrashes is issue 8's split proof: three importer
// instances, each with its own PostgreSQL connection pool, share one
// 10,000-row file (IHR_SPLIT_ROWS: more) split into 5 ranges; one instance dies in the middle of
// a range (its calls on the wire land, its last outcomes are never
// recorded, its range claim is never released). The others finish every
// range, the dead one's after its lease from its dispatch mark, and
// exactly one of them writes the one report and archives the file.
func TestSplitThreeWorkersOneCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-worker split test")
	}
	// 10,000 rows keep the package's tests short on a shared machine (the
	// check pages through every record); IHR_SPLIT_ROWS=20000 runs the
	// size issue 8 names. Five ranges either way.
	rows := 10_000
	if n, err := strconv.Atoi(os.Getenv("IHR_SPLIT_ROWS")); err == nil && n >= 5_000 {
		rows = n
	}
	perRange, lease := int64(rows/5), 3*time.Second
	e := newEnv(t)
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	content, ids := csvRows("BIG", 1, rows)
	e.drop("big.csv", content)

	type worker struct {
		im     *importer.Importer
		api    *crashAPI
		ledger state.Ledger
		dead   atomic.Bool
		sums   []importer.Summary
		errs   []error
	}
	workers := make([]*worker, 3)
	for i := range workers {
		w := &worker{}
		pg, err := state.OpenPostgres(context.Background(), dsn, state.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		w.ledger = crashLedger{Ledger: pg, dead: &w.dead}
		w.api = &crashAPI{API: e.api, dead: &w.dead}
		if i == 0 {
			w.api.crashAt = perRange / 2 // well inside its first range
		}
		cfg := importer.Config{Owner: fmt.Sprintf("worker-%d", i), Concurrency: 4, Window: 64, BatchSize: 64,
			FlushInterval: 20 * time.Millisecond, Lease: lease}
		w.im = importer.New(cfg, w.api, w.ledger, nil, nil)
		workers[i] = w
	}
	src := e.src
	src.SplitRows = perRange

	done := func(l state.Ledger) bool {
		f, err := l.File(context.Background(), state.FileID{Source: "erp", Name: "big.csv"})
		return err == nil && f.Status == state.Done && f.Destination == ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 50 * time.Millisecond) // worker 0 splits the file
			for ctx.Err() == nil && !w.dead.Load() && !done(w.ledger) {
				sum, err := w.im.RunSource(ctx, src)
				w.sums, w.errs = append(w.sums, sum), append(w.errs, err)
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	start := time.Now()
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("the file was not finished within 60 s")
	}
	t.Logf("%d rows by 3 workers, one crashed, in %v", rows, time.Since(start).Round(time.Millisecond))

	if !workers[0].dead.Load() {
		t.Fatalf("worker 0 never crashed (%d creates)", workers[0].api.creates.Load())
	}
	var creates int64
	archived := 0
	for i, w := range workers {
		creates += w.api.creates.Load()
		if w.api.creates.Load() == 0 {
			t.Errorf("worker %d created nothing: the ranges were not shared", i)
		}
		for j, sum := range w.sums {
			archived += sum.Archived
			if i > 0 && (w.errs[j] != nil || sum.Pending != 0 || !sum.Clean()) {
				t.Errorf("survivor %d, pass %d: %+v, %v", i, j, sum, w.errs[j])
			}
		}
	}
	if archived != 1 {
		t.Errorf("the file was reported archived %d times", archived)
	}
	if creates != int64(rows) {
		t.Errorf("%d creates for %d rows", creates, rows)
	}
	if workers[1].api.finds.Load()+workers[2].api.finds.Load() == 0 {
		t.Error("nobody looked up the dead worker's dispatched rows: its range was not resumed from its mark")
	}
	l := workers[1].ledger
	f, err := l.File(context.Background(), state.FileID{Source: "erp", Name: "big.csv"})
	if err != nil || f.Run != 1 || f.Location != "archive/big.csv" || f.Counts.Created != int64(rows) || f.Owner != "" {
		t.Fatalf("ledger: %+v, %v", f, err)
	}
	rs, err := l.Ranges(context.Background(), state.FileID{Source: "erp", Name: "big.csv"})
	if err != nil || len(rs) != 5 {
		t.Fatalf("ranges: %+v, %v", rs, err)
	}
	for _, r := range rs {
		if !r.Done {
			t.Errorf("range %d not done: %+v", r.Index, r)
		}
	}
	if in, arch := e.ls("inbox"), e.ls("archive"); len(in) != 0 || len(arch) != 1 {
		t.Fatalf("inbox %v, archive %v", in, arch)
	}
	e.checkReport("big.response.csv", ids)
	e.exactlyOnce("big.csv", ids)
	t.Logf("checked in %v", time.Since(start).Round(time.Millisecond))
	t.Logf("creates per worker: %d %d %d; lookups by the survivors: %d %d",
		workers[0].api.creates.Load(), workers[1].api.creates.Load(), workers[2].api.creates.Load(),
		workers[1].api.finds.Load(), workers[2].api.finds.Load())
}
