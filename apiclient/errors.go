package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// ErrAlreadyRecorded comes back from Create together with the existing
// record when a lookup found the record instead of a 201 confirming it: an
// earlier run stored it, or an earlier attempt of this very call whose answer
// was lost did. Callers treat it as success and report "already-recorded".
var ErrAlreadyRecorded = errors.New("apiclient: record already recorded")

// Error is a failed request: a status the server answered that is not a
// success, or (Status 0) a transport failure that outlived the retries.
// Use errors.As to get it; Unwrap yields the transport or context error.
type Error struct {
	Status   int      // HTTP status; 0 when no answer came
	Messages []string // the server's messages, e.g. "Document type can't be blank"
	Method   string
	Path     string // request path, without query
	Err      error  // underlying transport/context error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("apiclient: ")
	b.WriteString(e.Method)
	b.WriteByte(' ')
	b.WriteString(e.Path)
	b.WriteString(": ")
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
		if len(e.Messages) > 0 {
			b.WriteString(": ")
		}
	}
	b.WriteString(strings.Join(e.Messages, "; "))
	if e.Err != nil {
		if e.Status != 0 || len(e.Messages) > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure was transient (connection trouble,
// timeout, 429, 502/503/504) and only outlived the retries: trying later may
// succeed. A false answer means the request itself is wrong (400, 401, 403,
// 404, 413, 415, 422, 500 …) and will fail again as is.
func (e *Error) Temporary() bool {
	switch e.Status {
	case 0, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// fail turns the last outcome of c into an *Error. cause, if non-nil, takes
// precedence over the transport error of the outcome.
func (cl *Client) fail(c *call, o *outcome, cause error) error {
	if o.authErr != nil && cause == nil {
		return o.authErr
	}
	e := &Error{Status: o.status, Method: c.method, Path: c.path, Err: o.err}
	if cause != nil {
		e.Err = cause
	}
	switch {
	case isRedirect(o.status):
		e.Messages = []string{redirectRefused(o.location)}
	case o.status != 0:
		e.Messages = errorMessages(o.body)
	}
	return e
}

// errorMessages pulls the human messages out of an error body, whatever its
// shape: {"errors": {"integration-history-record": [..]}}, {"errors": [..]},
// {"error": "..", "error_description": ".."} or plain text.
func errorMessages(body []byte) []string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(body, &v) == nil {
		var msgs []string
		if m, ok := v.(map[string]any); ok {
			for _, k := range []string{"errors", "error", "error_description", "message"} {
				if e, ok := m[k]; ok {
					msgs = collectStrings(msgs, e)
				}
			}
		} else {
			msgs = collectStrings(msgs, v)
		}
		if len(msgs) > 0 {
			return msgs
		}
	}
	s := string(body)
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return []string{s}
}

func collectStrings(dst []string, v any) []string {
	switch t := v.(type) {
	case string:
		if t != "" {
			dst = append(dst, t)
		}
	case []any:
		for _, e := range t {
			dst = collectStrings(dst, e)
		}
	case map[string]any:
		// Keys are element or object names; the messages already name the
		// element, so only the values matter. Sort for stable output.
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = collectStrings(dst, t[k])
		}
	}
	return dst
}
