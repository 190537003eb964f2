package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// RetryPolicy says how often and how patiently WithRetry retries.
type RetryPolicy struct {
	// Attempts is the number of tries per operation, the first included.
	// Values below 1 mean 1 (no retry).
	Attempts int
	// Initial is the wait before the second try; each further wait doubles,
	// with up to 25% random jitter so that several workers do not retry in
	// lock-step.
	Initial time.Duration
	// Max caps a single wait.
	Max time.Duration
}

// DefaultRetryPolicy rides out a server restart or a dropped connection
// (about 8 s in total) without stalling a batch for long.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 5, Initial: 250 * time.Millisecond, Max: 4 * time.Second}
}

func (p RetryPolicy) wait(attempt int) time.Duration {
	d := p.Initial
	for i := 1; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	if d > 0 {
		d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	}
	return d
}

// WithRetry wraps s so that transient failures (dropped connections,
// timeouts, server restarts) are retried with backoff. Errors for which
// IsPermanent holds are returned at once, as is everything once ctx is done.
//
// What is retried:
//   - List, Stat, MkdirAll: always.
//   - Move: always; when a retry finds src gone and dst present, the lost
//     reply of an earlier try is taken as success.
//   - Write: only when r is also an io.Seeker (it is rewound); a plain
//     reader cannot be replayed, so its first failure is returned.
//   - Open: opening is retried, and the returned reader resumes at the
//     current offset when the stream breaks. It knows the size from Stat
//     and checks it at EOF: a stream that ends early, and cannot be resumed
//     within the policy, fails with an error wrapping io.ErrUnexpectedEOF —
//     never a silent short read.
//
// log receives one warning per retry; it may be nil.
func WithRetry(s Store, p RetryPolicy, log *zap.Logger) Store {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &retryStore{s: s, p: p, log: log}
}

type retryStore struct {
	s   Store
	p   RetryPolicy
	log *zap.Logger
}

// do runs f until it succeeds, fails permanently, ctx ends or the attempts
// are used up. f receives the attempt number, starting at 1.
func (r *retryStore) do(ctx context.Context, op, name string, f func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		err := f(attempt)
		if err == nil || IsPermanent(err) || ctx.Err() != nil || attempt >= r.p.Attempts {
			return err
		}
		if err := r.pause(ctx, op, name, attempt, err); err != nil {
			return err
		}
	}
}

// pause logs a retry and waits; it returns the ctx error if ctx ends first.
func (r *retryStore) pause(ctx context.Context, op, name string, attempt int, cause error) error {
	d := r.p.wait(attempt)
	r.log.Warn("filestore: transient failure, retrying",
		zap.String("op", op), zap.String("name", name),
		zap.Int("attempt", attempt), zap.Duration("wait", d), zap.Error(cause))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w (after: %w)", op, name, ctx.Err(), cause)
	}
}

func (r *retryStore) List(ctx context.Context, dir string) (fi []FileInfo, err error) {
	err = r.do(ctx, "list", dir, func(int) error {
		fi, err = r.s.List(ctx, dir)
		return err
	})
	return fi, err
}

func (r *retryStore) Stat(ctx context.Context, name string) (fi FileInfo, err error) {
	err = r.do(ctx, "stat", name, func(int) error {
		fi, err = r.s.Stat(ctx, name)
		return err
	})
	return fi, err
}

func (r *retryStore) MkdirAll(ctx context.Context, dir string) error {
	return r.do(ctx, "mkdir", dir, func(int) error { return r.s.MkdirAll(ctx, dir) })
}

func (r *retryStore) Move(ctx context.Context, src, dst string) error {
	return r.do(ctx, "move", src, func(attempt int) error {
		err := r.s.Move(ctx, src, dst)
		if attempt > 1 && (errors.Is(err, ErrNotExist) || errors.Is(err, ErrExist)) {
			// An earlier try may have moved the file and lost only the
			// reply. If src is gone and dst is there, that is what happened
			// (or someone else moved it for us, which ends the same way).
			if _, serr := r.s.Stat(ctx, src); errors.Is(serr, ErrNotExist) {
				if _, derr := r.s.Stat(ctx, dst); derr == nil {
					r.log.Info("filestore: move found done after a retry",
						zap.String("src", src), zap.String("dst", dst))
					return nil
				}
			}
		}
		return err
	})
}

func (r *retryStore) Write(ctx context.Context, name string, body io.Reader) error {
	seeker, ok := body.(io.Seeker)
	if !ok {
		return r.s.Write(ctx, name, body)
	}
	start, err := seeker.Seek(0, io.SeekCurrent)
	if err != nil {
		return r.s.Write(ctx, name, body)
	}
	return r.do(ctx, "write", name, func(attempt int) error {
		if attempt > 1 {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return Permanent(fmt.Errorf("write %s: rewind for retry: %w", name, err))
			}
		}
		return r.s.Write(ctx, name, body)
	})
}

func (r *retryStore) Close() error { return r.s.Close() }

func (r *retryStore) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	fi, err := r.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if offset < 0 || offset > fi.Size {
		return nil, &PathError{Op: "open", Name: name,
			Err: fmt.Errorf("offset %d outside the file's %d bytes", offset, fi.Size)}
	}
	rr := &resumingReader{r: r, ctx: ctx, name: name, size: fi.Size, pos: offset}
	if err := rr.reopen(); err != nil {
		return nil, err
	}
	return rr, nil
}

// errChangedWhileReading: the file grew past the size Stat reported, so
// resuming would splice two versions together.
var errChangedWhileReading = errors.New("file changed while being read")

// resumingReader reads a file of known size and reopens it at the current
// offset when the stream breaks.
type resumingReader struct {
	r    *retryStore
	ctx  context.Context
	name string
	size int64 // from Stat at Open: the byte count EOF must land on
	pos  int64
	rc   io.ReadCloser
	err  error // sticky: once reported, every later Read reports it
	// failures counts breaks since the last byte that arrived, so a stream
	// that keeps making progress is never given up on.
	failures int
}

func (rr *resumingReader) reopen() error {
	return rr.r.do(rr.ctx, "open", rr.name, func(int) error {
		rc, err := rr.r.s.Open(rr.ctx, rr.name, rr.pos)
		if err != nil {
			return err
		}
		rr.rc = rc
		return nil
	})
}

func (rr *resumingReader) Read(p []byte) (int, error) {
	for {
		if rr.err != nil {
			return 0, rr.err
		}
		if rr.rc == nil {
			if err := rr.reopen(); err != nil {
				rr.err = &PathError{Op: "read", Name: rr.name, Err: err}
				return 0, rr.err
			}
		}
		n, err := rr.rc.Read(p)
		rr.pos += int64(n)
		if n > 0 {
			rr.failures = 0
		}
		switch {
		case rr.pos > rr.size:
			rr.fail(fmt.Errorf("read %d bytes of a %d-byte file: %w", rr.pos, rr.size, errChangedWhileReading))
			return n, rr.err
		case err == nil:
			return n, nil
		case err == io.EOF && rr.pos == rr.size:
			return n, io.EOF
		case err == io.EOF:
			err = fmt.Errorf("stream ended at byte %d of %d: %w", rr.pos, rr.size, io.ErrUnexpectedEOF)
		}
		// The stream broke. Drop it; the next pass reopens at rr.pos.
		_ = rr.rc.Close()
		rr.rc = nil
		rr.failures++
		if IsPermanent(err) || rr.ctx.Err() != nil || rr.failures >= rr.r.p.Attempts {
			rr.fail(err)
			return n, rr.err
		}
		if perr := rr.r.pause(rr.ctx, "read", rr.name, rr.failures, err); perr != nil {
			rr.fail(perr)
			return n, rr.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (rr *resumingReader) fail(err error) {
	var pe *PathError
	if errors.As(err, &pe) {
		rr.err = err
	} else {
		rr.err = &PathError{Op: "read", Name: rr.name, Err: err}
	}
	if rr.rc != nil {
		_ = rr.rc.Close()
		rr.rc = nil
	}
}

func (rr *resumingReader) Close() error {
	if rr.rc == nil {
		return nil
	}
	err := rr.rc.Close()
	rr.rc = nil
	if rr.err == nil {
		rr.err = &PathError{Op: "read", Name: rr.name, Err: errors.New("reader closed")}
	}
	return err
}
