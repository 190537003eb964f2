package workercli

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/notify"
	"github.com/ihr-tools/ihr/state"
)

// TestPendingNotifications: the notifier's sweep gets, from the real
// ledger, each event of the last day as the passes notify it (kind,
// reason, dashboard link), plus its recovery once ended; older events are
// left alone.
func TestPendingNotifications(t *testing.T) {
	ctx := context.Background()
	l, err := state.OpenSQLite(ctx, filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ops, err := state.OpsOf(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	o := &operator{ops: ops, now: func() time.Time { return now }, baseURL: "https://ihr.example.com"}
	for _, e := range []state.Event{
		{ID: "api_down/erp/x", Kind: state.EventAPIDown, Source: "erp", Detail: "API unreachable", OpenedAt: now.Add(-2 * time.Hour)},
		{ID: "file_failed/erp/a.csv/1", Kind: state.EventFileFailed, Source: "erp", File: "a.csv", Detail: "bad", OpenedAt: now.Add(-time.Hour)},
		{ID: "delivery_missed/erp/old", Kind: state.EventDeliveryMissed, Source: "erp", Detail: "none", OpenedAt: now.Add(-48 * time.Hour)},
	} {
		if _, err := ops.OpenEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ops.CloseEvent(ctx, "api_down/erp/x", now.Add(-30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := o.pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]notify.Event{}
	for _, e := range got {
		byID[e.ID] = e
	}
	if len(got) != 3 || len(byID) != 3 {
		t.Fatalf("pending: %+v", got)
	}
	if e := byID["api_down/erp/x"]; e.Kind != notify.SourceDown || e.Reason != "API unreachable" || e.URL != "https://ihr.example.com/#source-erp" {
		t.Errorf("api_down: %+v", e)
	}
	if e := byID["recovered/api_down/erp/x"]; e.Kind != notify.Recovered || e.Recovers != notify.SourceDown || !e.At.Equal(now.Add(-30*time.Minute)) {
		t.Errorf("recovery: %+v", e)
	}
	if e := byID["file_failed/erp/a.csv/1"]; e.Kind != notify.FileFailed || e.File != "a.csv" || e.URL == "" {
		t.Errorf("file_failed: %+v", e)
	}
}
