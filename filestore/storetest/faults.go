package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/filestore"
)

// Faults is a dialer that cuts one connection once a set number of bytes
// has crossed it, the way a flaky network or a restarting server does. A
// store built for RunConnectionDrop dials every connection through
// Faults.DialContext, FTP data connections included, so the cut can land
// in the middle of a transfer.
//
// When the cut comes, the underlying TCP connection is really closed, and
// the reading side sees a clean io.EOF: the hardest case, indistinguishable
// from a file that ended, which only a size check exposes.
type Faults struct {
	mu      sync.Mutex
	readsIn int64 // bytes left to read before the cut; < 0: disarmed
	writeIn int64
	cuts    int
}

// NewFaults returns a disarmed dialer.
func NewFaults() *Faults { return &Faults{readsIn: -1, writeIn: -1} }

// CutReadAfter arms the dialer: once n more bytes have been read (from the
// server) on any connection, that connection is cut. It fires once.
func (f *Faults) CutReadAfter(n int64) {
	f.mu.Lock()
	f.readsIn = n
	f.mu.Unlock()
}

// CutWriteAfter is CutReadAfter for bytes sent to the server.
func (f *Faults) CutWriteAfter(n int64) {
	f.mu.Lock()
	f.writeIn = n
	f.mu.Unlock()
}

// Cuts reports how many connections were cut so far.
func (f *Faults) Cuts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cuts
}

// DialContext dials TCP like net.Dialer and wraps the connection.
func (f *Faults) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, f: f}, nil
}

type faultConn struct {
	net.Conn
	f *Faults

	mu  sync.Mutex
	cut bool
}

// take consumes up to n bytes of the armed budget; it returns how many may
// pass and whether the connection is to be cut after them.
func (f *Faults) take(budget *int64, n int) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *budget < 0 {
		return n, false
	}
	if int64(n) < *budget {
		*budget -= int64(n)
		return n, false
	}
	k := int(*budget)
	*budget = -1
	f.cuts++
	return k, true
}

func (c *faultConn) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

func (c *faultConn) doCut() {
	c.mu.Lock()
	c.cut = true
	c.mu.Unlock()
	_ = c.Conn.Close()
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.isCut() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		k, cut := c.f.take(&c.f.readsIn, n)
		if cut {
			c.doCut()
			if k == 0 {
				return 0, io.EOF
			}
			return k, nil
		}
	}
	return n, err
}

var errCutWrite = errors.New("storetest: connection cut by Faults")

func (c *faultConn) Write(p []byte) (int, error) {
	if c.isCut() {
		return 0, errCutWrite
	}
	k, cut := c.f.take(&c.f.writeIn, len(p))
	if !cut {
		return c.Conn.Write(p)
	}
	n, _ := c.Conn.Write(p[:k])
	c.doCut()
	return n, errCutWrite
}

// FastRetry is a retry policy for tests: quick, but patient enough for a
// reconnect.
var FastRetry = filestore.RetryPolicy{Attempts: 4, Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// RunConnectionDrop checks what happens when a connection drops in the
// middle of a transfer. newStore must return a store on an empty, writable
// folder that makes every network connection with dial.
//
// Without the retry decorator, the broken download must fail (never end as
// a short file); with it, the download must resume and deliver every byte.
// A broken upload must leave nothing (or the old file) behind, and the
// store must reconnect for the next call.
func RunConnectionDrop(t *testing.T, newStore func(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) filestore.Store) {
	f := NewFaults()
	s := newStore(t, f.DialContext)
	t.Cleanup(func() { s.Close() })
	ctx := ctxT(t)
	const size = 6 << 20
	data := make([]byte, size)
	_, _ = NewGenerator(3, size).Read(data)
	sum := sha256.Sum256(data)
	mustMkdir(t, s, "drop")
	Put(t, s, "drop/f.bin", data)

	t.Run("DownloadReported", func(t *testing.T) {
		rc, err := s.Open(ctx, "drop/f.bin", 0)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		f.CutReadAfter(1 << 20)
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if f.Cuts() != 1 {
			t.Fatalf("the transfer was not cut (cuts=%d)", f.Cuts())
		}
		if err == nil {
			t.Fatalf("download cut after 1 MiB ended without error after %s of %s", describe(n), describe(size))
		}
		t.Logf("cut download reported after %s: %v", describe(n), err)
	})

	t.Run("StoreReconnects", func(t *testing.T) {
		if got := Get(t, s, "drop/f.bin"); sha256.Sum256(got) != sum {
			t.Fatalf("content differs after reconnect")
		}
	})

	t.Run("DownloadResumedByRetry", func(t *testing.T) {
		rs := filestore.WithRetry(s, FastRetry, zaptest.NewLogger(t))
		before := f.Cuts()
		rc, err := rs.Open(ctx, "drop/f.bin", 0)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		f.CutReadAfter(2 << 20)
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if f.Cuts() != before+1 {
			t.Fatalf("the transfer was not cut")
		}
		if err != nil {
			t.Fatalf("retried download failed after %s: %v", describe(n), err)
		}
		if n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatalf("retried download: %d bytes, wrong content", n)
		}
	})

	t.Run("UploadCutLeavesNothing", func(t *testing.T) {
		before := f.Cuts()
		f.CutWriteAfter(1 << 20)
		err := s.Write(ctx, "drop/up.bin", bytes.NewReader(data))
		f.CutWriteAfter(-1)
		if f.Cuts() != before+1 {
			t.Fatalf("the upload was not cut")
		}
		if err == nil {
			// The cut might land after the last data byte went out; then
			// the file must be whole.
			if got := Get(t, s, "drop/up.bin"); sha256.Sum256(got) != sum {
				t.Fatalf("cut upload reported success but the file differs")
			}
			return
		}
		t.Logf("cut upload reported: %v", err)
		_, serr := s.Stat(ctx, "drop/up.bin")
		wantErr(t, "Stat after cut upload", serr, filestore.ErrNotExist)
		fis, lerr := s.List(ctx, "drop")
		if lerr != nil || len(fis) != 1 || fis[0].Name != "f.bin" {
			t.Errorf("List after cut upload: %q, %v", names(fis), lerr)
		}
	})

	t.Run("UploadRetried", func(t *testing.T) {
		rs := filestore.WithRetry(s, FastRetry, zaptest.NewLogger(t))
		before := f.Cuts()
		f.CutWriteAfter(1 << 20)
		err := rs.Write(ctx, "drop/up2.bin", bytes.NewReader(data))
		f.CutWriteAfter(-1)
		if f.Cuts() != before+1 {
			t.Fatalf("the upload was not cut")
		}
		if err != nil {
			t.Fatalf("retried upload: %v", err)
		}
		if got := Get(t, s, "drop/up2.bin"); sha256.Sum256(got) != sum {
			t.Fatalf("retried upload: content differs")
		}
	})
}

// BenchmarkDownload measures streaming a LargeSize file out of s (written
// once, outside the timing), directly ("direct") and through
// filestore.WithRetry ("retry"), as the importer reads. It reports MB/s.
func BenchmarkDownload(b *testing.B, s filestore.Store) {
	ctx := context.Background()
	if err := s.MkdirAll(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Stat(ctx, "bench/big.bin"); err != nil {
		if err := s.Write(ctx, "bench/big.bin", NewGenerator(9, LargeSize)); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, s filestore.Store) {
		buf := make([]byte, 256<<10)
		b.SetBytes(LargeSize)
		for b.Loop() {
			rc, err := s.Open(ctx, "bench/big.bin", 0)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf)
			rc.Close()
			if err != nil || n != LargeSize {
				b.Fatalf("read %d bytes: %v", n, err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, s) })
	b.Run("retry", func(b *testing.B) { run(b, filestore.WithRetry(s, filestore.DefaultRetryPolicy(), nil)) })
}
