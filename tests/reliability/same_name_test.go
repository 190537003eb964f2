package reliability_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/faultproxy"
)

// TestSameNameTwiceThroughFaults: daily.csv arrives twice under the same
// name, the second time with the same external-ids and documents but
// another status and message (yesterday's errors, today's successes),
// while the API's answers are lost (connection reset after the server did
// the work) or replaced by gateway errors. Every lost answer makes the
// worker look the record up; only a record with the row's content may
// count, never yesterday's record of the same key. Afterwards each
// external-id has exactly one record per drop: one Error, one Success.
func TestSameNameTwiceThroughFaults(t *testing.T) {
	const n = 300
	srv, direct := apiServer(t)
	proxy := faultproxy.Start(t, srv.URL, faultproxy.Config{Seed: 12, DropAfter: 0.2, ServerErrorAfter: 0.1, Eligible: onlyRecords})
	store, err := local.New(t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	p := newPipe(t, srv, direct, proxy.URL, nil, store)
	day := func(status, msg string) (string, []string) {
		var b strings.Builder
		b.WriteString(binharness.Header)
		var ids []string
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("SN-%d", i)
			fmt.Fprintf(&b, "%s,InvoiceHeader,%d,%s,Functional,%s %d\r\n", id, i, status, msg, i)
			ids = append(ids, id)
		}
		return b.String(), ids
	}
	a, ids := day("Error", "missing tax code")
	p.put("daily.csv", a)
	p.untilDone(60 * time.Second)
	afterA := proxy.Counts()
	b, _ := day("Success", "posted")
	p.put("daily.csv", b)
	p.untilDone(60 * time.Second)
	c := proxy.Counts()
	t.Logf("proxy: day 1 %+v; both days %+v", afterA, c)
	if afterA.Faults() == 0 || c.Faults() == afterA.Faults() {
		t.Fatalf("faults were not injected on both days: %+v, %+v", afterA, c)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	per := map[string]map[string]int{}
	total := 0
	for r, err := range direct.All(ctx, apiclient.NewQuery().Eq("integration-filename", "daily.csv")) {
		if err != nil {
			t.Fatal(err)
		}
		if per[r.ExternalID] == nil {
			per[r.ExternalID] = map[string]int{}
		}
		per[r.ExternalID][r.Status]++
		total++
	}
	bad := 0
	for _, id := range ids {
		if per[id]["Error"] != 1 || per[id]["Success"] != 1 {
			if bad < 5 {
				t.Errorf("%s: records by status %v, want one Error and one Success", id, per[id])
			}
			bad++
		}
	}
	if total != 2*n || bad > 0 {
		t.Fatalf("%d records for %d rows of two drops (%d keys wrong)", total, n, bad)
	}
	reports := p.names("reports")
	if len(reports) != 2 {
		t.Fatalf("reports: %v", reports)
	}
	for _, r := range reports {
		lines := p.report(r)
		if len(lines) != n {
			t.Errorf("%s: %d lines", r, len(lines))
		}
		for i, l := range lines {
			if l[5] != "created" || l[6] == "" {
				t.Errorf("%s line %d: %v (each drop's rows are new content)", r, i+1, l)
				break
			}
		}
	}
	t.Logf("%d records: one Error and one Success for each of %d external-ids; reports %v", total, n, reports)
}
