package unwrap

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadAhead: data arrives whole and in order, the error that ends it
// after the data, and Close returns when the reader stopped midway.
func TestReadAhead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 100000) // 1.6 MB, several chunks
	ra := newReadAhead(iotest.HalfReader(bytes.NewReader(data)))
	got, err := io.ReadAll(ra)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	ra.Close()

	boom := errors.New("boom")
	ra = newReadAhead(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)))
	got, err = io.ReadAll(ra)
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if _, err := ra.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("not sticky: %v", err)
	}
	ra.Close()

	// Stopped after one read: the goroutine is waiting to hand over more.
	ra = newReadAhead(bytes.NewReader(bytes.Repeat(data, 4)))
	if _, err := ra.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	ra.Close()
}
