package apiserver_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/gcdefault"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// Run: go test ./apiserver -run '^$' -bench . -benchtime 5s
//
// BenchmarkCreate reports creates/s over HTTP on loopback (JSON,
// keep-alive clients in this process) at 8 and 32 concurrent clients, and
// the CPU time per create; BenchmarkIndex1M reports index latency p50/p99 by
// (integration-filename, external-id), and of a 50-record page with
// responses, with 1,000,000 stored records.

type benchDB struct {
	name string
	dsn  func(b *testing.B) (cfg string, open func() (*sql.DB, error))
}

var benchDBs = []benchDB{
	{"sqlite", func(b *testing.B) (string, func() (*sql.DB, error)) {
		path := filepath.Join(b.TempDir(), "bench.db")
		return "sqlite:" + path, func() (*sql.DB, error) {
			return sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
		}
	}},
	{"postgres", func(b *testing.B) (string, func() (*sql.DB, error)) {
		dsn := testservers.StartPostgres(b).NewDatabase(b)
		return dsn, func() (*sql.DB, error) { return sql.Open("pgx", dsn) }
	}},
}

func benchClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true,
	}}
}

func BenchmarkCreate(b *testing.B) {
	// What cmd/ihr-api's main does, so the figures are the binary's.
	defer debug.SetGCPercent(gcdefault.Apply())
	for _, db := range benchDBs {
		b.Run(db.name, func(b *testing.B) {
			cfg, _ := db.dsn(b)
			ts := apitest.Start(b, apitest.WithConfig(func(c *apiserver.Config) { c.DB = cfg }))
			for _, clients := range []int{8, 32} {
				b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
					hc := benchClient(clients)
					defer hc.CloseIdleConnections()
					var next, fails atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					c0 := apitest.Commits(b, hc, ts.URL)
					w0 := writeSyscalls()
					start, cpu0 := time.Now(), cpuTime()
					for w := range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								i := next.Add(1)
								if i > int64(b.N) {
									return
								}
								body := fmt.Sprintf(`{"contact-alert-type":"Functional","document-id":%d,"document-type":"InvoiceHeader","external-id":"EXT-%d-%d","integration-filename":"bench-%d.csv","status":"Success"}`, i, w, i, w)
								req, _ := http.NewRequest("POST", ts.URL+"/api/integration_history_records?return_object=limited", strings.NewReader(body))
								req.Header.Set("Content-Type", "application/json")
								req.Header.Set("X-COUPA-API-KEY", ts.APIKey)
								res, err := hc.Do(req)
								if err != nil {
									fails.Add(1)
									continue
								}
								io.Copy(io.Discard, res.Body)
								res.Body.Close()
								if res.StatusCode != http.StatusCreated {
									fails.Add(1)
								}
							}
						}()
					}
					wg.Wait()
					el, cpu := time.Since(start), cpuTime()-cpu0
					w1 := writeSyscalls()
					b.StopTimer()
					if d := apitest.Commits(b, hc, ts.URL).Since(c0); d.Commits > 0 {
						b.ReportMetric(d.PerCommit(), "creates/commit")
					}
					if w0 >= 0 && w1 >= 0 {
						// write(2) calls of the process (HTTP both ways,
						// WAL frames, checkpoints): a count, not a time.
						b.ReportMetric(float64(w1-w0)/float64(b.N), "write-syscalls/create")
					}
					if fails.Load() > 0 {
						b.Fatalf("%d creates failed", fails.Load())
					}
					b.ReportMetric(float64(b.N)/el.Seconds(), "creates/s")
					// CPU time per create, client and server together: what
					// bounds creates/s on a machine of few cores, and far
					// less sensitive to other load than creates/s.
					b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/create")
				})
			}
		})
	}
}

// writeSyscalls is syscw of /proc/self/io, or -1 where there is none.
func writeSyscalls() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const (
	bulkRows      = 1_000_000
	rowsPerFile   = 1000
	bulkBaseEpoch = 1_700_000_000
)

// bulkLoad inserts bulkRows records straight through SQL: far faster than
// the API and the point is the query, not the load.
func bulkLoad(b *testing.B, db *sql.DB, pg bool) {
	ctx := context.Background()
	start := time.Now()
	var q string
	if pg {
		q = `INSERT INTO integration_history_records (contact_alert_type, document_id, document_type, external_id, integration_filename, status, resolved, created_at, updated_at, created_by_login, updated_by_login)
 SELECT 'Functional', i, 'InvoiceHeader', 'EXT-' || i, 'file-' || (i / ` + fmt.Sprint(rowsPerFile) + `) || '.csv', CASE WHEN i % 10 = 0 THEN 'Error' ELSE 'Success' END, 0, ` + fmt.Sprint(bulkBaseEpoch) + ` + i, ` + fmt.Sprint(bulkBaseEpoch) + ` + i, 'bulk', 'bulk'
 FROM generate_series(1, ` + fmt.Sprint(bulkRows) + `) AS i`
	} else {
		q = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ` + fmt.Sprint(bulkRows) + `)
 INSERT INTO integration_history_records (contact_alert_type, document_id, document_type, external_id, integration_filename, status, resolved, created_at, updated_at, created_by_login, updated_by_login)
 SELECT 'Functional', i, 'InvoiceHeader', 'EXT-' || i, 'file-' || (i / ` + fmt.Sprint(rowsPerFile) + `) || '.csv', CASE WHEN i % 10 = 0 THEN 'Error' ELSE 'Success' END, 0, ` + fmt.Sprint(bulkBaseEpoch) + ` + i, ` + fmt.Sprint(bulkBaseEpoch) + ` + i, 'bulk', 'bulk' FROM n`
	}
	if _, err := db.ExecContext(ctx, q); err != nil {
		b.Fatalf("bulk load: %v", err)
	}
	// Every Error record (one in ten) has a response, so an index page
	// of them carries child rows.
	if _, err := db.ExecContext(ctx, `INSERT INTO record_responses (record_id, response_code, response_message, created_at, updated_at)
 SELECT id, '500', 'rejected by the ERP', created_at, created_at FROM integration_history_records WHERE status = 'Error'`); err != nil {
		b.Fatalf("bulk load responses: %v", err)
	}
	if pg {
		db.ExecContext(ctx, `ANALYZE integration_history_records`)
	} else {
		db.ExecContext(ctx, `ANALYZE`)
	}
	b.Logf("bulk-loaded %d records in %v", bulkRows, time.Since(start).Round(time.Millisecond))
}

func BenchmarkIndex1M(b *testing.B) {
	for _, db := range benchDBs {
		b.Run(db.name, func(b *testing.B) {
			cfg, open := db.dsn(b)
			ts := apitest.Start(b, apitest.WithConfig(func(c *apiserver.Config) { c.DB = cfg }))
			sqldb, err := open()
			if err != nil {
				b.Fatal(err)
			}
			bulkLoad(b, sqldb, db.name == "postgres")
			sqldb.Close()
			hc := benchClient(1)
			defer hc.CloseIdleConnections()
			b.Run("by-filename-external-id", func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				rng := rand.New(rand.NewPCG(1, 2))
				b.ResetTimer()
				for range b.N {
					i := rng.IntN(bulkRows) + 1
					u := fmt.Sprintf("%s/api/integration_history_records?integration-filename=file-%d.csv&external-id=EXT-%d", ts.URL, i/rowsPerFile, i)
					req, _ := http.NewRequest("GET", u, nil)
					req.Header.Set("X-COUPA-API-KEY", ts.APIKey)
					t0 := time.Now()
					res, err := hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, res.Body)
					res.Body.Close()
					lat = append(lat, time.Since(t0))
					if res.StatusCode != 200 || n < 100 {
						b.Fatalf("status %d, %d bytes", res.StatusCode, n)
					}
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
			// A whole page of 50 records with their responses, newest
			// first, at a random depth: two queries (TestIndexQueriesPerPage
			// counts them).
			b.Run("page-50-errors-with-responses", func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				rng := rand.New(rand.NewPCG(3, 4))
				b.ResetTimer()
				for range b.N {
					before := bulkBaseEpoch + rng.IntN(bulkRows-1000) + 1000
					u := fmt.Sprintf("%s/api/integration_history_records?status=Error&created-at[lt]=%s&order_by=created-at&dir=desc&limit=50",
						ts.URL, time.Unix(int64(before), 0).UTC().Format(time.RFC3339))
					req, _ := http.NewRequest("GET", u, nil)
					req.Header.Set("X-COUPA-API-KEY", ts.APIKey)
					t0 := time.Now()
					res, err := hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					raw, _ := io.ReadAll(res.Body)
					res.Body.Close()
					lat = append(lat, time.Since(t0))
					if res.StatusCode != 200 || strings.Count(string(raw), `"response-code":"500"`) != 50 {
						b.Fatalf("status %d, %d bytes, want 50 records with a response each", res.StatusCode, len(raw))
					}
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		})
	}
}
