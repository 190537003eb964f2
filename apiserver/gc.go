package apiserver

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target that ApplyGCDefault sets.
// ihr-api's live heap between requests is a few MiB, so at Go's default
// (GOGC=100) a create-heavy load collects every few hundred requests and
// the collector's marking and assists take CPU from the two cores that
// the HTTP server and the SQLite writer share; at 400 it collects a
// quarter as often, for a few tens of MiB more RSS under load
// (BENCHMARKS.md, "ihr-api"). The same value as ihr-worker's.
const GCPercent = 400

// ApplyGCDefault sets GCPercent unless GOGC is in the environment, which
// still decides (GOGC=100 restores Go's default; GOMEMLIMIT still caps
// the heap either way). It returns the previous setting, so a caller
// that is not a whole process (a benchmark) can put it back.
func ApplyGCDefault() (previous int) {
	if os.Getenv("GOGC") != "" {
		// Reading the setting means setting it: set it back as it was.
		old := debug.SetGCPercent(100)
		debug.SetGCPercent(old)
		return old
	}
	return debug.SetGCPercent(GCPercent)
}
