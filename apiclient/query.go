package apiclient

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
)

// Op is a query operator of the API (spec §5).
type Op string

// The operators; conditions are ANDed.
const (
	Contains   Op = "contains"
	StartsWith Op = "starts_with"
	EndsWith   Op = "ends_with"
	Gt         Op = "gt"
	Lt         Op = "lt"
	GtOrEq     Op = "gt_or_eq"
	LtOrEq     Op = "lt_or_eq"
	NotEq      Op = "not_eq"
	In         Op = "in"     // comma list
	NotIn      Op = "not_in" // comma list
	Blank      Op = "blank"  // "true" or "false"
)

// MaxPageSize is the largest page the API returns; larger limits are capped.
const MaxPageSize = 50

// Query builds an index query. The zero value (or NewQuery()) matches
// everything. Methods modify and return the receiver for chaining; a Query
// is not safe for concurrent modification.
//
// Attribute names may be given hyphenated or underscored; associations are
// written as "integration[code]" or "responses[response-code]".
type Query struct {
	v      url.Values
	fields []any
	limit  int
	offset int
}

// NewQuery returns an empty query.
func NewQuery() *Query { return &Query{} }

func (q *Query) add(key, value string) *Query {
	if q.v == nil {
		q.v = url.Values{}
	}
	q.v.Add(key, value)
	return q
}

// queryKey spells an attribute the way Rails expects in a query string
// (underscores); our server takes either spelling, Coupa's needs this one.
func queryKey(attr string) string {
	return strings.ReplaceAll(strings.TrimSpace(attr), "-", "_")
}

// Eq adds attr=value.
func (q *Query) Eq(attr, value string) *Query { return q.add(queryKey(attr), value) }

// Where adds attr[op]=value.
func (q *Query) Where(attr string, op Op, value string) *Query {
	return q.add(queryKey(attr)+"["+string(op)+"]", value)
}

// In adds attr[in]=v1,v2,….
func (q *Query) In(attr string, values ...string) *Query {
	return q.Where(attr, In, strings.Join(values, ","))
}

// NotIn adds attr[not_in]=v1,v2,….
func (q *Query) NotIn(attr string, values ...string) *Query {
	return q.Where(attr, NotIn, strings.Join(values, ","))
}

// IsBlank adds attr[blank]=true|false.
func (q *Query) IsBlank(attr string, blank bool) *Query {
	return q.Where(attr, Blank, strconv.FormatBool(blank))
}

// Integration adds integration[code]=code.
func (q *Query) Integration(code string) *Query { return q.Eq("integration[code]", code) }

// Fields trims the answer: each item is an element name (string) or a
// map[string][]string for an association, e.g.
// Fields("id", "status", map[string][]string{"integration": {"code"}}).
func (q *Query) Fields(items ...any) *Query {
	q.fields = append(q.fields, items...)
	return q
}

// OrderBy sorts by attr; desc reverses. The API's default is id ascending.
func (q *Query) OrderBy(attr string, desc bool) *Query {
	if q.v == nil {
		q.v = url.Values{}
	}
	q.v.Set("order_by", queryKey(attr))
	dir := "asc"
	if desc {
		dir = "desc"
	}
	q.v.Set("dir", dir)
	return q
}

// Limit sets the page size (the API caps it at 50).
func (q *Query) Limit(n int) *Query { q.limit = n; return q }

// Offset skips n records.
func (q *Query) Offset(n int) *Query { q.offset = n; return q }

// ReturnObject sets return_object=limited|shallow. Coupa documents none
// for writes only, and ihr-api answers a query with none with a 400.
func (q *Query) ReturnObject(mode string) *Query {
	if q.v == nil {
		q.v = url.Values{}
	}
	q.v.Set("return_object", mode)
	return q
}

// values renders the query with the given paging (0: omitted).
func (q *Query) values(limit, offset int) url.Values {
	out := url.Values{}
	if q == nil {
		q = &Query{}
	}
	for k, vs := range q.v {
		out[k] = append([]string(nil), vs...)
	}
	if len(q.fields) > 0 {
		b, _ := json.Marshal(q.fields) // strings and maps of strings always marshal
		out.Set("fields", string(b))
	}
	if limit > 0 {
		out.Set("limit", strconv.Itoa(limit))
	}
	if offset > 0 {
		out.Set("offset", strconv.Itoa(offset))
	}
	return out
}

// Encode renders the query string as it will be sent.
func (q *Query) Encode() string {
	if q == nil {
		return ""
	}
	return q.values(q.limit, q.offset).Encode()
}
