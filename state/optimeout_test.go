package state_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// TestSQLiteWaitHasADeadline: a ledger call that waits for SQLite's write
// lock, held by another connection that never lets go, ends with the
// ledger's operation timeout instead of waiting for good.
func TestSQLiteWaitHasADeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	l, err := state.OpenSQLite(context.Background(), path, state.SQLiteOptions{OpTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A second connection takes the write lock and keeps it, as a
	// stuck process sharing the file (or a hung disk) would.
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn, err := raw.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := l.Claim(context.Background(), state.FileID{Source: "s", Name: "a.csv"}, "me", time.Minute)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Claim still waiting for the lock after a minute")
	}
	took := time.Since(start)
	t.Logf("Claim gave up after %v: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim after %v: %v, want the operation timeout", took, err)
	}
}
