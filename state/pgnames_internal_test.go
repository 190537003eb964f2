package state

import (
	"testing"
	"unicode/utf8"
)

func TestStoredNameRoundTrip(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []string{"plain.csv", "caf\xe9.csv", "caf\xe8.csv", "50%.csv", "caf%E9.csv", "inbox/\xff\xfe%41",
		"é.csv", ""} { // never "/…": names are base names, paths relative
		s := storedName(n)
		if !utf8.ValidString(s) {
			t.Errorf("storedName(%q) = %q is not UTF-8", n, s)
		}
		if back := loadedName(s); back != n {
			t.Errorf("loadedName(storedName(%q)) = %q", n, back)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("%q and %q are both stored as %q", prev, n, s)
		}
		seen[s] = n
		if utf8.ValidString(n) && s != n {
			t.Errorf("a valid name %q is stored as %q", n, s)
		}
	}
}
