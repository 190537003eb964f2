package state_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
)

// TestOpsSQLite and TestOpsPostgres run the operator side on both ledgers:
// the dashboard and notifications must read the same on either.
func TestOpsSQLite(t *testing.T) {
	l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testOps(t, l)
}

func TestOpsPostgres(t *testing.T) {
	pg := testservers.StartPostgres(t)
	testOps(t, openPG(t, pg.NewDatabase(t), nil))
}

func testOps(t *testing.T, l state.Ledger) {
	ctx := context.Background()
	ops, err := state.OpsOf(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := ops.PutHealth(ctx, state.Health{Source: "a", LastPass: now, StoreReachable: true, Error: "api down", Failures: 2}); err != nil {
		t.Fatal(err)
	}
	if err := ops.PutHealth(ctx, state.Health{Source: "a", LastPass: now, LastOK: now, StoreReachable: true, APIReachable: true}); err != nil {
		t.Fatal(err)
	}
	hs, err := ops.Health(ctx)
	if err != nil || len(hs) != 1 || !hs[0].APIReachable || hs[0].Failures != 0 || hs[0].Error != "" {
		t.Fatalf("health: %+v %v", hs, err)
	}

	ev := state.Event{ID: "delivery_missed/a/1", Kind: state.EventDeliveryMissed, Source: "a", Detail: "no file"}
	for i, want := range []bool{true, false} {
		if isNew, err := ops.OpenEvent(ctx, ev); err != nil || isNew != want {
			t.Fatalf("open #%d: new=%v err=%v", i, isNew, err)
		}
	}
	if open, _ := ops.Events(ctx, "a", true, 10); len(open) != 1 {
		t.Fatalf("open events: %+v", open)
	}
	if closed, err := ops.CloseEvent(ctx, ev.ID, now); err != nil || !closed {
		t.Fatalf("close: %v %v", closed, err)
	}
	if closed, _ := ops.CloseEvent(ctx, ev.ID, now); closed {
		t.Fatal("closed twice")
	}
	if open, _ := ops.Events(ctx, "", true, 10); len(open) != 0 {
		t.Fatalf("still open: %+v", open)
	}

	// Notification claims: one sender; once sent, never again.
	if ok, err := ops.ClaimNotification(ctx, ev.ID, "webhook", time.Minute); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if ok, _ := ops.ClaimNotification(ctx, ev.ID, "webhook", time.Minute); ok {
		t.Fatal("claimed twice while fresh")
	}
	if ok, _ := ops.ClaimNotification(ctx, ev.ID, "webhook", 0); !ok {
		t.Fatal("a stale unsent claim is not taken over")
	}
	if err := ops.NotificationSent(ctx, ev.ID, "webhook"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := ops.ClaimNotification(ctx, ev.ID, "webhook", 0); ok {
		t.Fatal("a sent notification was claimed again")
	}
	// Claimed but unsent ("other") and never claimed ("none") are not sent.
	if ok, _ := ops.ClaimNotification(ctx, "other", "webhook", time.Minute); !ok {
		t.Fatal("claim other")
	}
	if sent, err := ops.SentNotifications(ctx, "webhook", []string{"none", ev.ID, "other"}); err != nil || len(sent) != 1 || sent[0] != ev.ID {
		t.Fatalf("sent to webhook: %q, %v", sent, err)
	}
	if sent, err := ops.SentNotifications(ctx, "slack", []string{ev.ID}); err != nil || len(sent) != 0 {
		t.Fatalf("sent to slack: %q, %v", sent, err)
	}

	// Read queries over files and outcomes.
	f, err := l.Claim(ctx, state.FileID{Source: "a", Name: "x.csv"}, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.Status, f.Run, f.Rows = state.Processing, 1, 3
	if err := l.PutFile(ctx, "w", f); err != nil {
		t.Fatal(err)
	}
	outs := []state.Outcome{
		{Key: "1", Row: 1, Run: 1, Result: state.Created, HTTPStatus: 201},
		{Key: "2", Row: 2, Run: 1, Result: state.FailedRow, HTTPStatus: 422, Message: "bad"},
		{Key: "3", Row: 3, Run: 1, Result: state.Invalid, Message: "no id"},
	}
	if err := l.RecordOutcomes(ctx, state.FileID{Source: "a", Name: "x.csv"}.HeldBy("w"), outs); err != nil {
		t.Fatal(err)
	}
	rf, err := ops.RecentFiles(ctx, "", 5)
	if err != nil || len(rf) != 1 || rf[0].Name != "x.csv" {
		t.Fatalf("recent: %+v %v", rf, err)
	}
	fo, err := ops.FileOutcomes(ctx, "a", "x.csv", 10)
	if err != nil || len(fo) != 3 || fo[0].Row != 2 || fo[1].Row != 3 || fo[2].Row != 1 {
		t.Fatalf("outcomes not invalid/failed first: %+v %v", fo, err)
	}
	hc, err := ops.Hourly(ctx, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range hc {
		total += c.N
	}
	if total != 3 {
		t.Fatalf("hourly: %+v", hc)
	}
}
