package importer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// BenchmarkAgedLedger: one op is a new file's pass (IHR_PASS_ROWS rows,
// default 100,000; inbox to archive through the whole pipeline with an
// instant API, as BenchmarkPipeline) on a fresh ledger and on one holding
// a year of nightly history (IHR_HISTORY, default statetest.AYear), the
// two in turns within the op, so both see the same load. It reports each
// pass's median seconds, their ratio (aged/fresh, the target is <= 1.1)
// and the median of each op's own ratio (pair-aged/fresh),
// and the ledger's bytes per row outcome: the history's and a fresh
// pass's (SQLite: the file after the last close checkpointed it;
// PostgreSQL: pg_total_relation_size of the ledger's tables).
func BenchmarkAgedLedger(b *testing.B) {
	h, err := statetest.HistoryFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	rows := 100000
	if v, err := strconv.Atoi(os.Getenv("IHR_PASS_ROWS")); err == nil && v > 0 {
		rows = v
	}
	b.Run("sqlite", func(b *testing.B) {
		path := statetest.SQLiteHistory(b, h)
		info, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		aged, err := state.OpenSQLite(context.Background(), path, state.SQLiteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer aged.Close()
		var freshBytes float64
		agedPasses(b, h.Source, rows, aged, func(b *testing.B) (state.Ledger, func()) {
			p := filepath.Join(b.TempDir(), "state.db")
			l, err := state.OpenSQLite(context.Background(), p, state.SQLiteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return l, func() {
				l.Close()
				if fi, err := os.Stat(p); err == nil {
					freshBytes = float64(fi.Size()) / float64(rows)
				}
				os.Remove(p)
			}
		})
		b.ReportMetric(float64(info.Size())/float64(h.Outcomes()), "history-B/outcome")
		b.ReportMetric(freshBytes, "pass-B/outcome")
	})
	b.Run("postgres", func(b *testing.B) {
		ctx := context.Background()
		pg := testservers.StartPostgres(b)
		dsn := pg.NewDatabase(b)
		clock := statetest.NewClock()
		clock.Set(h.Until(time.Now().Truncate(24 * time.Hour).Add(2 * time.Hour)))
		build, err := state.OpenPostgres(ctx, dsn, state.PostgresOptions{Now: clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := h.Build(ctx, build, clock, 4, nil); err != nil {
			b.Fatal(err)
		}
		build.Close()
		b.Logf("built a PostgreSQL history of %d files, %d outcomes in %v", h.Files(), h.Outcomes(), time.Since(start).Round(time.Second))
		// As autovacuum would have by now: the planner's statistics.
		if _, err := pgSize(dsn, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
		size, err := pgSize(dsn, "")
		if err != nil {
			b.Fatal(err)
		}
		aged, err := state.OpenPostgres(ctx, dsn, state.PostgresOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer aged.Close()
		var freshBytes float64
		agedPasses(b, h.Source, rows, aged, func(b *testing.B) (state.Ledger, func()) {
			fdsn := pg.NewDatabase(b)
			l, err := state.OpenPostgres(ctx, fdsn, state.PostgresOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return l, func() {
				l.Close()
				if n, err := pgSize(fdsn, ""); err == nil {
					freshBytes = float64(n) / float64(rows)
				}
			}
		})
		b.ReportMetric(float64(size)/float64(h.Outcomes()), "history-B/outcome")
		b.ReportMetric(freshBytes, "pass-B/outcome")
	})
}

// agedPasses runs the ops: each a file's pass on a fresh ledger from
// fresh and one on aged, in alternating order.
func agedPasses(b *testing.B, source string, rows int, aged state.Ledger, fresh func(*testing.B) (state.Ledger, func())) {
	root := b.TempDir()
	store, err := local.New(root, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
		b.Fatal(err)
	}
	src := importer.Source{Name: source, Store: store}
	pass := func(l state.Ledger, name string, i int) time.Duration {
		content, _ := csvRows(fmt.Sprintf("AGED%d-%s", i, name), 1, rows)
		if err := os.WriteFile(filepath.Join(root, "inbox", fmt.Sprintf("new-%s-%06d.csv", name, i)), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
		im := importer.New(importer.Config{}, &fastAPI{}, l, nil, nil)
		start := time.Now()
		sum, err := im.RunSource(context.Background(), src)
		el := time.Since(start)
		if err != nil || sum.Rows.Created != int64(rows) || len(sum.Files) != 1 {
			b.Fatalf("%s pass: %+v %v", name, sum, err)
		}
		return el
	}
	var onFresh, onAged []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		l, done := fresh(b)
		b.StartTimer()
		if i%2 == 0 {
			onFresh = append(onFresh, pass(l, "fresh", i))
			onAged = append(onAged, pass(aged, "aged", i))
		} else {
			onAged = append(onAged, pass(aged, "aged", i))
			onFresh = append(onFresh, pass(l, "fresh", i))
		}
		b.StopTimer()
		done()
		b.StartTimer()
	}
	f, a := median(onFresh), median(onAged)
	// Each op's two passes ran back to back, so their ratio is the least
	// disturbed by the machine's load; the median of those is reported
	// with the ratio of the medians.
	var ratios []time.Duration
	for i := range onFresh {
		ratios = append(ratios, time.Duration(float64(time.Second)*onAged[i].Seconds()/onFresh[i].Seconds()))
	}
	b.ReportMetric(f.Seconds(), "fresh-s/pass")
	b.ReportMetric(a.Seconds(), "aged-s/pass")
	b.ReportMetric(a.Seconds()/f.Seconds(), "aged/fresh")
	b.ReportMetric(median(ratios).Seconds(), "pair-aged/fresh")
	b.Logf("fresh passes %v, aged passes %v", onFresh, onAged)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// pgSize runs stmt (if any) on the database, then returns the bytes of
// the ledger's tables with their indexes and TOAST.
func pgSize(dsn, stmt string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	if stmt != "" {
		_, err := c.Exec(ctx, stmt)
		return 0, err
	}
	var n int64
	err = c.QueryRow(ctx, `SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
		WHERE c.relkind = 'r' AND c.relname LIKE 'ihr\_worker\_%'`).Scan(&n)
	return n, err
}
