package apiserver_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/apiserver"
)

// Bad input is a 4xx, never a 5xx, and never writes anything.
func TestBadInputNeverFailsOrWrites(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		// One record, integration and run to aim updates at.
		c.must(201, "POST", "/api/integrations", `{"code":"I","name":"I"}`)
		c.must(201, "POST", "/api/integration_runs", `{"integration":{"code":"I"}}`)
		base := c.obj(201, "POST", ihr, rec("status", "orig"))
		id := fmt.Sprint(num(base, "id"))

		deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
		deepXML := strings.Repeat("<a>", 5000) + strings.Repeat("</a>", 5000)
		laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><integration-history-record><status>&lol2;</status></integration-history-record>`
		jsonBodies := []string{
			`{`, `{"a":`, `[]`, `"str"`, `null`, `123`, `{"document-id":}`, `{"a":1}{"b":2}`, deep,
			`{"document-id":1e400,"contact-alert-type":"x","document-type":"User"}`,
			`{"document-id":"99999999999999999999999","contact-alert-type":"x","document-type":"User"}`,
			`{"document-id":[1],"contact-alert-type":"x","document-type":"User"}`,
			`{"responses":[1,2],"document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"responses":{"a":{"b":1}},"document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"integration":[],"document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"integration":{"code":{"x":1}},"document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"integration-run":{"code":"x"},"document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			"{\"status\":\"\xff\xfe\",\"document-id\":1,\"contact-alert-type\":\"x\",\"document-type\":\"User\"}",
			`{"status":"a\u0000b","document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"status":"` + strings.Repeat("x", 256) + `","document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"document-type":"User'); DROP TABLE integration_history_records; --","document-id":1,"contact-alert-type":"x"}`,
			`{"document-id":1,"contact-alert-type":"x","document-type":"User","integration":{"code":"' OR 1=1 --"}}`,
			// Lone UTF-16 surrogates: no UTF-8 can hold them (encoding/json
			// would store U+FFFD).
			`{"status":"\ud800","document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"status":"x\udc00","document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"status":"\ud83d\u0041","document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			`{"\ud800":"x","document-id":1,"contact-alert-type":"x","document-type":"User"}`,
			// More responses than one record may hold.
			`{"document-id":1,"contact-alert-type":"x","document-type":"User","responses":[` +
				strings.TrimSuffix(strings.Repeat(`{"response-code":"c"},`, apiserver.MaxResponsesPerRecord+1), ",") + `]}`,
			`{"code":"","name":""}`,
			`{"document-id":"","contact-alert-type":"","document-type":""}`,
		}
		xmlBodies := []string{
			`<`, `<a>`, `<a></b>`, `<a/><b/>`, `text`, deepXML, laughs,
			`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x><status>&e;</status></x>`,
			`<?xml version="1.0" encoding="ISO-8859-1"?><x><status>caf` + "\xe9" + `</status></x>`,
			`<integration-history-record><document-id>one</document-id><contact-alert-type>x</contact-alert-type><document-type>User</document-type></integration-history-record>`,
			`<integration-history-record><document-id>1</document-id><contact-alert-type>x</contact-alert-type><document-type>Users</document-type></integration-history-record>`,
			`<integration-history-record><document-id>1</document-id><contact-alert-type>x</contact-alert-type><document-type>User</document-type><integration><code>GHOST</code></integration></integration-history-record>`,
			`<integration-history-record><document-id>1</document-id><contact-alert-type>x</contact-alert-type><document-type>User</document-type><responses type="array"><response>text</response></responses></integration-history-record>`,
		}
		routes := []struct{ method, path string }{
			{"POST", ihr}, {"POST", ihr + "/acknowledge"}, {"POST", ihr + "/create_alert"},
			{"POST", ihr + "/create_alert_and_mark_exported"}, {"POST", ihr + "/mark_exported"},
			{"PUT", ihr + "/" + id}, {"PATCH", ihr + "/" + id},
			{"POST", "/api/integrations"}, {"PUT", "/api/integrations/1"},
			{"POST", "/api/integration_runs"}, {"PUT", "/api/integration_runs/1"},
		}
		for _, rt := range routes {
			for _, b := range append(jsonBodies, xmlBodies...) {
				r := c.do(rt.method, rt.path, b)
				if r.Code >= 500 || r.Code < 400 {
					// Updates with a body of only unknown keys are legal no-ops.
					if r.Code == 200 && (rt.method == "PUT" || rt.method == "PATCH") {
						continue
					}
					t.Errorf("%s %s %.60q: %d %s", rt.method, rt.path, b, r.Code, r.Body)
				}
			}
		}
		// Injection in query keys and values is refused or harmless.
		for _, qs := range []string{
			q("status'--") + "=1", "status=" + q("' OR ''='"), "order_by=" + q("status; DELETE FROM integrations"),
			"dir=" + q("asc; DROP TABLE x"), "limit=" + q("1; --"), q("document-id[in]") + "=" + q("1) OR (1=1"),
			"external-id[contains]=" + q("%' OR 1=1 --"), "integration[" + q("code) OR (1=1") + "]=x",
			"fields=" + q(`["id; DROP TABLE x"]`), "created-at[gt]=" + q("2020-01-01' OR '1'='1"),
			"status=%00", "external-id[contains]=%ff%fe", "integration[code]=a%00b",
			strings.Repeat("document-id[in]="+strings.Repeat("1,", 999)+"1&", 40),
		} {
			if r := c.do("GET", ihr+"?"+qs, ""); r.Code >= 500 || (r.Code == 200 && strings.TrimSpace(r.String()) != "[]" && !strings.HasPrefix(qs, "fields")) {
				t.Errorf("GET ?%s: %d %s", qs, r.Code, r.Body)
			}
		}
		// Nothing was written by any of it.
		if n := c.count(); n != 1 {
			t.Fatalf("%d records, want 1", n)
		}
		if got := c.obj(200, "GET", ihr+"/"+id, ""); got["status"] != "orig" || len(got["responses"].([]any)) != 0 {
			t.Fatalf("record changed: %v", got)
		}
		if l := c.list("GET", "/api/integrations"); len(l) != 1 || l[0]["code"] != "I" || l[0]["name"] != "I" {
			t.Fatalf("integrations changed: %v", l)
		}
		if l := c.list("GET", "/api/integration_runs"); len(l) != 1 || l[0]["status"] != "pending" {
			t.Fatalf("runs changed: %v", l)
		}
		if l := c.list("GET", "/sandbox/alerts"); len(l) != 0 {
			t.Fatalf("alerts: %v", l)
		}
		if l := c.list("GET", "/sandbox/documents"); len(l) != 0 {
			t.Fatalf("documents: %v", l)
		}
	})
}
