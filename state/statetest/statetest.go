// Package statetest is the conformance suite every state.Ledger
// implementation must pass (SQLite now, PostgreSQL later):
//
//	statetest.Run(t, func(t *testing.T, now func() time.Time) state.Ledger { … })
package statetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// Factory returns a fresh, empty ledger whose leases follow the clock now.
// The suite closes it.
type Factory func(t *testing.T, now func() time.Time) state.Ledger

// Clock is a settable clock for lease tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC)} }

// Now reads the clock.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Run runs the whole suite.
func Run(t *testing.T, newLedger Factory) {
	open := func(t *testing.T) (state.Ledger, *Clock) {
		c := NewClock()
		l := newLedger(t, c.Now)
		t.Cleanup(func() { l.Close() })
		return l, c
	}
	ctx := context.Background()

	t.Run("Claims", func(t *testing.T) {
		l, clock := open(t)
		f, err := l.Claim(ctx, "src", "a.csv", "w1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if f.Status != state.Claimed || f.Owner != "w1" || f.Source != "src" || f.Name != "a.csv" {
			t.Fatalf("after claim: %+v", f)
		}
		if _, err := l.Claim(ctx, "src", "a.csv", "w2", time.Minute); !errors.Is(err, state.ErrClaimed) {
			t.Fatalf("second owner: got %v, want ErrClaimed", err)
		}
		if _, err := l.Claim(ctx, "src", "a.csv", "w1", time.Minute); err != nil {
			t.Fatalf("re-claim by holder: %v", err)
		}
		clock.Advance(50 * time.Second)
		if err := l.Heartbeat(ctx, "src", "a.csv", "w1", time.Minute); err != nil {
			t.Fatal(err)
		}
		clock.Advance(50 * time.Second) // alive only thanks to the heartbeat
		if _, err := l.Claim(ctx, "src", "a.csv", "w2", time.Minute); !errors.Is(err, state.ErrClaimed) {
			t.Fatalf("after heartbeat: got %v, want ErrClaimed", err)
		}
		clock.Advance(11 * time.Second)
		if _, err := l.Claim(ctx, "src", "a.csv", "w2", time.Minute); err != nil {
			t.Fatalf("expired lease: %v", err)
		}
		if err := l.Heartbeat(ctx, "src", "a.csv", "w1", time.Minute); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("old owner heartbeat: got %v, want ErrLeaseLost", err)
		}
		if err := l.PutFile(ctx, "w1", state.File{Source: "src", Name: "a.csv", Status: state.Processing}); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("old owner put: got %v", err)
		}
		if err := l.Release(ctx, "src", "a.csv", "w1"); err != nil { // not held: no-op
			t.Fatal(err)
		}
		if _, err := l.Claim(ctx, "src", "a.csv", "w3", time.Minute); !errors.Is(err, state.ErrClaimed) {
			t.Fatalf("release by non-holder freed the claim: %v", err)
		}
		if err := l.Release(ctx, "src", "a.csv", "w2"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Claim(ctx, "src", "a.csv", "w3", time.Minute); err != nil {
			t.Fatalf("after release: %v", err)
		}
		// Same name in another source is another file.
		if _, err := l.Claim(ctx, "other", "a.csv", "w1", time.Minute); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("FileRoundTrip", func(t *testing.T) {
		l, clock := open(t)
		if _, err := l.File(ctx, "src", "a.csv"); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("missing file: got %v", err)
		}
		claimed, err := l.Claim(ctx, "src", "a.csv", "w1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		in := claimed
		in.Size, in.ModTime, in.SHA256 = 1234, time.Unix(1700000000, 123456789), "ab12"
		in.Status, in.SkipReason, in.Run, in.Rows = state.Processing, "why", 3, 99
		in.Counts = state.Counts{Created: 1, AlreadyRecorded: 2, Invalid: 3, Failed: 4}
		in.DispatchMark = state.MarkAll
		in.Location, in.Destination, in.ArchivedTo, in.ReportPath = "inbox/a.csv", "archive/a.csv", "failed/x.csv", "reports/a.response.csv"
		in.StartedAt, in.FinishedAt = clock.Now(), clock.Now().Add(time.Second)
		if err := l.PutFile(ctx, "w1", in); err != nil {
			t.Fatal(err)
		}
		got, err := l.File(ctx, "src", "a.csv")
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != in.Size || !got.ModTime.Equal(in.ModTime) || got.SHA256 != in.SHA256 || got.Status != in.Status ||
			got.SkipReason != in.SkipReason || got.Run != in.Run || got.Rows != in.Rows || got.Counts != in.Counts ||
			got.DispatchMark != in.DispatchMark || got.Location != in.Location || got.Destination != in.Destination ||
			got.ArchivedTo != in.ArchivedTo || got.ReportPath != in.ReportPath || !got.StartedAt.Equal(in.StartedAt) ||
			!got.FinishedAt.Equal(in.FinishedAt) || got.Owner != "w1" || got.FirstSeen.IsZero() {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, in)
		}
		if err := l.SetDispatchMark(ctx, "src", "a.csv", "w1", 512); err != nil {
			t.Fatal(err)
		}
		if err := l.SetDispatchMark(ctx, "src", "a.csv", "w2", 1024); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("mark by non-owner: %v", err)
		}
		if got, _ := l.File(ctx, "src", "a.csv"); got.DispatchMark != 512 {
			t.Fatalf("mark = %d", got.DispatchMark)
		}
		// Claim keeps a resumable status.
		if err := l.Release(ctx, "src", "a.csv", "w1"); err != nil {
			t.Fatal(err)
		}
		if f, err := l.Claim(ctx, "src", "a.csv", "w2", time.Minute); err != nil || f.Status != state.Processing || f.Run != 3 {
			t.Fatalf("re-claim: %+v %v", f, err)
		}
	})

	t.Run("Listing", func(t *testing.T) {
		l, _ := open(t)
		for _, n := range []string{"b.csv", "a.csv", "c.csv"} {
			f, err := l.Claim(ctx, "s1", n, "w", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			f.SHA256 = "h-" + n
			if n == "c.csv" {
				f.SHA256 = "h-a.csv"
			}
			if err := l.PutFile(ctx, "w", f); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Claim(ctx, "s2", "z.csv", "w", time.Minute); err != nil {
			t.Fatal(err)
		}
		fs, err := l.Files(ctx, "s1")
		if err != nil || len(fs) != 3 || fs[0].Name != "a.csv" || fs[2].Name != "c.csv" {
			t.Fatalf("Files(s1) = %+v, %v", fs, err)
		}
		if all, _ := l.Files(ctx, ""); len(all) != 4 {
			t.Fatalf("Files() = %d files", len(all))
		}
		dup, err := l.FilesByHash(ctx, "s1", "h-a.csv")
		if err != nil || len(dup) != 2 || dup[0].Name != "a.csv" || dup[1].Name != "c.csv" {
			t.Fatalf("FilesByHash = %+v, %v", dup, err)
		}
		if none, _ := l.FilesByHash(ctx, "s2", "h-a.csv"); len(none) != 0 {
			t.Fatalf("hash leaked across sources: %+v", none)
		}
	})

	t.Run("Outcomes", func(t *testing.T) {
		l, _ := open(t)
		if _, err := l.Claim(ctx, "src", "a.csv", "w1", time.Minute); err != nil {
			t.Fatal(err)
		}
		var outs []state.Outcome
		var keys []string
		for i := int64(1); i <= 1000; i++ {
			o := state.Outcome{Key: fmt.Sprintf("EXT-%d", i), Row: i, Run: 1, ExternalID: fmt.Sprintf("EXT-%d", i),
				DocumentType: "InvoiceHeader", DocumentID: fmt.Sprint(i), Action: "create", Result: state.Created,
				RecordID: 100 + i, HTTPStatus: 201, Fingerprint: fmt.Sprintf("fp-%d", i)}
			if i%10 == 0 {
				o.Result, o.RecordID, o.HTTPStatus, o.Message = state.FailedRow, 0, 400, "Document type can't be blank"
			}
			outs = append(outs, o)
			keys = append(keys, o.Key)
		}
		if err := l.RecordOutcomes(ctx, "src", "a.csv", "w2", outs[:1]); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("record by non-owner: %v", err)
		}
		if err := l.RecordOutcomes(ctx, "src", "a.csv", "w1", outs); err != nil {
			t.Fatal(err)
		}
		got, err := l.Outcomes(ctx, "src", "a.csv", append(keys, "missing", state.RowKey(5)))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1000 {
			t.Fatalf("got %d outcomes, want 1000", len(got))
		}
		o := got["EXT-10"]
		if o.Row != 10 || o.Result != state.FailedRow || o.HTTPStatus != 400 || o.Message == "" || o.Source != "src" || o.Filename != "a.csv" {
			t.Fatalf("EXT-10 = %+v", o)
		}
		if o := got["EXT-7"]; o.RecordID != 107 || o.DocumentType != "InvoiceHeader" || o.DocumentID != "7" || o.Action != "create" || o.Run != 1 || o.Fingerprint != "fp-7" {
			t.Fatalf("EXT-7 = %+v", o)
		}
		// Upsert: a later run retries the failed row and moves a key.
		up := []state.Outcome{
			{Key: "EXT-10", Row: 3, Run: 2, ExternalID: "EXT-10", Result: state.Created, RecordID: 999, HTTPStatus: 201, Fingerprint: "fp-new"},
			{Key: state.RowKey(1001), Row: 1001, Run: 2, Result: state.Created, RecordID: 1000},
		}
		if err := l.RecordOutcomes(ctx, "src", "a.csv", "w1", up); err != nil {
			t.Fatal(err)
		}
		got, _ = l.Outcomes(ctx, "src", "a.csv", []string{"EXT-10", state.RowKey(1001)})
		if got["EXT-10"].RecordID != 999 || got["EXT-10"].Row != 3 || got["EXT-10"].Run != 2 || got["EXT-10"].Message != "" || got["EXT-10"].Fingerprint != "fp-new" || got[state.RowKey(1001)].RecordID != 1000 {
			t.Fatalf("after upsert: %+v", got)
		}
		if c, err := l.RowCounts(ctx, "src", "a.csv", 0); err != nil || c != (state.Counts{Created: 902, Failed: 99}) {
			t.Fatalf("RowCounts(all) = %+v, %v", c, err)
		}
		if c, _ := l.RowCounts(ctx, "src", "a.csv", 2); c != (state.Counts{Created: 2}) {
			t.Fatalf("RowCounts(run 2) = %+v", c)
		}
		// Outcomes are per file name.
		if other, _ := l.Outcomes(ctx, "src", "b.csv", keys[:5]); len(other) != 0 {
			t.Fatalf("outcomes leaked to another file: %v", other)
		}
		// Content lookups: the first content of EXT-7 and EXT-10's new
		// content were recorded; EXT-10's first attempt failed, and the
		// upsert of EXT-10 did not forget what EXT-7 recorded.
		rec, err := l.Recorded(ctx, "src", "a.csv", []string{"EXT-7", "EXT-10", "EXT-10", "EXT-8", "nope"},
			[]string{"fp-7", "fp-10", "fp-new", "fp-other", "fp-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec) != 2 || rec["EXT-7"] != 107 || rec["EXT-10"] != 999 {
			t.Fatalf("Recorded = %v", rec)
		}
		if rec, _ := l.Recorded(ctx, "src", "b.csv", []string{"EXT-7"}, []string{"fp-7"}); len(rec) != 0 {
			t.Fatalf("Recorded leaked to another file: %v", rec)
		}
		// New content for EXT-7: its earlier content stays known.
		if err := l.RecordOutcomes(ctx, "src", "a.csv", "w1", []state.Outcome{{Key: "EXT-7", Row: 7, Run: 3,
			ExternalID: "EXT-7", Result: state.Created, RecordID: 555, Fingerprint: "fp-7b"}}); err != nil {
			t.Fatal(err)
		}
		rec, err = l.Recorded(ctx, "src", "a.csv", []string{"EXT-7", "EXT-7"}, []string{"fp-7", "fp-7b"})
		if err != nil || len(rec) != 1 || (rec["EXT-7"] != 107 && rec["EXT-7"] != 555) {
			t.Fatalf("Recorded after new content: %v, %v", rec, err)
		}
		for fp, id := range map[string]int64{"fp-7": 107, "fp-7b": 555} {
			if rec, _ := l.Recorded(ctx, "src", "a.csv", []string{"EXT-7"}, []string{fp}); rec["EXT-7"] != id {
				t.Fatalf("Recorded(EXT-7, %s) = %v, want %d", fp, rec, id)
			}
		}
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		l, _ := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			name := fmt.Sprintf("f%d.csv", w)
			if _, err := l.Claim(ctx, "src", name, "w", time.Minute); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range 10 {
					var outs []state.Outcome
					for i := range 50 {
						row := int64(b*50 + i + 1)
						outs = append(outs, state.Outcome{Key: state.RowKey(row), Row: row, Run: 1, Result: state.Created, RecordID: row})
					}
					if err := l.RecordOutcomes(ctx, "src", name, "w", outs); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for w := range 8 {
			if c, _ := l.RowCounts(ctx, "src", fmt.Sprintf("f%d.csv", w), 1); c.Created != 500 {
				t.Fatalf("file %d: %+v", w, c)
			}
		}
	})

	t.Run("Ranges", func(t *testing.T) {
		l, clock := open(t)
		if rs, err := l.Ranges(ctx, "src", "big.csv"); err != nil || len(rs) != 0 {
			t.Fatalf("never split: %+v, %v", rs, err)
		}
		f, err := l.Claim(ctx, "src", "big.csv", "w1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f.Status, f.Run, f.Rows, f.DispatchMark = state.Processing, 1, 10_500, 0
		if err := l.PutFile(ctx, "w1", f); err != nil {
			t.Fatal(err)
		}
		if _, err := l.SplitFile(ctx, "src", "big.csv", "w2", 1000); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("split without the file's claim: %v", err)
		}
		rs, err := l.SplitFile(ctx, "src", "big.csv", "w1", 2500)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 5 || rs[0].First != 1 || rs[0].Last != 2500 || rs[4].First != 10_001 || rs[4].Last != 10_500 ||
			rs[3].Index != 3 || rs[3].Run != 1 || rs[2].Done || rs[2].Owner != "" {
			t.Fatalf("split: %+v", rs)
		}
		// Splitting the same run again keeps what is there.
		if again, err := l.SplitFile(ctx, "src", "big.csv", "w1", 100); err != nil || len(again) != 5 {
			t.Fatalf("second split: %d ranges, %v", len(again), err)
		}
		if err := l.Release(ctx, "src", "big.csv", "w1"); err != nil {
			t.Fatal(err)
		}

		// Ranges are claimed without the file's claim, one owner each.
		a, err := l.ClaimRange(ctx, "src", "big.csv", 1, "wa", time.Minute)
		if err != nil || a.Index != 0 || a.Owner != "wa" {
			t.Fatalf("wa: %+v, %v", a, err)
		}
		b, err := l.ClaimRange(ctx, "src", "big.csv", 1, "wb", time.Minute)
		if err != nil || b.Index != 1 {
			t.Fatalf("wb: %+v, %v", b, err)
		}
		if again, err := l.ClaimRange(ctx, "src", "big.csv", 1, "wa", time.Minute); err != nil || again.Index != 0 {
			t.Fatalf("wa again gets its own range first: %+v, %v", again, err)
		}
		if _, err := l.ClaimRange(ctx, "src", "big.csv", 2, "wc", time.Minute); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("claim in another run: %v", err)
		}
		if err := l.SetRangeMark(ctx, "src", "big.csv", 0, "wa", 64); err != nil {
			t.Fatal(err)
		}
		if err := l.SetRangeMark(ctx, "src", "big.csv", 0, "wb", 65); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("mark by non-owner: %v", err)
		}
		out := state.Outcome{Key: "E-1", Row: 1, Run: 1, Result: state.Created, RecordID: 7}
		if err := l.RecordRangeOutcomes(ctx, "src", "big.csv", 0, "wb", []state.Outcome{out}); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("record by non-owner: %v", err)
		}
		if err := l.RecordRangeOutcomes(ctx, "src", "big.csv", 0, "wa", []state.Outcome{out}); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.Outcomes(ctx, "src", "big.csv", []string{"E-1"}); got["E-1"].RecordID != 7 {
			t.Fatalf("range outcome not stored under the file: %+v", got)
		}
		if err := l.ReleaseRange(ctx, "src", "big.csv", 0, "wa", true); err != nil {
			t.Fatal(err)
		}
		if err := l.ReleaseRange(ctx, "src", "big.csv", 0, "wa", true); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("finishing a range not held: %v", err)
		}

		// wb dies holding range 1: after its lease another owner takes it
		// over, with its dispatch mark.
		if err := l.SetRangeMark(ctx, "src", "big.csv", 1, "wb", 2600); err != nil {
			t.Fatal(err)
		}
		clock.Advance(50 * time.Second)
		if err := l.HeartbeatRange(ctx, "src", "big.csv", 1, "wb", time.Minute); err != nil {
			t.Fatal(err)
		}
		clock.Advance(50 * time.Second)
		c, err := l.ClaimRange(ctx, "src", "big.csv", 1, "wc", time.Minute)
		if err != nil || c.Index != 2 {
			t.Fatalf("wc while wb is alive: %+v, %v", c, err)
		}
		clock.Advance(11 * time.Second) // wb's lease ran out, wc's did not
		d, err := l.ClaimRange(ctx, "src", "big.csv", 1, "wd", time.Minute)
		if err != nil || d.Index != 1 || d.DispatchMark != 2600 {
			t.Fatalf("takeover of wb's range: %+v, %v", d, err)
		}
		if err := l.HeartbeatRange(ctx, "src", "big.csv", 1, "wb", time.Minute); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("dead owner's heartbeat: %v", err)
		}
		if err := l.ReleaseRange(ctx, "src", "big.csv", 1, "wb", false); err != nil { // not held: no-op
			t.Fatal(err)
		}
		if err := l.ReleaseRange(ctx, "src", "big.csv", 1, "wd", false); err != nil {
			t.Fatal(err)
		}
		rs, err = l.Ranges(ctx, "src", "big.csv")
		if err != nil || !rs[0].Done || rs[1].Done || rs[1].Owner != "" || rs[1].DispatchMark != 2600 || rs[0].DispatchMark != 64 {
			t.Fatalf("ranges: %+v, %v", rs, err)
		}

		// Concurrent claimants never share a range.
		var mu sync.Mutex
		got := map[int]string{}
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("racer-%d", w)
				g, err := l.ClaimRange(ctx, "src", "big.csv", 1, owner, time.Hour)
				if errors.Is(err, state.ErrNotFound) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := got[g.Index]; ok {
					t.Errorf("range %d given to %s and %s", g.Index, prev, owner)
				}
				got[g.Index] = owner
			}()
		}
		wg.Wait()
		// wc still holds range 2; ranges 1, 3 and 4 are free.
		if len(got) != 3 || got[2] != "" {
			t.Fatalf("racers got %v", got)
		}

		// A new run's split replaces the old ranges.
		f, err = l.Claim(ctx, "src", "big.csv", "w1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f.Run, f.Rows, f.DispatchMark = 2, 300, state.MarkAll
		if err := l.PutFile(ctx, "w1", f); err != nil {
			t.Fatal(err)
		}
		rs, err = l.SplitFile(ctx, "src", "big.csv", "w1", 100)
		if err != nil || len(rs) != 3 || rs[0].Run != 2 || rs[2].Last != 300 || rs[1].DispatchMark != state.MarkAll {
			t.Fatalf("new run's split: %+v, %v", rs, err)
		}
		if err := l.SetRangeMark(ctx, "src", "big.csv", 2, "wc", 9); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("old run's range owner still writes: %v", err)
		}
		if listed, _ := l.Ranges(ctx, "src", "big.csv"); len(listed) != 3 {
			t.Fatalf("after re-split: %+v", listed)
		}
	})
}
