package sqlq

import "testing"

func TestNumber(t *testing.T) {
	for _, c := range []struct {
		in    string
		first int
		want  string
	}{
		{`SELECT 1`, 1, `SELECT 1`},
		{`a = ? AND b IN (?,?)`, 1, `a = $1 AND b IN ($2,$3)`},
		{`a = ? AND b = $1`, 2, `a = $2 AND b = $1`},
	} {
		if got := Number(c.in, c.first); got != c.want {
			t.Errorf("Number(%q, %d) = %q, want %q", c.in, c.first, got, c.want)
		}
	}
}
