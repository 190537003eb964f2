package apiserver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/apiserver/apitest"
)

// token gets an OAuth access token for scope.
func (c *client) token(scope string) (int, map[string]any) {
	c.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ts.OAuthID}, "client_secret": {c.ts.OAuthSecret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	res, err := c.hc.PostForm(c.ts.URL+"/oauth2/token", form)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func TestContractAuth(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		code, m := c.token("core.integration.read core.integration.write")
		if code != 200 || m["token_type"] != "bearer" || m["expires_in"] != float64(86399) || m["scope"] != "core.integration.read core.integration.write" || m["access_token"] == "" {
			t.Fatalf("token: %d %v", code, m)
		}
		rw := m["access_token"].(string)
		_, m = c.token("core.integration.read")
		ro := m["access_token"].(string)
		_, m = c.token("core.integration.write")
		wo := m["access_token"].(string)

		key := c.auth
		c.auth = bearer(rw)
		created := c.obj(201, "POST", ihr, rec())
		if by := created["created-by"].(map[string]any); by["login"] != c.ts.OAuthID {
			t.Fatalf("created-by %v, want the OAuth client", by)
		}
		c.must(200, "GET", ihr, "")

		c.auth = bearer(ro)
		c.must(200, "GET", ihr, "")
		c.must(200, "GET", "/sandbox/alerts", "")
		for _, path := range []string{ihr, ihr + "/create_alert", "/api/integrations", "/api/integration_runs"} {
			r := c.must(403, "POST", path, rec())
			if !strings.Contains(r.String(), "core.integration.write") {
				t.Fatalf("403 does not name the scope: %s", r)
			}
		}
		c.must(403, "PUT", ihr+"/1/resolve", "")
		c.must(403, "PATCH", ihr+"/1", `{}`)

		c.auth = bearer(wo)
		c.must(201, "POST", ihr, rec())
		if r := c.must(403, "GET", ihr, ""); !strings.Contains(r.String(), "core.integration.read") {
			t.Fatal(r)
		}
		c.must(403, "GET", "/api/integrations", "")

		// 401: nothing, wrong key, wrong token, wrong scheme.
		for _, a := range []func(*http.Request){
			nil,
			func(r *http.Request) { r.Header.Set("X-COUPA-API-KEY", "wrong") },
			bearer("wrong"),
			func(r *http.Request) { r.SetBasicAuth(c.ts.OAuthID, c.ts.OAuthSecret) },
		} {
			c.auth = a
			r := c.must(401, "GET", ihr, "")
			if !strings.Contains(r.String(), `{"errors":`) {
				t.Fatal(r)
			}
			c.must(401, "POST", ihr, rec())
		}
		// Public endpoints.
		c.auth = nil
		c.must(200, "GET", "/healthz", "")
		c.must(200, "GET", "/metrics", "")
		c.auth = key

		// Token endpoint errors.
		bad := func(form url.Values, want int, kind string) {
			res, err := c.hc.PostForm(c.ts.URL+"/oauth2/token", form)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			json.NewDecoder(res.Body).Decode(&m)
			res.Body.Close()
			if res.StatusCode != want || m["error"] != kind {
				t.Fatalf("token %v: %d %v, want %d %s", form, res.StatusCode, m, want, kind)
			}
		}
		bad(url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ts.OAuthID}, "client_secret": {"nope"}}, 401, "invalid_client")
		bad(url.Values{"grant_type": {"client_credentials"}, "client_id": {"ghost"}, "client_secret": {"x"}}, 401, "invalid_client")
		bad(url.Values{"grant_type": {"password"}, "client_id": {c.ts.OAuthID}, "client_secret": {c.ts.OAuthSecret}}, 400, "unsupported_grant_type")
		bad(url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ts.OAuthID}, "client_secret": {c.ts.OAuthSecret}, "scope": {"core.everything"}}, 400, "invalid_scope")
		// Client credentials in HTTP Basic work too; empty scope grants both.
		req, _ := http.NewRequest("POST", c.ts.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(c.ts.OAuthID, c.ts.OAuthSecret)
		res, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(res.Body).Decode(&m)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(m["scope"].(string), "write") {
			t.Fatalf("basic: %d %v", res.StatusCode, m)
		}
	})
}

func TestContractStatusCodes(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		// 415
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "garbage/;;"} {
			r := c.must(415, "POST", ihr, rec(), "Content-Type", ct)
			if !strings.Contains(r.String(), "not supported") {
				t.Fatal(r)
			}
		}
		c.must(201, "POST", ihr, rec(), "Content-Type", "application/json; charset=utf-8")
		// 413 (default limit 1 MiB)
		huge := rec("status", strings.Repeat("x", 2<<20))
		if r := c.must(413, "POST", ihr, huge); !strings.Contains(r.String(), "larger than") {
			t.Fatal(r)
		}
		c.must(413, "PUT", ihr+"/1", huge)
		// 404 on unknown routes and ids.
		c.must(404, "GET", "/api/nothing", "")
		c.must(404, "GET", "/api/integrations/77", "")
		c.must(404, "GET", "/api/integration_runs/77", "")
		c.must(404, "PUT", "/api/integration_runs/77/explode", "")
		if n := c.count(); n != 1 {
			t.Fatalf("%d records", n)
		}
	})
}

func TestContractRateLimit(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		ok, limited := 0, 0
		var retry string
		for range 10 {
			r := c.do("GET", ihr, "")
			switch r.Code {
			case 200:
				ok++
			case 429:
				limited++
				retry = r.Header.Get("Retry-After")
			default:
				t.Fatalf("status %d", r.Code)
			}
		}
		if ok != 3 || limited != 7 {
			t.Fatalf("ok=%d limited=%d, want 3 and 7 with burst 3", ok, limited)
		}
		if n, err := strconv.Atoi(retry); err != nil || n < 1 {
			t.Fatalf("Retry-After %q", retry)
		}
		// Another credential has its own bucket.
		_, m := c.token("")
		c.auth = bearer(m["access_token"].(string))
		c.must(200, "GET", ihr, "")
	}, apitest.WithRateLimit(0.5, 3))
}

func TestContractIntegrationsAndRuns(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		m := c.obj(201, "POST", "/api/integrations", body(map[string]any{
			"code": "SUP", "name": "Suppliers", "business_object": "Supplier", "direction": "to_coupa",
			"end-system": "SAP", "end_system_type": "ERP", "integration-type": "Flat File",
			"contacts": []any{map[string]any{"name": "Ops", "email": "ops@x", "contact_alert_type": "Both"}},
		}))
		id := fmt.Sprint(num(m, "id"))
		if m["business-object"] != "Supplier" || m["end-system-type"] != "ERP" || len(m["contacts"].([]any)) != 1 {
			t.Fatalf("integration: %v", m)
		}
		for body, want := range map[string]string{
			`{"name":"Other"}`:                                                          "Code can't be blank",
			`{"code":"SUP","name":"Suppliers"}`:                                         "Code has already been taken",
			`{"code":"S2","name":"S2","direction":"x"}`:                                 "Direction",
			`{"code":"S3","name":"S3","contacts":[{"contact-alert-type":"Sometimes"}]}`: "Contact alert type",
		} {
			if r := c.must(400, "POST", "/api/integrations", body); !strings.Contains(r.String(), want) {
				t.Errorf("%s: %s", body, r)
			}
		}
		u := c.obj(200, "PUT", "/api/integrations/"+id, `{"name":"Suppliers v2","contacts":[{"name":"A","contact-alert-type":"Technical"},{"name":"B","contact-alert-type":"Functional"}]}`)
		if u["name"] != "Suppliers v2" || u["code"] != "SUP" || len(u["contacts"].([]any)) != 2 {
			t.Fatalf("update: %v", u)
		}
		c.must(201, "POST", "/api/integrations", `{"code":"OTHER","name":"Other"}`)
		if r := c.must(400, "PUT", "/api/integrations/"+id, `{"code":"OTHER"}`); !strings.Contains(r.String(), "Code has already been taken") {
			t.Fatal(r)
		}
		if l := c.list("GET", "/api/integrations?code[starts_with]=SU"); len(l) != 1 || l[0]["code"] != "SUP" {
			t.Fatalf("index: %v", l)
		}
		if l := c.list("GET", "/api/integrations?contacts[name]=B"); len(l) != 1 {
			t.Fatalf("contacts query: %v", l)
		}
		c.must(200, "GET", "/api/integrations/"+id, "", "Accept", "application/xml")
		c.must(404, "GET", "/api/integrations?code=NONE", "", "Accept", "application/xml")

		// Runs: pending → running(total) → successful; fail; pause; pending.
		run := c.obj(201, "POST", "/api/integration_runs", `{"integration":{"code":"SUP"}}`)
		rid := fmt.Sprint(num(run, "id"))
		if run["status"] != "pending" || run["integration"].(map[string]any)["code"] != "SUP" {
			t.Fatalf("run: %v", run)
		}
		run = c.obj(200, "PUT", "/api/integration_runs/"+rid+"/run", `{"total_records":12}`)
		if run["status"] != "running" || run["total-records"] != float64(12) || run["start-time"] == nil {
			t.Fatalf("run/run: %v", run)
		}
		run = c.obj(200, "PUT", "/api/integration_runs/"+rid+"/success", "")
		if run["status"] != "successful" || run["end-time"] == nil {
			t.Fatalf("run/success: %v", run)
		}
		for tr, st := range map[string]string{"fail": "failed", "pause": "paused", "pending": "pending"} {
			if r := c.obj(200, "PUT", "/api/integration_runs/"+rid+"/"+tr, ""); r["status"] != st {
				t.Fatalf("%s: %v", tr, r)
			}
		}
		if r := c.obj(200, "PUT", "/api/integration_runs/"+rid+"/run?total_records=7", ""); r["total-records"] != float64(7) {
			t.Fatalf("total_records in query: %v", r)
		}
		c.must(400, "POST", "/api/integration_runs", `{"integration":{"code":"NOPE"}}`)
		c.must(400, "POST", "/api/integration_runs", `{}`)
		c.must(400, "PUT", "/api/integration_runs/"+rid+"/run", `{"total_records":"many"}`)
		if l := c.list("GET", "/api/integration_runs?integration[code]=SUP&status=running"); len(l) != 1 {
			t.Fatalf("runs index: %v", l)
		}
		c.must(200, "GET", "/api/integration_runs/"+rid, "")
		// Runs in XML, both ways.
		x := c.must(201, "POST", "/api/integration_runs", `<integration-run><integration><code>SUP</code></integration></integration-run>`, "Accept", "application/xml").String()
		if !strings.Contains(x, "<integration-run>") || !strings.Contains(x, "<status>pending</status>") || !strings.Contains(x, `<start-time type="dateTime" nil="true"/>`) {
			t.Fatalf("run XML: %s", x)
		}
		x = c.must(200, "PUT", "/api/integration_runs/"+rid+"/run", `<integration-run><total-records type="integer">3</total-records></integration-run>`, "Accept", "application/xml").String()
		if !strings.Contains(x, `<total-records type="integer">3</total-records>`) {
			t.Fatalf("run XML: %s", x)
		}
		if x := c.must(200, "GET", "/api/integration_runs", "", "Accept", "application/xml").String(); !strings.Contains(x, `<integration-runs type="array">`) {
			t.Fatalf("runs XML index: %s", x)
		}
		if x := c.must(200, "GET", "/api/integrations", "", "Accept", "application/xml").String(); !strings.Contains(x, `<integrations type="array">`) || !strings.Contains(x, `<contacts type="array">`) {
			t.Fatalf("integrations XML index: %s", x)
		}
		// A record may point at the run.
		r := c.obj(201, "POST", ihr, rec("integration-run", map[string]any{"id": num(run, "id")}, "integration", map[string]any{"id": num(m, "id")}))
		if r["integration-run-id"] != float64(num(run, "id")) || r["integration"].(map[string]any)["code"] != "SUP" {
			t.Fatalf("record with run: %v", r)
		}
		if ids := c.ids("integration-run[id]=" + rid); len(ids) != 1 {
			t.Fatalf("by run: %v", ids)
		}
	})
}

func TestContractStrict(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		m := c.obj(201, "POST", ihr, rec("integration_filename", "in.csv"))
		if m["integration-filename"] != nil {
			t.Fatalf("strict mode stored integration_filename: %v", m)
		}
		m = c.obj(200, "PUT", ihr+"/"+fmt.Sprint(num(m, "id")), `{"integration-filename":"x.csv"}`)
		if m["integration-filename"] != nil {
			t.Fatalf("strict mode updated integration_filename: %v", m)
		}
	}, apitest.WithStrict())
}

func TestContractMetrics(t *testing.T) {
	ts := apitest.Start(t)
	c := newClient(t, ts)
	c.must(201, "POST", ihr, rec())
	c.must(400, "POST", ihr, `{}`)
	r := c.must(200, "GET", "/metrics", "")
	for _, want := range []string{
		`ihr_api_requests_total{code="201",route="records.create"} 1`,
		`ihr_api_requests_total{code="400",route="records.create"} 1`,
		`ihr_api_request_duration_seconds_bucket{route="records.create"`,
	} {
		if !strings.Contains(r.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
