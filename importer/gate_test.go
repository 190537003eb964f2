package importer

import (
	"context"
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
