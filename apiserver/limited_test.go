package apiserver_test

import (
	"strings"
	"testing"
)

// return_object=limited on a write answers the id alone, as a full
// rendering shaped by fields would: nothing when fields leaves id out.
func TestReturnObjectLimitedOnWrites(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		m := c.obj(201, "POST", ihr+"?return_object=limited", rec("external-id", "L-1"))
		if len(m) != 1 || num(m, "id") <= 0 {
			t.Fatalf("limited create: %v", m)
		}
		if m := c.obj(201, "POST", ihr+"?return_object=limited&fields="+q(`["id","status"]`), rec("external-id", "L-2")); len(m) != 1 || num(m, "id") <= 0 {
			t.Fatalf("limited create with fields naming id: %v", m)
		}
		if m := c.obj(201, "POST", ihr+"?return_object=limited&fields="+q(`["status"]`), rec("external-id", "L-3")); len(m) != 0 {
			t.Fatalf("limited create with fields leaving id out: %v, want {}", m)
		}
		x := string(c.must(201, "POST", ihr+"?return_object=limited", `<integration-history-record><document-type>InvoiceHeader</document-type><document-id type="integer">9</document-id><contact-alert-type>Functional</contact-alert-type></integration-history-record>`,
			"Content-Type", "application/xml", "Accept", "application/xml").Body)
		if !strings.Contains(x, `<id type="integer">`) || strings.Contains(x, "status") {
			t.Fatalf("limited create in XML: %s", x)
		}
	})
}
