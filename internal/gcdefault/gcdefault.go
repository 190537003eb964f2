// Package gcdefault holds the garbage collector's default for ihr-worker
// and ihr-api.
//
// Both keep a live heap of a few MiB while they allocate per row or per
// request, so at Go's default (GOGC=100) the collector runs every few
// hundred rows and its marking takes CPU from the two cores the worker,
// the HTTP server and the SQLite writer share. At 400 it runs a quarter
// as often, for more heap between collections: about 10 MiB more RSS for
// the worker, a few tens of MiB for ihr-api under load (BENCHMARKS.md).
package gcdefault

import (
	"os"
	"runtime/debug"
)

// Percent is the target Apply sets.
const Percent = 400

// Apply sets Percent unless GOGC is in the environment, which still
// decides (GOGC=100 restores Go's default; GOMEMLIMIT caps the heap
// either way). It returns the previous setting, so that a caller that is
// not a whole process (a benchmark) can put it back.
func Apply() (previous int) {
	if os.Getenv("GOGC") != "" {
		// Reading the setting means setting it: set it back as it was.
		old := debug.SetGCPercent(100)
		debug.SetGCPercent(old)
		return old
	}
	return debug.SetGCPercent(Percent)
}
