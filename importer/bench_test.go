package importer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

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
