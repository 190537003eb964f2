// Package storetest is the conformance suite every filestore.Store must
// pass. Each store's own test runs it against the real server:
//
//	storetest.Run(t, func(t *testing.T) filestore.Store { … })
//
// and, for network stores, RunConnectionDrop with a store that dials
// through a Faults dialer, which cuts a connection in the middle of a
// transfer.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/filestore"
)

// Option adjusts the suite to a store's documented deviations.
type Option func(*config)

type config struct {
	virtualFolders bool
	largeSize      int64
}

// VirtualFolders is for stores without real folders (S3): listing a folder
// nobody wrote to yields an empty list instead of ErrNotExist, and a
// missing parent folder does not stop Write or Move.
func VirtualFolders() Option { return func(c *config) { c.virtualFolders = true } }

// LargeFileSize sets the size of the streaming test (default 200 MB).
func LargeFileSize(n int64) Option { return func(c *config) { c.largeSize = n } }

// LargeSize is the size of the file the streaming test and the benchmarks
// move: 200 MB.
const LargeSize = 200 << 20

// MemoryBudget is how far the heap in use may grow over its baseline while
// a large file streams through a store.
const MemoryBudget = 32 << 20

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Run runs the conformance suite. newStore must return a store rooted at an
// empty, writable folder; it is called once and the store is closed at the
// end.
func Run(t *testing.T, newStore func(t *testing.T) filestore.Store, opts ...Option) {
	cfg := config{largeSize: LargeSize}
	for _, o := range opts {
		o(&cfg)
	}
	s := newStore(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, s, cfg) })
	t.Run("BadNames", func(t *testing.T) { testBadNames(t, s) })
	t.Run("ListStat", func(t *testing.T) { testListStat(t, s) })
	t.Run("OpenOffset", func(t *testing.T) { testOpenOffset(t, s) })
	t.Run("UnicodeAndSpaces", func(t *testing.T) { testUnicode(t, s) })
	t.Run("Move", func(t *testing.T) { testMove(t, s) })
	t.Run("MoveCollision", func(t *testing.T) { testCollision(t, s) })
	t.Run("FailedWriteLeavesNothing", func(t *testing.T) { testFailedWrite(t, s) })
	t.Run("AtomicWrite", func(t *testing.T) { testAtomicWrite(t, s) })
	t.Run("LargeFileFlatMemory", func(t *testing.T) {
		if testing.Short() {
			t.Skip("streams 200 MB; skipped with -short")
		}
		testLarge(t, s, cfg.largeSize)
	})
}

// Put writes data under name or fails the test.
func Put(t testing.TB, s filestore.Store, name string, data []byte) {
	t.Helper()
	if err := s.Write(context.Background(), name, bytes.NewReader(data)); err != nil {
		t.Fatalf("Write %s: %v", name, err)
	}
}

// Get reads the whole file or fails the test.
func Get(t testing.TB, s filestore.Store, name string) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), name, 0)
	if err != nil {
		t.Fatalf("Open %s: %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func mustMkdir(t *testing.T, s filestore.Store, dir string) {
	t.Helper()
	if err := s.MkdirAll(ctxT(t), dir); err != nil {
		t.Fatalf("MkdirAll %s: %v", dir, err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

func names(fis []filestore.FileInfo) []string {
	out := make([]string, len(fis))
	for i, fi := range fis {
		out[i] = fi.Name
	}
	return out
}

func testNotFound(t *testing.T, s filestore.Store, cfg config) {
	ctx := ctxT(t)
	mustMkdir(t, s, "nf")
	_, err := s.Stat(ctx, "nf/missing.csv")
	wantErr(t, "Stat missing file", err, filestore.ErrNotExist)
	_, err = s.Stat(ctx, "nf/nodir/missing.csv")
	wantErr(t, "Stat in missing folder", err, filestore.ErrNotExist)
	rc, err := s.Open(ctx, "nf/missing.csv", 0)
	if rc != nil {
		rc.Close()
	}
	wantErr(t, "Open missing file", err, filestore.ErrNotExist)
	err = s.Move(ctx, "nf/missing.csv", "nf/other.csv")
	wantErr(t, "Move missing file", err, filestore.ErrNotExist)
	fis, err := s.List(ctx, "nf/nodir")
	if cfg.virtualFolders {
		if err != nil || len(fis) != 0 {
			t.Errorf("List missing folder (virtual folders): got %v, %v; want empty, nil", names(fis), err)
		}
	} else {
		wantErr(t, "List missing folder", err, filestore.ErrNotExist)
	}
	// Nothing above may have created anything.
	fis, err = s.List(ctx, "nf")
	if err != nil || len(fis) != 0 {
		t.Errorf("List nf: got %v, %v; want empty", names(fis), err)
	}
}

func testBadNames(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	for _, bad := range []string{"../escape.csv", "/etc/passwd", "a/../../escape.csv", "..", "a\\..\\b.csv"} {
		_, err := s.List(ctx, bad)
		wantErr(t, "List "+bad, err, filestore.ErrBadName)
		_, err = s.Stat(ctx, bad)
		wantErr(t, "Stat "+bad, err, filestore.ErrBadName)
		rc, err := s.Open(ctx, bad, 0)
		if rc != nil {
			rc.Close()
		}
		wantErr(t, "Open "+bad, err, filestore.ErrBadName)
		err = s.Write(ctx, bad, bytes.NewReader([]byte("x")))
		wantErr(t, "Write "+bad, err, filestore.ErrBadName)
		err = s.Move(ctx, bad, "ok.csv")
		wantErr(t, "Move from "+bad, err, filestore.ErrBadName)
		err = s.Move(ctx, "ok.csv", bad)
		wantErr(t, "Move to "+bad, err, filestore.ErrBadName)
		err = s.MkdirAll(ctx, bad)
		wantErr(t, "MkdirAll "+bad, err, filestore.ErrBadName)
	}
	if err := filestore.CheckListedName("../x"); !errors.Is(err, filestore.ErrBadName) {
		t.Errorf("CheckListedName(../x) = %v", err)
	}
}

func testListStat(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	mustMkdir(t, s, "ls/sub")
	before := time.Now()
	Put(t, s, "ls/b.csv", []byte("bbb"))
	Put(t, s, "ls/a.csv", []byte("a,b,c\n1,2,3\n"))
	Put(t, s, "ls/empty.csv", nil)
	Put(t, s, "ls/sub/deeper.csv", []byte("x"))
	fis, err := s.List(ctx, "ls")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := names(fis), []string{"a.csv", "b.csv", "empty.csv"}; !slices.Equal(got, want) {
		t.Fatalf("List names = %q, want %q (sorted, files only, no temp names)", got, want)
	}
	sizes := map[string]int64{"a.csv": 12, "b.csv": 3, "empty.csv": 0}
	for _, fi := range fis {
		if fi.Size != sizes[fi.Name] {
			t.Errorf("List %s: size %d, want %d", fi.Name, fi.Size, sizes[fi.Name])
		}
		// Stores report mtimes at their own precision (FTP listings: the
		// minute) and clock; a generous window still catches zero values
		// and time-zone slips.
		if d := fi.ModTime.Sub(before); d < -3*time.Minute || d > 3*time.Minute {
			t.Errorf("List %s: mtime %v, written at %v", fi.Name, fi.ModTime, before)
		}
		st, err := s.Stat(ctx, "ls/"+fi.Name)
		if err != nil {
			t.Errorf("Stat %s: %v", fi.Name, err)
			continue
		}
		if st.Name != fi.Name || st.Size != fi.Size {
			t.Errorf("Stat %s = %+v, List said %+v", fi.Name, st, fi)
		}
		if st.ETag != fi.ETag {
			t.Errorf("Stat %s: ETag %q, List said %q", fi.Name, st.ETag, fi.ETag)
		}
	}
	// Write replaces, and the listing follows.
	Put(t, s, "ls/b.csv", []byte("bbbbbb"))
	if got := Get(t, s, "ls/b.csv"); string(got) != "bbbbbb" {
		t.Errorf("after overwrite: %q", got)
	}
	st, err := s.Stat(ctx, "ls/b.csv")
	if err != nil || st.Size != 6 {
		t.Errorf("Stat after overwrite: %+v, %v", st, err)
	}
	// Root listing: only the folder "ls" etc., no files.
	if _, err := s.List(ctx, ""); err != nil {
		t.Errorf("List root: %v", err)
	}
}

func testOpenOffset(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	mustMkdir(t, s, "off")
	data := make([]byte, 300_000)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	Put(t, s, "off/data.bin", data)
	for _, off := range []int64{0, 1, 65_536, 299_999, 300_000} {
		rc, err := s.Open(ctx, "off/data.bin", off)
		if err != nil {
			t.Errorf("Open at %d: %v", off, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("read at %d: %v", off, err)
		} else if !bytes.Equal(got, data[off:]) {
			t.Errorf("read at %d: %d bytes, differ from the file's tail (%d bytes)", off, len(got), len(data)-int(off))
		}
	}
	// Closing early must leave the store usable.
	rc, err := s.Open(ctx, "off/data.bin", 0)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	rc.Close()
	if got := Get(t, s, "off/data.bin"); !bytes.Equal(got, data) {
		t.Errorf("read after early close differs")
	}
}

func testUnicode(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	dir, arch := "dossier été 2024", "archivé ファイル"
	name := "résumé ファイル 1 (copy).csv"
	mustMkdir(t, s, dir)
	mustMkdir(t, s, arch)
	Put(t, s, dir+"/"+name, []byte("ü,ß\n"))
	fis, err := s.List(ctx, dir)
	if err != nil || len(fis) != 1 || fis[0].Name != name {
		t.Fatalf("List %q = %q, %v; want [%q]", dir, names(fis), err, name)
	}
	if st, err := s.Stat(ctx, dir+"/"+name); err != nil || st.Size != 6 {
		t.Errorf("Stat: %+v, %v", st, err)
	}
	if err := s.Move(ctx, dir+"/"+name, arch+"/"+name); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if got := Get(t, s, arch+"/"+name); string(got) != "ü,ß\n" {
		t.Errorf("content after move: %q", got)
	}
	if fis, _ := s.List(ctx, dir); len(fis) != 0 {
		t.Errorf("source folder still lists %q", names(fis))
	}
}

func testMove(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	mustMkdir(t, s, "mv/inbox")
	mustMkdir(t, s, "mv/archive")
	Put(t, s, "mv/inbox/f.csv", []byte("payload"))
	if err := s.Move(ctx, "mv/inbox/f.csv", "mv/archive/f.csv"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	_, err := s.Stat(ctx, "mv/inbox/f.csv")
	wantErr(t, "Stat moved-away file", err, filestore.ErrNotExist)
	if got := Get(t, s, "mv/archive/f.csv"); string(got) != "payload" {
		t.Errorf("moved content %q", got)
	}
	// Rename within a folder.
	if err := s.Move(ctx, "mv/archive/f.csv", "mv/archive/g.csv"); err != nil {
		t.Fatalf("Move in place: %v", err)
	}
	if fis, err := s.List(ctx, "mv/archive"); err != nil || !slices.Equal(names(fis), []string{"g.csv"}) {
		t.Errorf("List after rename: %q, %v", names(fis), err)
	}
}

func testCollision(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	mustMkdir(t, s, "col/in")
	mustMkdir(t, s, "col/out")
	Put(t, s, "col/in/f.csv", []byte("new"))
	Put(t, s, "col/out/f.csv", []byte("old"))
	err := s.Move(ctx, "col/in/f.csv", "col/out/f.csv")
	wantErr(t, "Move onto an existing file", err, filestore.ErrExist)
	if got := Get(t, s, "col/in/f.csv"); string(got) != "new" {
		t.Errorf("source after refused move: %q", got)
	}
	if got := Get(t, s, "col/out/f.csv"); string(got) != "old" {
		t.Errorf("destination after refused move: %q", got)
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct{ n int }

var errSource = errors.New("storetest: source failed")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errSource
	}
	k := min(len(p), f.n)
	clear(p[:k])
	f.n -= k
	return k, nil
}

func testFailedWrite(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	mustMkdir(t, s, "fw")
	err := s.Write(ctx, "fw/new.csv", &failingReader{n: 200_000})
	if err == nil {
		t.Fatal("Write from a failing reader succeeded")
	}
	_, err = s.Stat(ctx, "fw/new.csv")
	wantErr(t, "Stat after failed write", err, filestore.ErrNotExist)
	Put(t, s, "fw/old.csv", []byte("old"))
	if err := s.Write(ctx, "fw/old.csv", &failingReader{n: 200_000}); err == nil {
		t.Fatal("Write from a failing reader succeeded")
	}
	if got := Get(t, s, "fw/old.csv"); string(got) != "old" {
		t.Errorf("failed overwrite changed the file: %d bytes", len(got))
	}
	if fis, err := s.List(ctx, "fw"); err != nil || !slices.Equal(names(fis), []string{"old.csv"}) {
		t.Errorf("List after failed writes: %q, %v", names(fis), err)
	}
}

// slowReader yields size bytes of b in chunks, pausing between them, so a
// concurrent reader has time to look at a half-written file.
type slowReader struct {
	b     byte
	left  int
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	k := min(len(p), r.left, 64<<10)
	for i := range p[:k] {
		p[i] = r.b
	}
	r.left -= k
	return k, nil
}

func testAtomicWrite(t *testing.T, s filestore.Store) {
	ctx := ctxT(t)
	const size = 2 << 20
	mustMkdir(t, s, "aw")
	Put(t, s, "aw/f.csv", bytes.Repeat([]byte{'A'}, size))
	var done atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !done.Load() {
			rc, err := s.Open(ctx, "aw/f.csv", 0)
			if err != nil {
				// Between the rename's unlink and link no store may show
				// a gap; a missing file is as wrong as a partial one.
				t.Errorf("Open during write: %v", err)
				bad.Add(1)
				return
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			reads.Add(1)
			if err != nil {
				t.Errorf("read during write: %v", err)
				bad.Add(1)
				return
			}
			if len(b) != size || (!allBytes(b, 'A') && !allBytes(b, 'B') && !allBytes(b, 'C')) {
				t.Errorf("reader saw %d bytes, not one whole version", len(b))
				bad.Add(1)
				return
			}
		}
	})
	for _, v := range []byte{'B', 'C', 'B'} {
		if err := s.Write(ctx, "aw/f.csv", &slowReader{b: v, left: size, pause: 2 * time.Millisecond}); err != nil {
			t.Errorf("Write %c: %v", v, err)
		}
		if bad.Load() > 0 {
			break
		}
	}
	done.Store(true)
	wg.Wait()
	if got := Get(t, s, "aw/f.csv"); len(got) != size || !allBytes(got, 'B') {
		t.Errorf("final content is not the last version")
	}
	t.Logf("%d complete reads during 3 writes", reads.Load())
}

func allBytes(b []byte, c byte) bool {
	for _, x := range b {
		if x != c {
			return false
		}
	}
	return true
}

// Generator yields size pseudo-random bytes from seed without holding
// them, and hashes what it yields. It is how the large-file tests and
// benchmarks make their data.
type Generator struct {
	rng  *rand.ChaCha8
	left int64
	hash interface {
		io.Writer
		Sum([]byte) []byte
	}
}

// NewGenerator returns a reader of size bytes derived from seed.
func NewGenerator(seed byte, size int64) *Generator {
	return &Generator{rng: rand.NewChaCha8([32]byte{seed}), left: size, hash: sha256.New()}
}

func (g *Generator) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, _ := g.rng.Read(p)
	g.hash.Write(p[:n])
	g.left -= int64(n)
	return n, nil
}

// Sum is the SHA-256 of the bytes read so far.
func (g *Generator) Sum() []byte { return g.hash.Sum(nil) }

// heapWatch samples HeapInuse while data flows and remembers the peak.
type heapWatch struct {
	base, peak uint64
	since      int64
}

func newHeapWatch() *heapWatch {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return &heapWatch{base: m.HeapInuse, peak: m.HeapInuse}
}

// Write samples the heap every 8 MiB that pass through it.
func (h *heapWatch) Write(p []byte) (int, error) {
	h.since += int64(len(p))
	if h.since >= 8<<20 {
		h.since = 0
		h.sample()
	}
	return len(p), nil
}

func (h *heapWatch) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapInuse)
}

func (h *heapWatch) growth() int64 { return int64(h.peak) - int64(h.base) }

func testLarge(t *testing.T, s filestore.Store, size int64) {
	ctx := ctxT(t)
	mustMkdir(t, s, "large")
	gen := NewGenerator(7, size)
	hw := newHeapWatch()
	start := time.Now()
	if err := s.Write(ctx, "large/big.bin", io.TeeReader(gen, hw)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	hw.sample()
	t.Logf("write %d MB: %v, heap growth %.1f MiB", size>>20, time.Since(start).Round(time.Millisecond), float64(hw.growth())/(1<<20))
	if hw.growth() > MemoryBudget {
		t.Errorf("Write: heap grew by %d MiB, budget %d MiB", hw.growth()>>20, MemoryBudget>>20)
	}
	if st, err := s.Stat(ctx, "large/big.bin"); err != nil || st.Size != size {
		t.Fatalf("Stat: %+v, %v", st, err)
	}

	hw = newHeapWatch()
	start = time.Now()
	rc, err := s.Open(ctx, "large/big.bin", 0)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, hw), rc)
	rc.Close()
	hw.sample()
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	t.Logf("read %d MB: %v, heap growth %.1f MiB", size>>20, time.Since(start).Round(time.Millisecond), float64(hw.growth())/(1<<20))
	if n != size || !bytes.Equal(h.Sum(nil), gen.Sum()) {
		t.Fatalf("read %d bytes, SHA-256 %x; wrote %d bytes, SHA-256 %x", n, h.Sum(nil), size, gen.Sum())
	}
	if hw.growth() > MemoryBudget {
		t.Errorf("Open/read: heap grew by %d MiB, budget %d MiB", hw.growth()>>20, MemoryBudget>>20)
	}
}

// describe shortens byte counts in messages.
func describe(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
