package apiclient

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ihr-tools/ihr/record"
)

// Batched lookups.
//
// FindExisting, and Create after an attempt whose outcome is unknown, join
// a queue; one caller at a time leads: it waits out its own backoff, takes
// every queued lookup for the same file and asks one index query,
// external-id[in]=a,b,c… (spec §5), for all of them. Lookups that arrive
// while a batch is in flight form the next one (as a group commit does), so
// under a burst of faults the lookups cost a GET per batch, not per row, and
// nobody waits longer than its own backoff plus one query.
//
// Why no settle time. The danger of a lookup is a create still in flight
// on the server that commits after the lookup answered "absent", so that
// the re-send duplicates it. The client used to sleep a fixed 2 s first,
// which guarantees nothing (a server can take longer) and costs 2 s a row.
// Instead the lookup is only ever sent once the attempt is over on our
// side: an attempt with no answer (reset, timeout) has had its connection
// closed by net/http before the lookup starts, so the server sees its client
// gone; an answer from a gateway (502/503/504) ends the exchange. ihr-api
// runs each action in one transaction bound to the request, which is rolled
// back unless already committed when the client goes, so there a lookup
// sent after the close sees every create that will ever land. A server that
// finishes a request whose client has gone (Rails, Coupa) is covered as
// far as the backoff before the lookup goes, as the fixed sleep covered it
// as far as its 2 s: never more.

// maxLookupBatch bounds the records of one batched lookup, and
// maxLookupIDBytes the external ids' share of its query string (Coupa's
// front ends refuse request lines over 8 KiB).
const (
	maxLookupBatch   = 50
	maxLookupIDBytes = 4000
	// maxLookupPages bounds the pages one batch reads; records a longer
	// answer did not reach are looked up one by one.
	maxLookupPages = 8
)

// lookupQueue is the Client's queue of lookups waiting for a batch.
type lookupQueue struct {
	mu      sync.Mutex
	pending []*lookupReq
	leading bool          // a caller is gathering or running a batch
	kick    chan struct{} // a lookup joined: the leader re-reads the queue
}

type lookupReq struct {
	r        *record.Record
	notAfter time.Time     // when its backoff ends
	lead     chan struct{} // closed: this caller runs the next batch
	done     chan struct{} // closed once found and err are set
	found    *record.Record
	err      error
	promoted bool // lead was closed (under lookupQueue.mu)
}

// batchable: the comma list of [in] can carry r's external id.
func batchable(r *record.Record) bool {
	return r.ExternalID != "" && !strings.Contains(r.ExternalID, ",")
}

// findExisting is FindExisting after waiting wait (a retry's backoff).
func (cl *Client) findExisting(ctx context.Context, r *record.Record, wait time.Duration) (*record.Record, error) {
	if !batchable(r) {
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		return cl.findOne(ctx, r)
	}
	for {
		req := &lookupReq{r: r, notAfter: time.Now().Add(wait), lead: make(chan struct{}), done: make(chan struct{})}
		q := &cl.lookups
		q.mu.Lock()
		q.pending = append(q.pending, req)
		lead := !q.leading
		q.leading = true
		if q.kick == nil {
			q.kick = make(chan struct{}, 1)
		}
		kick := q.kick
		q.mu.Unlock()
		select {
		case kick <- struct{}{}:
		default:
		}
		if !lead {
			select {
			case <-req.done:
			case <-req.lead:
				lead = true
			case <-ctx.Done():
				// Leave the queue; if made leader meanwhile, pass the lead
				// on, or the lookups behind would wait for nobody. A batch
				// that took req delivers to nobody.
				q.mu.Lock()
				if i := slices.Index(q.pending, req); i >= 0 {
					q.pending = slices.Delete(q.pending, i, i+1)
				}
				promoted := req.promoted
				q.mu.Unlock()
				if promoted {
					cl.handOff()
				}
				return nil, ctx.Err()
			}
		}
		if lead {
			cl.runBatch(ctx, req)
		}
		// Another caller's deadline ended the batch: ask again.
		if isContextErr(req.err) && ctx.Err() == nil {
			wait = 0
			continue
		}
		return req.found, req.err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// dequeue removes req from the queue if it is still waiting there.
func (cl *Client) dequeue(req *lookupReq) bool {
	q := &cl.lookups
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.pending, req); i >= 0 {
		q.pending = slices.Delete(q.pending, i, i+1)
		return true
	}
	return false
}

// handOff makes the oldest waiting lookup the next leader, or ends
// leadership when none waits.
func (cl *Client) handOff() {
	q := &cl.lookups
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		q.leading = false
		return
	}
	next := q.pending[0]
	next.promoted = true
	close(next.lead)
}

// runBatch is the leader's turn: wait until the earliest backoff of the
// queue ends, take its batch (itself first, then whoever waits for the
// same file: asking early costs them nothing), ask, deliver, hand off.
func (cl *Client) runBatch(ctx context.Context, req *lookupReq) {
	defer cl.handOff()
	q := &cl.lookups
	for {
		q.mu.Lock()
		next := req.notAfter
		for _, o := range q.pending {
			if o.notAfter.Before(next) {
				next = o.notAfter
			}
		}
		kick := q.kick
		q.mu.Unlock()
		d := time.Until(next)
		if d <= 0 {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-kick:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			cl.dequeue(req)
			req.err = ctx.Err()
			return
		}
	}
	q.mu.Lock()
	batch := []*lookupReq{req}
	q.pending = slices.DeleteFunc(q.pending, func(o *lookupReq) bool { return o == req })
	idBytes := len(req.r.ExternalID)
	q.pending = slices.DeleteFunc(q.pending, func(o *lookupReq) bool {
		if len(batch) >= maxLookupBatch || o.r.IntegrationFilename != req.r.IntegrationFilename ||
			idBytes+len(o.r.ExternalID)+1 > maxLookupIDBytes {
			return false
		}
		idBytes += len(o.r.ExternalID) + 1
		batch = append(batch, o)
		return true
	})
	q.mu.Unlock()

	recs := make([]*record.Record, len(batch))
	for i, b := range batch {
		recs[i] = b.r
	}
	found, err := cl.findBatch(ctx, recs)
	for i, b := range batch {
		if err != nil {
			b.err = err
		} else {
			b.found = found[i]
		}
		if b != req {
			close(b.done)
		}
	}
}

// findBatch looks up recs (all of one integration_filename) with as few
// index queries as it can: found[i] is recs[i]'s record or nil.
func (cl *Client) findBatch(ctx context.Context, recs []*record.Record) ([]*record.Record, error) {
	found := make([]*record.Record, len(recs))
	todo := make([]int, len(recs)) // indexes still unanswered
	for i := range recs {
		todo[i] = i
	}
	filename := recs[0].IntegrationFilename
	mode := cl.filenameStored.Load()
	if filename != "" && mode != filenameNotStored {
		q := batchQuery(recs, todo).Eq("integration_filename", filename)
		rest, err := cl.answer(ctx, q, recs, todo, found)
		var e *Error
		switch {
		case errors.As(err, &e) && e.Status == http.StatusBadRequest:
			// The server cannot filter on the file name: it does not keep it.
			cl.filenameStored.Store(filenameNotStored)
		case err != nil:
			return nil, err
		case mode == filenameKept:
			return found, nil
		default:
			todo = rest
		}
	}
	if len(todo) == 0 {
		return found, nil
	}
	if _, err := cl.answer(ctx, batchQuery(recs, todo), recs, todo, found); err != nil {
		return nil, err
	}
	return found, nil
}

// batchQuery asks for the records of recs[todo]'s external ids, narrowed by
// their document types and ids, newest first.
func batchQuery(recs []*record.Record, todo []int) *Query {
	var ids, types, docs []string
	allDocs := true
	for _, i := range todo {
		r := recs[i]
		if !slices.Contains(ids, r.ExternalID) {
			ids = append(ids, r.ExternalID)
		}
		if r.DocumentType != "" && !slices.Contains(types, r.DocumentType) {
			types = append(types, r.DocumentType)
		}
		if r.DocumentID == nil {
			allDocs = false
		} else if d := strconv.FormatInt(*r.DocumentID, 10); !slices.Contains(docs, d) {
			docs = append(docs, d)
		}
	}
	q := NewQuery()
	if len(ids) == 1 {
		q.Eq("external-id", ids[0])
	} else {
		q.In("external-id", ids...)
	}
	// Narrowing is safe only where every record has the element (a filter
	// would hide the candidates of a record without it); a type is only
	// narrowed to when it is one, as types may hold commas.
	if len(types) == 1 && allHave(recs, todo, func(r *record.Record) bool { return r.DocumentType != "" }) {
		q.Eq("document-type", types[0])
	}
	if allDocs && len(docs) == 1 {
		q.Eq("document-id", docs[0])
	} else if allDocs {
		q.In("document-id", docs...)
	}
	return q.OrderBy("id", true)
}

func allHave(recs []*record.Record, todo []int, ok func(*record.Record) bool) bool {
	for _, i := range todo {
		if !ok(recs[i]) {
			return false
		}
	}
	return true
}

// answer reads q's pages (up to maxLookupPages) and settles each
// recs[todo] that a candidate matches. It returns the indexes left
// without a match; those a longer answer may have held are asked one by
// one first.
func (cl *Client) answer(ctx context.Context, q *Query, recs []*record.Record, todo []int, found []*record.Record) ([]int, error) {
	var cands []*record.Record
	complete := false
	for p := range maxLookupPages {
		page, err := cl.page(ctx, q, "lookup", MaxPageSize, p*MaxPageSize)
		if err != nil {
			return nil, err
		}
		cands = append(cands, page...)
		if len(page) < MaxPageSize {
			complete = true
			break
		}
	}
	var rest []int
	for _, i := range todo {
		if c := match(cands, recs[i]); c != nil {
			found[i] = c
			continue
		}
		if !complete {
			c, err := cl.findOne(ctx, recs[i])
			if err != nil {
				return nil, err
			}
			if c != nil {
				found[i] = c
				continue
			}
		}
		rest = append(rest, i)
	}
	return rest, nil
}
