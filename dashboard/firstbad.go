package dashboard

import (
	"context"
	"errors"
	"sync"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/state"
)

// firstBads remembers, per run of a rejected file, the first invalid or
// failed row its report holds, so the overview opens each report once
// rather than on every load: a finished run's report does not change, and
// the key (the file, its run, its report and when the run finished)
// changes with any new run. It holds at most max entries, dropping the
// oldest first, so a long-running serve keeps only what recent pages
// show.
type firstBads struct {
	mu    sync.Mutex
	max   int
	m     map[firstBadKey]firstBad
	order []firstBadKey // oldest first
}

type firstBadKey struct {
	id       state.FileID
	run      int64
	report   string
	finished int64
}

type firstBad struct {
	row   state.Outcome
	found bool
}

func newFirstBads(max int) *firstBads {
	return &firstBads{max: max, m: make(map[firstBadKey]firstBad, max)}
}

// firstBad is the first invalid or failed row of f's report; ok is false
// when the report has none or cannot be read.
func (h *handler) firstBad(ctx context.Context, f state.File) (state.Outcome, bool) {
	k := firstBadKey{id: f.ID(), run: f.Run, report: f.ReportPath, finished: f.FinishedAt.UnixNano()}
	c := h.bads
	c.mu.Lock()
	v, hit := c.m[k]
	c.mu.Unlock()
	if hit {
		return v.row, v.found
	}
	outs, _, err := h.reportRows(ctx, f, 1, true)
	// An unreachable store is asked again next time; a report that is
	// gone (retention) stays gone.
	if err != nil && !errors.Is(err, filestore.ErrNotExist) {
		return state.Outcome{}, false
	}
	if len(outs) == 1 {
		v = firstBad{row: outs[0], found: true}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.m[k]; !dup {
		c.m[k] = v
		c.order = append(c.order, k)
		for len(c.order) > c.max {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
	}
	return v.row, v.found
}
