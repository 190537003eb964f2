package benchmarks_test

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/state"
)

// BenchmarkPipelineInProcess is BenchmarkEndToEnd/store=local with the
// worker's pipeline in the benchmark process (the same importer, client,
// SQLite ledger and store the CLI wires up, against the built ihr-api),
// so -cpuprofile, -blockprofile and -mutexprofile show where the worker's
// time goes. IHR_BENCH_STORE picks the store (local, sftp, s3):
//
//	go test ./tests/benchmarks -run '^$' -bench PipelineInProcess -benchtime 1x \
//	    -cpuprofile cpu.out -blockprofile block.out -mutexprofile mutex.out
func BenchmarkPipelineInProcess(b *testing.B) {
	rows := envInt("IHR_BENCH_ROWS", 100000)
	conc := envInt("IHR_BENCH_CONCURRENCY", 8)
	file := filepath.Join(b.TempDir(), "bench.csv")
	if _, err := binharness.WriteCSV(file, "W", rows); err != nil {
		b.Fatal(err)
	}
	var rate float64
	for b.Loop() {
		b.StopTimer()
		api := binharness.StartAPI(b, binharness.APIOptions{Integrations: []string{"ERP-BENCH"}})
		src, _ := binharness.NewSource(b, cmp.Or(os.Getenv("IHR_BENCH_STORE"), "local"))
		src.Put(b, "inbox/bench.csv", file)
		client, err := apiclient.New(apiclient.Config{BaseURL: api.URL, APIKey: api.Key, RateLimit: -1,
			CreateFields: []string{"id"}}, nil) // as internal/workercli wires it
		if err != nil {
			b.Fatal(err)
		}
		ledger, err := state.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "state.db"), state.SQLiteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		stages := map[importer.Stage]time.Duration{}
		im := importer.New(importer.Config{Concurrency: conc, StageTimer: func(s importer.Stage, d time.Duration) {
			mu.Lock()
			stages[s] += d
			mu.Unlock()
		}}, importer.ClientAPI(client), ledger, nil, nil)
		b.StartTimer()
		start := time.Now()
		sum, err := im.RunSource(context.Background(), importer.Source{Name: "bench", Store: src.Store, Integration: "ERP-BENCH"})
		el := time.Since(start)
		b.StopTimer()
		if err != nil || sum.Rows.Created != int64(rows) {
			b.Fatalf("%+v %v", sum.Rows, err)
		}
		rate = float64(rows) / el.Seconds()
		b.Logf("%v in %v; stages: %v", src.Kind, el.Round(time.Millisecond), stages)
		ledger.Close()
		api.Stop()
		b.StartTimer()
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rate, "rows/s")
}
