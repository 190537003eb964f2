package importer

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/record"
)

// API is what the pipeline needs from the Integration History Records API.
// *apiclient.Client satisfies it through ClientAPI; tests use fakes.
type API interface {
	// Create posts r with action. An existing record found instead (the
	// client's no-duplicate retry) comes back with an error matching
	// apiclient.ErrAlreadyRecorded and a non-nil record.
	Create(ctx context.Context, action record.Action, r *record.Record) (*record.Record, error)
	// FindExisting returns the record r would duplicate, or nil, nil.
	FindExisting(ctx context.Context, r *record.Record) (*record.Record, error)
	// Unresolved lists the document's unresolved records (resolve_previous).
	Unresolved(ctx context.Context, documentType string, documentID int64) ([]*record.Record, error)
	// Resolve marks one record resolved.
	Resolve(ctx context.Context, id int64) error
}

// ClientAPI adapts the API client to API.
func ClientAPI(c *apiclient.Client) API { return clientAPI{c} }

type clientAPI struct{ c *apiclient.Client }

func (a clientAPI) Create(ctx context.Context, action record.Action, r *record.Record) (*record.Record, error) {
	return a.c.Create(ctx, action, r)
}

func (a clientAPI) FindExisting(ctx context.Context, r *record.Record) (*record.Record, error) {
	return a.c.FindExisting(ctx, r)
}

func (a clientAPI) Unresolved(ctx context.Context, documentType string, documentID int64) ([]*record.Record, error) {
	q := apiclient.NewQuery().Eq("resolved", "false").Eq("document-type", documentType).
		Eq("document-id", strconv.FormatInt(documentID, 10))
	var out []*record.Record
	for r, err := range a.c.All(ctx, q) {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (a clientAPI) Resolve(ctx context.Context, id int64) error {
	_, err := a.c.Resolve(ctx, id)
	return err
}

// rowError classifies an API failure. A row failure is recorded as the
// row's "failed" result: the request itself is wrong and would fail again
// (validation, unknown integration, too large, a server error on this
// record). Anything else stops the file so it resumes later instead of
// rejecting good rows: no answer, throttling or gateway errors that
// outlived the client's retries, refused credentials, a refused redirect.
func rowError(err error) (status int, rowFailure bool) {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Temporary(), ae.Status == http.StatusUnauthorized, ae.Status == http.StatusForbidden,
			ae.Status >= 300 && ae.Status < 400: // a redirect we refused: the configured URL is wrong
			return ae.Status, false
		}
		return ae.Status, true
	}
	var sc interface{ HTTPStatus() int }
	if errors.As(err, &sc) {
		s := sc.HTTPStatus()
		return s, s >= 400 && s != http.StatusUnauthorized && s != http.StatusForbidden &&
			s != http.StatusTooManyRequests && s != http.StatusRequestTimeout && s < 502
	}
	return 0, false
}

// errMessage is the report's message for a failed call: the server's own
// messages when it sent some.
func errMessage(err error) string {
	var ae *apiclient.Error
	if errors.As(err, &ae) && len(ae.Messages) > 0 {
		msg := ae.Messages[0]
		for _, m := range ae.Messages[1:] {
			msg += "; " + m
		}
		return msg
	}
	return err.Error()
}
