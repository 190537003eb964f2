package apiserver_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/apiserver"
)

// One record holds at most MaxResponsesPerRecord responses and
// MaxResponseBytesPerRecord bytes of response-message text; the update
// that would pass either is a 400 naming the limit and changes nothing.
func TestResponseCap(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		resps := func(n int, msg string) []map[string]any {
			out := make([]map[string]any, n)
			for i := range out {
				out[i] = map[string]any{"response-code": fmt.Sprint(i), "response-message": msg}
			}
			return out
		}
		full := c.obj(201, "POST", ihr, body(map[string]any{"document-type": "User", "document-id": 1, "contact-alert-type": "Functional",
			"responses": resps(apiserver.MaxResponsesPerRecord-1, "m")}))
		id := fmt.Sprint(num(full, "id"))
		c.must(200, "PUT", ihr+"/"+id, body(map[string]any{"responses": resps(1, "last")}))
		r := c.do("PUT", ihr+"/"+id, body(map[string]any{"status": "changed", "responses": resps(1, "one too many")}))
		if r.Code != 400 || !strings.Contains(r.String(), fmt.Sprintf("limited to %d per record", apiserver.MaxResponsesPerRecord)) {
			t.Fatalf("response %d: %d %s", apiserver.MaxResponsesPerRecord+1, r.Code, r.Body)
		}
		got := c.obj(200, "GET", ihr+"/"+id, "")
		if n := len(got["responses"].([]any)); n != apiserver.MaxResponsesPerRecord || got["status"] == "changed" {
			t.Fatalf("after the refused update: %d responses, status %v", n, got["status"])
		}

		big := strings.Repeat("x", apiserver.MaxResponseBytesPerRecord/2+1)
		rec := c.obj(201, "POST", ihr, body(map[string]any{"document-type": "User", "document-id": 2, "contact-alert-type": "Functional",
			"responses": resps(1, big)}))
		id = fmt.Sprint(num(rec, "id"))
		r = c.do("PUT", ihr+"/"+id, body(map[string]any{"responses": resps(1, big)}))
		if r.Code != 400 || !strings.Contains(r.String(), "bytes of response-message text per record") {
			t.Fatalf("text beyond the cap: %d %.300s", r.Code, r.Body)
		}
	})
}
