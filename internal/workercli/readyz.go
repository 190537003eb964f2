package workercli

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
)

// readiness is what /readyz reports: not ready while the last pass of any
// source failed (its store or the API unreachable, a setup error), ready
// again once a pass of that source succeeds. /healthz stays the cheap
// liveness answer: a failing source is a reason to alert and to keep
// traffic away, not to restart the process.
type readiness struct {
	mu     sync.Mutex
	failed map[string]string // source → last pass's error
}

// passDone records a source's pass outcome.
func (r *readiness) passDone(source string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == nil {
		r.failed = map[string]string{}
	}
	if err == nil {
		delete(r.failed, source)
		return
	}
	r.failed[source] = errText(err)
}

func (r *readiness) ServeHTTP(rw http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	names := make([]string, 0, len(r.failed))
	for n := range r.failed {
		names = append(names, n)
	}
	sort.Strings(names)
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = fmt.Sprintf("%s: last pass failed: %s", n, oneLine(r.failed[n]))
	}
	r.mu.Unlock()
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(lines) > 0 {
		rw.WriteHeader(http.StatusServiceUnavailable)
		for _, l := range lines {
			fmt.Fprintln(rw, l)
		}
		return
	}
	fmt.Fprintln(rw, "ready")
}
