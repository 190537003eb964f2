package unwrap

import (
	"io"
	"sync"
)

// Read-ahead sizes: a few large chunks keep the decrypting and
// decompressing goroutine one step ahead of the parser without holding
// more than 1 MiB.
const (
	aheadChunks    = 4
	aheadChunkSize = 256 << 10
)

// readAhead reads r in a goroutine of its own, so that decryption and
// decompression run on one core while the caller parses on another. Data
// and the error that ends it arrive in order. Close stops the goroutine
// and waits for it; a Read of r in flight must return first (the caller
// closes the underlying stream before, see Content.Close).
type readAhead struct {
	full chan aheadChunk
	free chan []byte
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	cur  []byte // unread part of the chunk being consumed
	back []byte // that chunk's buffer, to give back
	err  error  // sticky: the end of the stream
}

type aheadChunk struct {
	buf []byte
	n   int
	err error
}

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{full: make(chan aheadChunk, aheadChunks), free: make(chan []byte, aheadChunks), stop: make(chan struct{})}
	for range aheadChunks {
		ra.free <- make([]byte, aheadChunkSize)
	}
	ra.wg.Add(1)
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer ra.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		// Fill the chunk, but hand over what there is at an error.
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			m, err = r.Read(buf[n:])
			n += m
		}
		select {
		case ra.full <- aheadChunk{buf: buf, n: n, err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.back != nil {
			ra.free <- ra.back
			ra.back = nil
		}
		ch := <-ra.full
		ra.cur, ra.back, ra.err = ch.buf[:ch.n], ch.buf, ch.err
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	ra.wg.Wait()
	return nil
}
