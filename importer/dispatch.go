package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/state"
)

// Dispatch is the exactly-once core (see the package doc). It runs in four
// stages, each defined below or in the file named:
//
//	read     windowReader   rows of the span, a window at a time
//	plan     dispatchRun.plan  what each row needs, from the ledger
//	route    lanes (post.go)   which poster takes a row
//	post     dispatchRun.post  one row's API work (post.go)
//	collect  collector (collect.go)  outcomes committed in batches
//
// read and plan run on the caller's goroutine, post on Config.Concurrency
// goroutines, collect on one; dispatch owns and waits for all of them.

// ledgerTimeout bounds one ledger call made outside the caller's ctx (so
// that rows in flight at SIGTERM are still recorded).
const ledgerTimeout = 30 * time.Second

// item is a data row that mapped and validated: a candidate for the API.
type item struct {
	row int64
	key string
	fp  string // fingerprint(m)
	m   mapping.Mapped
}

func newItem(row int, m mapping.Mapped) item {
	return item{row: int64(row), key: state.Key(m.Record.ExternalID, int64(row)), fp: fingerprint(m), m: m}
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

// fileLedger is what plan reads from the ledger, for one file.
type fileLedger struct {
	// outcomes is the last outcome of each key (state.Ledger.Outcomes).
	outcomes func(ctx context.Context, keys []string) (map[string]state.Outcome, error)
	// recorded is the record of each key made with its fingerprint by any
	// run (state.Ledger.Recorded).
	recorded func(ctx context.Context, keys, fps []string) (map[string]int64, error)
}

func (im *Importer) fileLedger(src Source, f *state.File) fileLedger {
	return fileLedger{
		outcomes: func(ctx context.Context, keys []string) (map[string]state.Outcome, error) {
			return im.ledger.Outcomes(ctx, src.Name, f.Name, keys)
		},
		recorded: func(ctx context.Context, keys, fps []string) (map[string]int64, error) {
			return im.ledger.Recorded(ctx, src.Name, f.Name, keys, fps)
		},
	}
}

// dispatch runs the rows of f within sp through the API and records their
// outcomes (see the package doc for the protocol). It returns nil once
// every row of sp has a result in this run; otherwise the run stays
// resumable.
func (im *Importer) dispatch(ctx context.Context, src Source, f *state.File, sp *span) error {
	rc, rd, mp, err := im.rowsReader(ctx, src, f, sp.parse)
	if err != nil {
		return err
	}
	defer rc.Close()
	d := &dispatchRun{im: im, src: src, f: f, sp: sp, base: context.WithoutCancel(ctx),
		resumeMark: sp.mark, foundAs: state.Created, total: sp.total(f), ledger: im.fileLedger(src, f)}
	if sp.mark == state.MarkAll {
		d.foundAs = state.AlreadyRecorded
	}
	d.stopCtx, d.stop = context.WithCancelCause(ctx)
	defer d.stop(nil)

	reader := &windowReader{rd: rd, mp: mp, first: sp.first, last: sp.last, name: f.Name,
		size: im.cfg.Window, invalid: d.invalid,
		readErr: func(err error) error {
			return fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)
		}}
	ln := newLanes(im.cfg.Concurrency, src.ResolvePrevious)
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
		if len(chunk) > 0 && !d.dispatchWindow(chunk, ln, results) {
			return nil
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
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

// ---- read ----

// rowsReader opens the file and prepares its parser and mapper.
func (im *Importer) rowsReader(ctx context.Context, src Source, f *state.File, popts parse.Options) (io.ReadCloser, *parse.Reader, *mapping.Mapper, error) {
	rc, err := im.openContent(ctx, src, src.Store, f.Name, f.Location)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, SafeName(f.Location), err)
	}
	popts.File = f.Name
	rd, err := parse.NewReader(rc, src.Encoding, popts)
	if err != nil {
		rc.Close()
		return nil, nil, nil, fmt.Errorf("importer: %s: %s changed since it was hashed: %w", src.Name, f.Location, err)
	}
	mp, err := mapping.New(src.Mapping, rd.Header(), src.Integration)
	if err != nil {
		rc.Close()
		return nil, nil, nil, fmt.Errorf("importer: %s: %s: %w", src.Name, f.Location, err)
	}
	return rc, rd, mp, nil
}

// windowReader is the read stage: it yields the rows of a span (data rows
// first..last) that map and validate, at most size at a time.
// Invariants: rows come in file order; a row outside the span is never
// yielded (it is another range's); a row that does not parse or map is
// passed to invalid and never yielded, so it is never sent.
type windowReader struct {
	rd          *parse.Reader
	mp          *mapping.Mapper
	first, last int64
	name        string // the file's original name, for the records
	size        int
	invalid     func()
	readErr     func(error) error // wraps a failure to read
	buf         []item
}

// next returns the next window. Its error is io.EOF after the last window
// (which may hold rows), or a failure to read, after the rows before it.
// The window is valid until the next call.
func (r *windowReader) next() ([]item, error) {
	r.buf = r.buf[:0]
	for len(r.buf) < r.size {
		row, err := r.rd.Read()
		if err == io.EOF {
			return r.buf, io.EOF
		}
		var pe *parse.ParseError
		isPE := errors.As(err, &pe)
		if err != nil && !isPE {
			return r.buf, r.readErr(err)
		}
		if n := int64(row.Number); n < r.first {
			continue
		} else if n > r.last {
			return r.buf, io.EOF
		}
		if isPE {
			r.invalid()
			continue
		}
		m, ferrs := r.mp.Map(row, recordName(r.name))
		if len(ferrs) > 0 {
			r.invalid()
			continue
		}
		r.buf = append(r.buf, newItem(row.Number, m))
	}
	return r.buf, nil
}

// ---- plan ----

// verdict is what a row's stored outcome (the last one of its key) means
// for the run now reading the row.
type verdict int

const (
	unsettled      verdict = iota // no outcome that settles it: it needs the API
	doneThisRun                   // this run recorded it (the checkpoint)
	duplicateKey                  // an earlier row of this file has the key
	recordedBefore                // an earlier run recorded this content
)

// settledBy is the one table that decides a row's outcome from the ledger,
// for dispatch (what to post) and for the report (what to write), so the
// two never disagree. ok says whether the key has a stored outcome o.
func settledBy(it item, o state.Outcome, ok bool, run int64) verdict {
	switch {
	case ok && o.Run == run && o.Row == it.row:
		return doneThisRun
	case ok && o.Run == run:
		return duplicateKey
	case ok && o.Result.Recorded() && sameContent(o, it):
		return recordedBefore
	}
	return unsettled
}

// msgRecordedBefore is the message of a row an earlier run recorded.
const msgRecordedBefore = "recorded by an earlier run with the same content"

// plan is the plan stage's answer for one window.
type plan struct {
	send   []job           // rows for the API, in row order
	direct []state.Outcome // rows settled without the API (already recorded)
}

// inflight holds the keys of rows this run dispatched (sent, or settled
// directly) whose outcome is not committed yet, with their row, so that a
// later row with the same key is found a duplicate before its first row's
// outcome reaches the ledger. Only plan adds; the collector removes after
// each commit.
type inflight struct {
	mu   sync.Mutex
	rows map[string]int64
}

// snapshot returns the in-flight rows of keys. Taken before the window's
// ledger read, it makes a key committed meanwhile visible in one of the
// two, never in neither: a key missing from it was either never in flight
// or committed before the read began. No lock is held across the read.
func (p *inflight) snapshot(keys []string) map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := make(map[string]int64, len(keys))
	for _, k := range keys {
		if r, ok := p.rows[k]; ok {
			s[k] = r
		}
	}
	return s
}

func (p *inflight) add(rows map[string]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rows == nil {
		p.rows = map[string]int64{}
	}
	for k, r := range rows {
		p.rows[k] = r
	}
}

func (p *inflight) committed(batch []state.Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range batch {
		if p.rows[o.Key] == o.Row {
			delete(p.rows, o.Key)
		}
	}
}

// plan is the plan stage: it looks a window's keys up in the ledger and
// decides each row (settledBy). Invariants: a key is sent or settled at
// most once per run (its first row wins; later rows are invalid); a row
// this run already has an outcome for is counted, never sent again.
func (d *dispatchRun) plan(chunk []item) (plan, error) {
	keys := make([]string, len(chunk))
	for i, it := range chunk {
		keys[i] = it.key
	}
	seen := d.inflight.snapshot(keys)
	lctx, cancel := context.WithTimeout(d.base, ledgerTimeout)
	outs, err := d.ledger.outcomes(lctx, keys)
	cancel()
	if err != nil {
		return plan{}, err
	}
	prior, err := d.priorRecords(chunk, outs)
	if err != nil {
		return plan{}, err
	}
	var p plan
	added := map[string]int64{}
	for _, it := range chunk {
		if r, ok := seen[it.key]; ok && r != it.row {
			d.invalid() // duplicate of a row in flight
			continue
		}
		o, ok := outs[it.key]
		switch settledBy(it, o, ok, d.f.Run) {
		case doneThisRun:
			d.done.Add(1)
			continue
		case duplicateKey:
			d.invalid()
			continue
		case recordedBefore:
			p.direct = append(p.direct, outcome(d.f, it, state.AlreadyRecorded, o.RecordID, 0, msgRecordedBefore))
		default:
			if id := prior[it.key]; id != 0 {
				p.direct = append(p.direct, outcome(d.f, it, state.AlreadyRecorded, id, 0, msgRecordedBefore))
			} else {
				p.send = append(p.send, d.newJob(it, o, ok))
			}
		}
		seen[it.key], added[it.key] = it.row, it.row
	}
	d.inflight.add(added)
	return p, nil
}

// priorRecords finds, for the keys whose last outcome is another content's
// from another run, the record an older drop may have made with this
// content (state.Ledger.Recorded), by key.
func (d *dispatchRun) priorRecords(chunk []item, outs map[string]state.Outcome) (map[string]int64, error) {
	var pkeys, pfps []string
	for _, it := range chunk {
		if o, ok := outs[it.key]; ok && settledBy(it, o, ok, d.f.Run) == unsettled {
			pkeys, pfps = append(pkeys, it.key), append(pfps, it.fp)
		}
	}
	if len(pkeys) == 0 {
		return nil, nil
	}
	lctx, cancel := context.WithTimeout(d.base, ledgerTimeout)
	defer cancel()
	return d.ledger.recorded(lctx, pkeys, pfps)
}

// newJob says how to send a row whose stored outcome (o, if ok) does not
// settle it. A row at or below the resume mark may have reached the API:
// it is looked up first. So is a failed earlier attempt at this very
// content that may have made its record after all (a 5xx or no answer);
// found, it is already recorded. A key whose earlier content differs has
// no record of this content (plan's lookups say so), so a record found
// after a lost answer is this run's own: created.
func (d *dispatchRun) newJob(it item, o state.Outcome, ok bool) job {
	retry := ok && sameContent(o, it) && o.Result == state.FailedRow && (o.HTTPStatus == 0 || o.HTTPStatus >= 500)
	j := job{item: it, found: d.foundAs, lookupFirst: it.row <= d.resumeMark || retry}
	if retry && it.row > d.resumeMark {
		j.found = state.AlreadyRecorded
	}
	return j
}
