package workercli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// BenchmarkStatusAged: one op is one `status` (default page, human
// output) on a ledger holding a year of nightly history (IHR_HISTORY,
// default statetest.AYear), SQLite and PostgreSQL. The target is < 1 s;
// it reports the slowest op too, and checks the page says more exist
// (when more than a page do: IHR_HISTORY may ask for fewer).
// The JSON form and the filters are timed once each and logged.
func BenchmarkStatusAged(b *testing.B) {
	h, err := statetest.HistoryFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sqlite", func(b *testing.B) {
		benchStatus(b, h, "sqlite:"+statetest.SQLiteHistory(b, h))
	})
	b.Run("postgres", func(b *testing.B) {
		ctx := context.Background()
		dsn := testservers.StartPostgres(b).NewDatabase(b)
		clock := statetest.NewClock()
		clock.Set(h.Until(time.Now().Truncate(24 * time.Hour).Add(2 * time.Hour)))
		l, err := state.OpenPostgres(ctx, dsn, state.PostgresOptions{Now: clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := h.Build(ctx, l, clock, 4, nil); err != nil {
			b.Fatal(err)
		}
		l.Close()
		// As autovacuum would have over the year: the planner's statistics.
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Exec(ctx, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
		c.Close(ctx)
		// serve's operator tables, and their index of row outcomes by
		// time, are made on a ledger's first OpsOf (by serve or status).
		// A ledger that grew under serve has them from its first day;
		// this one, built without, would make the first status build
		// that index over every outcome (9–12 s here), so it is made now
		// and timed apart.
		l, err = state.OpenPostgres(ctx, dsn, state.PostgresOptions{})
		if err != nil {
			b.Fatal(err)
		}
		opsStart := time.Now()
		if _, err := state.OpsOf(ctx, l); err != nil {
			b.Fatal(err)
		}
		b.Logf("operator tables and indexes made in %v", time.Since(opsStart).Round(time.Millisecond))
		l.Close()
		b.Logf("built a PostgreSQL history of %d files, %d outcomes in %v", h.Files(), h.Outcomes(), time.Since(start).Round(time.Second))
		benchStatus(b, h, dsn)
	})
}

func benchStatus(b *testing.B, h statetest.History, dsn string) {
	ctx := context.Background()
	cfg := &config.Config{State: dsn, Sources: []config.Source{{Name: h.Source, URL: "file:///srv/drop"}}}
	run := func(json bool, f statusFlags) (string, time.Duration) {
		var out bytes.Buffer
		g := &globals{st: Streams{Err: &out, Out: &out}, jsonOut: json}
		q, err := f.query(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := g.status(ctx, cfg, f.source, q); err != nil {
			b.Fatal(err)
		}
		return out.String(), time.Since(start)
	}
	var times []time.Duration
	var out string
	for b.Loop() {
		var el time.Duration
		out, el = run(false, statusFlags{limit: 50})
		times = append(times, el)
	}
	if more := strings.Contains(out, "showing the newest 50 file(s) of more"); more != (h.Files() > 50) {
		b.Fatalf("status of %d files says more exist: %v\n%s", h.Files(), more, out)
	}
	b.ReportMetric(float64(slices.Max(times).Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(median(times).Microseconds())/1000, "median-ms")
	b.Logf("each status: %v", times)
	b.Logf("status: %s", strings.SplitN(out, "\n", 2)[0])
	for _, c := range []struct {
		name string
		json bool
		f    statusFlags
	}{
		{"--json", true, statusFlags{limit: 50}},
		{"--result failed", false, statusFlags{limit: 50, results: []string{"failed"}}},
		{"--since 90 days ago --limit 500", false, statusFlags{limit: 500, since: time.Now().AddDate(0, 0, -90).Format("2006-01-02")}},
		{"--until 300 days ago", false, statusFlags{limit: 50, until: time.Now().AddDate(0, 0, -300).Format("2006-01-02")}},
	} {
		_, el := run(c.json, c.f)
		b.Logf("status %s: %v", c.name, el.Round(time.Millisecond))
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
