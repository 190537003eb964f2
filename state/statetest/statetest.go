// Package statetest is the conformance suite every state.Ledger
// implementation must pass (the SQLite and the PostgreSQL ledger both run
// it): one named subtest per behaviour, each on a fresh ledger.
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

// Run runs the whole suite, each behaviour as a subtest on a fresh
// ledger with its own clock.
func Run(t *testing.T, newLedger Factory) {
	for _, c := range []struct {
		name string
		test func(t *testing.T, l state.Ledger, clock *Clock)
	}{
		{"ClaimIsExclusive", claimIsExclusive},
		{"HeartbeatKeepsLease", heartbeatKeepsLease},
		{"ExpiredLeaseIsTakenOver", expiredLeaseIsTakenOver},
		{"ReleaseOnlyByHolder", releaseOnlyByHolder},
		{"SourcesAreSeparate", sourcesAreSeparate},
		{"FileRoundTrip", fileRoundTrip},
		{"DispatchMarkIsFenced", dispatchMarkIsFenced},
		{"ReclaimKeepsStatus", reclaimKeepsStatus},
		{"PutFileAndRelease", putFileAndRelease},
		{"Listing", listing},
		{"OutcomesRoundTrip", outcomesRoundTrip},
		{"OutcomesAreFenced", outcomesAreFenced},
		{"OutcomesUpsert", outcomesUpsert},
		{"OutcomesLastInBatchWins", outcomesLastInBatchWins},
		{"OutcomesArePerFile", outcomesArePerFile},
		{"RowCounts", rowCounts},
		{"RecordedByContent", recordedByContent},
		{"RecordedKeepsReplacedContent", recordedKeepsReplacedContent},
		{"ConcurrentWriters", concurrentWriters},
		{"Split", split},
		{"SplitIsFenced", splitIsFenced},
		{"RangeClaims", rangeClaims},
		{"RangeWritesAreFenced", rangeWritesAreFenced},
		{"FileAndRangeClaimsAreApart", fileAndRangeClaimsAreApart},
		{"RangeTakeover", rangeTakeover},
		{"RangeClaimRace", rangeClaimRace},
		{"NewRunResplits", newRunResplits},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := NewClock()
			l := newLedger(t, clock.Now)
			t.Cleanup(func() { l.Close() })
			c.test(t, l, clock)
		})
	}
}

var (
	a   = state.FileID{Source: "src", Name: "a.csv"}
	big = state.FileID{Source: "src", Name: "big.csv"}
)

func claim(t *testing.T, l state.Ledger, id state.FileID, owner string) state.File {
	t.Helper()
	ctx := t.Context()
	f, err := l.Claim(ctx, id, owner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func put(t *testing.T, l state.Ledger, owner string, f state.File) {
	t.Helper()
	ctx := t.Context()
	if err := l.PutFile(ctx, owner, f); err != nil {
		t.Fatal(err)
	}
}

func claimIsExclusive(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	f := claim(t, l, a, "w1")
	if f.Status != state.Claimed || f.Owner != "w1" || f.ID() != a {
		t.Fatalf("after claim: %+v", f)
	}
	if _, err := l.Claim(ctx, a, "w2", time.Minute); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("second owner: got %v, want ErrClaimed", err)
	}
	if _, err := l.Claim(ctx, a, "w1", time.Minute); err != nil {
		t.Fatalf("re-claim by holder: %v", err)
	}
	if _, err := l.Claim(ctx, a, "", time.Minute); err == nil {
		t.Fatal("claim with no owner")
	}
}

func heartbeatKeepsLease(t *testing.T, l state.Ledger, clock *Clock) {
	ctx := t.Context()
	claim(t, l, a, "w1")
	clock.Advance(50 * time.Second)
	if err := l.Heartbeat(ctx, a.HeldBy("w1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second) // alive only thanks to the heartbeat
	if _, err := l.Claim(ctx, a, "w2", time.Minute); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("after heartbeat: got %v, want ErrClaimed", err)
	}
}

func expiredLeaseIsTakenOver(t *testing.T, l state.Ledger, clock *Clock) {
	ctx := t.Context()
	claim(t, l, a, "w1")
	clock.Advance(61 * time.Second)
	if _, err := l.Claim(ctx, a, "w2", time.Minute); err != nil {
		t.Fatalf("expired lease: %v", err)
	}
	if err := l.Heartbeat(ctx, a.HeldBy("w1"), time.Minute); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("old owner heartbeat: got %v, want ErrLeaseLost", err)
	}
	if err := l.PutFile(ctx, "w1", state.File{Source: a.Source, Name: a.Name, Status: state.Processing}); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("old owner put: got %v", err)
	}
}

func releaseOnlyByHolder(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	claim(t, l, a, "w2")
	if err := l.Release(ctx, a.HeldBy("w1"), false); err != nil { // not held: no-op
		t.Fatal(err)
	}
	if _, err := l.Claim(ctx, a, "w3", time.Minute); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("release by non-holder freed the claim: %v", err)
	}
	if err := l.Release(ctx, a.HeldBy("w2"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(ctx, a, "w3", time.Minute); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// sourcesAreSeparate: the same name in another source is another file.
func sourcesAreSeparate(t *testing.T, l state.Ledger, _ *Clock) {
	claim(t, l, a, "w1")
	claim(t, l, state.FileID{Source: "other", Name: a.Name}, "w2")
}

func fileRoundTrip(t *testing.T, l state.Ledger, clock *Clock) {
	ctx := t.Context()
	if _, err := l.File(ctx, a); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("missing file: got %v", err)
	}
	in := claim(t, l, a, "w1")
	in.Size, in.ModTime, in.SHA256 = 1234, time.Unix(1700000000, 123456789), "ab12"
	in.Status, in.SkipReason, in.Run, in.Rows = state.Processing, "why", 3, 99
	in.Counts = state.Counts{Created: 1, AlreadyRecorded: 2, Invalid: 3, Failed: 4}
	in.DispatchMark = state.MarkAll
	in.Location, in.Destination, in.ArchivedTo, in.ReportPath = "inbox/a.csv", "archive/a.csv", "failed/x.csv", "reports/a.response.csv"
	in.StartedAt, in.FinishedAt = clock.Now(), clock.Now().Add(time.Second)
	put(t, l, "w1", in)
	got, err := l.File(ctx, a)
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
}

func dispatchMarkIsFenced(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	claim(t, l, a, "w1")
	if err := l.SetMark(ctx, a.HeldBy("w1"), 512); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMark(ctx, a.HeldBy("w2"), 1024); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("mark by non-owner: %v", err)
	}
	if got, _ := l.File(ctx, a); got.DispatchMark != 512 {
		t.Fatalf("mark = %d", got.DispatchMark)
	}
}

// reclaimKeepsStatus: a claim keeps a resumable status and run.
func reclaimKeepsStatus(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	f := claim(t, l, a, "w1")
	f.Status, f.Run = state.Processing, 3
	put(t, l, "w1", f)
	if err := l.Release(ctx, a.HeldBy("w1"), false); err != nil {
		t.Fatal(err)
	}
	if f, err := l.Claim(ctx, a, "w2", time.Minute); err != nil || f.Status != state.Processing || f.Run != 3 {
		t.Fatalf("re-claim: %+v %v", f, err)
	}
}

// putFileAndRelease: the last write of a run stores the file and frees
// its claim at once, and is fenced like PutFile.
func putFileAndRelease(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	f := claim(t, l, a, "w1")
	f.Status, f.Run, f.Location, f.ArchivedTo = state.Done, 2, "archive/a.csv", "archive/a.csv"
	if err := l.PutFileAndRelease(ctx, "w2", f); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("put and release by non-owner: %v", err)
	}
	if err := l.PutFileAndRelease(ctx, "w1", f); err != nil {
		t.Fatal(err)
	}
	got, err := l.Claim(ctx, a, "w3", time.Minute)
	if err != nil {
		t.Fatalf("after put and release: %v", err)
	}
	if got.Status != state.Done || got.Run != 2 || got.Location != "archive/a.csv" || got.ArchivedTo != "archive/a.csv" {
		t.Fatalf("stored %+v", got)
	}
	if err := l.PutFileAndRelease(ctx, "w1", f); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("put and release after the claim was given back: %v", err)
	}
}

func listing(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	for _, n := range []string{"b.csv", "a.csv", "c.csv"} {
		f := claim(t, l, state.FileID{Source: "s1", Name: n}, "w")
		f.SHA256 = "h-" + n
		if n == "c.csv" {
			f.SHA256 = "h-a.csv"
		}
		put(t, l, "w", f)
	}
	claim(t, l, state.FileID{Source: "s2", Name: "z.csv"}, "w")
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
}

// recordThousand claims a.csv for w1 and records 1000 outcomes of run 1
// (more than one lookup chunk): EXT-i with record 100+i and fingerprint
// fp-i, every tenth row failed. It returns their keys.
func recordThousand(t *testing.T, l state.Ledger) []string {
	t.Helper()
	ctx := t.Context()
	claim(t, l, a, "w1")
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
	if err := l.RecordOutcomes(ctx, a.HeldBy("w1"), outs); err != nil {
		t.Fatal(err)
	}
	return keys
}

// retry records run 2: the failed EXT-10 retried with new content, and a
// new key.
func retry(t *testing.T, l state.Ledger) {
	t.Helper()
	ctx := t.Context()
	up := []state.Outcome{
		{Key: "EXT-10", Row: 3, Run: 2, ExternalID: "EXT-10", Result: state.Created, RecordID: 999, HTTPStatus: 201, Fingerprint: "fp-new"},
		{Key: state.RowKey(1001), Row: 1001, Run: 2, Result: state.Created, RecordID: 1000},
	}
	if err := l.RecordOutcomes(ctx, a.HeldBy("w1"), up); err != nil {
		t.Fatal(err)
	}
}

func outcomesRoundTrip(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	keys := recordThousand(t, l)
	got, err := l.Outcomes(ctx, a, append(keys, "missing", state.RowKey(5)))
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
	if none, err := l.Outcomes(ctx, a, nil); err != nil || len(none) != 0 {
		t.Fatalf("no keys: %v, %v", none, err)
	}
}

func outcomesAreFenced(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	claim(t, l, a, "w1")
	out := []state.Outcome{{Key: "K", Row: 1, Run: 1, Result: state.Created, RecordID: 1}}
	if err := l.RecordOutcomes(ctx, a.HeldBy("w2"), out); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("record by non-owner: %v", err)
	}
	if got, _ := l.Outcomes(ctx, a, []string{"K"}); len(got) != 0 {
		t.Fatalf("a fenced write was stored: %v", got)
	}
}

// outcomesUpsert: a later run retries the failed row and moves a key.
func outcomesUpsert(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	recordThousand(t, l)
	retry(t, l)
	got, _ := l.Outcomes(ctx, a, []string{"EXT-10", state.RowKey(1001)})
	if got["EXT-10"].RecordID != 999 || got["EXT-10"].Row != 3 || got["EXT-10"].Run != 2 || got["EXT-10"].Message != "" || got["EXT-10"].Fingerprint != "fp-new" || got[state.RowKey(1001)].RecordID != 1000 {
		t.Fatalf("after upsert: %+v", got)
	}
}

// outcomesLastInBatchWins: a key twice in one batch, far apart (the
// writers split a batch into statements), ends with its last outcome.
func outcomesLastInBatchWins(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	claim(t, l, a, "w1")
	var outs []state.Outcome
	for i := int64(1); i <= 300; i++ {
		outs = append(outs, state.Outcome{Key: fmt.Sprintf("EXT-%d", i), Row: i, Run: 1, Result: state.Created, RecordID: i})
	}
	outs = append(outs, state.Outcome{Key: "EXT-2", Row: 301, Run: 1, Result: state.Invalid, Message: "duplicate"})
	if err := l.RecordOutcomes(ctx, a.HeldBy("w1"), outs); err != nil {
		t.Fatal(err)
	}
	got, err := l.Outcomes(ctx, a, []string{"EXT-2", "EXT-300"})
	if err != nil {
		t.Fatal(err)
	}
	if o := got["EXT-2"]; o.Row != 301 || o.Result != state.Invalid || o.RecordID != 0 || got["EXT-300"].RecordID != 300 {
		t.Fatalf("after one batch with EXT-2 twice: %+v", got)
	}
}

func outcomesArePerFile(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	keys := recordThousand(t, l)
	if other, _ := l.Outcomes(ctx, state.FileID{Source: "src", Name: "b.csv"}, keys[:5]); len(other) != 0 {
		t.Fatalf("outcomes leaked to another file: %v", other)
	}
	if other, _ := l.Outcomes(ctx, state.FileID{Source: "other", Name: "a.csv"}, keys[:5]); len(other) != 0 {
		t.Fatalf("outcomes leaked to another source: %v", other)
	}
}

func rowCounts(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	recordThousand(t, l)
	retry(t, l)
	if c, err := l.RowCounts(ctx, a, 0); err != nil || c != (state.Counts{Created: 902, Failed: 99}) {
		t.Fatalf("RowCounts(all) = %+v, %v", c, err)
	}
	if c, _ := l.RowCounts(ctx, a, 2); c != (state.Counts{Created: 2}) {
		t.Fatalf("RowCounts(run 2) = %+v", c)
	}
}

// recordedByContent: the first content of EXT-7 and EXT-10's new content
// were recorded; EXT-10's first attempt failed, and the upsert of EXT-10
// did not forget what EXT-7 recorded.
func recordedByContent(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	recordThousand(t, l)
	retry(t, l)
	rec, err := l.Recorded(ctx, a, []string{"EXT-7", "EXT-10", "EXT-10", "EXT-8", "nope"},
		[]string{"fp-7", "fp-10", "fp-new", "fp-other", "fp-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 2 || rec["EXT-7"] != 107 || rec["EXT-10"] != 999 {
		t.Fatalf("Recorded = %v", rec)
	}
	if rec, _ := l.Recorded(ctx, state.FileID{Source: "src", Name: "b.csv"}, []string{"EXT-7"}, []string{"fp-7"}); len(rec) != 0 {
		t.Fatalf("Recorded leaked to another file: %v", rec)
	}
}

// recordedKeepsReplacedContent: after new content for EXT-7 its earlier
// content stays known.
func recordedKeepsReplacedContent(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	recordThousand(t, l)
	if err := l.RecordOutcomes(ctx, a.HeldBy("w1"), []state.Outcome{{Key: "EXT-7", Row: 7, Run: 3,
		ExternalID: "EXT-7", Result: state.Created, RecordID: 555, Fingerprint: "fp-7b"}}); err != nil {
		t.Fatal(err)
	}
	rec, err := l.Recorded(ctx, a, []string{"EXT-7", "EXT-7"}, []string{"fp-7", "fp-7b"})
	if err != nil || len(rec) != 1 || (rec["EXT-7"] != 107 && rec["EXT-7"] != 555) {
		t.Fatalf("Recorded after new content: %v, %v", rec, err)
	}
	for fp, id := range map[string]int64{"fp-7": 107, "fp-7b": 555} {
		if rec, _ := l.Recorded(ctx, a, []string{"EXT-7"}, []string{fp}); rec["EXT-7"] != id {
			t.Fatalf("Recorded(EXT-7, %s) = %v, want %d", fp, rec, id)
		}
	}
}

func concurrentWriters(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		id := state.FileID{Source: "src", Name: fmt.Sprintf("f%d.csv", w)}
		claim(t, l, id, "w")
		wg.Go(func() {
			for b := range 10 {
				var outs []state.Outcome
				for i := range 50 {
					row := int64(b*50 + i + 1)
					outs = append(outs, state.Outcome{Key: state.RowKey(row), Row: row, Run: 1, Result: state.Created, RecordID: row})
				}
				if err := l.RecordOutcomes(ctx, id.HeldBy("w"), outs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range 8 {
		if c, _ := l.RowCounts(ctx, state.FileID{Source: "src", Name: fmt.Sprintf("f%d.csv", w)}, 1); c.Created != 500 {
			t.Fatalf("file %d: %+v", w, c)
		}
	}
}

// splitBig claims big.csv for w1 as run 1 of 10,500 rows, splits it into
// five ranges of 2,500 and releases the file's claim.
func splitBig(t *testing.T, l state.Ledger) []state.Range {
	t.Helper()
	ctx := t.Context()
	f := claim(t, l, big, "w1")
	f.Status, f.Run, f.Rows, f.DispatchMark = state.Processing, 1, 10_500, 0
	put(t, l, "w1", f)
	rs, err := l.SplitFile(ctx, big, "w1", 2500)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, big.HeldBy("w1"), false); err != nil {
		t.Fatal(err)
	}
	return rs
}

func rangeOf(index int) state.RangeID { return state.RangeID{File: big, Index: index} }

func split(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	if rs, err := l.Ranges(ctx, big); err != nil || len(rs) != 0 {
		t.Fatalf("never split: %+v, %v", rs, err)
	}
	rs := splitBig(t, l)
	if len(rs) != 5 || rs[0].First != 1 || rs[0].Last != 2500 || rs[4].First != 10_001 || rs[4].Last != 10_500 ||
		rs[3].Index != 3 || rs[3].Run != 1 || rs[2].Done || rs[2].Owner != "" || rs[3].ID() != rangeOf(3) {
		t.Fatalf("split: %+v", rs)
	}
	// Splitting the same run again keeps what is there.
	claim(t, l, big, "w1")
	if again, err := l.SplitFile(ctx, big, "w1", 100); err != nil || len(again) != 5 {
		t.Fatalf("second split: %d ranges, %v", len(again), err)
	}
	if listed, err := l.Ranges(ctx, big); err != nil || len(listed) != 5 || listed[4].Last != 10_500 {
		t.Fatalf("Ranges = %+v, %v", listed, err)
	}
}

func splitIsFenced(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	f := claim(t, l, big, "w1")
	f.Run, f.Rows = 1, 10
	put(t, l, "w1", f)
	if _, err := l.SplitFile(ctx, big, "w2", 1000); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("split without the file's claim: %v", err)
	}
	if _, err := l.SplitFile(ctx, big, "w1", 0); err == nil {
		t.Fatal("split into empty ranges")
	}
}

// rangeClaims: ranges are claimed without the file's claim, one owner
// each, its own range first; a finished range is not claimed again.
func rangeClaims(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	splitBig(t, l)
	ra, err := l.ClaimRange(ctx, big, 1, "wa", time.Minute)
	if err != nil || ra.Index != 0 || ra.Owner != "wa" {
		t.Fatalf("wa: %+v, %v", ra, err)
	}
	rb, err := l.ClaimRange(ctx, big, 1, "wb", time.Minute)
	if err != nil || rb.Index != 1 {
		t.Fatalf("wb: %+v, %v", rb, err)
	}
	if again, err := l.ClaimRange(ctx, big, 1, "wa", time.Minute); err != nil || again.Index != 0 {
		t.Fatalf("wa again gets its own range first: %+v, %v", again, err)
	}
	if _, err := l.ClaimRange(ctx, big, 2, "wc", time.Minute); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("claim in another run: %v", err)
	}
	if err := l.Release(ctx, rangeOf(0).HeldBy("wa"), true); err != nil {
		t.Fatal(err)
	}
	if next, err := l.ClaimRange(ctx, big, 1, "wa", time.Minute); err != nil || next.Index != 2 {
		t.Fatalf("after finishing range 0: %+v, %v", next, err)
	}
}

func rangeWritesAreFenced(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	splitBig(t, l)
	if _, err := l.ClaimRange(ctx, big, 1, "wa", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMark(ctx, rangeOf(0).HeldBy("wa"), 64); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMark(ctx, rangeOf(0).HeldBy("wb"), 65); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("mark by non-owner: %v", err)
	}
	out := state.Outcome{Key: "E-1", Row: 1, Run: 1, Result: state.Created, RecordID: 7}
	if err := l.RecordOutcomes(ctx, rangeOf(0).HeldBy("wb"), []state.Outcome{out}); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("record by non-owner: %v", err)
	}
	if err := l.RecordOutcomes(ctx, rangeOf(0).HeldBy("wa"), []state.Outcome{out}); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Outcomes(ctx, big, []string{"E-1"}); got["E-1"].RecordID != 7 {
		t.Fatalf("range outcome not stored under the file: %+v", got)
	}
	if err := l.Release(ctx, rangeOf(0).HeldBy("wa"), true); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, rangeOf(0).HeldBy("wa"), true); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("finishing a range not held: %v", err)
	}
	rs, err := l.Ranges(ctx, big)
	if err != nil || !rs[0].Done || rs[0].Owner != "" || rs[0].DispatchMark != 64 {
		t.Fatalf("ranges: %+v, %v", rs, err)
	}
}

// fileAndRangeClaimsAreApart: a file's claim does not fence a write
// under one of its ranges, nor a range's claim a write under the file;
// only a range is marked done.
func fileAndRangeClaimsAreApart(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	splitBig(t, l)
	if _, err := l.ClaimRange(ctx, big, 1, "wa", time.Minute); err != nil {
		t.Fatal(err)
	}
	claim(t, l, big, "wf")
	if err := l.SetMark(ctx, rangeOf(0).HeldBy("wf"), 9); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("range mark under the file's claim: %v", err)
	}
	if err := l.SetMark(ctx, big.HeldBy("wa"), 9); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("file mark under a range's claim: %v", err)
	}
	if err := l.Heartbeat(ctx, big.HeldBy("wa"), time.Minute); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("file heartbeat under a range's claim: %v", err)
	}
	if err := l.Release(ctx, big.HeldBy("wf"), true); err == nil || errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("file released as done: %v", err)
	}
	if _, err := l.Claim(ctx, big, "wx", time.Minute); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("a refused done-release gave the file's claim back: %v", err)
	}
	if c := rangeOf(2).HeldBy("wa"); c.String() != "range 2 of "+big.String() {
		t.Fatalf("claim spelt %q", c)
	}
	if i, ok := big.HeldBy("wf").Range(); ok {
		t.Fatalf("file claim names range %d", i)
	}
}

// rangeTakeover: wb dies holding range 1; after its lease another owner
// takes it over, with its dispatch mark.
func rangeTakeover(t *testing.T, l state.Ledger, clock *Clock) {
	ctx := t.Context()
	splitBig(t, l)
	for _, owner := range []string{"wa", "wb"} {
		if _, err := l.ClaimRange(ctx, big, 1, owner, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetMark(ctx, rangeOf(1).HeldBy("wb"), 2600); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second)
	if err := l.Heartbeat(ctx, rangeOf(1).HeldBy("wb"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second)
	c, err := l.ClaimRange(ctx, big, 1, "wc", time.Minute)
	if err != nil || c.Index != 0 { // wa's lease ran out, wb's did not
		t.Fatalf("wc while wb is alive: %+v, %v", c, err)
	}
	clock.Advance(11 * time.Second) // now wb's did
	d, err := l.ClaimRange(ctx, big, 1, "wd", time.Minute)
	if err != nil || d.Index != 1 || d.DispatchMark != 2600 {
		t.Fatalf("takeover of wb's range: %+v, %v", d, err)
	}
	if err := l.Heartbeat(ctx, rangeOf(1).HeldBy("wb"), time.Minute); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("dead owner's heartbeat: %v", err)
	}
	if err := l.Release(ctx, rangeOf(1).HeldBy("wb"), false); err != nil { // not held: no-op
		t.Fatal(err)
	}
	if rs, _ := l.Ranges(ctx, big); rs[1].Owner != "wd" {
		t.Fatalf("a release by the dead owner freed the range: %+v", rs[1])
	}
	if err := l.Release(ctx, rangeOf(1).HeldBy("wd"), false); err != nil {
		t.Fatal(err)
	}
	rs, err := l.Ranges(ctx, big)
	if err != nil || rs[1].Done || rs[1].Owner != "" || rs[1].DispatchMark != 2600 {
		t.Fatalf("ranges: %+v, %v", rs, err)
	}
}

// rangeClaimRace: concurrent claimants never share a range.
func rangeClaimRace(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	splitBig(t, l)
	if _, err := l.ClaimRange(ctx, big, 1, "holder", time.Hour); err != nil { // range 0
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			owner := fmt.Sprintf("racer-%d", w)
			g, err := l.ClaimRange(ctx, big, 1, owner, time.Hour)
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
		})
	}
	wg.Wait()
	// holder keeps range 0; ranges 1 to 4 are free.
	if len(got) != 4 || got[0] != "" {
		t.Fatalf("racers got %v", got)
	}
}

// newRunResplits: a new run's split replaces the old ranges, and the old
// run's range owners can no longer write.
func newRunResplits(t *testing.T, l state.Ledger, _ *Clock) {
	ctx := t.Context()
	splitBig(t, l)
	if _, err := l.ClaimRange(ctx, big, 1, "wc", time.Hour); err != nil {
		t.Fatal(err)
	}
	f := claim(t, l, big, "w1")
	f.Run, f.Rows, f.DispatchMark = 2, 300, state.MarkAll
	put(t, l, "w1", f)
	rs, err := l.SplitFile(ctx, big, "w1", 100)
	if err != nil || len(rs) != 3 || rs[0].Run != 2 || rs[2].Last != 300 || rs[1].DispatchMark != state.MarkAll {
		t.Fatalf("new run's split: %+v, %v", rs, err)
	}
	if err := l.SetMark(ctx, rangeOf(0).HeldBy("wc"), 9); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("old run's range owner still writes: %v", err)
	}
	if listed, _ := l.Ranges(ctx, big); len(listed) != 3 {
		t.Fatalf("after re-split: %+v", listed)
	}
}

// BenchmarkRecordOutcomes records batches of 256 rows of one file into l
// (reported as rows/s); each database's benchmark calls it.
func BenchmarkRecordOutcomes(b *testing.B, l state.Ledger) {
	// Not b.Context(): with a cancellable context database/sql and the
	// SQLite driver watch every statement, which would be measured too.
	ctx := context.Background()
	if _, err := l.Claim(ctx, a, "w", time.Hour); err != nil {
		b.Fatal(err)
	}
	const batch = 256
	outs := make([]state.Outcome, batch)
	row := int64(0)
	for b.Loop() {
		for i := range outs {
			row++
			outs[i] = state.Outcome{Key: fmt.Sprintf("EXT-%d", row), Row: row, Run: 1, ExternalID: fmt.Sprintf("EXT-%d", row),
				DocumentType: "InvoiceHeader", DocumentID: "1", Action: "create", Result: state.Created, RecordID: row, HTTPStatus: 201}
		}
		if err := l.RecordOutcomes(ctx, a.HeldBy("w"), outs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(row)/b.Elapsed().Seconds(), "rows/s")
}
