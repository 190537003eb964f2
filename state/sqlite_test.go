package state_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

func TestSQLiteConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T, now func() time.Time) state.Ledger {
		l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), state.SQLiteOptions{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestSQLiteSingleWriterAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	l, err := state.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.OpenSQLite(ctx, path, state.SQLiteOptions{}); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second writer: got %v, want ErrLocked", err)
	}
	f, err := l.Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "dead-worker", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.Status, f.Run, f.DispatchMark = state.Processing, 1, 256
	if err := l.PutFile(ctx, "dead-worker", f); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordOutcomes(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("dead-worker"), []state.Outcome{{Key: "E1", Row: 1, Run: 1, Result: state.Created, RecordID: 7}}); err != nil {
		t.Fatal(err)
	}
	ro, err := state.OpenSQLite(ctx, path, state.SQLiteOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("reader beside the writer: %v", err)
	}
	if got, err := ro.File(ctx, state.FileID{Source: "src", Name: "a.csv"}); err != nil || got.DispatchMark != 256 {
		t.Fatalf("reader sees %+v, %v", got, err)
	}
	ro.Close()
	l.Close() // as a crash would: the claim is still recorded

	l2, err := state.OpenSQLite(ctx, path, state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	got, err := l2.Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "new-worker", time.Minute)
	if err != nil {
		t.Fatalf("stale claim not cleared on open: %v", err)
	}
	if got.Status != state.Processing || got.DispatchMark != 256 || got.Run != 1 {
		t.Fatalf("after reopen: %+v", got)
	}
	if o, _ := l2.Outcomes(ctx, state.FileID{Source: "src", Name: "a.csv"}, []string{"E1"}); o["E1"].RecordID != 7 {
		t.Fatalf("outcome lost: %+v", o)
	}
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	if _, err := state.Open(context.Background(), "mysql://x"); err == nil {
		t.Fatal("want error")
	}
}

// BenchmarkRecordOutcomes measures group commit: one durable transaction
// per batch of 256 rows (reported as rows/s).
func BenchmarkRecordOutcomes(b *testing.B) {
	l, err := state.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "state.db"), state.SQLiteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	statetest.BenchmarkRecordOutcomes(b, l)
}
