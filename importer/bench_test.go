package importer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// fastAPI answers at once, so the benchmark measures the pipeline itself:
// three passes over the file, parse, map, ledger lookups, dispatch marks,
// group-committed outcomes and the report.
type fastAPI struct{ id atomic.Int64 }

func (a *fastAPI) Create(_ context.Context, _ record.Action, r *record.Record) (*record.Record, error) {
	out := *r
	out.ID = a.id.Add(1)
	return &out, nil
}
func (a *fastAPI) FindExisting(context.Context, *record.Record) (*record.Record, error) {
	return nil, nil
}
func (a *fastAPI) Unresolved(context.Context, string, int64) ([]*record.Record, error) {
	return nil, nil
}
func (a *fastAPI) Resolve(context.Context, int64) error { return nil }

// BenchmarkPipeline: one op is one 20,000-row file from inbox to archive.
func BenchmarkPipeline(b *testing.B) {
	const rows = 20000
	root := b.TempDir()
	store, err := local.New(root, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ledger, err := state.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "state.db"), state.SQLiteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ledger.Close()
	im := importer.New(importer.Config{}, &fastAPI{}, ledger, nil, nil)
	src := importer.Source{Name: "bench", Store: store}
	if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
		b.Fatal(err)
	}
	total := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		content, _ := csvRows(fmt.Sprintf("B%d", i), 1, rows)
		if err := os.WriteFile(filepath.Join(root, "inbox", fmt.Sprintf("f%06d.csv", i)), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sum, err := im.RunSource(context.Background(), src)
		if err != nil || sum.Rows.Created != rows {
			b.Fatalf("%+v %v", sum, err)
		}
		total += rows
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
}

// TestLargeFileMemory runs one big file through the pipeline with an
// instant API and reports the process's peak RSS. It is a measurement,
// not a unit test: set IHR_BIG_ROWS (e.g. 1000000) to run it.
func TestLargeFileMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("IHR_BIG_ROWS"))
	if n <= 0 {
		t.Skip("set IHR_BIG_ROWS to run")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(root, "inbox", "big.csv"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(header)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "BIG-%d,InvoiceHeader,%d,Success,Functional,a response message of moderate length for row %d\r\n", i, i, i)
	}
	w.Flush()
	f.Close()
	fi, _ := os.Stat(f.Name())
	store, _ := local.New(root, zap.NewNop())
	defer store.Close()
	ledger, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	start := time.Now()
	sum, err := importer.New(importer.Config{}, &fastAPI{}, ledger, nil, nil).RunSource(context.Background(), importer.Source{Name: "big", Store: store})
	if err != nil || sum.Rows.Created != int64(n) {
		t.Fatalf("%+v %v", sum, err)
	}
	el := time.Since(start)
	status, _ := os.ReadFile("/proc/self/status")
	var hwm string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			hwm = strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	t.Logf("%d rows (%d MB) in %v: %.0f rows/s, peak RSS %s", n, fi.Size()>>20, el.Round(time.Millisecond), float64(n)/el.Seconds(), hwm)
}

// slowAPI is fastAPI with a fixed latency per create, like a remote API
// whose round trip, not its throughput, bounds one worker.
type slowAPI struct {
	fastAPI
	latency time.Duration
}

func (a *slowAPI) Create(ctx context.Context, act record.Action, r *record.Record) (*record.Record, error) {
	select {
	case <-time.After(a.latency):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return a.fastAPI.Create(ctx, act, r)
}

// BenchmarkSplitWorkers: one op is one 6,000-row file split into 6 ranges,
// taken by 1 or 3 workers sharing the ledger, against an API with 5 ms per
// create and 4 calls in flight per worker. It shows what splitting buys
// when round trips bound a worker: rows/s should grow with the workers.
func BenchmarkSplitWorkers(b *testing.B) {
	const rows = 6000
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			root := b.TempDir()
			store, err := local.New(root, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			ledger, err := state.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "state.db"), state.SQLiteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer ledger.Close()
			api := &slowAPI{latency: 5 * time.Millisecond}
			var ims []*importer.Importer
			for w := range n {
				ims = append(ims, importer.New(importer.Config{Owner: fmt.Sprintf("w%d", w), Concurrency: 4}, api, ledger, nil, nil))
			}
			src := importer.Source{Name: "bench", Store: store, SplitRows: rows / 6}
			if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
				b.Fatal(err)
			}
			total := 0
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				name := fmt.Sprintf("f%06d.csv", i)
				content, _ := csvRows(fmt.Sprintf("B%d", i), 1, rows)
				if err := os.WriteFile(filepath.Join(root, "inbox", name), []byte(content), 0o644); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var wg sync.WaitGroup
				for w, im := range ims {
					wg.Go(func() {
						time.Sleep(time.Duration(w) * 5 * time.Millisecond) // w0 splits
						for {
							if _, err := im.RunSource(context.Background(), src); err != nil {
								b.Error(err)
								return
							}
							if f, err := ledger.File(context.Background(), state.FileID{Source: "bench", Name: name}); err == nil && f.Status == state.Done {
								return
							}
							time.Sleep(5 * time.Millisecond)
						}
					})
				}
				wg.Wait()
				total += rows
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
