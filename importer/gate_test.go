package importer

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// The report passes a row only once every row up to it is committed:
// windows complete out of order, the gate moves over them in order.
func TestReportGateMovesInRowOrder(t *testing.T) {
	g := newReportGate()
	g.planned(4, 2)  // rows 1-4: two outcomes (the rest invalid)
	g.planned(8, 0)  // rows 5-8: nothing to commit (all duplicates)
	g.planned(12, 1) // rows 9-12
	passed := make(chan error, 1)
	go func() { passed <- g.wait(context.Background(), 8) }()
	g.committed([]state.Outcome{{Row: 10}, {Row: 2}})
	select {
	case <-passed:
		t.Fatal("row 8 passed with row 3 of the first window still pending")
	case <-time.After(50 * time.Millisecond):
	}
	g.committed([]state.Outcome{{Row: 3}})
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	if g.through != 12 {
		t.Fatalf("through %d, want 12: every planned window is committed", g.through)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { passed <- g.wait(ctx, 13) }()
	cancel()
	if err := <-passed; err == nil {
		t.Fatal("a wait past the planned windows returned before finish, without ctx's error")
	}
	g.finish()
	if err := g.wait(context.Background(), 1<<40); err != nil {
		t.Fatal(err)
	}
	var open *reportGate
	if err := open.wait(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
}

// The report takes what the run committed from the gate, the last outcome
// of each key, and reads the ledger for the rest: keys it took already,
// keys it never kept, and outcomes a ledger may store changed.
func TestReportGateKeepsWhatTheRunCommitted(t *testing.T) {
	g := newReportGate()
	g.committed([]state.Outcome{{Key: "a", Row: 1, Message: "first"}, {Key: "b", Row: 2, Message: "bad \xff"}})
	g.committed([]state.Outcome{{Key: "a", Row: 3, Message: "last"}})
	outs, missing := g.take([]string{"a", "b", "c", "a"})
	if o := outs["a"]; o.Row != 3 || o.Message != "last" {
		t.Fatalf("a: %+v, want its last committed outcome", o)
	}
	if len(outs) != 1 || len(missing) != 2 || missing[0] != "b" || missing[1] != "c" {
		t.Fatalf("took %v, missing %q: want a taken; b (invalid UTF-8) and c (never committed) read", outs, missing)
	}
	if _, missing := g.take([]string{"a"}); len(missing) != 1 {
		t.Fatalf("a was taken twice: a later row of the key must read the ledger")
	}
	full := newReportGate()
	batch := make([]state.Outcome, maxKept+1)
	for i := range batch {
		batch[i] = state.Outcome{Key: strconv.Itoa(i), Row: int64(i + 1)}
	}
	full.committed(batch)
	if len(full.kept) != maxKept {
		t.Fatalf("kept %d outcomes, want at most %d", len(full.kept), maxKept)
	}
	var open *reportGate
	if outs, missing := open.take([]string{"x"}); len(outs) != 0 || len(missing) != 1 {
		t.Fatal("a nil gate answered an outcome")
	}
}
