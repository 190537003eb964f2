package importer_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/state"
)

// callStore counts a store's calls by kind and path.
type callStore struct {
	filestore.Store
	mu    sync.Mutex
	calls map[string]int // "open inbox/a.csv" → n
	kinds map[string]int // "open" → n
}

func (s *callStore) count(kind, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[kind+" "+name]++
	s.kinds[kind]++
}

func (s *callStore) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	s.count("list", dir)
	return s.Store.List(ctx, dir)
}

func (s *callStore) Stat(ctx context.Context, name string) (filestore.FileInfo, error) {
	s.count("stat", name)
	return s.Store.Stat(ctx, name)
}

func (s *callStore) Open(ctx context.Context, name string, off int64) (io.ReadCloser, error) {
	s.count("open", name)
	return s.Store.Open(ctx, name, off)
}

func (s *callStore) Write(ctx context.Context, name string, r io.Reader) error {
	s.count("write", name)
	return s.Store.Write(ctx, name, r)
}

func (s *callStore) Move(ctx context.Context, src, dst string) error {
	s.count("move", src)
	return s.Store.Move(ctx, src, dst)
}

// writeLedger counts the ledger's writes: each is one commit.
type writeLedger struct {
	state.Ledger
	mu     sync.Mutex
	writes int
}

func (l *writeLedger) w() { l.mu.Lock(); l.writes++; l.mu.Unlock() }

func (l *writeLedger) Claim(ctx context.Context, id state.FileID, owner string, lease time.Duration) (state.File, error) {
	l.w()
	return l.Ledger.Claim(ctx, id, owner, lease)
}
func (l *writeLedger) Release(ctx context.Context, c state.Claim, done bool) error {
	l.w()
	return l.Ledger.Release(ctx, c, done)
}
func (l *writeLedger) SetMark(ctx context.Context, c state.Claim, mark int64) error {
	l.w()
	return l.Ledger.SetMark(ctx, c, mark)
}
func (l *writeLedger) RecordOutcomes(ctx context.Context, c state.Claim, outs []state.Outcome) error {
	l.w()
	return l.Ledger.RecordOutcomes(ctx, c, outs)
}
func (l *writeLedger) PutFile(ctx context.Context, owner string, f state.File) error {
	l.w()
	return l.Ledger.PutFile(ctx, owner, f)
}
func (l *writeLedger) PutFileAndRelease(ctx context.Context, owner string, f state.File) error {
	l.w()
	return l.Ledger.PutFileAndRelease(ctx, owner, f)
}

// TestSmallFileCosts: a pass over small files costs per file one read of
// the file (none of its absent control files is looked for, the second
// and third passes read it from memory), seven store calls and six ledger
// commits; the inbox is listed twice per pass (discovery, late markers),
// not per file. A marker the listing saw is read once and moved along.
func TestSmallFileCosts(t *testing.T) {
	e := newEnv(t)
	const files = 5
	for i := range files {
		content, _ := csvRows(fmt.Sprintf("S%d", i), 1, 4)
		e.drop(fmt.Sprintf("doc-%d.csv", i), content)
	}
	e.drop("doc-0.csv.done", "rows=4\n")
	store := &callStore{Store: e.store, calls: map[string]int{}, kinds: map[string]int{}}
	led := &writeLedger{Ledger: e.ledger}
	e.src.Store, e.ledger = store, led
	sum := e.run()
	if sum.Archived != files || sum.Rows.Created != 4*files || !sum.Clean() {
		t.Fatalf("summary %+v", sum)
	}
	for i := range files {
		if n := store.calls[fmt.Sprintf("open inbox/doc-%d.csv", i)]; n != 1 {
			t.Errorf("doc-%d.csv opened %d times, want 1", i, n)
		}
	}
	if n := store.calls["open inbox/doc-0.csv.done"]; n != 1 {
		t.Errorf("doc-0.csv.done opened %d times, want 1", n)
	}
	if store.kinds["open"] != files+1 {
		t.Errorf("%d opens, want %d (one per file and its marker): %v", store.kinds["open"], files+1, store.calls)
	}
	if !e.exists("archive/doc-0.csv.done") || e.exists("inbox/doc-0.csv.done") {
		t.Errorf("marker not moved along: inbox %v archive %v", e.ls("inbox"), e.ls("archive"))
	}
	// The marker's move asks where it may go (one stat) and moves.
	perFile := store.kinds["stat"] + store.kinds["open"] + store.kinds["write"] + store.kinds["move"] - 1 - 2
	if perFile != 7*files {
		t.Errorf("%d store calls for %d files, want 7 a file: %v", perFile, files, store.kinds)
	}
	if store.kinds["list"] != 2 {
		t.Errorf("inbox listed %d times, want 2 a pass", store.kinds["list"])
	}
	if led.writes != 6*files {
		t.Errorf("%d ledger writes for %d files, want 6 a file", led.writes, files)
	}
}
