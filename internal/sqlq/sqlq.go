// Package sqlq numbers SQL placeholders, so that statements written once
// with ? bind on PostgreSQL (and on SQLite, which reads $N as the N-th
// argument). apiserver's and state's dialects both use it.
package sqlq

import (
	"strconv"
	"strings"
)

// Number rewrites each ? of query to $first, $first+1, …. The SQL it is
// given never holds a literal '?' (values are always bound), so a plain
// scan is exact.
func Number(query string, first int) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 32)
	n := first
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			n++
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}
