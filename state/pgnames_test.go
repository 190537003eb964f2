package state_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
)

// TestPostgresNamesNotUTF8: PostgreSQL text must be UTF-8, file names need
// not be. Through state.Open, two names that differ only in an invalid
// byte keep their own entries, come back byte for byte, and so do their
// paths and outcomes; a valid name that looks like an escaped one is not
// confused with it.
func TestPostgresNamesNotUTF8(t *testing.T) {
	pg := testservers.StartPostgres(t)
	ctx := context.Background()
	l, err := state.Open(ctx, pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ops, err := state.OpsOf(ctx, l)
	if err != nil {
		t.Fatalf("operator tables of the ledger Open returns: %v", err)
	}
	names := []string{"caf\xe9.csv", "caf\xe8.csv", "caf%E9.csv", "50%.csv"}
	for i, n := range names {
		f, err := l.Claim(ctx, state.FileID{Source: "erp", Name: n}, "w", time.Minute)
		if err != nil {
			t.Fatalf("claim %q: %v", n, err)
		}
		if f.Name != n {
			t.Fatalf("claim %q gave %q", n, f.Name)
		}
		f.Status, f.Run, f.Location, f.ReportPath = state.Processing, 1, "inbox/"+n, "reports/"+n+".response.csv"
		f.SkipReason = n + ": why"
		if err := l.PutFile(ctx, "w", f); err != nil {
			t.Fatalf("put %q: %v", n, err)
		}
		if err := l.RecordOutcomes(ctx, state.FileID{Source: "erp", Name: n}.HeldBy("w"), []state.Outcome{{Key: "K", Row: 1, Run: 1, Result: state.Created,
			RecordID: int64(100 + i), Fingerprint: "fp", Message: "row of " + n}}); err != nil {
			t.Fatalf("record %q: %v", n, err)
		}
	}
	files, err := l.Files(ctx, "erp")
	if err != nil || len(files) != len(names) {
		t.Fatalf("files: %d, %v", len(files), err)
	}
	for i, n := range names {
		f, err := l.File(ctx, state.FileID{Source: "erp", Name: n})
		if err != nil || f.Name != n || f.Location != "inbox/"+n || f.ReportPath != "reports/"+n+".response.csv" {
			t.Fatalf("file %q: %+v, %v", n, f, err)
		}
		outs, err := l.Outcomes(ctx, state.FileID{Source: "erp", Name: n}, []string{"K"})
		if err != nil || outs["K"].RecordID != int64(100+i) || outs["K"].Filename != n {
			t.Fatalf("outcomes of %q: %+v, %v", n, outs, err)
		}
		if rec, err := l.Recorded(ctx, state.FileID{Source: "erp", Name: n}, []string{"K"}, []string{"fp"}); err != nil || rec["K"] != int64(100+i) {
			t.Fatalf("recorded of %q: %v, %v", n, rec, err)
		}
		if c, err := l.RowCounts(ctx, state.FileID{Source: "erp", Name: n}, 0); err != nil || c.Created != 1 {
			t.Fatalf("counts of %q: %+v, %v", n, c, err)
		}
		if outs, err := ops.FileOutcomes(ctx, "erp", n, 10); err != nil || len(outs) != 1 || outs[0].RecordID != int64(100+i) || outs[0].Filename != n {
			t.Fatalf("operator outcomes of %q: %+v, %v", n, outs, err)
		}
	}

	// The operator side takes and gives back the same names: a rejected
	// file's event and its notification, the health error quoting it, and
	// the dashboard's recent files.
	recent, err := ops.RecentFiles(ctx, "erp", 10)
	if err != nil || len(recent) != len(names) {
		t.Fatalf("recent files: %d, %v", len(recent), err)
	}
	for _, f := range recent {
		if _, err := l.File(ctx, f.ID()); err != nil || f.ReportPath != "reports/"+f.Name+".response.csv" {
			t.Fatalf("recent file %q (report %q) is not the ledger's: %v", f.Name, f.ReportPath, err)
		}
	}
	for _, n := range names {
		id := state.EventFileFailed + "/erp/" + n + "/1"
		if isNew, err := ops.OpenEvent(ctx, state.Event{ID: id, Kind: state.EventFileFailed, Source: "erp", File: n, Detail: "rejected: " + n}); err != nil || !isNew {
			t.Fatalf("event of %q: new=%v, %v", n, isNew, err)
		}
		if ok, err := ops.ClaimNotification(ctx, id, "webhook", time.Minute); err != nil || !ok {
			t.Fatalf("notification of %q: %v, %v", n, ok, err)
		}
		if err := ops.NotificationSent(ctx, id, "webhook"); err != nil {
			t.Fatalf("notification of %q sent: %v", n, err)
		}
		if err := ops.PutHealth(ctx, state.Health{Source: "erp", LastPass: time.Now(), Error: "move " + n + ": denied", Failures: 1}); err != nil {
			t.Fatalf("health quoting %q: %v", n, err)
		}
	}
	var ids []string
	for _, n := range names {
		ids = append(ids, state.EventFileFailed+"/erp/"+n+"/1")
	}
	if sent, err := ops.SentNotifications(ctx, "webhook", ids); err != nil || len(sent) != len(ids) {
		t.Fatalf("sent notifications: %q, %v", sent, err)
	} else {
		for _, id := range sent {
			if !slices.Contains(ids, id) {
				t.Fatalf("sent notification %q is not the name it was stored as", id)
			}
		}
	}
	evs, err := ops.Events(ctx, "erp", true, 10)
	if err != nil || len(evs) != len(names) {
		t.Fatalf("events: %+v, %v", evs, err)
	}
	for _, e := range evs {
		if e.ID != state.EventFileFailed+"/erp/"+e.File+"/1" {
			t.Fatalf("event %q of file %q", e.ID, e.File)
		}
		if closed, err := ops.CloseEvent(ctx, e.ID, time.Now()); err != nil || !closed {
			t.Fatalf("close event %q: %v, %v", e.ID, closed, err)
		}
	}
}
