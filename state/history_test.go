package state_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// countingAPI creates every record at once and counts the creates.
type countingAPI struct{ n atomic.Int64 }

func (a *countingAPI) Create(_ context.Context, _ record.Action, r *record.Record) (*record.Record, error) {
	out := *r
	out.ID = a.n.Add(1)
	return &out, nil
}
func (a *countingAPI) FindExisting(context.Context, *record.Record) (*record.Record, error) {
	return nil, nil
}
func (a *countingAPI) Unresolved(context.Context, string, int64) ([]*record.Record, error) {
	return nil, nil
}
func (a *countingAPI) Resolve(context.Context, int64) error { return nil }

func ledgers(t *testing.T) map[string]func(t *testing.T, now func() time.Time) state.Ledger {
	return map[string]func(t *testing.T, now func() time.Time) state.Ledger{
		"sqlite": func(t *testing.T, now func() time.Time) state.Ledger {
			l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), state.SQLiteOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		},
		"postgres": func(t *testing.T, now func() time.Time) state.Ledger {
			return openPG(t, testservers.StartPostgres(t).NewDatabase(t), now)
		},
	}
}

// TestPruneKeepsIdentity: after pruning, a kept file dropped again is
// recognised row by row (nothing posted), a file with another name and a
// pruned file's content is still skipped, and a pruned file dropped again
// under its name has its rows posted again, as prune says it will.
func TestPruneKeepsIdentity(t *testing.T) {
	for name, open := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := statetest.NewClock()
			l := open(t, clock.Now)
			root := t.TempDir()
			store, err := local.New(root, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			api := &countingAPI{}
			im := importer.New(importer.Config{}, api, l, nil, nil)
			src := importer.Source{Name: "erp", Store: store}
			const body = "external-id,document-type,document-id,status,contact-alert-type\r\n"
			content := func(prefix string) string {
				return body + fmt.Sprintf("%s-1,InvoiceHeader,1,Success,Functional\r\n%s-2,InvoiceHeader,2,Success,Functional\r\n%s-3,InvoiceHeader,3,Success,Functional\r\n", prefix, prefix, prefix)
			}
			drop := func(file, text string) importer.Summary {
				t.Helper()
				if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, "inbox", file), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				sum, err := im.RunSource(ctx, src)
				if err != nil {
					t.Fatal(err)
				}
				return sum
			}
			if s := drop("old.csv", content("OLD")); s.Rows.Created != 3 {
				t.Fatalf("old: %+v", s.Rows)
			}
			clock.Advance(500 * 24 * time.Hour)
			if s := drop("new.csv", content("NEW")); s.Rows.Created != 3 {
				t.Fatalf("new: %+v", s.Rows)
			}
			before := clock.Now().Add(-400 * 24 * time.Hour)
			dry, err := state.PruneOutcomes(ctx, l, before, true)
			if err != nil || dry.Files != 1 || dry.Outcomes != 3 {
				t.Fatalf("dry run: %+v %v", dry, err)
			}
			if c, _ := l.RowCounts(ctx, state.FileID{Source: "erp", Name: "old.csv"}, 0); c.Created != 3 {
				t.Fatalf("the dry run deleted outcomes: %+v", c)
			}
			p, err := state.PruneOutcomes(ctx, l, before, false)
			if err != nil || p != dry {
				t.Fatalf("prune: %+v %v, dry run said %+v", p, err, dry)
			}
			if p, _ := state.PruneOutcomes(ctx, l, before, false); p.Files != 0 {
				t.Fatalf("second prune: %+v", p)
			}
			old := state.FileID{Source: "erp", Name: "old.csv"}
			if at, _ := state.PrunedAt(ctx, l, old); at.IsZero() {
				t.Fatal("old.csv not marked pruned")
			}
			if f, err := l.File(ctx, old); err != nil || f.Status != state.Done || f.Counts.Created != 3 || f.SHA256 == "" {
				t.Fatalf("old.csv's entry after prune: %+v %v", f, err)
			}
			posted := api.n.Load()
			// Kept: the same rows dropped again are all recognised.
			if s := drop("new.csv", content("NEW")); s.Rows.AlreadyRecorded != 3 || s.Rows.Created != 0 {
				t.Fatalf("kept file dropped again: %+v", s.Rows)
			}
			// The pruned file's entry still knows its content.
			if s := drop("copy-of-old.csv", content("OLD")); len(s.Files) != 1 || s.Files[0].Status != state.Skipped {
				t.Fatalf("pruned content under another name: %+v", s.Files)
			}
			if api.n.Load() != posted {
				t.Fatalf("%d rows posted again", api.n.Load()-posted)
			}
			// What prune says it cannot know: the pruned file's rows.
			if s := drop("old.csv", content("OLD")); s.Rows.Created != 3 {
				t.Fatalf("pruned file dropped again: %+v", s.Rows)
			}
			if at, _ := state.PrunedAt(ctx, l, old); !at.IsZero() {
				t.Fatal("old.csv still marked pruned after a new run")
			}
		})
	}
}

// TestPruneSparesUnfinished: a run interrupted long ago resumes from its
// outcomes, and a file a live worker holds is being worked on: prune
// touches neither.
func TestPruneSparesUnfinished(t *testing.T) {
	for name, open := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := statetest.NewClock()
			l := open(t, clock.Now)
			record := func(file string, st state.Status, release bool) {
				id := state.FileID{Source: "erp", Name: file}
				f, err := l.Claim(ctx, id, "w", 1000*24*time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.RecordOutcomes(ctx, id.HeldBy("w"), []state.Outcome{{Key: "K", Row: 1, Run: 1, Result: state.Created}}); err != nil {
					t.Fatal(err)
				}
				f.Status, f.Run = st, 1
				if err := l.PutFile(ctx, "w", f); err != nil {
					t.Fatal(err)
				}
				if release {
					if err := l.Release(ctx, id.HeldBy("w"), false); err != nil {
						t.Fatal(err)
					}
				}
			}
			record("interrupted.csv", state.Processing, true)
			record("held.csv", state.Done, false)
			record("done.csv", state.Done, true)
			clock.Advance(500 * 24 * time.Hour)
			p, err := state.PruneOutcomes(ctx, l, clock.Now().Add(-400*24*time.Hour), false)
			if err != nil || p.Files != 1 || p.Outcomes != 1 {
				t.Fatalf("prune: %+v %v (want done.csv only)", p, err)
			}
			for _, f := range []string{"interrupted.csv", "held.csv"} {
				if c, _ := l.RowCounts(ctx, state.FileID{Source: "erp", Name: f}, 0); c.Created != 1 {
					t.Errorf("%s lost its outcome", f)
				}
			}
		})
	}
}

// TestFilePage: newest first, bounded, filtered, and it says when more
// exist; totals and sources come from the files.
func TestFilePage(t *testing.T) {
	for name, open := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := statetest.NewClock()
			l := open(t, clock.Now)
			h := statetest.AYear
			h.Nights, h.FilesPerNight, h.RowsPerFile = 10, 4, 20
			h.FailEvery, h.FailedRows = 4, 1 // the last file of each night rejected
			if _, err := h.Build(ctx, l, clock, 2, nil); err != nil {
				t.Fatal(err)
			}
			src := h.Source
			page, more, err := state.FilePage(ctx, l, state.FileQuery{Source: src, Limit: 5})
			if err != nil || len(page) != 5 || !more {
				t.Fatalf("page: %d files, more %v, %v", len(page), more, err)
			}
			for i := 1; i < len(page); i++ {
				if page[i].UpdatedAt.After(page[i-1].UpdatedAt) {
					t.Fatalf("not newest first: %v after %v", page[i].UpdatedAt, page[i-1].UpdatedAt)
				}
			}
			last := clock.Now().Add(-24 * time.Hour)
			page, more, err = state.FilePage(ctx, l, state.FileQuery{Source: src, Since: last, Limit: 5})
			if err != nil || len(page) != 4 || more {
				t.Fatalf("last night: %d files, more %v, %v", len(page), more, err)
			}
			page, _, err = state.FilePage(ctx, l, state.FileQuery{Source: src, Statuses: []state.Status{state.Failed}, Limit: 50})
			if err != nil || len(page) != 10 {
				t.Fatalf("failed: %d %v, want a file a night", len(page), err)
			}
			for _, f := range page {
				if f.Status != state.Failed || f.Counts.Failed != 1 {
					t.Fatalf("failed: %+v", f)
				}
			}
			tot, err := state.FileTotals(ctx, l, state.FileQuery{Source: src, Since: clock.Now().Add(-3 * 24 * time.Hour)})
			if err != nil || tot[state.Done].Files != 9 || tot[state.Done].Counts.Created != 9*20 ||
				tot[state.Failed].Files != 3 || tot[state.Failed].Counts.Created != 3*19 || tot[state.Failed].Counts.Failed != 3 {
				t.Fatalf("totals of 3 nights: %+v %v", tot, err)
			}
			if s, err := state.Sources(ctx, l); err != nil || len(s) != 1 || s[0] != src {
				t.Fatalf("sources: %v %v", s, err)
			}
		})
	}
}

// TestExternalIDRoundTrip: the external-id is stored once when it is the
// key, and every combination reads back as written.
func TestExternalIDRoundTrip(t *testing.T) {
	for name, open := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l := open(t, time.Now)
			id := state.FileID{Source: "erp", Name: "x.csv"}
			if _, err := l.Claim(ctx, id, "w", time.Hour); err != nil {
				t.Fatal(err)
			}
			cases := []struct{ key, ext string }{
				{"INV-1", "INV-1"}, {state.RowKey(2), ""}, {state.RowKey(3), " "}, {"#row 4", "#row 4"},
				{"K", ""}, {"K2", "other"}, {"\x01", "\x01"},
			}
			var outs []state.Outcome
			var keys []string
			for i, c := range cases {
				outs = append(outs, state.Outcome{Key: c.key, ExternalID: c.ext, Row: int64(i + 1), Run: 1, Result: state.Created})
				keys = append(keys, c.key)
			}
			if err := l.RecordOutcomes(ctx, id.HeldBy("w"), outs); err != nil {
				t.Fatal(err)
			}
			got, err := l.Outcomes(ctx, id, keys)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				if got[c.key].ExternalID != c.ext {
					t.Errorf("key %q: external-id %q, want %q", c.key, got[c.key].ExternalID, c.ext)
				}
			}
		})
	}
}
