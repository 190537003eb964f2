package benchmarks_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/internal/binharness"
)

// BenchmarkIndexAmplification is the memory-amplification attack on
// ihr-api at its worst allowed size: 50 records, each filled to the
// response cap (MaxResponsesPerRecord responses holding
// MaxResponseBytesPerRecord bytes of text), read back as one index page in
// JSON and in XML. It reports the server's peak RSS while answering
// (VmHWM, reset before each page where the kernel allows) and fails
// above 100 MiB. Before the cap and streaming, 50 records of 45,000
// responses took 2.1 GB (JSON) and 3.6 GB (XML).
//
//	go test ./tests/benchmarks -run '^$' -bench IndexAmplification -benchtime 1x
func BenchmarkIndexAmplification(b *testing.B) {
	api := binharness.StartAPI(b, binharness.APIOptions{})
	const records = 50
	const perPost = apiserver.MaxResponsesPerRecord / 2
	// Each response-message as long as the byte cap allows.
	msg := strings.Repeat("m", apiserver.MaxResponseBytesPerRecord/apiserver.MaxResponsesPerRecord)
	responses := func(n int) []map[string]string {
		out := make([]map[string]string, n)
		for i := range out {
			out[i] = map[string]string{"response-code": strconv.Itoa(i), "response-message": msg}
		}
		return out
	}
	hc := &http.Client{Timeout: 2 * time.Minute}
	send := func(method, path string, v any) (int, string) {
		body, _ := json.Marshal(v)
		req, _ := http.NewRequest(method, api.URL+path, bytes.NewReader(body))
		req.Header.Set("X-COUPA-API-KEY", api.Key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	start := time.Now()
	for i := range records {
		code, out := send("POST", "/api/integration_history_records", map[string]any{
			"document-type": "InvoiceHeader", "document-id": i + 1, "contact-alert-type": "Functional",
			"responses": responses(perPost)})
		if code != 201 {
			b.Fatalf("create: %d %.300s", code, out)
		}
		var rec struct{ ID int64 }
		json.Unmarshal([]byte(out), &rec)
		path := fmt.Sprintf("/api/integration_history_records/%d", rec.ID)
		if code, out := send("PUT", path, map[string]any{"responses": responses(apiserver.MaxResponsesPerRecord - perPost)}); code != 200 {
			b.Fatalf("fill to the cap: %d %.300s", code, out)
		}
		if i == 0 { // the cap holds: the 45,000-response record cannot be built
			if code, out := send("PUT", path, map[string]any{"responses": responses(1)}); code != 400 {
				b.Fatalf("one response beyond the cap: %d %.300s, want 400", code, out)
			}
		}
	}
	b.Logf("filled %d records × %d responses × %d-byte messages in %v", records, apiserver.MaxResponsesPerRecord, len(msg), time.Since(start).Round(time.Millisecond))
	// A fresh process on the filled database, so the figure is that of
	// serving the index, not of having taken 100 MB of writes.
	api.Stop()
	api = binharness.StartAPI(b, binharness.APIOptions{Key: api.Key, DB: api.DB})

	pid := api.Pid()
	var worst float64
	b.ResetTimer()
	for range b.N {
		for _, f := range []struct{ name, accept string }{{"json", "application/json"}, {"xml", "application/xml"}} {
			resetPeak(pid)
			before := vmKB(b, pid, "VmHWM")
			req, _ := http.NewRequest("GET", api.URL+"/api/integration_history_records?limit=50", nil)
			req.Header.Set("X-COUPA-API-KEY", api.Key)
			req.Header.Set("Accept", f.accept)
			t0 := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took := time.Since(t0)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s index: %d %v", f.name, resp.StatusCode, err)
			}
			// The peak means something only if the page carried every
			// record's responses: at least their message text.
			if least := int64(records * apiserver.MaxResponseBytesPerRecord); n < least {
				b.Fatalf("%s index: %d bytes, want at least the %d bytes of message text of %d full records", f.name, n, least, records)
			}
			peak := float64(vmKB(b, pid, "VmHWM")) / 1024
			worst = max(worst, peak)
			b.Logf("%s page: %.1f MB in %v; ihr-api peak RSS %.1f MiB (%.1f MiB before the request)", f.name, float64(n)/1e6, took.Round(time.Millisecond), peak, float64(before)/1024)
			b.ReportMetric(peak, f.name+"-peak-RSS-MiB")
			b.ReportMetric(took.Seconds(), f.name+"-s")
			b.ReportMetric(float64(n)/1e6, f.name+"-MB")
		}
	}
	if worst > 100 {
		b.Errorf("ihr-api peak RSS %.1f MiB answering an index page, want under 100 MiB", worst)
	}
}

// vmKB reads a kB field of /proc/PID/status.
func vmKB(b *testing.B, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs 5), so the
// next reading is the peak of what follows. Where the kernel does not
// allow it, VmHWM stays the peak since start, an upper bound.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
