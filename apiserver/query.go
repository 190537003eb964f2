package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ihr-tools/ihr/record"
)

// Coupa's query language on index: attr=value, attr[op]=value,
// assoc[attr]=value, assoc[attr][op]=value, plus limit, offset, order_by,
// dir, fields and return_object. Column names come only from the
// resource's whitelist; every value is a bound parameter.

type kind int

const (
	kString kind = iota
	kInt
	kTime
	kBool
)

type column struct {
	sql  string
	kind kind
}

// assoc is a queryable association: cond is a SQL fragment with one %s
// for the condition on the associated table's columns.
type assoc struct {
	cond string
	cols map[string]column
}

// resource describes what an index may filter and sort on.
type resource struct {
	name   string // singular, as in error messages ("integration-history-record")
	cols   map[string]column
	assocs map[string]assoc
}

// notNullCols are the sortable columns the schema declares NOT NULL.
var notNullCols = map[string]bool{
	"r.created_at": true, "r.updated_at": true, "r.resolved": true,
	"i.created_at": true, "i.updated_at": true,
	"x.created_at": true, "x.updated_at": true,
}

// MaxLimit caps limit, as Coupa does.
const MaxLimit = 50

// maxInList bounds in/not_in lists so one query cannot bind unbounded
// parameters (SQLite's limit is 32766).
const maxInList = 1000

var operators = map[string]bool{
	"contains": true, "starts_with": true, "ends_with": true, "gt": true, "lt": true,
	"gt_or_eq": true, "lt_or_eq": true, "not_eq": true, "in": true, "not_in": true, "blank": true,
}

// maxConditions and maxArgs bound one query well below SQLite's 32766
// bound parameters and PostgreSQL's 65535.
const (
	maxConditions = 64
	maxArgs       = 4096
)

// listQuery is a parsed index request.
type listQuery struct {
	where   []string
	args    []any
	orderBy string
	notNull bool // orderBy cannot be NULL: no NULLS clause
	desc    bool
	limit   int
	offset  int
	out     outputOpts
}

// outputOpts trims what a response shows: fields and return_object.
type outputOpts struct {
	fields fieldSpec
	ret    string // "", "limited", "shallow", "none"
}

// queryError is a 400 caused by the query string; it names the key.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

func qerr(format string, a ...any) error { return &queryError{fmt.Sprintf(format, a...)} }

// sql completes a SELECT with the query's WHERE, ORDER BY and paging.
func (q *listQuery) sql(base, idCol string) (string, []any) {
	var b strings.Builder
	b.WriteString(base)
	if len(q.where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(q.where, " AND "))
	}
	dir := " ASC"
	if q.desc {
		dir = " DESC"
	}
	b.WriteString(" ORDER BY " + q.orderBy + dir)
	if q.orderBy != idCol {
		// Same NULL placement in both engines (SQLite's default).
		// Where the column cannot be NULL the clause is left out: on
		// PostgreSQL, DESC NULLS LAST does not match a backward scan of
		// the column's index, and a 50-record page newest first sorted
		// every matching row (0.8 s at 1 M records).
		switch {
		case q.notNull:
		case q.desc:
			b.WriteString(" NULLS LAST")
		default:
			b.WriteString(" NULLS FIRST")
		}
		b.WriteString(", " + idCol + dir)
	}
	b.WriteString(" LIMIT ? OFFSET ?")
	return b.String(), append(q.args, q.limit, q.offset)
}

// parseOutput reads fields and return_object, which POST and PUT accept too.
func parseOutput(vals url.Values) (outputOpts, error) {
	var o outputOpts
	for k, vs := range vals {
		switch record.NormalizeKey(k) {
		case "fields":
			f, err := parseFields(vs[len(vs)-1])
			if err != nil {
				return o, err
			}
			o.fields = f
		case "return-object":
			v := strings.ToLower(strings.TrimSpace(vs[len(vs)-1]))
			switch v {
			case "limited", "shallow", "none", "":
				o.ret = v
			default:
				return o, qerr("return_object %q is not one of limited, shallow, none", v)
			}
		}
	}
	return o, nil
}

// forRead refuses return_object=none on a read: Coupa documents none for
// POST and PUT only, and a GET that answers nothing is never what the
// caller meant.
func (o outputOpts) forRead() error {
	if o.ret == "none" {
		return qerr("return_object=none is only for POST and PUT; a GET always answers a body (use limited for ids only)")
	}
	return nil
}

// parseQuery turns an index query string into SQL conditions for res.
func parseQuery(res *resource, d dialect, vals url.Values) (*listQuery, error) {
	q := &listQuery{limit: MaxLimit, orderBy: res.cols["id"].sql}
	out, err := parseOutput(vals)
	if err != nil {
		return nil, err
	}
	if err := out.forRead(); err != nil {
		return nil, err
	}
	q.out = out
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic SQL text
	for _, k := range keys {
		vs := vals[k]
		last := vs[len(vs)-1]
		switch record.NormalizeKey(k) {
		case "fields", "return-object":
			continue
		case "limit":
			n, err := strconv.Atoi(strings.TrimSpace(last))
			if err != nil || n < 0 {
				return nil, qerr("limit %q is not a non-negative integer", last)
			}
			q.limit = min(n, MaxLimit)
			continue
		case "offset":
			n, err := strconv.Atoi(strings.TrimSpace(last))
			if err != nil || n < 0 {
				return nil, qerr("offset %q is not a non-negative integer", last)
			}
			q.offset = n
			continue
		case "order-by":
			c, ok := res.cols[record.NormalizeKey(last)]
			if !ok {
				return nil, qerr("order_by: unknown attribute %q", last)
			}
			q.orderBy = d.sortable(c)
			q.notNull = notNullCols[c.sql]
			continue
		case "dir":
			switch strings.ToLower(strings.TrimSpace(last)) {
			case "asc":
				q.desc = false
			case "desc":
				q.desc = true
			default:
				return nil, qerr("dir %q is not asc or desc", last)
			}
			continue
		}
		// Rails' to_query writes a list as repeated key[]=v: the values
		// are the items of one in/not_in list, as a comma list would be.
		if base, isList := strings.CutSuffix(k, "[]"); isList {
			if err := q.add(parseCondition(res, d, base, "", vs)); err != nil {
				return nil, err
			}
			continue
		}
		for _, v := range vs {
			if err := q.add(parseCondition(res, d, k, v, nil)); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

// add ANDs one parsed condition to the query, within the bounds.
func (q *listQuery) add(cond string, args []any, err error) error {
	if err != nil {
		return err
	}
	q.where = append(q.where, cond)
	q.args = append(q.args, args...)
	if len(q.where) > maxConditions || len(q.args) > maxArgs {
		return qerr("too many conditions (at most %d, with %d values)", maxConditions, maxArgs)
	}
	return nil
}

// splitKey splits "a[b][c]" into ["a","b","c"].
func splitKey(k string) ([]string, bool) {
	i := strings.IndexByte(k, '[')
	if i < 0 {
		return []string{k}, !strings.ContainsRune(k, ']')
	}
	parts := []string{k[:i]}
	rest := k[i:]
	for rest != "" {
		if rest[0] != '[' {
			return nil, false
		}
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			return nil, false
		}
		inner := rest[1:j]
		if strings.ContainsAny(inner, "[") {
			return nil, false
		}
		parts = append(parts, inner)
		rest = rest[j+1:]
	}
	return parts, len(parts) <= 3
}

func normOp(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
}

// parseCondition parses one key=val condition; list, when not nil, holds
// the items of key[]=… (Rails' array form) and val is unused.
func parseCondition(res *resource, d dialect, key, val string, list []string) (string, []any, error) {
	parts, ok := splitKey(key)
	if !ok || parts[0] == "" {
		return "", nil, qerr("malformed query parameter %q", key)
	}
	name := record.NormalizeKey(parts[0])
	if c, ok := res.cols[name]; ok {
		op := ""
		switch len(parts) {
		case 1:
		case 2:
			op = normOp(parts[1])
			if !operators[op] {
				return "", nil, qerr("unknown operator %q in %q", parts[1], key)
			}
		default:
			return "", nil, qerr("malformed query parameter %q", key)
		}
		return condition(d, c, name, op, val, list)
	}
	a, ok := res.assocs[name]
	if !ok {
		return "", nil, qerr("unknown attribute %q", parts[0])
	}
	if len(parts) < 2 {
		return "", nil, qerr("association %q needs an attribute, as in %s[id]", parts[0], parts[0])
	}
	sub := record.NormalizeKey(parts[1])
	c, ok := a.cols[sub]
	if !ok {
		return "", nil, qerr("unknown attribute %q of %q", parts[1], parts[0])
	}
	op := ""
	if len(parts) == 3 {
		op = normOp(parts[2])
		if !operators[op] {
			return "", nil, qerr("unknown operator %q in %q", parts[2], key)
		}
	}
	cond, args, err := condition(d, c, name+"["+sub+"]", op, val, list)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf(a.cond, cond), args, nil
}

// condition builds the SQL for one column, operator and raw value, or
// the items of a key[]= list.
func condition(d dialect, c column, name, op, raw string, list []string) (string, []any, error) {
	if list != nil && op != "in" && op != "not_in" {
		return "", nil, qerr("%s: a list (%s[]=…) is only for the in and not_in operators", name, name)
	}
	// PostgreSQL refuses NUL and invalid UTF-8 in text parameters; refuse
	// them here so both engines answer 400, not a database error.
	for _, v := range append([]string{raw}, list...) {
		if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return "", nil, qerr("%s: value is not valid UTF-8 text", name)
		}
	}
	col := c.sql
	switch op {
	case "blank":
		b, err := parseBool(raw)
		if err != nil {
			return "", nil, qerr("%s[blank]: %q is not true or false", name, raw)
		}
		empty := col + " IS NULL"
		if c.kind == kString {
			empty = "(" + col + " IS NULL OR " + col + " = '')"
		}
		if b {
			return empty, nil, nil
		}
		return "NOT " + empty, nil, nil
	case "contains", "starts_with", "ends_with":
		if c.kind != kString {
			return "", nil, qerr("operator %s is not valid for %s (not a string)", op, name)
		}
		p := escapeLike(raw)
		switch op {
		case "contains":
			p = "%" + p + "%"
		case "starts_with":
			p = p + "%"
		default:
			p = "%" + p
		}
		return col + " " + d.like() + ` ? ESCAPE '\'`, []any{p}, nil
	case "in", "not_in":
		items := list
		if items == nil {
			items = strings.Split(raw, ",")
		}
		if len(items) > maxInList {
			return "", nil, qerr("%s[%s]: more than %d values", name, op, maxInList)
		}
		args := make([]any, 0, len(items))
		for _, it := range items {
			v, err := convert(c.kind, strings.TrimSpace(it), name)
			if err != nil {
				return "", nil, err
			}
			args = append(args, v)
		}
		ph := strings.TrimSuffix(strings.Repeat("?,", len(args)), ",")
		if op == "in" {
			return col + " IN (" + ph + ")", args, nil
		}
		return "(" + col + " IS NULL OR " + col + " NOT IN (" + ph + "))", args, nil
	}
	v, err := convert(c.kind, raw, name)
	if err != nil {
		return "", nil, err
	}
	switch op {
	case "":
		return col + " = ?", []any{v}, nil
	case "not_eq":
		// (our choice) NULL counts as "not equal", as a user expects.
		return "(" + col + " IS NULL OR " + col + " <> ?)", []any{v}, nil
	case "gt":
		return d.sortable(c) + " > ?", []any{v}, nil
	case "lt":
		return d.sortable(c) + " < ?", []any{v}, nil
	case "gt_or_eq":
		return d.sortable(c) + " >= ?", []any{v}, nil
	case "lt_or_eq":
		return d.sortable(c) + " <= ?", []any{v}, nil
	}
	return "", nil, qerr("unknown operator %q", op)
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func convert(k kind, raw, name string) (any, error) {
	switch k {
	case kInt:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, qerr("%s: %q is not an integer", name, raw)
		}
		return n, nil
	case kTime:
		t, err := parseTime(raw)
		if err != nil {
			return nil, qerr("%s: %q is not an ISO-8601 date or datetime", name, raw)
		}
		return t.Unix(), nil
	case kBool:
		b, err := parseBool(raw)
		if err != nil {
			return nil, qerr("%s: %q is not true or false", name, raw)
		}
		if b {
			return int64(1), nil
		}
		return int64(0), nil
	}
	if !strings.ContainsRune(raw, 0) && len(raw) <= 4096 {
		return raw, nil
	}
	return nil, qerr("%s: value is not a valid string", name)
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "t":
		return true, nil
	case "false", "0", "no", "f":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05-0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05-07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

// parseTime accepts ISO-8601 with or without offset (no offset = UTC) and
// plain dates. A '+' that a query string turned into a space is restored.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) > 19 && s[19] == ' ' {
		s = s[:19] + "+" + s[20:]
	} else if i := strings.LastIndexByte(s, ' '); i > 10 && len(s)-i == 6 && strings.Count(s[i:], ":") == 1 {
		s = s[:i] + "+" + s[i+1:]
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

// fieldSpec is a parsed fields parameter: element → sub-spec, where a nil
// sub-spec keeps the whole element.
type fieldSpec map[string]fieldSpec

// parseFields reads Coupa's fields syntax: a JSON array of names and
// {"assoc": [names…]} objects.
func parseFields(s string) (fieldSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var v []any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, qerr(`fields must be a JSON array such as ["id",{"integration":["code"]}]`)
	}
	return fieldsFrom(v, 0)
}

func fieldsFrom(v []any, depth int) (fieldSpec, error) {
	if depth > 8 {
		return nil, qerr("fields nests too deeply")
	}
	spec := fieldSpec{}
	for _, e := range v {
		switch t := e.(type) {
		case string:
			spec[record.NormalizeKey(t)] = nil
		case map[string]any:
			for k, sub := range t {
				l, ok := sub.([]any)
				if !ok {
					return nil, qerr("fields: %q must map to an array of names", k)
				}
				s, err := fieldsFrom(l, depth+1)
				if err != nil {
					return nil, err
				}
				spec[record.NormalizeKey(k)] = s
			}
		default:
			return nil, qerr("fields: items must be names or {association: [names]}")
		}
	}
	return spec, nil
}

// apply trims an output object to the spec.
func (spec fieldSpec) apply(o object) object {
	out := make(object, 0, len(spec))
	for _, f := range o {
		sub, ok := spec[f.Key]
		if !ok {
			continue
		}
		if sub != nil {
			switch t := f.Val.(type) {
			case object:
				f.Val = sub.apply(t)
			case array:
				elems := make([]object, len(t.Elems))
				for i, e := range t.Elems {
					elems[i] = sub.apply(e)
				}
				f.Val = array{Item: t.Item, Elems: elems}
			}
		}
		out = append(out, f)
	}
	return out
}

// shape applies fields and return_object to one output object; ok=false
// means return_object=none (no body).
func (o outputOpts) shape(obj object) (object, bool) {
	if o.fields != nil {
		obj = o.fields.apply(obj)
	}
	switch o.ret {
	case "none":
		return nil, false
	case "limited":
		if id, ok := obj.get("id"); ok {
			return object{{"id", id}}, true
		}
		return object{}, true
	case "shallow":
		out := make(object, 0, len(obj))
		for _, f := range obj {
			switch t := f.Val.(type) {
			case object:
				f.Val = keysOnly(t)
			case array:
				elems := make([]object, len(t.Elems))
				for i, e := range t.Elems {
					elems[i] = keysOnly(e)
				}
				f.Val = array{Item: t.Item, Elems: elems}
			}
			out = append(out, f)
		}
		return out, true
	}
	return obj, true
}

// naturalKeys are the elements that identify an associated object besides
// its id: an integration's code, a user's login. Coupa's shallow format
// keeps "the IDs and natural keys of the one-deep associations", so a
// client can read integration/code from a shallow answer.
var naturalKeys = map[string]bool{"id": true, "code": true, "login": true}

// keysOnly reduces an associated object to its id and natural keys, in
// output order; what fields already trimmed stays trimmed.
func keysOnly(o object) object {
	out := make(object, 0, 2)
	for _, f := range o {
		if naturalKeys[f.Key] {
			out = append(out, f)
		}
	}
	return out
}
