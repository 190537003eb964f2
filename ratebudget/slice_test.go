package ratebudget

import (
	"context"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// TestSliceAdapts: a replica too slow to use its slices before they go
// stale reserves smaller ones, so it stops wasting the shared budget, and
// grows back once it keeps up again.
func TestSliceAdapts(t *testing.T) {
	ctx := context.Background()
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	l, err := Open(ctx, dsn, Config{Credential: "c", Rate: 100, Burst: 20, Slice: 8, Grace: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.size != 8 {
		t.Fatalf("initial slice %d", l.size)
	}
	for range 5 { // one call per 300 ms: 8 tokens fall due within 80 ms
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if l.size != 1 {
		t.Fatalf("slow replica still reserves %d tokens a trip", l.size)
	}
	for range 60 { // back-to-back: every slice used in time
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if l.size < 4 { // 8 unless the loaded machine delayed a call past the grace
		t.Fatalf("busy replica's slice grew back only to %d, want 8", l.size)
	}
}
