// Command ihr-loadgen is a bare HTTP load generator for ihr-api: it posts
// the same records the end-to-end benchmark's CSV file holds, as JSON
// creates, at a fixed concurrency, and prints the rate. It does no CSV
// parsing, keeps no ledger and never retries, so its rate is the ceiling
// the worker is measured against (see BENCHMARKS.md, "End to end").
//
//	ihr-loadgen --url http://127.0.0.1:8080 --api-key KEY [--rows 100000]
//	            [--concurrency 8] [--integration ERP-BENCH]
//	            [--filename loadgen.csv] [--prefix L] [--json]
//
// Row i (1-based) is the record the benchmark file's row i maps to:
// external-id PREFIX-i, document-type InvoiceHeader, document-id i,
// status Success (mark_exported) or, every 5th row, Error (create_alert),
// contact-alert-type Functional, response-message "message i", the given
// integration code and integration-filename. Bodies are encoded per
// request, as the worker does.
//
// The API key may also come from IHR_LOADGEN_API_KEY, so it need not show
// in a process listing. Exit status: 0 when every post got 2xx, 1 when
// some failed, 2 on usage errors.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ihr-tools/ihr/record"
)

// options are the command line.
type options struct {
	url         string
	apiKey      string
	rows        int
	concurrency int
	integration string
	filename    string
	prefix      string
	timeout     time.Duration
	jsonOut     bool
	fields      string
}

// Result is what one run measured; --json prints it.
type Result struct {
	Rows          int            `json:"rows"`
	Concurrency   int            `json:"concurrency"`
	Seconds       float64        `json:"seconds"`
	RowsPerSecond float64        `json:"rows_per_second"`
	OK            int64          `json:"ok"`
	Failed        int64          `json:"failed"`
	Status        map[string]int `json:"status"` // HTTP status (or "error") → count
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "ihr-loadgen:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res := Generate(ctx, o)
	if o.jsonOut {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		_ = e.Encode(res)
	}
	fmt.Fprintf(stderr, "ihr-loadgen: %d rows, concurrency %d, %.2f s, %.0f rows/s (%d ok, %d failed %v)\n",
		res.Rows, res.Concurrency, res.Seconds, res.RowsPerSecond, res.OK, res.Failed, res.Status)
	if res.Failed > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("ihr-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "ihr-api base URL (no /api suffix)")
	fs.StringVar(&o.apiKey, "api-key", os.Getenv("IHR_LOADGEN_API_KEY"), "X-COUPA-API-KEY (default $IHR_LOADGEN_API_KEY)")
	fs.IntVar(&o.rows, "rows", 100000, "records to post")
	fs.IntVar(&o.concurrency, "concurrency", 8, "requests in flight")
	fs.StringVar(&o.integration, "integration", "ERP-BENCH", "integration code of every record")
	fs.StringVar(&o.filename, "filename", "loadgen.csv", "integration-filename of every record")
	fs.StringVar(&o.prefix, "prefix", "L", "external-id prefix")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per request")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON on stdout")
	fs.StringVar(&o.fields, "fields", "", `trim each answer with Coupa's fields parameter, e.g. '["id","integration-filename"]' as ihr-worker asks`)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.apiKey == "":
		return o, errors.New("--api-key (or IHR_LOADGEN_API_KEY) is required")
	case o.rows < 1 || o.concurrency < 1:
		return o, errors.New("--rows and --concurrency must be at least 1")
	case !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://"):
		return o, fmt.Errorf("--url %q: want an http(s) URL", o.url)
	}
	o.url = strings.TrimRight(o.url, "/")
	return o, nil
}

// Row returns the record and action of row i, the same as the worker maps
// from the benchmark file's row i.
func Row(prefix, integration, filename string, i int) (record.Action, *record.Record) {
	id := int64(i)
	r := &record.Record{
		ExternalID:          fmt.Sprintf("%s-%d", prefix, i),
		DocumentType:        "InvoiceHeader",
		DocumentID:          &id,
		Status:              "Success",
		ContactAlertType:    "Functional",
		IntegrationFilename: filename,
		Integration:         &record.IntegrationRef{Code: integration},
		Responses:           []record.Response{{ResponseMessage: fmt.Sprintf("message %d", i)}},
	}
	if i%5 == 0 {
		r.Status = "Error"
		return record.CreateAlert, r
	}
	return record.MarkExported, r
}

// Generate posts o.rows records with o.concurrency workers and measures
// the wall time from the first request to the last answer.
func Generate(ctx context.Context, o options) Result {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.concurrency * 2
	hc := &http.Client{Transport: tr, Timeout: o.timeout}
	defer tr.CloseIdleConnections()

	var next atomic.Int64
	var ok, failed atomic.Int64
	var mu sync.Mutex
	status := map[string]int{}
	count := func(s string) {
		mu.Lock()
		status[s]++
		mu.Unlock()
	}

	start := time.Now()
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1))
				if i > o.rows {
					return
				}
				code, err := post(ctx, hc, o, i)
				switch {
				case err != nil:
					failed.Add(1)
					count("error")
				case code/100 == 2:
					ok.Add(1)
					count(fmt.Sprint(code))
				default:
					failed.Add(1)
					count(fmt.Sprint(code))
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	return Result{
		Rows: o.rows, Concurrency: o.concurrency, Seconds: el.Seconds(),
		RowsPerSecond: float64(ok.Load()) / el.Seconds(),
		OK:            ok.Load(), Failed: failed.Load(), Status: status,
	}
}

// post sends row i once and drains the answer so the connection is reused.
func post(ctx context.Context, hc *http.Client, o options, i int) (int, error) {
	action, r := Row(o.prefix, o.integration, o.filename, i)
	body, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	target := o.url + "/api/integration_history_records" + action.Path()
	if o.fields != "" {
		target += "?" + url.Values{"fields": {o.fields}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-COUPA-API-KEY", o.apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// The worker decodes every answer; decoding here too keeps the two
	// sides' client cost comparable.
	var out record.Record
	if resp.StatusCode/100 == 2 {
		err = json.NewDecoder(resp.Body).Decode(&out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
