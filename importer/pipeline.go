package importer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// ledgerTimeout bounds one ledger call made outside the caller's ctx (so
// that rows in flight at SIGTERM are still recorded).
const ledgerTimeout = 30 * time.Second

type item struct {
	row int64
	key string
	fp  string // fingerprint(m)
	m   mapping.Mapped
}

type job struct {
	item
	lookupFirst bool         // the row may have been sent before: look it up first
	found       state.Result // result to give a record found by that lookup
}

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
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(f.Name)), zap.Int64("run", f.Run))

	// stop ends reading and dispatching; calls and ledger writes already
	// started run on base, which SIGTERM does not cancel.
	stopCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	base := context.WithoutCancel(ctx)

	resumeMark := sp.mark
	// A record found by a lookup was created by this very run if the run
	// is being resumed; after MarkAll it may come from the older run.
	foundAs := state.Created
	if resumeMark == state.MarkAll {
		foundAs = state.AlreadyRecorded
	}

	var (
		mu       sync.Mutex
		pending  = map[string]int64{} // key → row, dispatched but not yet committed
		doneRows atomic.Int64
	)
	total := sp.total(f)
	progress := func() { im.obs.Progress(src.Name, f.Name, doneRows.Load(), total) }

	// With resolve_previous, rows of one document must reach the API in
	// file order (an Error row's record must exist before a later Success
	// row resolves it), so each document gets its own lane; otherwise all
	// workers share one queue.
	lanes := []chan job{make(chan job)}
	if src.ResolvePrevious {
		for range im.cfg.Concurrency - 1 {
			lanes = append(lanes, make(chan job))
		}
	}
	route := func(j job) chan job {
		if len(lanes) == 1 {
			return lanes[0]
		}
		h := fnv.New32a()
		h.Write([]byte(j.m.Record.DocumentType))
		if id := j.m.Record.DocumentID; id != nil {
			h.Write([]byte(strconv.FormatInt(*id, 10)))
		}
		return lanes[h.Sum32()%uint32(len(lanes))]
	}
	results := make(chan state.Outcome, im.cfg.BatchSize)

	var workers sync.WaitGroup
	for i := range im.cfg.Concurrency {
		jobs := lanes[i%len(lanes)]
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				out, err := im.post(base, src, f, j)
				if err != nil {
					// Not recorded: the row is under the mark and will be
					// looked up when the file resumes.
					stop(err)
					continue
				}
				results <- out
			}
		}()
	}

	collected := make(chan error, 1)
	go func() {
		var batch []state.Outcome
		var failed error
		flush := func() {
			if len(batch) == 0 || failed != nil {
				batch = batch[:0]
				return
			}
			lctx, cancel := context.WithTimeout(base, ledgerTimeout)
			err := sp.record(lctx, batch)
			cancel()
			if err != nil {
				failed = err
				stop(err)
				batch = batch[:0]
				return
			}
			mu.Lock()
			for _, o := range batch {
				if pending[o.Key] == o.Row {
					delete(pending, o.Key)
				}
			}
			mu.Unlock()
			for _, o := range batch {
				im.obs.RowDone(src.Name, f.Name, o.Result)
			}
			doneRows.Add(int64(len(batch)))
			progress()
			batch = batch[:0]
		}
		tick := time.NewTicker(im.cfg.FlushInterval)
		defer tick.Stop()
		for {
			select {
			case o, ok := <-results:
				if !ok {
					flush()
					collected <- failed
					return
				}
				batch = append(batch, o)
				if len(batch) >= im.cfg.BatchSize {
					flush()
				}
			case <-tick.C:
				flush()
			}
		}
	}()

	invalid := func() {
		im.obs.RowDone(src.Name, f.Name, state.Invalid)
		doneRows.Add(1)
	}
	var readErr error
	chunk := make([]item, 0, im.cfg.Window)
	var keys []string
dispatching:
	for eof := false; !eof && stopCtx.Err() == nil; {
		chunk, keys = chunk[:0], keys[:0]
		for len(chunk) < im.cfg.Window {
			row, err := rd.Read()
			if err == io.EOF {
				eof = true
				break
			}
			var pe *parse.ParseError
			isPE := errors.As(err, &pe)
			if err != nil && !isPE {
				readErr = fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)
				eof = true
				break
			}
			// Rows outside the span are another range's.
			if n := int64(row.Number); n < sp.first {
				continue
			} else if n > sp.last {
				eof = true
				break
			}
			if isPE {
				invalid()
				continue
			}
			m, ferrs := mp.Map(row, recordName(f.Name))
			if len(ferrs) > 0 {
				invalid()
				continue
			}
			it := item{row: int64(row.Number), key: state.Key(m.Record.ExternalID, int64(row.Number)), fp: fingerprint(m), m: m}
			chunk = append(chunk, it)
			keys = append(keys, it.key)
		}
		if len(chunk) == 0 {
			continue
		}
		var send []job
		var direct []state.Outcome
		// Hold mu across the lookup so a batch committed meanwhile is seen
		// either in the ledger or in pending, never in neither.
		mu.Lock()
		lctx, cancel := context.WithTimeout(base, ledgerTimeout)
		outs, err := im.ledger.Outcomes(lctx, state.FileID{Source: src.Name, Name: f.Name}, keys)
		cancel()
		if err != nil {
			mu.Unlock()
			stop(err)
			break
		}
		// A key whose last outcome is another content's may still have
		// been recorded with this content by an older drop.
		var pkeys, pfps []string
		for _, it := range chunk {
			if o, ok := outs[it.key]; ok && o.Run != f.Run && !(o.Result.Recorded() && sameContent(o, it)) {
				pkeys, pfps = append(pkeys, it.key), append(pfps, it.fp)
			}
		}
		var prior map[string]int64
		if len(pkeys) > 0 {
			lctx, cancel := context.WithTimeout(base, ledgerTimeout)
			prior, err = im.ledger.Recorded(lctx, state.FileID{Source: src.Name, Name: f.Name}, pkeys, pfps)
			cancel()
			if err != nil {
				mu.Unlock()
				stop(err)
				break
			}
		}
		for _, it := range chunk {
			if r, ok := pending[it.key]; ok && r != it.row {
				invalid() // duplicate of a row in flight
				continue
			}
			o, ok := outs[it.key]
			switch {
			case ok && o.Run == f.Run && o.Row == it.row:
				doneRows.Add(1) // checkpoint: done earlier in this run
			case ok && o.Run == f.Run:
				invalid() // duplicate of an earlier row of this file
			case ok && o.Result.Recorded() && sameContent(o, it):
				pending[it.key] = it.row
				direct = append(direct, outcome(f, it, state.AlreadyRecorded, o.RecordID, 0,
					"recorded by an earlier run with the same content"))
			case prior[it.key] != 0:
				pending[it.key] = it.row
				direct = append(direct, outcome(f, it, state.AlreadyRecorded, prior[it.key], 0,
					"recorded by an earlier run with the same content"))
			default:
				pending[it.key] = it.row
				// A failed earlier attempt at this very content may have
				// made its record after all (a 5xx or no answer): look it
				// up first, and call it already recorded if found. A key
				// whose earlier content differs has no record of this
				// content (the lookups above say so), so a record found
				// after a lost answer is this run's own: created.
				retry := ok && sameContent(o, it) && o.Result == state.FailedRow && (o.HTTPStatus == 0 || o.HTTPStatus >= 500)
				send = append(send, job{item: it, found: foundAs, lookupFirst: it.row <= resumeMark || retry})
				if retry && it.row > resumeMark {
					send[len(send)-1].found = state.AlreadyRecorded
				}
			}
		}
		mu.Unlock()
		if n := len(send); n > 0 && send[n-1].row > sp.mark {
			mark := send[n-1].row
			lctx, cancel := context.WithTimeout(base, ledgerTimeout)
			err := sp.setMark(lctx, mark)
			cancel()
			if err != nil {
				stop(err)
				break
			}
			sp.mark = mark
		}
		for _, o := range direct {
			results <- o
		}
		for _, j := range send {
			select {
			case route(j) <- j:
			case <-stopCtx.Done():
				break dispatching
			}
		}
	}
	for _, l := range lanes {
		close(l)
	}
	workers.Wait()
	close(results)
	lerr := <-collected
	progress()

	switch {
	case lerr != nil:
		return lerr
	case readErr != nil:
		return readErr
	}
	if cause := context.Cause(stopCtx); cause != nil {
		if errors.Is(cause, context.Canceled) && ctx.Err() != nil {
			log.Info("interrupted; the file resumes on the next pass", zap.Int64("rows_done", doneRows.Load()))
			return context.Cause(ctx)
		}
		return cause
	}
	return nil
}

func outcome(f *state.File, it item, res state.Result, recordID int64, status int, msg string) state.Outcome {
	o := state.Outcome{
		Source: f.Source, Filename: f.Name, Key: it.key, Row: it.row, Run: f.Run,
		ExternalID: it.m.Record.ExternalID, DocumentType: it.m.Record.DocumentType,
		Action: string(it.m.Action), Fingerprint: it.fp, Result: res, RecordID: recordID, HTTPStatus: status, Message: msg,
	}
	if it.m.Record.DocumentID != nil {
		o.DocumentID = strconv.FormatInt(*it.m.Record.DocumentID, 10)
	}
	return o
}

// post does one row's API work. An error means the row got no result
// (the API is unavailable): the file must stop and resume later.
func (im *Importer) post(base context.Context, src Source, f *state.File, j job) (state.Outcome, error) {
	ctx, cancel := context.WithTimeout(base, im.cfg.CallTimeout)
	defer cancel()
	rec := j.m.Record
	fail := func(err error) (state.Outcome, error) {
		status, rowFailure := rowError(err)
		if !rowFailure {
			return state.Outcome{}, fmt.Errorf("%w: %s: %s row %d: %w", ErrAPIUnavailable, src.Name, f.Name, j.row, err)
		}
		return outcome(f, j.item, state.FailedRow, 0, status, errMessage(err)), nil
	}
	if j.lookupFirst {
		found, err := im.api.FindExisting(ctx, &rec)
		if err != nil {
			return fail(err)
		}
		if found != nil {
			return outcome(f, j.item, j.found, found.ID, 0, "found on the server"), nil
		}
	}
	if src.ResolvePrevious && recordsSuccess(j.m) {
		if err := im.resolvePrevious(ctx, &rec); err != nil {
			return fail(err)
		}
	}
	created, err := im.api.Create(ctx, j.m.Action, &rec)
	switch {
	case err == nil && created != nil:
		return outcome(f, j.item, state.Created, created.ID, 201, ""), nil
	case errors.Is(err, apiclient.ErrAlreadyRecorded) && created != nil:
		return outcome(f, j.item, j.found, created.ID, 0, "found on the server after a lost answer"), nil
	case err == nil:
		return fail(fmt.Errorf("create returned no record"))
	}
	return fail(err)
}

// recordsSuccess: the row reports the document's successful export.
func recordsSuccess(m mapping.Mapped) bool {
	switch m.Action {
	case record.MarkExported:
		return true
	case record.Create:
		return strings.EqualFold(m.Record.Status, "success")
	}
	return false
}

// resolvePrevious resolves the document's earlier unresolved records, as
// Coupa's ERP guides do before recording a success.
func (im *Importer) resolvePrevious(ctx context.Context, r *record.Record) error {
	if r.DocumentID == nil || r.DocumentType == "" {
		return nil
	}
	prev, err := im.api.Unresolved(ctx, r.DocumentType, *r.DocumentID)
	if err != nil {
		return err
	}
	for _, p := range prev {
		if err := im.api.Resolve(ctx, p.ID); err != nil {
			return err
		}
	}
	return nil
}
