package connpool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

type fake struct {
	id      int
	aborted atomic.Bool
	closed  atomic.Bool
}

var errLost = errors.New("lost")

func newPool(max int, dials *atomic.Int32) *Pool[*fake] {
	return New(Options[*fake]{
		Max: max,
		Dial: func(ctx context.Context) (*fake, error) {
			return &fake{id: int(dials.Add(1))}, nil
		},
		Close:  func(f *fake) { f.closed.Store(true) },
		Abort:  func(f *fake) { f.aborted.Store(true) },
		Broken: func(err error) bool { return errors.Is(err, errLost) },
	})
}

func TestReuseAndReplace(t *testing.T) {
	var dials atomic.Int32
	p := newPool(2, &dials)
	ctx := context.Background()
	l, _ := p.Get(ctx)
	first := l.C
	l.Release(nil)
	l, _ = p.Get(ctx)
	if l.C != first {
		t.Fatal("idle connection not reused")
	}
	l.Release(errors.New("file not found")) // harmless: kept
	l, _ = p.Get(ctx)
	if l.C != first {
		t.Fatal("connection dropped after a harmless error")
	}
	l.Release(errLost)
	if !first.closed.Load() {
		t.Fatal("broken connection not closed")
	}
	l, _ = p.Get(ctx)
	if l.C == first || dials.Load() != 2 {
		t.Fatal("broken connection not replaced by a new dial")
	}
	l.Release(nil)
	p.Close()
	if _, err := p.Get(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

func TestMaxAndWait(t *testing.T) {
	var dials atomic.Int32
	p := newPool(1, &dials)
	l, _ := p.Get(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Get beyond Max: %v", err)
	}
	l.Release(nil)
	if l2, err := p.Get(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		l2.Release(nil)
	}
}

func TestContextAbortsLease(t *testing.T) {
	var dials atomic.Int32
	p := newPool(1, &dials)
	ctx, cancel := context.WithCancel(context.Background())
	l, _ := p.Get(ctx)
	c := l.C
	cancel()
	deadline := time.Now().Add(time.Second)
	for !c.aborted.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !c.aborted.Load() {
		t.Fatal("cancelled context did not abort the connection")
	}
	l.Release(nil)
	if !c.closed.Load() {
		t.Fatal("aborted connection went back to the pool")
	}
}
