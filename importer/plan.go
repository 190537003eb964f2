package importer

import (
	"context"
	"hash/maphash"
	"sync"

	"github.com/ihr-tools/ihr/state"
)

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
			return im.ledger.Outcomes(ctx, state.FileID{Source: src.Name, Name: f.Name}, keys)
		},
		recorded: func(ctx context.Context, keys, fps []string) (map[string]int64, error) {
			return im.ledger.Recorded(ctx, state.FileID{Source: src.Name, Name: f.Name}, keys, fps)
		},
	}
}

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
//
// For a span that starts with no outcome of its file in the ledger
// (fresh) the set also keeps a hash of each key it lets go, up to
// maxRemembered: the ledger then holds outcomes of those keys only, so
// plan reads it only for a window with one of them (a repeated key, or a
// collision). Past the bound plan reads it for every window again.
type inflight struct {
	mu   sync.Mutex
	rows map[string]int64
	seed maphash.Seed
	done map[uint64]struct{} // hashes of the keys committed, while fresh (non-nil)
}

// maxRemembered bounds the committed keys a fresh span keeps (as 8-byte
// hashes; about 4 MiB of heap at the bound).
const maxRemembered = 1 << 18

// startFresh says the ledger holds no outcome of the span's file.
func (p *inflight) startFresh() {
	p.seed, p.done = maphash.MakeSeed(), map[uint64]struct{}{}
}

// snapshot returns the in-flight rows of keys, and whether the ledger may
// hold outcomes of any of them. Taken before the window's ledger read, it
// makes a key committed meanwhile visible in one of the two, never in
// neither: a key missing from it was either never in flight or committed
// before the read began. No lock is held across the read.
func (p *inflight) snapshot(keys []string) (map[string]int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := make(map[string]int64, len(keys))
	read := p.done == nil
	for _, k := range keys {
		if r, ok := p.rows[k]; ok {
			s[k] = r
		}
		if !read {
			_, read = p.done[maphash.String(p.seed, k)]
		}
	}
	return s, read
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
	if len(p.done)+len(batch) > maxRemembered {
		p.done = nil
	}
	for _, o := range batch {
		if p.done != nil {
			p.done[maphash.String(p.seed, o.Key)] = struct{}{}
		}
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
	defer d.im.lap(StagePlan, d.im.clock())
	keys := make([]string, len(chunk))
	for i, it := range chunk {
		keys[i] = it.key
	}
	seen, read := d.inflight.snapshot(keys)
	var outs map[string]state.Outcome
	if read {
		lctx, cancel := context.WithTimeout(d.base, ledgerTimeout)
		var err error
		outs, err = d.ledger.outcomes(lctx, keys)
		cancel()
		if err != nil {
			return plan{}, err
		}
	}
	prior, err := d.priorRecords(chunk, outs)
	if err != nil {
		return plan{}, err
	}
	// Sized for the window at once: jobs are large (a whole mapped record).
	p := plan{send: make([]job, 0, len(chunk))}
	added := make(map[string]int64, len(chunk))
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
