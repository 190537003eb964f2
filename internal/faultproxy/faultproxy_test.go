package faultproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func upstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + string(b)))
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

func post(t *testing.T, c *http.Client, url string) (*http.Response, string, error) {
	t.Helper()
	resp, err := c.Post(url+"/api/x?a=1", "text/plain", strings.NewReader("body"))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestForwardsUntouched(t *testing.T) {
	up, hits := upstream(t)
	p := Start(t, up.URL, Config{})
	if !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Fatalf("listens on %s", p.URL)
	}
	resp, body, err := post(t, http.DefaultClient, p.URL)
	if err != nil || resp.StatusCode != 201 || body != "POST /api/x?a=1 body" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("%v %v %q", resp, err, body)
	}
	if c := p.Counts(); c.Requests != 1 || c.Forwarded != 1 || c.Clean != 1 || c.Faults() != 0 || hits.Load() != 1 {
		t.Fatalf("counts %+v", c)
	}
}

func TestEachFault(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		forwarded bool
		check     func(*testing.T, *http.Response, error, Counts)
	}{
		{"drop after forwarding", Config{DropAfter: 1}, true, func(t *testing.T, r *http.Response, err error, c Counts) {
			if err == nil || c.DroppedAfter != 1 {
				t.Errorf("err %v counts %+v", err, c)
			}
		}},
		{"delay past the timeout", Config{Delay: 1, DelayFor: time.Second}, true, func(t *testing.T, r *http.Response, err error, c Counts) {
			if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(errString(err), "Timeout") || c.Delayed != 1 {
				t.Errorf("err %v counts %+v", err, c)
			}
		}},
		{"429 with Retry-After", Config{Throttle: 1, RetryAfter: "7"}, false, func(t *testing.T, r *http.Response, err error, c Counts) {
			if err != nil || r.StatusCode != 429 || r.Header.Get("Retry-After") != "7" || c.Throttled != 1 {
				t.Errorf("%v %v %+v", r, err, c)
			}
		}},
		{"429 without Retry-After", Config{ThrottleNoHeader: 1}, false, func(t *testing.T, r *http.Response, err error, c Counts) {
			if err != nil || r.StatusCode != 429 || r.Header.Get("Retry-After") != "" || c.ThrottledNoHeader != 1 {
				t.Errorf("%v %v %+v", r, err, c)
			}
		}},
		{"5xx instead of forwarding", Config{ServerError: 1, ServerErrorStatuses: []int{500}}, false, func(t *testing.T, r *http.Response, err error, c Counts) {
			if err != nil || r.StatusCode != 500 || c.ServerErrors != 1 {
				t.Errorf("%v %v %+v", r, err, c)
			}
		}},
		{"5xx after forwarding", Config{ServerErrorAfter: 1}, true, func(t *testing.T, r *http.Response, err error, c Counts) {
			if err != nil || (r.StatusCode != 502 && r.StatusCode != 504) || c.ServerErrorsAfter != 1 {
				t.Errorf("%v %v %+v", r, err, c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, hits := upstream(t)
			p := Start(t, up.URL, tc.cfg)
			c := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{}}
			resp, _, err := post(t, c, p.URL)
			tc.check(t, resp, err, p.Counts())
			if got := hits.Load() == 1; got != tc.forwarded {
				t.Errorf("upstream hit %d times", hits.Load())
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRatesSeedAndEligibility(t *testing.T) {
	up, _ := upstream(t)
	cfg := Config{Seed: 7, Throttle: 0.2, ServerError: 0.1, Eligible: func(r *http.Request) bool { return r.Method == http.MethodPost }}
	run := func() Counts {
		p := Start(t, up.URL, cfg)
		for range 500 {
			post(t, http.DefaultClient, p.URL)
		}
		for range 50 {
			resp, err := http.Get(p.URL + "/x")
			if err != nil || resp.StatusCode != 201 {
				t.Fatalf("GET was not eligible but got %v %v", resp, err)
			}
			resp.Body.Close()
		}
		return p.Counts()
	}
	a, b := run(), run()
	if a != b {
		t.Errorf("same seed, sequential requests, different faults:\n%+v\n%+v", a, b)
	}
	if a.Throttled < 70 || a.Throttled > 130 || a.ServerErrors < 25 || a.ServerErrors > 80 {
		t.Errorf("rates off: %+v", a)
	}
	if _, err := New(up.URL, Config{Throttle: 0.7, DropAfter: 0.5}); err == nil {
		t.Error("rates over 1 accepted")
	}
}

func TestOutage(t *testing.T) {
	up, hits := upstream(t)
	p := Start(t, up.URL, Config{OutageStatus: 503})
	p.Outage(200 * time.Millisecond)
	resp, _, err := post(t, http.DefaultClient, p.URL)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("%v %v", resp, err)
	}
	p2 := Start(t, up.URL, Config{})
	p2.Outage(200 * time.Millisecond)
	if _, _, err := post(t, &http.Client{Transport: &http.Transport{}}, p2.URL); err == nil {
		t.Fatal("outage without status answered")
	}
	time.Sleep(250 * time.Millisecond)
	if resp, _, err := post(t, http.DefaultClient, p.URL); err != nil || resp.StatusCode != 201 {
		t.Fatalf("after the outage: %v %v", resp, err)
	}
	if hits.Load() != 1 || p.Counts().Outage != 1 || p2.Counts().Outage != 1 {
		t.Fatalf("hits %d, counts %+v %+v", hits.Load(), p.Counts(), p2.Counts())
	}
}
