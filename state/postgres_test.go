package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// TestMain shares one PostgreSQL cluster between the tests of the package
// (each test still gets a fresh database).
func TestMain(m *testing.M) { testservers.Main(m) }

func openPG(t testing.TB, dsn string, now func() time.Time) *state.Postgres {
	t.Helper()
	l, err := state.OpenPostgres(context.Background(), dsn, state.PostgresOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestPostgresConformance(t *testing.T) {
	pg := testservers.StartPostgres(t)
	statetest.Run(t, func(t *testing.T, now func() time.Time) state.Ledger {
		return openPG(t, pg.NewDatabase(t), now)
	})
}

// TestPostgresOpenByURL: the configuration's postgres:// URL selects the
// ledger, and replicas starting together migrate the schema once.
func TestPostgresOpenByURL(t *testing.T) {
	ctx := context.Background()
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	var wg sync.WaitGroup
	ledgers := make([]state.Ledger, 4)
	errs := make([]error, 4)
	for i := range ledgers {
		wg.Go(func() { ledgers[i], errs[i] = state.Open(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer ledgers[i].Close()
	}
	if _, err := ledgers[0].Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := ledgers[3].Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "w2", time.Minute); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("second replica: got %v, want ErrClaimed", err)
	}
	if _, err := state.Open(ctx, "postgres://nobody:s3cret@127.0.0.1:1/x?connect_timeout=2"); err == nil {
		t.Fatal("want error")
	} else if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// TestPostgresClaimRace: replicas (separate pools, as separate processes
// have) racing for the same files: every file ends with exactly one owner.
func TestPostgresClaimRace(t *testing.T) {
	ctx := context.Background()
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	const workers, files = 4, 50
	won := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		l := openPG(t, dsn, nil)
		wg.Go(func() {
			owner := fmt.Sprintf("w%d", w)
			for i := range files {
				name := fmt.Sprintf("f%03d.csv", (i+w*files/workers)%files) // start at different files
				_, err := l.Claim(ctx, state.FileID{Source: "src", Name: name}, owner, time.Minute)
				switch {
				case err == nil:
					won[w] = append(won[w], name)
				case !errors.Is(err, state.ErrClaimed):
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for w, names := range won {
		for _, n := range names {
			if o, dup := seen[n]; dup {
				t.Fatalf("%s claimed by w%d and %s", n, w, o)
			}
			seen[n] = fmt.Sprintf("w%d", w)
		}
	}
	if len(seen) != files {
		t.Fatalf("%d of %d files claimed", len(seen), files)
	}
	fs, err := openPG(t, dsn, nil).Files(ctx, "src")
	if err != nil || len(fs) != files {
		t.Fatalf("Files = %d, %v", len(fs), err)
	}
	for _, f := range fs {
		if f.Owner != seen[f.Name] {
			t.Fatalf("%s: ledger says owner %q, winner was %q", f.Name, f.Owner, seen[f.Name])
		}
	}
}

// TestPostgresTakeover, on the database's own clock: a worker that stops
// heartbeating loses the file after its lease; the next owner finds the
// dispatch mark and outcomes to resume from, and the old owner can write
// nothing more.
func TestPostgresTakeover(t *testing.T) {
	ctx := context.Background()
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	dead, next := openPG(t, dsn, nil), openPG(t, dsn, nil)
	const lease = 500 * time.Millisecond
	f, err := dead.Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "dead", lease)
	if err != nil {
		t.Fatal(err)
	}
	f.Status, f.Run, f.Rows = state.Processing, 1, 10
	if err := dead.PutFile(ctx, "dead", f); err != nil {
		t.Fatal(err)
	}
	if err := dead.SetMark(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("dead"), 6); err != nil {
		t.Fatal(err)
	}
	var outs []state.Outcome
	for r := int64(1); r <= 4; r++ {
		outs = append(outs, state.Outcome{Key: state.RowKey(r), Row: r, Run: 1, Result: state.Created, RecordID: 100 + r})
	}
	// A key repeated in one batch: the last outcome wins.
	outs = append(outs, state.Outcome{Key: state.RowKey(4), Row: 4, Run: 1, Result: state.Created, RecordID: 204})
	if err := dead.RecordOutcomes(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("dead"), outs); err != nil {
		t.Fatal(err)
	}
	if _, err := next.Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "next", time.Minute); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("claim under a live lease: %v", err)
	}
	time.Sleep(lease + 100*time.Millisecond)
	got, err := next.Claim(ctx, state.FileID{Source: "src", Name: "a.csv"}, "next", time.Minute)
	if err != nil {
		t.Fatalf("takeover after the lease: %v", err)
	}
	if got.Status != state.Processing || got.Run != 1 || got.DispatchMark != 6 || got.Owner != "next" {
		t.Fatalf("resumable state lost: %+v", got)
	}
	if c, _ := next.RowCounts(ctx, state.FileID{Source: "src", Name: "a.csv"}, 1); c.Created != 4 {
		t.Fatalf("outcomes: %+v", c)
	}
	if o, _ := next.Outcomes(ctx, state.FileID{Source: "src", Name: "a.csv"}, []string{state.RowKey(4)}); o[state.RowKey(4)].RecordID != 204 {
		t.Fatalf("last outcome of a key did not win: %+v", o)
	}
	late := []state.Outcome{{Key: state.RowKey(5), Row: 5, Run: 1, Result: state.Created, RecordID: 105}}
	if err := dead.RecordOutcomes(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("dead"), late); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("old owner's late batch: %v", err)
	}
	if err := dead.Heartbeat(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("dead"), lease); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("old owner's heartbeat: %v", err)
	}
	if err := dead.SetMark(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("dead"), 9); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("old owner's mark: %v", err)
	}
	if err := next.Heartbeat(ctx, state.FileID{Source: "src", Name: "a.csv"}.HeldBy("next"), time.Minute); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPostgresRecordOutcomes: one statement per batch of 256 rows.
func BenchmarkPostgresRecordOutcomes(b *testing.B) {
	statetest.BenchmarkRecordOutcomes(b, openPG(b, testservers.StartPostgres(b).NewDatabase(b), nil))
}
