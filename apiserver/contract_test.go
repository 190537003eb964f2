package apiserver_test

import (
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const ihr = "/api/integration_history_records"

func TestContractCreateShowEveryAction(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		for i, action := range []string{"", "/acknowledge", "/create_alert", "/create_alert_and_mark_exported", "/mark_exported"} {
			m := c.obj(201, "POST", ihr+action, rec("document-id", 100+i, "external-id", fmt.Sprint("E", i), "status", "Success"))
			if num(m, "id") == 0 || m["document-id"].(float64) != float64(100+i) || m["resolved"] != false {
				t.Fatalf("%s: bad record %v", action, m)
			}
			for _, k := range []string{"created-at", "updated-at"} {
				if _, err := time.Parse("2006-01-02T15:04:05-07:00", m[k].(string)); err != nil {
					t.Fatalf("%s %s: %v", action, k, err)
				}
			}
			if m["created-by"].(map[string]any)["login"] == "" {
				t.Fatalf("no created-by: %v", m)
			}
			got := c.obj(200, "GET", fmt.Sprintf("%s/%d", ihr, num(m, "id")), "")
			if got["external-id"] != fmt.Sprint("E", i) {
				t.Fatalf("show: %v", got)
			}
		}
		// Unknown action and unknown id.
		c.must(404, "POST", ihr+"/explode", rec())
		c.must(404, "GET", ihr+"/999999", "")
		c.must(404, "GET", ihr+"/abc", "")
		c.must(404, "PUT", ihr+"/999999", `{"status":"x"}`)
		c.must(404, "PUT", ihr+"/999999/resolve", "")
	})
}

// xmlRecord is enough of the Rails XML shape to check types and nils.
type xmlRecord struct {
	XMLName    xml.Name `xml:"integration-history-record"`
	ID         xmlVal   `xml:"id"`
	DocumentID xmlVal   `xml:"document-id"`
	Revision   xmlVal   `xml:"document-revision"`
	Resolved   xmlVal   `xml:"resolved"`
	CreatedAt  xmlVal   `xml:"created-at"`
	External   xmlVal   `xml:"external-id"`
	Responses  struct {
		Type  string `xml:"type,attr"`
		Items []struct {
			Code string `xml:"response-code"`
		} `xml:"response"`
	} `xml:"responses"`
	Integration struct {
		Code string `xml:"code"`
	} `xml:"integration"`
}

type xmlVal struct {
	Type string `xml:"type,attr"`
	Nil  string `xml:"nil,attr"`
	Text string `xml:",chardata"`
}

func TestContractXML(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", `<integration><code>X1</code><name>X one</name></integration>`, "Accept", "application/xml")
		in := `<?xml version="1.0" encoding="UTF-8"?>
<integration-history-record>
  <contact_alert_type>Technical</contact_alert_type>
  <document-id type="integer">77</document-id>
  <document-revision nil="true"/>
  <document-type>OrderHeader</document-type>
  <integration><code>X1</code></integration>
  <responses type="array"><response><response-code>R1</response-code><response-message>m</response-message></response></responses>
</integration-history-record>`
		r := c.must(201, "POST", ihr, in, "Accept", "application/xml")
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/xml") {
			t.Fatalf("content type %q", ct)
		}
		var x xmlRecord
		if err := xml.Unmarshal(r.Body, &x); err != nil {
			t.Fatalf("%v\n%s", err, r.Body)
		}
		if x.ID.Type != "integer" || x.DocumentID.Text != "77" || x.Revision.Nil != "true" || x.Revision.Type != "integer" ||
			x.Resolved.Type != "boolean" || x.Resolved.Text != "false" || x.CreatedAt.Type != "dateTime" || x.External.Nil != "true" ||
			x.Responses.Type != "array" || len(x.Responses.Items) != 1 || x.Responses.Items[0].Code != "R1" || x.Integration.Code != "X1" {
			t.Fatalf("bad XML record:\n%s", r.Body)
		}
		// Index in XML: typed array root.
		r = c.must(200, "GET", ihr+"?document-id=77", "", "Accept", "application/xml")
		if !strings.Contains(string(r.Body), `<integration-history-records type="array">`) {
			t.Fatalf("index XML:\n%s", r.Body)
		}
		// No match: JSON [] and XML 404 with Coupa's message.
		if got := c.must(200, "GET", ihr+"?document-id=78", "").String(); strings.TrimSpace(got) != "[]" {
			t.Fatalf("JSON no match: %s", got)
		}
		r = c.must(404, "GET", ihr+"?document-id=78", "", "Accept", "application/xml")
		if !strings.Contains(string(r.Body), "<error>No results match your search criteria.</error>") {
			t.Fatalf("XML no match:\n%s", r.Body)
		}
		// XML validation errors.
		r = c.must(400, "POST", ihr, `<integration-history-record><document-id>x</document-id></integration-history-record>`, "Accept", "text/xml")
		if !strings.Contains(string(r.Body), "<error>Document id is not a number</error>") {
			t.Fatalf("XML errors:\n%s", r.Body)
		}
		// XML update, PATCH appends a response.
		c.must(200, "PATCH", ihr+"/"+x.ID.Text, `<integration-history-record><status>Error</status><responses type="array"><response><response-code>R2</response-code></response></responses></integration-history-record>`)
		m := c.obj(200, "GET", ihr+"/"+x.ID.Text, "")
		if m["status"] != "Error" || len(m["responses"].([]any)) != 2 {
			t.Fatalf("after XML patch: %v", m)
		}
	})
}

func TestContractUpdateResolve(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		m := c.obj(201, "POST", ihr, rec("status", "Error", "responses", []any{map[string]any{"response-code": "E1", "response-message": "first"}}))
		id := fmt.Sprint(num(m, "id"))
		u := c.obj(200, "PUT", ihr+"/"+id, `{"status":"Success","document_status":"exported","responses":[{"response_code":"OK"}]}`)
		if u["status"] != "Success" || u["document-status"] != "exported" || u["contact-alert-type"] != "Functional" {
			t.Fatalf("put: %v", u)
		}
		if rs := u["responses"].([]any); len(rs) != 2 || rs[1].(map[string]any)["response-code"] != "OK" {
			t.Fatalf("responses not appended: %v", u["responses"])
		}
		u = c.obj(200, "PATCH", ihr+"/"+id, `{"external-id":"X9","resolved":true}`)
		if u["external-id"] != "X9" || u["resolved"] != false || u["status"] != "Success" {
			t.Fatalf("patch (resolved must not change): %v", u)
		}
		if u := c.obj(200, "PUT", ihr+"/"+id+"/resolve", ""); u["resolved"] != true {
			t.Fatalf("resolve: %v", u)
		}
		if ids := c.ids("resolved=true"); !slices.Equal(ids, []int{num(m, "id")}) {
			t.Fatalf("resolved=true: %v", ids)
		}
		if u := c.obj(200, "PUT", ihr+"/"+id+"/unresolve", ""); u["resolved"] != false {
			t.Fatalf("unresolve: %v", u)
		}
		// Update validation: blanking a required element is a 400 naming it and changes nothing.
		r := c.must(400, "PUT", ihr+"/"+id, `{"document-type":"","status":"changed"}`)
		if !strings.Contains(r.String(), "Document type can't be blank") {
			t.Fatal(r)
		}
		if got := c.obj(200, "GET", ihr+"/"+id, ""); got["status"] != "Success" {
			t.Fatalf("failed update changed the record: %v", got)
		}
		r = c.must(400, "PUT", ihr+"/"+id, `{"integration":{"code":"NOPE"},"status":"changed"}`)
		if !strings.Contains(r.String(), `Integration with code \"NOPE\" does not exist`) {
			t.Fatal(r)
		}
		if got := c.obj(200, "GET", ihr+"/"+id, ""); got["status"] != "Success" || len(got["responses"].([]any)) != 2 {
			t.Fatalf("failed update changed the record: %v", got)
		}
	})
}

func TestContractSideEffects(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", body(map[string]any{
			"code": "INV", "name": "Invoices", "direction": "from_coupa",
			"contacts": []any{
				map[string]any{"name": "Tech", "email": "t@x", "contact-alert-type": "Technical"},
				map[string]any{"name": "Func", "email": "f@x", "contact-alert-type": "Functional"},
				map[string]any{"name": "All", "email": "a@x", "contact-alert-type": "Both"},
			},
		}))
		// create_alert: Technical alert → Tech + All.
		a := c.obj(201, "POST", ihr+"/create_alert", rec("contact-alert-type", "Technical", "document-id", 5, "status", "Error", "external-id", "EXT5", "integration", map[string]any{"code": "INV"}))
		alerts := c.list("GET", "/sandbox/alerts?record-id="+fmt.Sprint(num(a, "id")))
		if len(alerts) != 1 || alerts[0]["integration"] != "INV" || alerts[0]["external-id"] != "EXT5" || alerts[0]["document-type"] != "InvoiceHeader" {
			t.Fatalf("alerts: %v", alerts)
		}
		names := []string{}
		for _, r := range alerts[0]["recipients"].([]any) {
			names = append(names, r.(map[string]any)["name"].(string))
		}
		if !slices.Equal(names, []string{"Tech", "All"}) {
			t.Fatalf("recipients %v", names)
		}
		// Both on the record reaches everyone; no integration still records an alert.
		b := c.obj(201, "POST", ihr+"/create_alert", rec("contact-alert-type", "Both", "integration", map[string]any{"code": "INV"}))
		if l := c.list("GET", "/sandbox/alerts?record-id="+fmt.Sprint(num(b, "id"))); len(l[0]["recipients"].([]any)) != 3 {
			t.Fatalf("Both: %v", l)
		}
		n := c.obj(201, "POST", ihr+"/create_alert", rec())
		if l := c.list("GET", "/sandbox/alerts?record-id="+fmt.Sprint(num(n, "id"))); len(l) != 1 || len(l[0]["recipients"].([]any)) != 0 {
			t.Fatalf("no integration: %v", l)
		}
		// Plain create raises nothing, marks nothing.
		p := c.obj(201, "POST", ihr, rec("document-id", 6))
		if l := c.list("GET", "/sandbox/alerts?record-id="+fmt.Sprint(num(p, "id"))); len(l) != 0 {
			t.Fatalf("create raised an alert: %v", l)
		}
		if l := c.list("GET", "/sandbox/documents?document-type=InvoiceHeader&document-id=6"); len(l) != 0 {
			t.Fatalf("create marked exported: %v", l)
		}
		// mark_exported and create_alert_and_mark_exported fill the export registry.
		c.must(201, "POST", ihr+"/mark_exported", rec("document-id", 7))
		docs := c.list("GET", "/sandbox/documents?document-type=InvoiceHeader&document-id=7")
		if len(docs) != 1 || docs[0]["exported"] != true || docs[0]["last-exported-at"] == nil {
			t.Fatalf("documents: %v", docs)
		}
		x := c.obj(201, "POST", ihr+"/create_alert_and_mark_exported", rec("document-id", 8, "document-type", "Supplier", "integration", map[string]any{"code": "INV"}))
		if l := c.list("GET", "/sandbox/documents?document-type=Supplier&document-id=8"); len(l) != 1 {
			t.Fatalf("caame documents: %v", l)
		}
		if l := c.list("GET", "/sandbox/alerts?record-id="+fmt.Sprint(num(x, "id"))); len(l) != 1 {
			t.Fatalf("caame alerts: %v", l)
		}
		// acknowledge resolves earlier unresolved records of the same document only.
		e1 := c.obj(201, "POST", ihr, rec("document-id", 9, "status", "Error"))
		e2 := c.obj(201, "POST", ihr, rec("document-id", 9, "status", "Error"))
		other := c.obj(201, "POST", ihr, rec("document-id", 10, "status", "Error"))
		otherType := c.obj(201, "POST", ihr, rec("document-id", 9, "document-type", "Supplier"))
		ack := c.obj(201, "POST", ihr+"/acknowledge", rec("document-id", 9, "status", "Success"))
		for _, m := range []map[string]any{e1, e2} {
			if g := c.obj(200, "GET", ihr+"/"+fmt.Sprint(num(m, "id")), ""); g["resolved"] != true {
				t.Fatalf("earlier record %v not resolved", num(m, "id"))
			}
		}
		for _, m := range []map[string]any{other, otherType, ack} {
			if g := c.obj(200, "GET", ihr+"/"+fmt.Sprint(num(m, "id")), ""); g["resolved"] != false {
				t.Fatalf("record %v resolved but should not be", num(m, "id"))
			}
		}
		// A failed alert (unknown integration) leaves no record, alert or export.
		before := len(c.list("GET", "/sandbox/alerts"))
		c.must(400, "POST", ihr+"/create_alert_and_mark_exported", rec("document-id", 11, "integration", map[string]any{"code": "NOPE"}))
		if after := len(c.list("GET", "/sandbox/alerts")); after != before {
			t.Fatal("failed call left an alert")
		}
		if l := c.list("GET", "/sandbox/documents?document-id=11"); len(l) != 0 {
			t.Fatal("failed call left an export")
		}
		if l := c.ids("document-id=11"); len(l) != 0 {
			t.Fatal("failed call left a record")
		}
	})
}

func TestContractQuery(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", `{"code":"A","name":"Alpha"}`)
		c.must(201, "POST", "/api/integrations", `{"code":"B","name":"Beta"}`)
		type seed struct {
			ext, status, file, integ, code string
			doc                            int
		}
		seeds := []seed{
			{"INV-001", "Success", "a.csv", "A", "OK", 1},
			{"INV-002", "Error", "a.csv", "A", "E42", 2},
			{"inv-003", "Error", "b.csv", "B", "E42", 3},
			{"PO_100%", "", "b.csv", "", "", 4},
			{"", "Success", "", "B", "OK", 5},
		}
		var ids []int
		for _, s := range seeds {
			kv := []any{"document-id", s.doc}
			if s.ext != "" {
				kv = append(kv, "external-id", s.ext)
			}
			if s.status != "" {
				kv = append(kv, "status", s.status)
			}
			if s.file != "" {
				kv = append(kv, "integration-filename", s.file)
			}
			if s.integ != "" {
				kv = append(kv, "integration", map[string]any{"code": s.integ})
			}
			if s.code != "" {
				kv = append(kv, "responses", []any{map[string]any{"response-code": s.code}})
			}
			ids = append(ids, num(c.obj(201, "POST", ihr, rec(kv...)), "id"))
		}
		pick := func(is ...int) []int {
			var out []int
			for _, i := range is {
				out = append(out, ids[i])
			}
			return out
		}
		cases := []struct {
			q    string
			want []int
		}{
			{"external-id=INV-001", pick(0)},
			{"external_id=INV-001", pick(0)},
			{"integration-filename=a.csv&external-id=INV-002", pick(1)},
			{"status=Error", pick(1, 2)},
			{"external-id[contains]=" + q("inv-00"), pick(0, 1, 2)},
			{"external-id[contains]=" + q("_100%"), pick(3)},
			{"external-id[contains]=" + q("%"), pick(3)},
			{"external-id[starts_with]=INV", pick(0, 1, 2)},
			{"external-id[starts-with]=PO", pick(3)},
			{"external-id[ends_with]=003", pick(2)},
			{"document-id[gt]=3", pick(3, 4)},
			{"document-id[lt]=2", pick(0)},
			{"document-id[gt_or_eq]=4", pick(3, 4)},
			{"document-id[lt_or_eq]=2", pick(0, 1)},
			{"status[not_eq]=Error", pick(0, 3, 4)},
			{"document-id[in]=1,3,5", pick(0, 2, 4)},
			{"document-id[not_in]=1,3,5", pick(1, 3)},
			{"status[in]=Success,Error&document-id[lt]=3", pick(0, 1)},
			{"status[blank]=true", pick(3)},
			{"external-id[blank]=true", pick(4)},
			{"status[blank]=false", pick(0, 1, 2, 4)},
			{"integration[code]=A", pick(0, 1)},
			{"integration[code][starts_with]=B", pick(2, 4)},
			{"integration[id]=2", pick(2, 4)},
			{"responses[response-code]=E42", pick(1, 2)},
			{"responses[response_code]=OK&integration[code]=B", pick(4)},
			{"resolved=false&document-type=InvoiceHeader&document-id=3", pick(2)},
			{"created-at[gt_or_eq]=2000-01-01", pick(0, 1, 2, 3, 4)},
			{"created-at[lt]=" + q(time.Now().Add(-time.Hour).Format(time.RFC3339)), nil},
			{"updated-at[gt]=2000-01-01T00:00:00+09:00", pick(0, 1, 2, 3, 4)},
			{"order_by=document-id&dir=desc&limit=2", pick(4, 3)},
			{"order_by=external_id&dir=asc&limit=2&offset=1", pick(0, 1)},
			{"limit=2&offset=4", pick(4)},
			{"status=" + q("x' OR '1'='1"), nil},
			{"external-id=" + q("'; DROP TABLE integration_history_records; --"), nil},
		}
		for _, tc := range cases {
			got := c.ids(tc.q)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.q, got, tc.want)
			}
		}
		// 400s that name the offending key or operator.
		for q, want := range map[string]string{
			"colour=red":                        `colour`,
			"status[like]=x":                    `like`,
			"document-id=abc":                   `document-id`,
			"document-id[contains]=1":           `contains`,
			"created-at[gt]=yesterday":          `created-at`,
			"integration[colour]=x":             `colour`,
			"integration=1":                     `integration`,
			"limit=-1":                          `limit`,
			"offset=x":                          `offset`,
			"dir=sideways":                      `dir`,
			"order_by=" + q("id; DROP TABLE x"): `order_by`,
			"status][=x":                        `status][`,
			q("id) OR 1=1 --") + "=1":           `id) OR 1=1 --`,
			"fields=" + q("[1,2"):               `fields`,
			"return_object=everything":          `return_object`,
			"resolved[blank]=maybe":             `resolved`,
		} {
			r := c.must(400, "GET", ihr+"?"+q, "")
			if !strings.Contains(r.String(), want) {
				t.Errorf("%s: 400 does not name %q: %s", q, want, r)
			}
		}
		if got := c.ids("status=Error"); len(got) != 2 {
			t.Fatal("table damaged")
		}
	})
}

func TestContractPaging(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		for i := range 60 {
			c.must(201, "POST", ihr, rec("document-id", i+1))
		}
		if n := len(c.ids("")); n != 50 {
			t.Fatalf("default page %d, want 50", n)
		}
		if n := len(c.ids("limit=500")); n != 50 {
			t.Fatalf("limit=500 gave %d, want the cap 50", n)
		}
		if n := len(c.ids("limit=50&offset=50")); n != 10 {
			t.Fatalf("second page %d", n)
		}
		got := c.ids("limit=3&order_by=id&dir=desc")
		if len(got) != 3 || got[0] < got[1] || got[1] < got[2] {
			t.Fatalf("desc %v", got)
		}
		if c.count() != 60 {
			t.Fatal("count by paging")
		}
	})
}

func TestContractFieldsReturnObject(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", `{"code":"F","name":"Fields"}`)
		fields := q(`["id","status",{"integration":["code"]}]`)
		m := c.obj(201, "POST", ihr+"?fields="+fields, rec("status", "Success", "integration", map[string]any{"code": "F"}))
		if len(m) != 3 || m["status"] != "Success" || len(m["integration"].(map[string]any)) != 1 || m["integration"].(map[string]any)["code"] != "F" {
			t.Fatalf("POST fields: %v", m)
		}
		id := fmt.Sprint(num(m, "id"))
		if m := c.obj(200, "PUT", ihr+"/"+id+"?fields="+q(`["status"]`), `{"status":"Error"}`); len(m) != 1 || m["status"] != "Error" {
			t.Fatalf("PUT fields: %v", m)
		}
		if l := c.list("GET", ihr+"?fields="+q(`["id","external_id"]`)); len(l) != 1 || len(l[0]) != 2 {
			t.Fatalf("index fields: %v", l)
		}
		if m := c.obj(200, "GET", ihr+"/"+id+"?return_object=limited", ""); len(m) != 1 || m["id"] == nil {
			t.Fatalf("limited: %v", m)
		}
		m = c.obj(200, "GET", ihr+"/"+id+"?return_object=shallow", "")
		if integ := m["integration"].(map[string]any); len(integ) != 2 || integ["id"] == nil || integ["code"] != "F" || m["status"] != "Error" {
			t.Fatalf("shallow: %v", m)
		}
		if r := c.must(201, "POST", ihr+"?return_object=none", rec()); len(r.Body) != 0 {
			t.Fatalf("none: %q", r.Body)
		}
		r := c.must(200, "GET", ihr+"/"+id+"?fields="+q(`["id","document-id"]`), "", "Accept", "application/xml")
		if s := r.String(); !strings.Contains(s, `<document-id type="integer">1</document-id>`) || strings.Contains(s, "status") {
			t.Fatalf("XML fields: %s", s)
		}
	})
}

func TestContractValidation(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		long := strings.Repeat("é", 256)
		cases := []struct {
			body string
			want []string
		}{
			{`{}`, []string{"Contact alert type can't be blank", "Document id can't be blank", "Document type can't be blank"}},
			{rec("document-id", "12x"), []string{"Document id is not a number"}},
			{rec("document-id", 1.5), []string{"Document id is not a number"}},
			{rec("document-id", true), []string{"Document id is not a number"}},
			{rec("document-revision", "abc"), []string{"Document revision is not a number"}},
			{rec("document-type", "invoiceheader"), []string{`Document type \"invoiceheader\" is not a valid document type`}},
			{rec("external-id", long), []string{"External id is too long (maximum is 255 characters)"}},
			{rec("status", long, "creation-method", long), []string{"Status is too long", "Creation method is too long"}},
			{rec("responses", []any{map[string]any{"response-code": long}}), []string{"Response code is too long"}},
			{rec("integration", map[string]any{"code": "GHOST"}), []string{`Integration with code \"GHOST\" does not exist`}},
			{rec("integration", map[string]any{"id": 424242}), []string{"Integration with id 424242 does not exist"}},
			{rec("integration", "GHOST"), []string{"Integration is not a number"}},
			{rec("integration-run", map[string]any{"id": 99}), []string{"Integration run with id 99 does not exist"}},
			{rec("status", map[string]any{"a": 1}), []string{"Status is invalid"}},
			{rec("responses", "nope"), []string{"Responses must be an array"}},
		}
		for _, tc := range cases {
			r := c.must(400, "POST", ihr, tc.body)
			if !strings.HasPrefix(r.String(), `{"errors":{"integration-history-record":[`) {
				t.Errorf("error shape: %s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.String(), w) {
					t.Errorf("%s: missing %q in %s", tc.body, w, r)
				}
			}
		}
		// Exactly 255 characters is fine; integers as strings are cast.
		c.must(201, "POST", ihr, rec("external-id", strings.Repeat("é", 255), "document-id", "42", "document-revision", 3.0))
		if n := c.count(); n != 1 {
			t.Fatalf("%d records stored, want 1 (failed calls must not write)", n)
		}
	})
}
