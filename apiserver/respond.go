package apiserver

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/record"
)

type (
	sqlString = sql.NullString
	sqlInt    = sql.NullInt64
)

// argStr and argInt are v's driver value: nil for NULL.
func argStr(v sqlString) any {
	if !v.Valid {
		return nil
	}
	return v.String
}

func argInt(v sqlInt) any {
	if !v.Valid {
		return nil
	}
	return v.Int64
}

// validationError is a 400 listing every failed element.
type validationError []record.FieldError

func (v validationError) Error() string {
	msgs := make([]string, len(v))
	for i, e := range v {
		msgs[i] = e.Message
	}
	return strings.Join(msgs, "; ")
}

// errNotFound is a 404 for an unknown id.
var errNotFound = errors.New("not found")

// statusError is a 4xx decided before any work: a body that is too
// large, of an unsupported type or that does not decode.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// readBody reads and decodes the request body; a *statusError (413, 415
// or 400) when it cannot. w is only for http.MaxBytesReader.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, root string) (map[string]any, error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &statusError{http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body is larger than %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, &statusError{http.StatusBadRequest, "Request body could not be read"}
	}
	f, err := bodyFormat(r.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, &statusError{http.StatusUnsupportedMediaType, "Content-Type " + r.Header.Get("Content-Type") + " is not supported; send application/json or application/xml"}
	}
	m, err := decodeBody(f, body, root)
	if err != nil {
		return nil, &statusError{http.StatusBadRequest, upperFirst(err.Error())}
	}
	return m, nil
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// fail maps an error from a handler's work to its status.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, resource string, err error) {
	var ve validationError
	var qe *queryError
	var se *statusError
	switch {
	case errors.As(err, &ve):
		msgs := make([]string, len(ve))
		for i, e := range ve {
			msgs[i] = e.Message
		}
		writeError(w, r, http.StatusBadRequest, resource, msgs...)
	case errors.As(err, &qe):
		writeError(w, r, http.StatusBadRequest, resource, qe.msg)
	case errors.As(err, &se):
		writeError(w, r, se.code, resource, se.msg)
	case errors.Is(err, errNotFound):
		writeError(w, r, http.StatusNotFound, resource, "Record not found")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		w.WriteHeader(499)
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil, sqliteBusy(err):
		// RequestTimeout or SQLite's busy_timeout ran out: another
		// process holds the database locked, or it is stalled.
		s.log.Warn("request ran out of time", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, resource, "The request ran out of time; try again")
	default:
		s.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeError(w, r, http.StatusInternalServerError, resource, "Internal error")
	}
}

// respond writes one object under root, shaped by out.
func respond(w http.ResponseWriter, r *http.Request, code int, root string, obj object, out outputOpts) {
	obj, ok := out.shape(obj)
	if !ok {
		w.WriteHeader(code)
		return
	}
	var b bytes.Buffer
	b.Grow(1024)
	f := negotiate(r.Header.Get("Accept"))
	if f == formatXML {
		encodeXML(&b, root, obj)
	} else {
		encodeJSON(&b, obj)
	}
	w.Header().Set("Content-Type", f.contentType())
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// listWriter streams an index answer: a bare JSON array, or
// <plural type="array"> in XML. Items are encoded into a buffer that goes
// to the client when the caller flushes it.
type listWriter struct {
	w        http.ResponseWriter
	r        *http.Request
	f        format
	plural   string
	itemName string
	out      outputOpts
	b        bytes.Buffer
	n        int
}

// startList answers the status and headers of an index of n items, or
// the whole answer when there is nothing to stream (no match in XML is a
// 404 as Coupa does; return_object=none is an empty 200): nil then.
func startList(w http.ResponseWriter, r *http.Request, plural, item string, n int, out outputOpts) *listWriter {
	f := negotiate(r.Header.Get("Accept"))
	if n == 0 && f == formatXML {
		writeError(w, r, http.StatusNotFound, item, "No results match your search criteria.")
		return nil
	}
	if out.ret == "none" {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	lw := &listWriter{w: w, r: r, f: f, plural: plural, itemName: item, out: out}
	w.Header().Set("Content-Type", f.contentType())
	w.WriteHeader(http.StatusOK)
	if f == formatXML {
		lw.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
		if n == 0 {
			lw.b.WriteString("<" + plural + ` type="array"/>` + "\n")
		} else {
			lw.b.WriteString("<" + plural + ` type="array">` + "\n")
		}
	} else {
		lw.b.WriteByte('[')
	}
	return lw
}

// put encodes one element; flush sends what put encoded.
func (lw *listWriter) put(obj object) {
	obj, ok := lw.out.shape(obj)
	if !ok {
		return
	}
	if lw.f == formatXML {
		writeXMLElem(&lw.b, lw.itemName, obj, 1)
	} else {
		if lw.n > 0 {
			lw.b.WriteByte(',')
		}
		encodeJSON(&lw.b, obj)
	}
	lw.n++
}

func (lw *listWriter) flush() error {
	_, err := lw.w.Write(lw.b.Bytes())
	lw.b.Reset()
	return err
}

// end closes the document and sends the rest.
func (lw *listWriter) end() error {
	if lw.f == formatXML {
		if lw.n > 0 {
			lw.b.WriteString("</" + lw.plural + ">\n")
		}
	} else {
		lw.b.WriteByte(']')
	}
	return lw.flush()
}

// abort ends an answer that failed after its status went out: the
// connection is cut, so the client sees a broken answer, never a short
// list that looks whole.
func (lw *listWriter) abort(s *Server, err error) {
	if lw.r.Context().Err() == nil {
		s.log.Error("index answer cut short", zap.String("path", lw.r.URL.Path), zap.Error(err))
	}
	panic(http.ErrAbortHandler)
}

func writeJSONObject(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	encodeJSON(&b, v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// pathID parses the {id} path value; a non-integer id is simply unknown.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errNotFound
	}
	return id, nil
}

// binder converts decoded body values to typed ones, collecting a
// FieldError per element that has the wrong type or length.
type binder struct {
	m    map[string]any
	errs validationError
}

func (b *binder) fail(e record.FieldError) { b.errs = append(b.errs, e) }

func (b *binder) failed(element string) bool {
	for _, e := range b.errs {
		if e.Element == element {
			return true
		}
	}
	return false
}

// str reads a string element; limit 0 means unbounded (text columns).
// Numbers and booleans are taken as their text, as Rails casts them.
func (b *binder) str(key string, limit int) (sqlString, bool) {
	v, ok := b.m[key]
	if !ok {
		return sqlString{}, false
	}
	return b.strValue(key, v, limit), true
}

func (b *binder) strValue(key string, v any, limit int) sqlString {
	var s string
	switch t := v.(type) {
	case nil:
		return sqlString{}
	case string:
		s = t
	case json.Number:
		s = t.String()
	case bool:
		s = strconv.FormatBool(t)
	default:
		b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " is invalid (expected a string)"})
		return sqlString{}
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " is not valid UTF-8 text"})
		return sqlString{}
	}
	if limit > 0 && utf8.RuneCountInString(s) > limit {
		b.fail(record.TooLong(key))
		return sqlString{}
	}
	return sqlString{String: s, Valid: true}
}

// int reads an integer element: a JSON integer or a string of digits. An
// empty string is null, as Rails casts it.
func (b *binder) int(key string) (sqlInt, bool) {
	v, ok := b.m[key]
	if !ok {
		return sqlInt{}, false
	}
	return b.intValue(key, v), true
}

func (b *binder) intValue(key string, v any) sqlInt {
	var s string
	switch t := v.(type) {
	case nil:
		return sqlInt{}
	case json.Number:
		s = t.String()
	case string:
		s = strings.TrimSpace(t)
		if s == "" {
			return sqlInt{}
		}
	default:
		b.fail(record.NotInteger(key))
		return sqlInt{}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// 12.0 and 1e3 are integers written as floats; 12.5 is not.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			b.fail(record.NotInteger(key))
			return sqlInt{}
		}
		n = int64(f)
	}
	return sqlInt{Int64: n, Valid: true}
}

// ref reads an association reference {"id": …} or {"code": …}; a bare
// integer is taken as the id.
type ref struct {
	id   sqlInt
	code sqlString
	null bool
}

func (b *binder) ref(key string) (ref, bool) {
	v, ok := b.m[key]
	if !ok {
		return ref{}, false
	}
	switch t := v.(type) {
	case nil:
		return ref{null: true}, true
	case map[string]any:
		sub := binder{m: t}
		var rf ref
		rf.id, _ = sub.int("id")
		rf.code, _ = sub.str("code", record.MaxString)
		for _, e := range sub.errs {
			b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " " + strings.ToLower(e.Message[:1]) + e.Message[1:]})
		}
		if !rf.id.Valid && !rf.code.Valid {
			if len(sub.errs) == 0 {
				b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " must be given by id or code"})
			}
			return ref{}, true
		}
		return rf, true
	case json.Number, string:
		return ref{id: b.intValue(key, t)}, true
	}
	b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " is invalid (expected {\"id\": …} or {\"code\": …})"})
	return ref{}, true
}

// list reads an array of objects; XML's <responses><response>… without
// type="array" arrives as {"response": …} and is unwrapped.
func (b *binder) list(key, item string) ([]map[string]any, bool) {
	v, ok := b.m[key]
	if !ok {
		return nil, false
	}
	if m, isMap := v.(map[string]any); isMap {
		inner, ok := m[item]
		if !ok || len(m) != 1 {
			b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " must be an array"})
			return nil, true
		}
		v = inner
	}
	var out []map[string]any
	switch t := v.(type) {
	case nil:
		return nil, true
	case string:
		if strings.TrimSpace(t) == "" {
			return nil, true
		}
	case map[string]any:
		return []map[string]any{t}, true
	case []any:
		for _, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " items must be objects"})
				return nil, true
			}
			out = append(out, m)
		}
		return out, true
	}
	b.fail(record.FieldError{Element: key, Message: record.Humanize(key) + " must be an array"})
	return nil, true
}

// sqliteBusy reports SQLITE_BUSY (primary result code 5): the database
// stayed locked past busy_timeout.
func sqliteBusy(err error) bool {
	var se interface{ Code() int }
	return errors.As(err, &se) && se.Code()&0xff == 5
}
