package apiclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ihr-tools/ihr/record"
)

const recordsPath = "/api/integration_history_records"

// filenameStored states.
const (
	filenameUnknown   = 0
	filenameKept      = 1
	filenameNotStored = 2
)

// Create posts r with one of the five POST actions and returns the stored
// record.
//
// If an attempt's outcome is unknown (the request was written but the
// answer was lost, or a gateway answered 502/503/504), Create does not
// re-send it blindly: it first calls FindExisting, and if the record is
// there it returns that record together with ErrAlreadyRecorded. So a
// caller gets either a new record (err == nil), an existing one
// (errors.Is(err, ErrAlreadyRecorded), record non-nil), or a failure
// (record nil, err an *Error).
func (cl *Client) Create(ctx context.Context, action record.Action, r *record.Record) (*record.Record, error) {
	if !slices.Contains(record.Actions, action) {
		return nil, fmt.Errorf("apiclient: unknown action %q", action)
	}
	body, err := marshal(writable(r))
	if err != nil {
		return nil, err
	}
	var found *record.Record
	c := &call{
		action: string(action), method: http.MethodPost, path: recordsPath + action.Path(), body: body,
		rawQuery: cl.createQuery,
		onUnknown: func(ctx context.Context, wait time.Duration) (bool, error) {
			f, err := cl.findExisting(ctx, r, wait)
			found = f
			return f != nil, err
		},
	}
	var out record.Record
	var dst any = &out
	var slim createAnswer
	if cl.createSlim {
		dst = &slim
	}
	switch err := cl.do(ctx, c, dst); {
	case errors.Is(err, errFound):
		return found, ErrAlreadyRecorded
	case err != nil:
		return nil, err
	}
	if cl.createSlim {
		out = record.Record{ID: slim.ID, IntegrationFilename: cmp.Or(slim.Filename, slim.FilenameUnderscore)}
	}
	if r.IntegrationFilename != "" {
		switch out.IntegrationFilename {
		case r.IntegrationFilename:
			cl.filenameStored.Store(filenameKept)
		case "":
			cl.filenameStored.Store(filenameNotStored)
		}
	}
	return &out, nil
}

// createAnswer is the part of a create's answer a Client with CreateFields
// of id alone reads: decoding two elements costs a fraction of a record's
// custom decoding. Both spellings are accepted, as everywhere.
type createAnswer struct {
	ID                 int64  `json:"id"`
	Filename           string `json:"integration-filename"`
	FilenameUnderscore string `json:"integration_filename"`
}

// FindExisting looks for a record that r would duplicate and returns the
// newest one, or nil, nil when there is none. Lookups are GETs that spend
// rate tokens like any request.
//
// Concurrent lookups are answered together: one index query by
// external-id[in] for all of them (see lookup.go), so lookups cost a GET
// per batch rather than per record.
//
// A candidate counts only if it has r's identity (external-id,
// document-type, document-id) and content (sameContent), and carries no
// other file's name. The client first asks by integration_filename;
// servers that do not keep it (Coupa, ihr-api in strict mode) are then
// asked without it. Once the Client has seen whether the server keeps
// file names it asks only the query that can answer.
func (cl *Client) FindExisting(ctx context.Context, r *record.Record) (*record.Record, error) {
	return cl.findExisting(ctx, r, 0)
}

// findOne is FindExisting for one record by itself: for records a batch
// cannot carry (no external id, or one with a comma, which the comma list
// of [in] cannot hold).
func (cl *Client) findOne(ctx context.Context, r *record.Record) (*record.Record, error) {
	if r.DocumentID == nil && r.ExternalID == "" {
		return nil, nil // nothing identifies it; Validate refuses such a record anyway
	}
	mode := cl.filenameStored.Load()
	if r.IntegrationFilename != "" && mode != filenameNotStored {
		q := identityQuery(r).Eq("integration_filename", r.IntegrationFilename)
		page, err := cl.index(ctx, q, "lookup")
		var e *Error
		switch {
		case errors.As(err, &e) && e.Status == http.StatusBadRequest:
			// The server cannot filter on the file name: it does not keep it.
			cl.filenameStored.Store(filenameNotStored)
		case err != nil:
			return nil, err
		default:
			if c := match(page, r); c != nil {
				return c, nil
			}
			if mode == filenameKept {
				return nil, nil
			}
		}
	}
	page, err := cl.index(ctx, identityQuery(r), "lookup")
	if err != nil {
		return nil, err
	}
	return match(page, r), nil
}

// match is the first of cands (newest first) that is r's record.
func match(cands []*record.Record, r *record.Record) *record.Record {
	for _, c := range cands {
		if sameIdentity(c, r) && sameContent(c, r) &&
			(c.IntegrationFilename == "" || c.IntegrationFilename == r.IntegrationFilename) {
			return c
		}
	}
	return nil
}

// identityQuery asks for the newest records of r's document and external id.
func identityQuery(r *record.Record) *Query {
	q := NewQuery()
	if r.ExternalID != "" {
		q.Eq("external-id", r.ExternalID)
	}
	if r.DocumentType != "" {
		q.Eq("document-type", r.DocumentType)
	}
	if r.DocumentID != nil {
		q.Eq("document-id", strconv.FormatInt(*r.DocumentID, 10))
	}
	return q.OrderBy("id", true).Limit(MaxPageSize)
}

// sameIdentity guards against servers that ignore a filter they do not know.
func sameIdentity(c, r *record.Record) bool {
	if c.ExternalID != r.ExternalID || c.DocumentType != r.DocumentType {
		return false
	}
	return r.DocumentID == nil || (c.DocumentID != nil && *c.DocumentID == *r.DocumentID)
}

// sameContent compares what the server stores verbatim, so that only a
// record with r's content counts as r's: another event of the same
// document (or an earlier file of the same name whose row had the same
// key) never passes for it. The action is not stored; everything else r
// would post is compared. creation-method, which a server may fill in, and
// responses, which later updates append to, are compared only as far as r
// sets them.
func sameContent(c, r *record.Record) bool {
	if c.Status != r.Status || c.ContactAlertType != r.ContactAlertType || c.DocumentStatus != r.DocumentStatus {
		return false
	}
	if r.CreationMethod != "" && c.CreationMethod != r.CreationMethod {
		return false
	}
	if !sameInt(c.DocumentRevision, r.DocumentRevision) {
		return false
	}
	if r.IntegrationRunID != nil && (c.IntegrationRunID == nil || *c.IntegrationRunID != *r.IntegrationRunID) &&
		(c.IntegrationRun == nil || c.IntegrationRun.ID != *r.IntegrationRunID) {
		return false
	}
	if r.Integration != nil && r.Integration.Code != "" && c.Integration != nil && c.Integration.Code != "" &&
		c.Integration.Code != r.Integration.Code {
		return false
	}
	if len(c.Responses) < len(r.Responses) {
		return false
	}
	for i, want := range r.Responses {
		if got := c.Responses[i]; got.ResponseCode != want.ResponseCode || got.ResponseMessage != want.ResponseMessage {
			return false
		}
	}
	return true
}

func sameInt(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Show fetches one record.
func (cl *Client) Show(ctx context.Context, id int64) (*record.Record, error) {
	var out record.Record
	c := &call{action: "show", method: http.MethodGet, path: recordPath(id)}
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Update changes the writable elements set in r (a partial update: zero
// values are not sent, so it cannot blank an element). Responses in r are
// appended by the server; since that makes a re-sent PUT add them twice, an
// update whose outcome is unknown checks the record before trying again.
func (cl *Client) Update(ctx context.Context, id int64, r *record.Record) (*record.Record, error) {
	body, err := marshal(writable(r))
	if err != nil {
		return nil, err
	}
	c := &call{action: "update", method: http.MethodPut, path: recordPath(id), body: body}
	var found *record.Record
	if len(r.Responses) > 0 {
		c.onUnknown = func(ctx context.Context, wait time.Duration) (bool, error) {
			if err := sleep(ctx, wait); err != nil {
				return false, err
			}
			cur, err := cl.Show(ctx, id)
			if err != nil {
				return false, err
			}
			if hasResponsesTail(cur.Responses, r.Responses) {
				found = cur
				return true, nil
			}
			return false, nil
		}
	}
	var out record.Record
	switch err := cl.do(ctx, c, &out); {
	case errors.Is(err, errFound):
		return found, nil
	case err != nil:
		return nil, err
	}
	return &out, nil
}

func hasResponsesTail(have, want []record.Response) bool {
	if len(have) < len(want) {
		return false
	}
	tail := have[len(have)-len(want):]
	for i := range want {
		if tail[i].ResponseCode != want[i].ResponseCode || tail[i].ResponseMessage != want[i].ResponseMessage {
			return false
		}
	}
	return true
}

// Resolve marks a record resolved.
func (cl *Client) Resolve(ctx context.Context, id int64) (*record.Record, error) {
	return cl.put(ctx, "resolve", id)
}

// Unresolve marks a record unresolved.
func (cl *Client) Unresolve(ctx context.Context, id int64) (*record.Record, error) {
	return cl.put(ctx, "unresolve", id)
}

func (cl *Client) put(ctx context.Context, verb string, id int64) (*record.Record, error) {
	var out record.Record
	c := &call{action: verb, method: http.MethodPut, path: recordPath(id) + "/" + verb}
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Index returns one page of records matching q (nil: all), honouring its
// limit and offset.
func (cl *Client) Index(ctx context.Context, q *Query) ([]*record.Record, error) {
	return cl.index(ctx, q, "index")
}

func (cl *Client) index(ctx context.Context, q *Query, action string) ([]*record.Record, error) {
	limit, offset := 0, 0
	if q != nil {
		limit, offset = q.limit, q.offset
	}
	return cl.page(ctx, q, action, limit, offset)
}

func (cl *Client) page(ctx context.Context, q *Query, action string, limit, offset int) ([]*record.Record, error) {
	var out []*record.Record
	c := &call{action: action, method: http.MethodGet, path: recordsPath, query: q.values(limit, offset)}
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// All yields every record matching q, from q's offset on, paging with
// limit/offset until a short page. q's limit is the page size (default and
// maximum 50). The sequence stops after yielding an error.
func (cl *Client) All(ctx context.Context, q *Query) iter.Seq2[*record.Record, error] {
	return func(yield func(*record.Record, error) bool) {
		size, offset := MaxPageSize, 0
		if q != nil {
			if q.limit > 0 && q.limit < MaxPageSize {
				size = q.limit
			}
			offset = q.offset
		}
		for {
			page, err := cl.page(ctx, q, "index", size, offset)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, r := range page {
				if !yield(r, nil) {
					return
				}
			}
			if len(page) < size {
				return
			}
			offset += len(page)
		}
	}
}

// isWritable: r holds no element the server sets (what writable drops).
func isWritable(r *record.Record) bool {
	if r.ID != 0 || r.CreatedAt != nil || r.UpdatedAt != nil || r.CreatedBy != nil || r.UpdatedBy != nil || r.Resolved {
		return false
	}
	if r.Integration != nil && r.Integration.Name != "" || r.IntegrationRun != nil && (r.IntegrationRun.Code != "" || r.IntegrationRun.Name != "") {
		return false
	}
	for _, resp := range r.Responses {
		if resp != (record.Response{ResponseCode: resp.ResponseCode, ResponseMessage: resp.ResponseMessage}) {
			return false
		}
	}
	return true
}

func recordPath(id int64) string { return recordsPath + "/" + strconv.FormatInt(id, 10) }

// writable copies r without the elements the server sets, so a record read
// from the API can be posted or put back as is. A record that holds none
// (every record the importer maps) is returned as it is, uncopied.
func writable(r *record.Record) *record.Record {
	if isWritable(r) {
		return r
	}
	w := *r
	w.ID = 0
	w.CreatedAt, w.UpdatedAt = nil, nil
	w.CreatedBy, w.UpdatedBy = nil, nil
	w.Resolved = false
	if r.Integration != nil {
		w.Integration = &record.IntegrationRef{ID: r.Integration.ID, Code: r.Integration.Code}
	}
	if r.IntegrationRun != nil {
		w.IntegrationRun = &record.IntegrationRef{ID: r.IntegrationRun.ID}
	}
	if len(r.Responses) > 0 {
		w.Responses = make([]record.Response, len(r.Responses))
		for i, resp := range r.Responses {
			w.Responses[i] = record.Response{ResponseCode: resp.ResponseCode, ResponseMessage: resp.ResponseMessage}
		}
	}
	return &w
}
