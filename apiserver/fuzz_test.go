package apiserver

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// The fuzz targets drive the real handler on a real SQLite database: any
// input the parsers accept must run without a 5xx, and any input they
// refuse must be a 4xx. Seeds live in testdata/fuzz/<target>/.
//
//	go test ./apiserver -run '^$' -fuzz FuzzQuery -fuzztime 60s

const fuzzKey = "fuzz-key"

// fuzzServer uses SQLite, or PostgreSQL when IHR_FUZZ_POSTGRES=1.
func fuzzServer(f *testing.F) *Server {
	db := "sqlite:" + filepath.Join(f.TempDir(), "fuzz.db")
	if os.Getenv("IHR_FUZZ_POSTGRES") == "1" {
		db = testservers.StartPostgres(f).NewDatabase(f)
	}
	s, err := New(context.Background(), Config{
		DB:           db,
		APIKeys:      []string{fuzzKey},
		MaxBodyBytes: 64 << 10,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// Something for the queries to find.
	for _, b := range []string{
		`{"code":"INV","name":"Invoices","contacts":[{"name":"a","contact-alert-type":"Both"}]}`,
	} {
		serve(s, "POST", "/api/integrations", "application/json", b)
	}
	for _, b := range []string{
		`{"contact-alert-type":"Functional","document-id":1,"document-type":"InvoiceHeader","external-id":"E1","integration":{"code":"INV"},"responses":[{"response-code":"E"}]}`,
		`{"contact-alert-type":"Technical","document-id":2,"document-type":"Supplier","status":"Error"}`,
	} {
		serve(s, "POST", "/api/integration_history_records", "application/json", b)
	}
	return s
}

func serve(s *Server, method, target, ct, body string, hdr ...string) *httptest.ResponseRecorder {
	path, rawQuery, _ := strings.Cut(target, "?")
	req := httptest.NewRequest(method, "http://ihr.test"+path, strings.NewReader(body))
	req.URL.RawQuery = rawQuery // as received: the fuzzer's bytes, unparsed
	req.Header.Set("X-COUPA-API-KEY", fuzzKey)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	return w
}

func FuzzQuery(f *testing.F) {
	for _, seed := range []string{
		"external-id=E1",
		"integration-filename=a.csv&external_id=E1",
		"status[not_eq]=Error&document-id[in]=1,2,3&limit=5&offset=1&order_by=created_at&dir=desc",
		"integration[code][starts_with]=IN&responses[response-code]=E",
		"created-at[gt]=2026-01-01T00:00:00+09:00",
		`fields=["id",{"integration":["code"]}]&return_object=shallow`,
		"status=x' OR '1'='1",
		"id)%20OR%201=1--=1",
		"external-id[contains]=%25_%5C",
		"resolved[blank]=false&document-type[ends_with]=Header",
	} {
		f.Add(seed)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, raw string) {
		if _, err := url.ParseQuery(raw); err != nil {
			return
		}
		for _, path := range []string{"/api/integration_history_records", "/api/integrations", "/api/integration_runs", "/sandbox/alerts"} {
			for _, accept := range []string{"application/json", "application/xml"} {
				w := serve(s, "GET", path+"?"+raw, "", "", "Accept", accept)
				if w.Code >= 500 {
					t.Fatalf("GET %s?%s (%s): %d %s", path, raw, accept, w.Code, w.Body)
				}
			}
		}
	})
}

// fuzzBody checks a body against every write route of one format.
func fuzzBody(t *testing.T, s *Server, ct string, body []byte) {
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/integration_history_records"},
		{"POST", "/api/integration_history_records/create_alert_and_mark_exported"},
		{"PUT", "/api/integration_history_records/1"},
		{"POST", "/api/integrations"},
		{"PUT", "/api/integrations/1"},
		{"POST", "/api/integration_runs"},
	} {
		w := serve(s, r.method, r.path, ct, string(body))
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, w.Code, w.Body)
		}
		if w.Code < 300 {
			// Whatever was accepted must read back.
			for _, accept := range []string{"application/json", "application/xml"} {
				if g := serve(s, "GET", r.path, "", "", "Accept", accept); g.Code >= 500 {
					t.Fatalf("read back after %s %s %q: %d %s", r.method, r.path, body, g.Code, g.Body)
				}
			}
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"contact-alert-type":"Functional","document-id":1,"document-type":"InvoiceHeader"}`,
		`{"contact_alert_type":"Both","document_id":"12","document_type":"Asn::Header","integration":{"code":"INV"},"responses":[{"response_code":"OK","response_message":"fine"}]}`,
		`{"integration-history-record":{"document-id":1.0}}`,
		`{"document-id":1e400}`,
		`{"code":"X","name":"Y","contacts":[{"contact-alert-type":"Technical"}]}`,
		`{"integration":{"id":1},"total_records":3}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"{\"status\":\"\xff\xfe\"}",
		`{"status":"\u0000"}`,
		`{`,
	} {
		f.Add([]byte(seed))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzBody(t, s, "application/json", body)
	})
}

func FuzzDecodeXML(f *testing.F) {
	for _, seed := range []string{
		`<integration-history-record><contact-alert-type>Functional</contact-alert-type><document-id type="integer">1</document-id><document-type>InvoiceHeader</document-type></integration-history-record>`,
		`<?xml version="1.0" encoding="UTF-8"?><integration-history-record><document_id>2</document_id><responses type="array"><response><response-code>E</response-code></response></responses><integration><code>INV</code></integration></integration-history-record>`,
		`<integration-history-record><responses><response><response-code>E</response-code></response><response><response-code>F</response-code></response></responses></integration-history-record>`,
		`<integration-history-record><document-revision nil="true"/></integration-history-record>`,
		`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>`,
		`<?xml version="1.0" encoding="ISO-8859-1"?><x><status>caf` + "\xe9" + `</status></x>`,
		`<a><b></a>`,
		`<integration><code>C</code><name>N</name><contacts type="array"><contact><contact-alert-type>Both</contact-alert-type></contact></contacts></integration>`,
	} {
		f.Add([]byte(seed))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if bytes.Count(body, []byte("<")) > 2000 {
			return // keep each run fast; nesting depth is bounded anyway
		}
		fuzzBody(t, s, "application/xml", body)
	})
}

// TestFuzzHelper makes sure the recorder-based helper itself works
// (a broken helper would make every fuzz run vacuous).
func TestFuzzHelper(t *testing.T) {
	s, err := New(context.Background(), Config{DB: "sqlite:" + filepath.Join(t.TempDir(), "x.db"), APIKeys: []string{fuzzKey}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w := serve(s, "POST", "/api/integration_history_records", "application/json", `{"contact-alert-type":"Both","document-id":1,"document-type":"User"}`); w.Code != http.StatusCreated {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
