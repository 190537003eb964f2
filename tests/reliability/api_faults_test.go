package reliability_test

import (
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/internal/faultproxy"
)

// outage is how long the API outage lasts: IHR_OUTAGE, default 3 s (the
// issue's 30 s, scaled down for make test).
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("IHR_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("IHR_OUTAGE=%q: want a Go duration such as 30s", v)
		}
		return d
	}
	return 3 * time.Second
}

func onlyRecords(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/integration_history_records")
}

// TestAPIFaults runs one file per fault kind through the pipeline, the
// API behind a fault-injecting proxy, until the file is archived, and
// checks every row has exactly one record on the server.
func TestAPIFaults(t *testing.T) {
	cases := []struct {
		name string
		rows int
		cfg  faultproxy.Config
		// client adjusts the API client (e.g. a timeout below DelayFor).
		client func(*apiclient.Config)
		// during runs once the proxy has forwarded `after` requests.
		after  int64
		during func(p *faultproxy.Proxy)
		// deadline for the whole file.
		deadline time.Duration
	}{
		{name: "resets-after-request", rows: 300, cfg: faultproxy.Config{Seed: 1, DropAfter: 0.2}},
		{name: "timeouts", rows: 120, cfg: faultproxy.Config{Seed: 2, Delay: 0.1, DelayFor: 1500 * time.Millisecond},
			client: func(c *apiclient.Config) { c.Timeout = 400 * time.Millisecond }},
		{name: "429-retry-after", rows: 120, cfg: faultproxy.Config{Seed: 3, Throttle: 0.1, RetryAfter: "1"}},
		{name: "429-no-header", rows: 300, cfg: faultproxy.Config{Seed: 4, ThrottleNoHeader: 0.2}},
		{name: "5xx", rows: 300, cfg: faultproxy.Config{Seed: 5, ServerError: 0.15, ServerErrorAfter: 0.1}},
		{name: "5xx-burst", rows: 300, cfg: faultproxy.Config{Seed: 6, OutageStatus: http.StatusServiceUnavailable},
			after: 100, during: func(p *faultproxy.Proxy) { p.Outage(time.Second) }},
		{name: "outage", rows: 300, cfg: faultproxy.Config{Seed: 7},
			after: 100, during: func(p *faultproxy.Proxy) { p.Outage(outage(t)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, direct := apiServer(t)
			tc.cfg.Eligible = onlyRecords
			proxy := faultproxy.Start(t, srv.URL, tc.cfg)
			store, err := local.New(t.TempDir(), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			p := newPipe(t, srv, direct, proxy.URL, tc.client, store)
			if tc.during != nil {
				var once sync.Once
				p.api.onCreate = func(n int) {
					if int64(n) >= tc.after {
						once.Do(func() { tc.during(proxy) })
					}
				}
			}
			name := fmtName("faults", tc.name)
			content, ids := rows(strings.ToUpper(tc.name), tc.rows)
			p.put(name, content)
			deadline := tc.deadline
			if deadline == 0 {
				deadline = 60*time.Second + outage(t)
			}
			p.untilDone(deadline)
			c := proxy.Counts()
			t.Logf("proxy: %+v", c)
			if c.Faults() == 0 {
				t.Errorf("no fault was injected: %+v", c)
			}
			p.checkExactlyOnce(name, ids)
		})
	}
}
