package importer

import (
	"context"
	"math"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/ihr-tools/ihr/state"
)

// reportGate lets the report of a file follow its dispatch instead of
// waiting for its end: the report reads a window's outcomes from the
// ledger once every row up to the window's last has its outcome committed
// (through). On two cores the API's single writer leaves CPU idle while
// rows are posted, and the report's reads fill it, so the end of a pass
// costs only the report's last windows.
//
// Dispatch tells the gate each planned window's last row and how many
// outcomes it will commit (planned), and each committed batch
// (committed); finish opens it for every row once dispatch has returned.
//
// The gate also keeps what the run committed, so the report takes its
// rows' outcomes from memory (take) and reads the ledger only for keys
// the run did not commit, or did not keep: the claim fences every other
// writer out, so the last outcome this run committed for a key is the
// ledger's.
type reportGate struct {
	mu      sync.Mutex
	windows []gateWindow // planned and not yet passed, in row order
	through int64
	moved   chan struct{} // closed, and replaced, when through moves
	kept    map[string]state.Outcome
}

// maxKept bounds the outcomes a gate holds for a report that lags behind
// (about 300 bytes each with their strings, 277 for the map's entry
// alone as measured); past it, the report reads the ledger.
const maxKept = 1 << 16

type gateWindow struct {
	last    int64 // the window's last row
	pending int   // its outcomes not committed yet
}

func newReportGate() *reportGate {
	return &reportGate{moved: make(chan struct{}), kept: make(map[string]state.Outcome)}
}

// planned adds a window whose rows up to last will commit n outcomes.
// Called before any of them can be committed.
func (g *reportGate) planned(last int64, n int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.windows = append(g.windows, gateWindow{last: last, pending: n})
	g.advance()
}

// committed counts a batch of committed outcomes against their windows.
func (g *reportGate) committed(batch []state.Outcome) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, o := range batch {
		if i := sort.Search(len(g.windows), func(i int) bool { return g.windows[i].last >= o.Row }); i < len(g.windows) {
			g.windows[i].pending--
		}
		switch _, had := g.kept[o.Key]; {
		case !utf8.ValidString(o.Message):
			// A ledger may store such a message changed
			// (PostgreSQL's text): the report reads what it stored.
			delete(g.kept, o.Key)
		case had || len(g.kept) < maxKept:
			g.kept[o.Key] = o
		}
	}
	g.advance()
}

// take answers the outcomes the gate keeps of keys and forgets them; the
// rest of keys are missing. A nil gate keeps none.
func (g *reportGate) take(keys []string) (outs map[string]state.Outcome, missing []string) {
	outs = make(map[string]state.Outcome, len(keys))
	if g == nil {
		return outs, keys
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		if o, ok := g.kept[k]; ok {
			outs[k] = o
		} else {
			missing = append(missing, k)
		}
	}
	for k := range outs {
		delete(g.kept, k)
	}
	return outs, missing
}

func (g *reportGate) advance() {
	moved := false
	for len(g.windows) > 0 && g.windows[0].pending <= 0 {
		g.through, g.windows, moved = g.windows[0].last, g.windows[1:], true
	}
	if moved {
		close(g.moved)
		g.moved = make(chan struct{})
	}
}

// finish opens the gate for every row: dispatch has returned, and every
// row has its outcome.
func (g *reportGate) finish() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.through, g.windows = math.MaxInt64, nil
	close(g.moved)
	g.moved = make(chan struct{})
}

// wait returns once every row up to row has its outcome committed, or
// with ctx's error. A nil gate is open.
func (g *reportGate) wait(ctx context.Context, row int64) error {
	if g == nil {
		return nil
	}
	for {
		g.mu.Lock()
		through, moved := g.through, g.moved
		g.mu.Unlock()
		if through >= row {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
