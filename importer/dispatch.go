package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/state"
)

// Dispatch is the exactly-once core (see the package doc). It runs in
// stages, each a type or method in its own file, whose comment states the
// invariants the stage keeps:
//
//	read     windowReader (read.go)        the span's rows, a window at a time
//	plan     dispatchRun.plan (plan.go)    what each row needs, from the ledger
//	route    lanes (post.go)               which poster takes a row
//	post     startPosters, post (post.go)  one row's API work
//	collect  collector (collect.go)        outcomes committed in batches
//
// read and plan run on the caller's goroutine, post on Config.Concurrency
// goroutines, collect on one; dispatch owns them all and waits for them.

// ledgerTimeout bounds one ledger call made outside the caller's ctx (so
// that rows in flight at SIGTERM are still recorded).
const ledgerTimeout = 30 * time.Second

// item is a data row that mapped and validated: a candidate for the API.
type item struct {
	row int64
	key string
	fp  string // fingerprint(m); "" in the report's items until needed (see content)
	m   mapping.Mapped
}

// newItem is a row for dispatch, which stores every sent row's fingerprint.
func newItem(row int, m mapping.Mapped) item {
	it := keyedItem(row, m)
	it.fp = fingerprint(m)
	return it
}

// keyedItem is a row without its fingerprint, for the report: most of its
// rows are settled by this run's own outcome, which needs none, and the
// fingerprint (a JSON encoding and a hash) is the dearest per-row step.
func keyedItem(row int, m mapping.Mapped) item {
	return item{row: int64(row), key: state.Key(m.Record.ExternalID, int64(row)), m: m}
}

// content is the row's fingerprint, worked out now if newItem did not.
func (it item) content() string {
	if it.fp == "" {
		return fingerprint(it.m)
	}
	return it.fp
}

// job is an item on its way to a poster.
type job struct {
	item
	lookupFirst bool         // the row may have been sent before: look it up first
	found       state.Result // result to give a record found by that lookup
}

// dispatchRun is one call of dispatch: what its stages share.
type dispatchRun struct {
	im  *Importer
	src Source
	f   *state.File
	sp  *span

	// stopCtx ends reading and dispatching; calls and ledger writes
	// already started run on base, which SIGTERM does not cancel, so that
	// every row sent gets its outcome recorded.
	stopCtx context.Context
	stop    context.CancelCauseFunc
	base    context.Context

	// resumeMark is the dispatch mark the run started with: rows at or
	// below it may have reached the API before.
	resumeMark int64
	// foundAs is the result of a record found by a lookup: created by this
	// very run if the run is being resumed; after MarkAll it may come from
	// the older run.
	foundAs state.Result

	ledger   fileLedger
	inflight inflight
	done     atomic.Int64 // rows of the span with a result in this run
	total    int64
}

// dispatch runs the rows of f within sp through the API and records their
// outcomes (see the package doc for the protocol). It returns nil once
// every row of sp has a result in this run; otherwise the run stays
// resumable.
func (im *Importer) dispatch(ctx context.Context, src Source, f *state.File, sp *span) error {
	rc, rd, mp, err := im.rowsReader(ctx, src, f)
	if err != nil {
		return err
	}
	defer rc.Close()
	d := &dispatchRun{im: im, src: src, f: f, sp: sp, base: context.WithoutCancel(ctx),
		resumeMark: sp.mark, foundAs: state.Created, total: sp.total(f), ledger: im.fileLedger(src, f)}
	if sp.mark == state.MarkAll {
		d.foundAs = state.AlreadyRecorded
	}
	if sp.fresh {
		d.inflight.startFresh()
	}
	d.stopCtx, d.stop = context.WithCancelCause(ctx)
	defer d.stop(nil)

	reader := &windowReader{rd: rd, mp: mp, first: sp.first, last: sp.last, recName: recordName(f.Name),
		size: im.cfg.Window, invalid: d.invalid, stages: im.cfg.StageTimer,
		readErr: func(err error) error {
			return fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)
		}}
	ln := newLanes(im.cfg.Concurrency, src.ResolvePrevious, im.cfg.Window)
	results := make(chan state.Outcome, im.cfg.BatchSize)
	posters := d.startPosters(ln, results)
	col := &collector{size: im.cfg.BatchSize, every: im.cfg.FlushInterval, commit: d.commit}
	collected := make(chan error, 1)
	go func() { collected <- col.run(results) }()

	readErr := d.feed(reader, ln, results)
	ln.close()
	posters.Wait()
	close(results)
	lerr := <-collected
	d.progress()
	return d.end(ctx, lerr, readErr)
}

// end is dispatch's error: a failed commit first, then a failed read, then
// whatever stopped the run (SIGTERM, a lost API, a lost lease).
func (d *dispatchRun) end(ctx context.Context, lerr, readErr error) error {
	switch {
	case lerr != nil:
		return lerr
	case readErr != nil:
		return readErr
	}
	cause := context.Cause(d.stopCtx)
	if cause == nil {
		return nil
	}
	if errors.Is(cause, context.Canceled) && ctx.Err() != nil {
		d.im.log.Info("interrupted; the file resumes on the next pass", zap.String("source", d.src.Name),
			zap.String("file", SafeName(d.f.Name)), zap.Int64("run", d.f.Run), zap.Int64("rows_done", d.done.Load()))
		return context.Cause(ctx)
	}
	return cause
}

func (d *dispatchRun) progress() {
	d.im.obs.Progress(d.src.Name, d.f.Name, d.done.Load(), d.total)
}

// invalid counts a row that gets no API call: it does not parse or map,
// or repeats an earlier row's key.
func (d *dispatchRun) invalid() {
	d.im.obs.RowDone(d.src.Name, d.f.Name, state.Invalid)
	d.done.Add(1)
}

// feed reads windows, plans them and hands their rows on, until the span
// ends or the run is stopped. A read error ends it after the rows read
// before it are dispatched; it is returned.
func (d *dispatchRun) feed(r *windowReader, ln lanes, results chan<- state.Outcome) error {
	for d.stopCtx.Err() == nil {
		chunk, rerr := r.next()
		stopped := len(chunk) > 0 && !d.dispatchWindow(chunk, ln, results)
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil || stopped:
			return rerr
		}
	}
	return nil
}

// dispatchWindow plans one window, raises the dispatch mark over it and
// only then sends its rows. It reports false when the run stopped.
func (d *dispatchRun) dispatchWindow(chunk []item, ln lanes, results chan<- state.Outcome) bool {
	p, err := d.plan(chunk)
	if err == nil {
		d.sp.gate.planned(chunk[len(chunk)-1].row, len(p.send)+len(p.direct))
		err = d.raiseMark(p.send)
	}
	if err != nil {
		d.stop(err)
		return false
	}
	for _, o := range p.direct {
		results <- o
	}
	for _, j := range p.send {
		select {
		case ln.of(j.m) <- j:
		case <-d.stopCtx.Done():
			return false
		}
	}
	return true
}

// raiseMark stores the last row about to be sent as the dispatch mark,
// durably, before any row of the window is sent: every row that may ever
// have reached the API is at or below the mark.
func (d *dispatchRun) raiseMark(send []job) error {
	n := len(send)
	if n == 0 || send[n-1].row <= d.sp.mark {
		return nil
	}
	mark := send[n-1].row
	lctx, cancel := context.WithTimeout(d.base, ledgerTimeout)
	defer cancel()
	if err := d.sp.setMark(lctx, mark); err != nil {
		return err
	}
	d.sp.mark = mark
	return nil
}
