package importer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// lanes is the route stage: the queues posters take jobs from.
// Invariant: with resolve_previous, the rows of one document all go to
// the same lane, which one poster drains, so they reach the API in file
// order (an Error row's record must exist before a later Success row
// resolves it); otherwise there is one lane all posters share.
//
// Together the lanes hold up to a window of rows, so that while posters
// send one window the feed reads, plans and marks the next: unbuffered,
// every poster stood idle at each window's end for that window's ledger
// work.
type lanes []chan job

func newLanes(concurrency int, byDocument bool, window int) lanes {
	n := 1
	if byDocument {
		n = max(concurrency, 1)
	}
	l := make(lanes, n)
	for i := range l {
		l[i] = make(chan job, max(window/n, 1))
	}
	return l
}

// of is the lane of a row.
func (l lanes) of(m mapping.Mapped) chan job {
	if len(l) == 1 {
		return l[0]
	}
	h := fnv.New32a()
	h.Write([]byte(m.Record.DocumentType))
	if id := m.Record.DocumentID; id != nil {
		h.Write([]byte(strconv.FormatInt(*id, 10)))
	}
	return l[h.Sum32()%uint32(len(l))]
}

func (l lanes) close() {
	for _, c := range l {
		close(c)
	}
}

// startPosters starts the post stage: Config.Concurrency goroutines, poster
// i draining lane i modulo the lanes. Every row a poster takes ends in
// results, unless the API is unavailable: then the row gets no outcome
// (it is under the mark and is looked up when the file resumes) and the
// run is stopped. The caller closes the lanes and waits.
func (d *dispatchRun) startPosters(ln lanes, results chan<- state.Outcome) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range d.im.cfg.Concurrency {
		jobs := ln[i%len(ln)]
		wg.Go(func() {
			for j := range jobs {
				if d.stopCtx.Err() != nil {
					// Stopped: rows still queued are not sent. Like rows
					// never queued, they are at or below the mark with no
					// outcome, which the file's resume looks up first.
					continue
				}
				out, err := d.im.post(d.base, d.src, d.f, j)
				if err != nil {
					d.stop(err)
					continue
				}
				results <- out
			}
		})
	}
	return &wg
}

// outcome is the ledger's outcome of a row of f's run.
func outcome(f *state.File, it item, res state.Result, recordID int64, status int, msg string) state.Outcome {
	return state.Outcome{
		Source: f.Source, Filename: f.Name, Key: it.key, Row: it.row, Run: f.Run,
		ExternalID: it.m.Record.ExternalID, DocumentType: it.m.Record.DocumentType, DocumentID: documentID(it.m),
		Action: string(it.m.Action), Fingerprint: it.fp, Result: res, RecordID: recordID, HTTPStatus: status, Message: msg,
	}
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
