package importer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFitName(t *testing.T) {
	long := strings.Repeat("x", 251)
	cases := []struct{ stem, ext string }{
		{long, ".response.csv"},
		{long + "y", ".response.csv"},
		{strings.Repeat("é", 130), ".csv"},
		{"a", "." + strings.Repeat("b", 260)},
		{"short", ".csv"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		got := fitName(c.stem, c.ext)
		if len(got) > maxNameBytes || !utf8.ValidString(got) || seen[got] {
			t.Errorf("fitName(%d-byte stem, %d-byte ext) = %q (%d bytes)", len(c.stem), len(c.ext), got, len(got))
		}
		if len(c.stem+c.ext) <= maxNameBytes && got != c.stem+c.ext {
			t.Errorf("a name that fits was changed: %q", got)
		}
		if len(c.ext) < 20 && !strings.HasSuffix(got, c.ext) {
			t.Errorf("%q lost its suffix %q", got, c.ext)
		}
		seen[got] = true
	}
}

func TestRecordName(t *testing.T) {
	a, b := recordName("caf\xe9.csv"), recordName("caf\xe8.csv")
	if a == b || !utf8.ValidString(a) || !strings.HasPrefix(a, "caf%E9.csv~") || strings.Contains(a, `\`) {
		t.Fatalf("recordName: %q, %q", a, b)
	}
	if recordName("plain.csv") != "plain.csv" {
		t.Fatal("a valid name was changed")
	}
}
