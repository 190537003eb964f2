// Package mapping turns a parsed CSV row into an Integration History Record
// and the POST action to create it with, and validates the result before
// any API call is spent on it.
//
// The canonical layout (docs/files.md, "Input CSV") names columns after the
// API elements, hyphen or underscore, in any case; a source's Config adapts
// other layouts: Columns names the input column of an element, Defaults
// gives a value when the column is absent or empty, Actions maps status
// values to actions.
package mapping

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
)

// Config is a source's `mapping` block. Keys of Columns and Defaults are
// element names (any spelling record.NormalizeKey accepts); keys of Actions
// are status values, matched case-insensitively, and "*" for any other
// status (including none).
type Config struct {
	Columns  map[string]string `yaml:"columns" json:"columns"`
	Defaults map[string]string `yaml:"defaults" json:"defaults"`
	Actions  map[string]string `yaml:"actions" json:"actions"`
}

// The elements a column or a default can feed, in report order.
// integration-filename is not among them: it is always the file's name.
const (
	eExternalID = iota
	eDocumentType
	eDocumentID
	eDocumentRevision
	eDocumentStatus
	eStatus
	eContactAlertType
	eIntegration
	eCreationMethod
	eAction
	eResponseCode
	eResponseMessage
	nElements
)

// Elements lists the element names a column or a default can feed.
var Elements = []string{
	"external-id", "document-type", "document-id", "document-revision",
	"document-status", "status", "contact-alert-type", "integration",
	"creation-method", "action", "response-code", "response-message",
}

var required = []int{eContactAlertType, eDocumentID, eDocumentType}

func elementIndex(name string) int {
	n := record.NormalizeKey(name)
	for i, e := range Elements {
		if e == n {
			return i
		}
	}
	return -1
}

// DefaultActions are the status rules of worker.md; a Config's Actions
// override them key by key.
var DefaultActions = map[string]string{"Success": "mark_exported", "Error": "create_alert", "*": "create"}

// ConfigError is a bad key or value in a Config. Key is its path in the
// configuration file, e.g. "mapping.defaults.document-type".
type ConfigError struct {
	Key string
	Msg string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Msg }

// Errors about a file's header that does not fit the mapping (the file is
// rejected; the configuration may be right for other files).
var (
	ErrMissingColumn   = errors.New("missing required column")
	ErrDuplicateColumn = errors.New("two columns feed the same element")
)

// Mapped is one row ready to post.
type Mapped struct {
	Row    int // the data row number (parse.Row.Number)
	Action record.Action
	Record record.Record
}

type actionRule struct {
	status string
	action record.Action
}

// Mapper maps the rows of one file. It is safe for concurrent use (Map
// only reads it).
type Mapper struct {
	header      []string
	col         [nElements]int // column index feeding the element, or -1
	def         [nElements]string
	rules       []actionRule
	fallback    record.Action
	integration string
	warnings    []string
}

// A Problem is one bad entry of a Config: Block is "columns", "defaults"
// or "actions" and Name the entry's key as written.
type Problem struct {
	Block, Name, Msg string
}

func (p Problem) err() *ConfigError { return &ConfigError{"mapping." + p.Block + "." + p.Name, p.Msg} }

// Check returns every problem of a Config without a file (element names,
// default values, actions), columns first, then defaults, then actions,
// each block in key order. It is the one judge of a mapping block: the
// worker's configuration reports all of them at load time, and New stops at
// the first.
func Check(cfg Config) []Problem {
	var ps []Problem
	for _, k := range sortedKeys(cfg.Columns) {
		switch {
		case elementIndex(k) < 0:
			ps = append(ps, Problem{"columns", k, fmt.Sprintf("not an element a column can feed (want one of %s)", strings.Join(Elements, ", "))})
		case strings.TrimSpace(cfg.Columns[k]) == "":
			ps = append(ps, Problem{"columns", k, "the column name is empty"})
		}
	}
	for _, k := range sortedKeys(cfg.Defaults) {
		e := elementIndex(k)
		if e < 0 {
			ps = append(ps, Problem{"defaults", k, fmt.Sprintf("not an element (want one of %s)", strings.Join(Elements, ", "))})
		} else if msg := checkValue(e, strings.TrimSpace(cfg.Defaults[k])); msg != "" {
			ps = append(ps, Problem{"defaults", k, msg})
		}
	}
	for _, k := range sortedKeys(cfg.Actions) {
		if v := cfg.Actions[k]; !isAction(v) {
			ps = append(ps, Problem{"actions", k, fmt.Sprintf("%q is not an action (want one of %s)", v, actionList())})
		}
	}
	return ps
}

func isAction(v string) bool {
	_, ok := record.ParseAction(v)
	return ok
}

// IsElement reports whether name (any spelling record.NormalizeKey
// accepts) is an element a column or a default can feed.
func IsElement(name string) bool { return elementIndex(name) >= 0 }

// compile turns a Config that Check accepts into the defaults by element
// and the status rules; a Config it does not accept is Check's first
// problem.
func compile(cfg Config) (def [nElements]string, rules []actionRule, err error) {
	if ps := Check(cfg); len(ps) > 0 {
		return def, nil, ps[0].err()
	}
	for _, k := range sortedKeys(cfg.Defaults) {
		def[elementIndex(k)] = strings.TrimSpace(cfg.Defaults[k])
	}
	merged := map[string]string{}
	for k, v := range DefaultActions {
		merged[strings.ToLower(k)] = v
	}
	for _, k := range sortedKeys(cfg.Actions) {
		a, _ := record.ParseAction(cfg.Actions[k])
		merged[strings.ToLower(strings.TrimSpace(k))] = string(a)
	}
	for k, v := range merged {
		a, _ := record.ParseAction(v)
		if k != "*" {
			rules = append(rules, actionRule{k, a})
		}
	}
	return def, rules, nil
}

// checkValue validates a default value for element e; "" means fine.
func checkValue(e int, v string) string {
	if v == "" {
		return ""
	}
	switch e {
	case eDocumentID, eDocumentRevision:
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Sprintf("%q is not an integer", v)
		}
	case eDocumentType:
		if !record.IsDocumentType(v) {
			return fmt.Sprintf("%q is not one of the 31 document types%s", v, didYouMean(v))
		}
	case eAction:
		if _, ok := record.ParseAction(v); !ok {
			return fmt.Sprintf("%q is not an action (want one of %s)", v, actionList())
		}
	case eResponseMessage:
	default:
		if utf8.RuneCountInString(v) > record.MaxString {
			return fmt.Sprintf("longer than %d characters", record.MaxString)
		}
	}
	return ""
}

func actionList() string {
	s := make([]string, len(record.Actions))
	for i, a := range record.Actions {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func didYouMean(v string) string {
	for _, t := range record.DocumentTypes {
		if strings.EqualFold(t, v) {
			return fmt.Sprintf(" (did you mean %q? the match is case-sensitive)", t)
		}
	}
	return ""
}

// New prepares the mapping of one file from its header. sourceIntegration
// is the source's integration code, used when a row has none. Errors: a
// *ConfigError for a bad configuration; ErrMissingColumn (wrapped, naming
// the elements and the header) when a required element has neither a
// column nor a default; ErrDuplicateColumn when two columns would feed one
// element.
func New(cfg Config, header []string, sourceIntegration string) (*Mapper, error) {
	def, rules, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	m := &Mapper{header: header, def: def, rules: rules, integration: strings.TrimSpace(sourceIntegration), fallback: record.Create}
	if a, ok := cfg.Actions["*"]; ok {
		m.fallback, _ = record.ParseAction(a)
	} else {
		m.fallback, _ = record.ParseAction(DefaultActions["*"])
	}
	for i := range m.col {
		m.col[i] = -1
	}
	claimed := make([]bool, len(header))
	// Explicit columns first: a column named there feeds only that element.
	for _, k := range sortedKeys(cfg.Columns) {
		name := cfg.Columns[k]
		e := elementIndex(k)
		idx, err := findColumn(header, name)
		if err != nil {
			return nil, fmt.Errorf("mapping.columns.%s: %w", k, err)
		}
		if idx < 0 {
			m.warnings = append(m.warnings, fmt.Sprintf("mapping.columns.%s: column %q is not in the header", k, name))
			continue
		}
		m.col[e] = idx
		claimed[idx] = true
	}
	known := false
	for i, h := range header {
		e := elementIndex(h)
		if e < 0 {
			continue
		}
		known = true
		if claimed[i] || cfg.Columns != nil && hasKey(cfg.Columns, Elements[e]) {
			continue
		}
		if prev := m.col[e]; prev >= 0 {
			return nil, fmt.Errorf("%w: columns %d (%q) and %d (%q) both feed %s", ErrDuplicateColumn, prev+1, header[prev], i+1, h, Elements[e])
		}
		m.col[e] = i
	}
	var missing []string
	for _, e := range required {
		if m.col[e] < 0 && m.def[e] == "" {
			missing = append(missing, Elements[e])
		}
	}
	if len(missing) > 0 {
		hint := ""
		if !known && len(cfg.Columns) == 0 {
			hint = "; no header name is an element name: is the header row missing?"
		}
		if len(m.warnings) > 0 {
			hint += "; " + strings.Join(m.warnings, "; ")
		}
		return nil, fmt.Errorf("%w %s (header: %s; map a column with mapping.columns or give mapping.defaults)%s",
			ErrMissingColumn, strings.Join(missing, ", "), quoteList(header, 12), hint)
	}
	return m, nil
}

// sortedKeys makes errors and warnings the same from run to run.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func hasKey(m map[string]string, element string) bool {
	for k := range m {
		if record.NormalizeKey(k) == element {
			return true
		}
	}
	return false
}

// findColumn finds a header column by exact name, else case-insensitively
// with surrounding spaces ignored; -1 when absent.
func findColumn(header []string, name string) (int, error) {
	for i, h := range header {
		if h == name {
			return i, nil
		}
	}
	found := -1
	for i, h := range header {
		if strings.EqualFold(strings.TrimSpace(h), strings.TrimSpace(name)) {
			if found >= 0 {
				return -1, fmt.Errorf("%w: columns %d and %d both match %q", ErrDuplicateColumn, found+1, i+1, name)
			}
			found = i
		}
	}
	return found, nil
}

func quoteList(s []string, max int) string {
	var b strings.Builder
	for i, v := range s {
		if i == max {
			fmt.Fprintf(&b, ", … %d more", len(s)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}

// Warnings lists harmless mismatches found by New (a mapped optional
// column that is not in this file's header), for the caller to log.
func (m *Mapper) Warnings() []string { return m.warnings }

// Column returns the header name of the column feeding element, or "".
func (m *Mapper) Column(element string) string {
	if e := elementIndex(element); e >= 0 && m.col[e] >= 0 {
		return m.header[m.col[e]]
	}
	return ""
}

// value returns the element's value in row (trimmed), else its default.
func (m *Mapper) value(fields []string, e int) string {
	if i := m.col[e]; i >= 0 && i < len(fields) {
		if v := strings.TrimSpace(fields[i]); v != "" {
			return v
		}
	}
	return m.def[e]
}

// where describes the source of an element for messages.
func (m *Mapper) where(e int) string {
	if i := m.col[e]; i >= 0 {
		return fmt.Sprintf("column %q", m.header[i])
	}
	return fmt.Sprintf("no column; set mapping.columns.%s or mapping.defaults.%s", Elements[e], Elements[e])
}

// Map maps one row of the file named filename (a path; its base name
// becomes integration-filename). It returns every validation failure of
// the row, each naming the element and the CSV column; with failures the
// row must not be posted, and Mapped holds what could be mapped (for the
// report). Map does not check duplicates: see DupTracker.
func (m *Mapper) Map(row parse.Row, filename string) (Mapped, []record.FieldError) {
	f := row.Fields
	out := Mapped{Row: row.Number}
	r := &out.Record
	var errs []record.FieldError
	bad := [nElements]bool{}

	r.ExternalID = m.value(f, eExternalID)
	r.DocumentType = m.value(f, eDocumentType)
	r.DocumentStatus = m.value(f, eDocumentStatus)
	r.Status = m.value(f, eStatus)
	r.ContactAlertType = m.value(f, eContactAlertType)
	r.CreationMethod = m.value(f, eCreationMethod)
	r.IntegrationFilename = baseName(filename)
	var ints *[2]int64 // one allocation for both integers
	for _, e := range []int{eDocumentID, eDocumentRevision} {
		v := m.value(f, e)
		if v == "" {
			continue
		}
		if ints == nil {
			ints = new([2]int64)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			bad[e] = true
			errs = append(errs, record.FieldError{Element: Elements[e],
				Message: fmt.Sprintf("%s (%s: %s)", record.NotInteger(Elements[e]).Message, m.where(e), clip(v))})
			continue
		}
		if e == eDocumentID {
			ints[0] = n
			r.DocumentID = &ints[0]
		} else {
			ints[1] = n
			r.DocumentRevision = &ints[1]
		}
	}
	if code := m.value(f, eIntegration); code != "" {
		r.Integration = &record.IntegrationRef{Code: code}
	} else if m.integration != "" {
		r.Integration = &record.IntegrationRef{Code: m.integration}
	}
	if r.Integration != nil && utf8.RuneCountInString(r.Integration.Code) > record.MaxString {
		errs = append(errs, record.FieldError{Element: "integration",
			Message: fmt.Sprintf("%s (%s)", record.TooLong("integration").Message, m.where(eIntegration))})
	}
	if code, msg := m.value(f, eResponseCode), m.value(f, eResponseMessage); code != "" || msg != "" {
		r.Responses = []record.Response{{ResponseCode: code, ResponseMessage: msg}}
	}

	if v := m.value(f, eAction); v != "" {
		a, ok := record.ParseAction(v)
		if !ok {
			errs = append(errs, record.FieldError{Element: "action",
				Message: fmt.Sprintf("Action %s is not one of %s (%s)", clip(v), actionList(), m.where(eAction))})
		}
		out.Action = a
	} else {
		out.Action = m.actionFor(r.Status)
	}

	for _, fe := range record.Validate(r) {
		e := elementIndex(fe.Element)
		if e >= 0 && bad[e] {
			continue // already reported as not a number
		}
		if e >= 0 {
			fe.Message = fmt.Sprintf("%s (%s)", fe.Message, m.where(e))
			if e == eDocumentType {
				fe.Message += didYouMean(r.DocumentType)
			}
		} else if fe.Element == "integration-filename" {
			fe.Message += " (the file's name)"
		}
		errs = append(errs, fe)
	}
	return out, errs
}

func (m *Mapper) actionFor(status string) record.Action {
	for _, rule := range m.rules {
		if strings.EqualFold(rule.status, status) {
			return rule.action
		}
	}
	return m.fallback
}

func baseName(name string) string {
	if i := strings.LastIndexByte(name, '\\'); i >= 0 {
		name = name[i+1:]
	}
	switch name = path.Base(name); name {
	case ".", "/", "..":
		return "" // no file name to record
	}
	return name
}

// clip quotes a value for a message, shortened so that a huge bad value
// does not make a huge report line.
func clip(v string) string {
	const max = 60
	if utf8.RuneCountInString(v) > max {
		r := []rune(v)
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(v)
}
