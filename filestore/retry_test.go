package filestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/filestore"
)

var errFlaky = errors.New("connection reset")

// flaky is an in-memory store whose operations fail on demand.
type flaky struct {
	mu    sync.Mutex
	files map[string][]byte
	fails map[string]int // op → failures still to inject
	calls map[string]int
	// cutAt: Open's readers end with a clean EOF after this many bytes
	// (0: never), like an FTP data connection cut short.
	cutAt int
	// moveLosesReply: Move does the move, then reports a failure.
	moveLosesReply bool
}

func newFlaky() *flaky {
	return &flaky{files: map[string][]byte{}, fails: map[string]int{}, calls: map[string]int{}}
}

func (f *flaky) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.fails[op] > 0 {
		f.fails[op]--
		return errFlaky
	}
	return nil
}

func (f *flaky) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	if err := f.fail("list"); err != nil {
		return nil, err
	}
	return nil, nil
}

func (f *flaky) Stat(ctx context.Context, name string) (filestore.FileInfo, error) {
	if err := f.fail("stat"); err != nil {
		return filestore.FileInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[name]
	if !ok {
		return filestore.FileInfo{}, fmt.Errorf("stat %s: %w", name, filestore.ErrNotExist)
	}
	return filestore.FileInfo{Name: name, Size: int64(len(b))}, nil
}

func (f *flaky) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	if err := f.fail("open"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[name]
	if !ok {
		return nil, filestore.ErrNotExist
	}
	tail := b[offset:]
	if f.cutAt > 0 && len(tail) > f.cutAt {
		tail = tail[:f.cutAt]
	}
	return io.NopCloser(bytes.NewReader(tail)), nil
}

func (f *flaky) Write(ctx context.Context, name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := f.fail("write"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[name] = b
	return nil
}

func (f *flaky) Move(ctx context.Context, src, dst string) error {
	if err := f.fail("move"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[src]
	if !ok {
		return filestore.ErrNotExist
	}
	if _, ok := f.files[dst]; ok {
		return filestore.ErrExist
	}
	f.files[dst] = b
	delete(f.files, src)
	if f.moveLosesReply {
		f.moveLosesReply = false
		return errFlaky
	}
	return nil
}

func (f *flaky) MkdirAll(ctx context.Context, dir string) error { return f.fail("mkdir") }
func (f *flaky) Close() error                                   { return nil }

var fast = filestore.RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}

func TestRetryTransient(t *testing.T) {
	f := newFlaky()
	f.fails["list"] = 2
	s := filestore.WithRetry(f, fast, nil)
	if _, err := s.List(context.Background(), ""); err != nil {
		t.Fatalf("List after 2 transient failures: %v", err)
	}
	if f.calls["list"] != 3 {
		t.Errorf("calls = %d, want 3", f.calls["list"])
	}
	f.fails["list"] = 3
	if _, err := s.List(context.Background(), ""); !errors.Is(err, errFlaky) {
		t.Errorf("List after exhausting attempts: %v", err)
	}
}

func TestRetryNotForPermanent(t *testing.T) {
	f := newFlaky()
	s := filestore.WithRetry(f, fast, nil)
	if _, err := s.Stat(context.Background(), "missing"); !errors.Is(err, filestore.ErrNotExist) {
		t.Fatalf("Stat: %v", err)
	}
	if f.calls["stat"] != 1 {
		t.Errorf("ErrNotExist was retried: %d calls", f.calls["stat"])
	}
	if filestore.IsPermanent(errFlaky) || !filestore.IsPermanent(filestore.Permanent(errFlaky)) {
		t.Error("IsPermanent misjudges")
	}
	if filestore.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	f := newFlaky()
	f.fails["mkdir"] = 100
	s := filestore.WithRetry(f, filestore.RetryPolicy{Attempts: 100, Initial: time.Hour}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := s.MkdirAll(ctx, "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("MkdirAll: %v, want the context's error", err)
	}
}

func TestRetryWriteOnlyWhenSeekable(t *testing.T) {
	f := newFlaky()
	s := filestore.WithRetry(f, fast, nil)
	f.fails["write"] = 1
	if err := s.Write(context.Background(), "a", strings.NewReader("hello")); err != nil {
		t.Fatalf("seekable Write: %v", err)
	}
	if string(f.files["a"]) != "hello" {
		t.Errorf("rewound body stored as %q", f.files["a"])
	}
	f.fails["write"] = 1
	if err := s.Write(context.Background(), "b", io.MultiReader(strings.NewReader("x"))); !errors.Is(err, errFlaky) {
		t.Errorf("non-seekable Write was retried or succeeded: %v", err)
	}
}

func TestRetryMoveWithLostReply(t *testing.T) {
	f := newFlaky()
	f.files["in/a"] = []byte("a")
	f.moveLosesReply = true
	s := filestore.WithRetry(f, fast, nil)
	if err := s.Move(context.Background(), "in/a", "out/a"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	// A genuine collision is still reported.
	f.files["in/b"], f.files["out/b"] = []byte("b"), []byte("old")
	if err := s.Move(context.Background(), "in/b", "out/b"); !errors.Is(err, filestore.ErrExist) {
		t.Errorf("collision: %v", err)
	}
}

func TestResumingReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10_000)
	f := newFlaky()
	f.files["f"] = data
	f.cutAt = 30_000 // every stream ends, silently, after 30 kB
	s := filestore.WithRetry(f, fast, nil)
	rc, err := s.Open(context.Background(), "f", 5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[5:]) {
		t.Fatalf("resumed read: %d bytes, %v", len(got), err)
	}
}

func TestResumingReaderNeverShortReads(t *testing.T) {
	f := newFlaky()
	f.files["f"] = make([]byte, 100_000)
	f.cutAt = 10_000
	s := filestore.WithRetry(f, fast, nil)
	rc, err := s.Open(context.Background(), "f", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.fails["open"] = 100 // the file can no longer be reopened
	f.mu.Unlock()
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err == nil {
		t.Fatalf("short read of %d bytes ended without error", n)
	}
	if n != 10_000 {
		t.Errorf("read %d bytes before the error", n)
	}
}

func TestResumingReaderDetectsGrowth(t *testing.T) {
	f := newFlaky()
	f.files["f"] = make([]byte, 1000)
	f.cutAt = 500
	s := filestore.WithRetry(f, fast, nil)
	rc, err := s.Open(context.Background(), "f", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	// The stream breaks; by the time it is reopened, the file was
	// replaced by a longer one. Splicing the two would be corruption.
	f.mu.Lock()
	f.cutAt, f.files["f"] = 0, bytes.Repeat([]byte{1}, 3000)
	f.mu.Unlock()
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		t.Fatalf("read %d more bytes of a replaced file without error", n)
	}
	if !filestore.IsPermanent(err) {
		t.Errorf("a changed file should not be retried: %v", err)
	}
}

func TestCheckListedName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "/abs", "a\\b", "nul\x00"} {
		if err := filestore.CheckListedName(bad); !errors.Is(err, filestore.ErrBadName) {
			t.Errorf("CheckListedName(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"a.csv", "..a", "résumé 1.csv", ".hidden"} {
		if err := filestore.CheckListedName(good); err != nil {
			t.Errorf("CheckListedName(%q) = %v", good, err)
		}
	}
	if !filestore.IsTempName(filestore.TempName()) || filestore.IsTempName("a.csv") {
		t.Error("IsTempName misjudges")
	}
}
