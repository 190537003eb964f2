package apiserver

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"unicode/utf8"
)

// Our hand-written encoders must round-trip through the standard decoders.
func FuzzEncodeString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"uote\\", "<&>", "\x00\x01\x1f\t\n\r", "é日本\u2028\u2029", "\xff\xfe", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b bytes.Buffer
		writeJSONString(&b, s)
		var got string
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("JSON %q → %s: %v", s, b.Bytes(), err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("JSON round trip %q → %q", s, got)
		}
		b.Reset()
		encodeXML(&b, "r", object{{"v", s}})
		var x struct {
			V string `xml:"v"`
		}
		if err := xml.Unmarshal(b.Bytes(), &x); err != nil {
			t.Fatalf("XML %q → %s: %v", s, b.Bytes(), err)
		}
		if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
			return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF
		}) {
			want := strings.ReplaceAll(s, "\r", "\n") // XML normalizes line ends
			if x.V != want && x.V != s {
				t.Fatalf("XML round trip %q → %q", s, x.V)
			}
		}
	})
}

func TestNegotiate(t *testing.T) {
	for accept, want := range map[string]format{
		"":                                  formatJSON,
		"*/*":                               formatJSON,
		"application/xml":                   formatXML,
		"text/xml;q=0.9":                    formatXML,
		"application/json, application/xml": formatJSON,
		"text/html, application/xml;q=0.9":  formatXML,
		"application/vnd.api+json":          formatJSON,
		"text/html":                         formatJSON,
	} {
		if got := negotiate(accept); got != want {
			t.Errorf("negotiate(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for _, s := range []string{"2026-11-29T21:04:05+09:00", "2026-11-29T21:04:05 09:00", "2026-11-29T21:04:05Z", "2026-11-29T21:04:05", "2026-11-29", "2026-11-29 21:04:05", "2026-11-29T21:04:05.123+09:00"} {
		if _, err := parseTime(s); err != nil {
			t.Errorf("parseTime(%q): %v", s, err)
		}
	}
	for _, s := range []string{"yesterday", "2026-13-01", "", "1700000000"} {
		if _, err := parseTime(s); err == nil {
			t.Errorf("parseTime(%q) accepted", s)
		}
	}
}
