package apiserver_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// The contract as Rails clients (ActiveSupport's Hash.from_xml and
// to_query, the oauth2 gem) and RFC 6749/6750 clients read it.

// xnode is a parsed XML element, enough to read Rails-style answers the
// way Hash.from_xml does (attributes, children, text).
type xnode struct {
	name     string
	attr     map[string]string
	children []*xnode
	text     string
}

func parseXML(t *testing.T, b []byte) *xnode {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var stack []*xnode
	var root *xnode
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch e := tok.(type) {
		case xml.StartElement:
			n := &xnode{name: e.Name.Local, attr: map[string]string{}}
			for _, a := range e.Attr {
				n.attr[a.Name.Local] = a.Value
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			} else {
				root = n
			}
			stack = append(stack, n)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(e)
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if root == nil {
		t.Fatalf("no XML document in %q", b)
	}
	return root
}

// at follows a slash-separated path of child names; nil if absent.
func (n *xnode) at(path string) *xnode {
	cur := n
	for _, p := range strings.Split(path, "/") {
		var next *xnode
		for _, c := range cur.children {
			if c.name == p {
				next = c
				break
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

// names lists the child element names in order.
func (n *xnode) names() []string {
	var out []string
	for _, c := range n.children {
		out = append(out, c.name)
	}
	return out
}

// isNil is how Hash.from_xml reads an element: nil="true", or empty and
// not typed string.
func (n *xnode) isNil() bool {
	return n.attr["nil"] == "true" || (len(n.children) == 0 && n.text == "" && n.attr["type"] != "string")
}

const xmlAccept = "application/xml"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestContractShallowNaturalKeys(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", `{"code":"SH-1","name":"Shallow"}`)
		m := c.obj(201, "POST", ihr+"?return_object=shallow", rec("integration", map[string]any{"code": "SH-1"},
			"responses", []any{map[string]any{"response-code": "R", "response-message": "m"}}))
		id := fmt.Sprint(num(m, "id"))
		check := func(what string, m map[string]any) {
			t.Helper()
			integ := m["integration"].(map[string]any)
			if len(integ) != 2 || integ["code"] != "SH-1" || integ["id"] == nil {
				t.Fatalf("%s: integration %v, want id and code", what, integ)
			}
			for _, k := range []string{"created-by", "updated-by"} {
				u := m[k].(map[string]any)
				if login, _ := u["login"].(string); len(u) != 2 || !strings.HasPrefix(login, "api-key-") || u["id"] == nil {
					t.Fatalf("%s: %s %v, want id and login", what, k, u)
				}
			}
			if rs := m["responses"].([]any); len(rs) != 1 || len(rs[0].(map[string]any)) != 1 {
				t.Fatalf("%s: responses %v, want ids only", what, rs)
			}
			// Every element of the record itself is kept.
			if m["document-type"] != "InvoiceHeader" || m["contact-alert-type"] != "Functional" {
				t.Fatalf("%s: attributes lost: %v", what, m)
			}
		}
		check("POST", m)
		check("GET", c.obj(200, "GET", ihr+"/"+id+"?return_object=shallow", ""))
		check("PUT", c.obj(200, "PUT", ihr+"/"+id+"?return_object=shallow", `{"status":"Error"}`))
		l := c.list("GET", ihr+"?return_object=shallow")
		if len(l) != 1 {
			t.Fatalf("index: %v", l)
		}
		check("index", l[0])
		// fields first, then shallow: a natural key trimmed away stays away.
		m = c.obj(200, "GET", ihr+"/"+id+"?return_object=shallow&fields="+q(`["id",{"integration":["id"]}]`), "")
		if integ := m["integration"].(map[string]any); len(integ) != 1 {
			t.Fatalf("fields+shallow: %v", m)
		}
		// A run's integration keeps its code too.
		run := c.obj(201, "POST", "/api/integration_runs?return_object=shallow", `{"integration":{"code":"SH-1"}}`)
		if integ := run["integration"].(map[string]any); integ["code"] != "SH-1" || len(integ) != 2 {
			t.Fatalf("run shallow: %v", run)
		}

		// XML: integration/code and created-by/login are readable.
		for _, path := range []string{ihr + "/" + id + "?return_object=shallow", ihr + "?return_object=shallow"} {
			x := parseXML(t, c.must(200, "GET", path, "", "Accept", xmlAccept).Body)
			if x.name == "integration-history-records" {
				x = x.children[0]
			}
			if got := x.at("integration").names(); !slices.Equal(got, []string{"id", "code"}) {
				t.Fatalf("%s: XML integration has %v", path, got)
			}
			if code := x.at("integration/code"); code.text != "SH-1" {
				t.Fatalf("%s: integration/code %q", path, code.text)
			}
			if got := x.at("created-by").names(); !slices.Equal(got, []string{"id", "login"}) {
				t.Fatalf("%s: XML created-by has %v", path, got)
			}
			if x.at("integration/id").attr["type"] != "integer" || x.at("document-type").text != "InvoiceHeader" {
				t.Fatalf("%s: XML shallow lost types or attributes", path)
			}
		}
		x := parseXML(t, c.must(201, "POST", ihr+"?return_object=shallow", `<integration-history-record>
  <contact-alert-type>Technical</contact-alert-type><document-id>9</document-id><document-type>OrderHeader</document-type>
  <integration><code>SH-1</code></integration></integration-history-record>`, "Accept", xmlAccept).Body)
		if x.at("integration/code").text != "SH-1" || x.at("integration/name") != nil {
			t.Fatalf("XML POST shallow: %v", x.at("integration").names())
		}
	})
}

func TestContractReturnObjectNoneOnGet(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		id := fmt.Sprint(num(c.obj(201, "POST", ihr, rec()), "id"))
		for _, path := range []string{ihr + "?return_object=none", ihr + "/" + id + "?return_object=none",
			"/api/integrations?return_object=none", "/api/integration_runs?return_object=none"} {
			r := c.must(400, "GET", path, "")
			if !strings.Contains(r.String(), "return_object=none is only for POST and PUT") {
				t.Fatalf("%s: %s", path, r)
			}
			r = c.must(400, "GET", path, "", "Accept", xmlAccept)
			if e := parseXML(t, r.Body); e.name != "errors" || !strings.Contains(e.at("error").text, "return_object=none") {
				t.Fatalf("%s XML: %s", path, r)
			}
		}
		// Writes still answer nothing, in either format.
		for _, accept := range []string{"application/json", xmlAccept} {
			if r := c.must(201, "POST", ihr+"?return_object=none", rec(), "Accept", accept); len(r.Body) != 0 {
				t.Fatalf("POST none: %q", r.Body)
			}
			if r := c.must(200, "PUT", ihr+"/"+id+"?return_object=none", `{"status":"x"}`, "Accept", accept); len(r.Body) != 0 {
				t.Fatalf("PUT none: %q", r.Body)
			}
		}
		// limited stays available on reads.
		if m := c.obj(200, "GET", ihr+"/"+id+"?return_object=limited", ""); len(m) != 1 {
			t.Fatalf("limited: %v", m)
		}
	})
}

func TestContractUserObject(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		m := c.obj(201, "POST", ihr, rec())
		id := fmt.Sprint(num(m, "id"))
		want := []string{"id", "login", "email", "firstname", "lastname", "employee-number"}
		for _, k := range []string{"created-by", "updated-by"} {
			u := m[k].(map[string]any)
			if len(u) != len(want) {
				t.Fatalf("%s: %v, want %v", k, u, want)
			}
			if u["id"] == nil || !strings.HasPrefix(u["login"].(string), "api-key-") {
				t.Fatalf("%s: %v", k, u)
			}
			for _, k2 := range want[2:] {
				if v, ok := u[k2]; !ok || v != nil {
					t.Fatalf("%s.%s = %v, want null", k, k2, v)
				}
			}
		}
		// The same object in JSON order and in XML, with nil elements.
		r := c.must(200, "GET", ihr+"/"+id, "")
		if !bytes.Contains(r.Body, []byte(`"email":null,"firstname":null,"lastname":null,"employee-number":null}`)) {
			t.Fatalf("JSON user order: %s", r)
		}
		x := parseXML(t, c.must(200, "GET", ihr+"/"+id, "", "Accept", xmlAccept).Body)
		for _, k := range []string{"created-by", "updated-by"} {
			u := x.at(k)
			if !slices.Equal(u.names(), want) {
				t.Fatalf("XML %s: %v", k, u.names())
			}
			if u.at("id").attr["type"] != "integer" || u.at("login").text == "" {
				t.Fatalf("XML %s id/login", k)
			}
			for _, k2 := range want[2:] {
				if u.at(k2).attr["nil"] != "true" {
					t.Fatalf("XML %s/%s is not nil", k, k2)
				}
			}
		}
		// An OAuth client is a user too: its login is its client id.
		_, tok := c.token("")
		c.auth = bearer(tok["access_token"].(string))
		m = c.obj(200, "PUT", ihr+"/"+id, `{"status":"Error"}`)
		if u := m["updated-by"].(map[string]any); u["login"] != c.ts.OAuthID || len(u) != len(want) || u["email"] != nil {
			t.Fatalf("OAuth updated-by: %v", u)
		}
	})
}

func TestContractEmptyXMLElementsAreNil(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", `{"code":"EX","name":"Empty"}`)
		in := `<?xml version="1.0" encoding="UTF-8"?>
<integration-history-record>
  <contact-alert-type>Functional</contact-alert-type>
  <creation-method/>
  <document-status></document-status>
  <document-id type="integer">5</document-id>
  <document-revision type="integer"></document-revision>
  <document-type>InvoiceHeader</document-type>
  <external-id type="string"></external-id>
  <status>Success</status>
  <responses></responses>
</integration-history-record>`
		m := c.obj(201, "POST", ihr, in, "Accept", "application/json")
		id := fmt.Sprint(num(m, "id"))
		for _, k := range []string{"creation-method", "document-status", "document-revision"} {
			if v, ok := m[k]; !ok || v != nil {
				t.Fatalf("%s = %#v, want null (Hash.from_xml reads an empty element as nil)", k, v)
			}
		}
		if m["external-id"] != "" {
			t.Fatalf(`external-id = %#v, want "" (typed string)`, m["external-id"])
		}
		if len(m["responses"].([]any)) != 0 || m["status"] != "Success" {
			t.Fatalf("record: %v", m)
		}
		// Stored as null: blank=true finds it and not_eq sees null.
		if ids := c.ids("creation-method[blank]=true&document-status[blank]=true&id=" + id); len(ids) != 1 {
			t.Fatalf("blank: %v", ids)
		}
		r := c.must(200, "GET", ihr+"/"+id, "")
		if !bytes.Contains(r.Body, []byte(`"creation-method":null`)) || !bytes.Contains(r.Body, []byte(`"document-status":null`)) {
			t.Fatalf("JSON: %s", r)
		}
		// XML answers nil="true" for them and a typed empty string for "",
		// so Hash.from_xml reads back exactly what is stored.
		x := parseXML(t, c.must(200, "GET", ihr+"/"+id, "", "Accept", xmlAccept).Body)
		for _, k := range []string{"creation-method", "document-status"} {
			if x.at(k).attr["nil"] != "true" {
				t.Fatalf("XML %s not nil", k)
			}
		}
		if e := x.at("external-id"); e.isNil() || e.attr["type"] != "string" || e.text != "" {
			t.Fatalf("XML external-id: %+v", e)
		}
		// A JSON "" stays "", and reads back as "" through XML.
		j := c.obj(201, "POST", ihr, rec("creation-method", ""))
		x = parseXML(t, c.must(200, "GET", ihr+"/"+fmt.Sprint(num(j, "id")), "", "Accept", xmlAccept).Body)
		if e := x.at("creation-method"); e.isNil() {
			t.Fatalf(`JSON "" printed as a nil XML element: %+v`, e)
		}
		// Update: an empty element clears the value, in XML.
		c.must(200, "PUT", ihr+"/"+id, `<integration-history-record><status>Error</status><integration><code>EX</code></integration></integration-history-record>`)
		m = c.obj(200, "PUT", ihr+"/"+id, `<integration-history-record><status/><integration></integration></integration-history-record>`)
		if m["status"] != nil || m["integration"] != nil {
			t.Fatalf("XML update with empty elements: status %#v integration %#v", m["status"], m["integration"])
		}
		x = parseXML(t, c.must(200, "GET", ihr+"/"+id, "", "Accept", xmlAccept).Body)
		if !x.at("status").isNil() || !x.at("integration").isNil() {
			t.Fatal("XML after clearing: not nil")
		}
		// Required elements given empty are blank, not "".
		r = c.must(400, "POST", ihr, `<integration-history-record><contact-alert-type/><document-id>1</document-id><document-type>InvoiceHeader</document-type></integration-history-record>`, "Accept", xmlAccept)
		if e := parseXML(t, r.Body); !strings.Contains(e.at("error").text, "Contact alert type can't be blank") {
			t.Fatalf("blank required: %s", r)
		}
	})
}

func TestContractRailsArrayQuery(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		c.must(201, "POST", "/api/integrations", `{"code":"A,1","name":"with comma"}`)
		c.must(201, "POST", "/api/integrations", `{"code":"B","name":"plain"}`)
		var inv, ord, acc int
		for i, dt := range []string{"InvoiceHeader", "OrderHeader", "Account", "InvoiceHeader"} {
			c.obj(201, "POST", ihr, rec("document-type", dt, "document-id", i+1, "integration", map[string]any{"code": []string{"A,1", "B", "B", "A,1"}[i]}))
			switch dt {
			case "InvoiceHeader":
				inv++
			case "OrderHeader":
				ord++
			default:
				acc++
			}
		}
		// {document_type: {in: [...]}}.to_query, as Rails writes it:
		// brackets percent-encoded, keys sorted.
		rails := url.Values{"document_type[in][]": {"InvoiceHeader", "OrderHeader"}}.Encode()
		if !strings.Contains(rails, "document_type%5Bin%5D%5B%5D=InvoiceHeader&document_type%5Bin%5D%5B%5D=OrderHeader") {
			t.Fatalf("test query is not Rails' form: %s", rails)
		}
		want := c.ids("document_type[in]=InvoiceHeader,OrderHeader")
		if len(want) != inv+ord {
			t.Fatalf("comma list: %v", want)
		}
		for _, query := range []string{rails, "document_type[in][]=InvoiceHeader&document_type[in][]=OrderHeader", "document-type[in][]=OrderHeader&document-type[in][]=InvoiceHeader"} {
			if got := c.ids(query); !slices.Equal(got, want) {
				t.Fatalf("%s: %v, want %v", query, got, want)
			}
		}
		if got := c.ids("document_type[not_in][]=InvoiceHeader&document_type[not_in][]=OrderHeader"); len(got) != acc {
			t.Fatalf("not_in list: %v", got)
		}
		// Integers, and an association; a list item is one value, commas and all.
		if got := c.ids("document_id[in][]=1&document_id[in][]=3"); len(got) != 2 {
			t.Fatalf("int list: %v", got)
		}
		if got := c.ids("integration[code][in][]=" + q("A,1")); len(got) != 2 {
			t.Fatalf("association list with a comma in a value: %v", got)
		}
		// XML answers the same records.
		x := parseXML(t, c.must(200, "GET", ihr+"?"+rails, "", "Accept", xmlAccept).Body)
		if x.name != "integration-history-records" || len(x.children) != len(want) {
			t.Fatalf("XML list query: %s %d", x.name, len(x.children))
		}
		// [] is for lists only; a bad item names the element.
		for query, msg := range map[string]string{
			"status[]=a&status[]=b":                   "only for the in and not_in operators",
			"document_type[eq][]=x":                   "unknown operator",
			"document_id[in][]=1&document_id[in][]=x": "is not an integer",
		} {
			for _, accept := range []string{"application/json", xmlAccept} {
				r := c.must(400, "GET", ihr+"?"+query, "", "Accept", accept)
				if !strings.Contains(r.String(), msg) {
					t.Fatalf("%s (%s): %s, want %q", query, accept, r, msg)
				}
			}
		}
	})
}

func TestContractOAuthWireDetails(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		post := func(form string, hdr ...string) (int, http.Header, map[string]any) {
			t.Helper()
			req, _ := http.NewRequest("POST", c.ts.URL+"/oauth2/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			res, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var m map[string]any
			json.NewDecoder(res.Body).Decode(&m)
			return res.StatusCode, res.Header, m
		}
		creds := "client_id=" + q(c.ts.OAuthID) + "&client_secret=" + q(c.ts.OAuthSecret)
		// A token answer is never cached, in HTTP/1.1 and HTTP/1.0 terms.
		code, h, m := post("grant_type=client_credentials&" + creds)
		if code != 200 || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
			t.Fatalf("token: %d %v", code, h)
		}
		tok := m["access_token"].(string)
		// Missing grant_type is invalid_request; another grant is unsupported.
		for form, want := range map[string]string{
			creds:                          "invalid_request",
			"grant_type=&" + creds:         "invalid_request",
			"grant_type=password&" + creds: "unsupported_grant_type",
			"grant_type=client_credentials&grant_type=client_credentials&" + creds: "invalid_request",
			"grant_type=client_credentials&scope=a&scope=b&" + creds:               "invalid_request",
		} {
			code, h, m := post(form)
			if code != 400 || m["error"] != want || h.Get("Pragma") != "no-cache" {
				t.Fatalf("%s: %d %v, want 400 %s", form, code, m, want)
			}
		}
		// Bad client credentials: 401 invalid_client with a Basic challenge,
		// whether they came in HTTP Basic or in the form.
		basic := "Basic " + b64(c.ts.OAuthID+":wrong")
		for _, tc := range [][]string{
			{"grant_type=client_credentials", "Authorization", basic},
			{"grant_type=client_credentials&client_id=" + q(c.ts.OAuthID) + "&client_secret=wrong"},
		} {
			code, h, m := post(tc[0], tc[1:]...)
			if code != 401 || m["error"] != "invalid_client" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("%v: %d %v %q", tc, code, m, h.Get("WWW-Authenticate"))
			}
		}

		// The API: RFC 6750 §3.1 challenges, in JSON and in XML.
		for _, accept := range []string{"application/json", xmlAccept} {
			c.auth = bearer("not-a-token")
			r := c.must(401, "GET", ihr, "", "Accept", accept)
			if w := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(w, "Bearer ") || !strings.Contains(w, `error="invalid_token"`) {
				t.Fatalf("bad token: %q", w)
			}
			// No token at all, or an API key: a challenge without an error code.
			for _, a := range []func(*http.Request){nil, func(r *http.Request) { r.Header.Set("X-COUPA-API-KEY", "wrong") }} {
				c.auth = a
				r := c.must(401, "GET", ihr, "", "Accept", accept)
				if w := r.Header.Get("WWW-Authenticate"); w != `Bearer realm="ihr-api"` {
					t.Fatalf("no token: %q", w)
				}
			}
			// A token without the scope: 403 insufficient_scope naming it.
			_, ro := c.token("core.integration.read")
			c.auth = bearer(ro["access_token"].(string))
			r = c.must(403, "POST", ihr, rec(), "Accept", accept)
			if w := r.Header.Get("WWW-Authenticate"); !strings.Contains(w, `error="insufficient_scope"`) || !strings.Contains(w, `scope="core.integration.write"`) {
				t.Fatalf("403: %q", w)
			}
			if accept == xmlAccept {
				if e := parseXML(t, r.Body); !strings.Contains(e.at("error").text, "core.integration.write") {
					t.Fatalf("403 XML: %s", r)
				}
			}
			c.auth = bearer(tok)
			if r := c.must(200, "GET", ihr, "", "Accept", "application/json"); r.Header.Get("WWW-Authenticate") != "" {
				t.Fatal("a good call carries a challenge")
			}
		}
	})
}
