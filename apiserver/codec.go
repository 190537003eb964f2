package apiserver

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ihr-tools/ihr/record"
)

// Output side: handlers build an ordered tree (object) that encodes to
// Coupa-shaped JSON (no root) or Rails-style XML (typed, nil attributes).

// field is one key of an output object, in output order.
type field struct {
	Key string
	Val any // string, int64, bool, time.Time, object, array, null
}

// object is an ordered output object.
type object []field

// array is a list of objects; Item names each element in XML.
type array struct {
	Item  string
	Elems []object
}

// null is an absent value; Type is the XML type attribute it would carry.
type null struct{ Type string }

var (
	nullString = null{}
	nullInt    = null{"integer"}
	nullTime   = null{"dateTime"}
)

func (o object) get(key string) (any, bool) {
	for _, f := range o {
		if f.Key == key {
			return f.Val, true
		}
	}
	return nil, false
}

// timeLayout is ISO-8601 with a numeric offset (never "Z"), as Coupa
// prints it.
const timeLayout = "2006-01-02T15:04:05-07:00"

func str(s sqlString) any {
	if !s.Valid {
		return nullString
	}
	return s.String
}

func i64(v sqlInt) any {
	if !v.Valid {
		return nullInt
	}
	return v.Int64
}

func tim(v sqlInt) any {
	if !v.Valid {
		return nullTime
	}
	return unixUTC(v.Int64)
}

// unixUTC is a stored timestamp (Unix seconds) as it is printed.
func unixUTC(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

type format int

const (
	formatJSON format = iota
	formatXML
)

func (f format) contentType() string {
	if f == formatXML {
		return "application/xml; charset=utf-8"
	}
	return "application/json; charset=utf-8"
}

// negotiate picks the response format from Accept: XML only when an XML
// type is asked for before any JSON type; everything else gets JSON.
func negotiate(accept string) format {
	if accept == "" {
		return formatJSON
	}
	for _, part := range strings.Split(accept, ",") {
		mt := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
			return formatXML
		case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
			return formatJSON
		}
	}
	return formatJSON
}

// encodeJSON appends v as JSON.
func encodeJSON(b *bytes.Buffer, v any) {
	switch t := v.(type) {
	case object:
		b.WriteByte('{')
		for i, f := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, f.Key)
			b.WriteByte(':')
			encodeJSON(b, f.Val)
		}
		b.WriteByte('}')
	case array:
		b.WriteByte('[')
		for i, e := range t.Elems {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeJSON(b, e)
		}
		b.WriteByte(']')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeJSON(b, e)
		}
		b.WriteByte(']')
	case string:
		writeJSONString(b, t)
	case int64:
		b.WriteString(strconv.FormatInt(t, 10))
	case int:
		b.WriteString(strconv.Itoa(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case time.Time:
		b.WriteByte('"')
		b.WriteString(t.Format(timeLayout))
		b.WriteByte('"')
	case json.RawMessage:
		b.Write(t)
	case null, nil:
		b.WriteString("null")
	default:
		// Only reachable through a programming error; keep output valid.
		b.WriteString("null")
	}
}

const hexDigits = "0123456789abcdef"

func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b.WriteString(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// encodeXML writes a Rails-style XML document whose root element is root.
func encodeXML(b *bytes.Buffer, root string, v any) {
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	writeXMLElem(b, root, v, 0)
}

func indent(b *bytes.Buffer, depth int) {
	for range depth {
		b.WriteString("  ")
	}
}

func writeXMLElem(b *bytes.Buffer, name string, v any, depth int) {
	indent(b, depth)
	switch t := v.(type) {
	case object:
		b.WriteString("<" + name + ">\n")
		for _, f := range t {
			writeXMLElem(b, f.Key, f.Val, depth+1)
		}
		indent(b, depth)
		b.WriteString("</" + name + ">\n")
	case array:
		if len(t.Elems) == 0 {
			b.WriteString("<" + name + ` type="array"/>` + "\n")
			return
		}
		b.WriteString("<" + name + ` type="array">` + "\n")
		for _, e := range t.Elems {
			writeXMLElem(b, t.Item, e, depth+1)
		}
		indent(b, depth)
		b.WriteString("</" + name + ">\n")
	case string:
		if t == "" {
			// Untyped, an empty element reads back as nil in Rails.
			b.WriteString("<" + name + ` type="string"></` + name + ">\n")
			return
		}
		b.WriteString("<" + name + ">")
		xmlEscape(b, t)
		b.WriteString("</" + name + ">\n")
	case int64:
		b.WriteString("<" + name + ` type="integer">` + strconv.FormatInt(t, 10) + "</" + name + ">\n")
	case int:
		b.WriteString("<" + name + ` type="integer">` + strconv.Itoa(t) + "</" + name + ">\n")
	case bool:
		b.WriteString("<" + name + ` type="boolean">` + strconv.FormatBool(t) + "</" + name + ">\n")
	case time.Time:
		b.WriteString("<" + name + ` type="dateTime">` + t.Format(timeLayout) + "</" + name + ">\n")
	case null:
		if t.Type != "" {
			b.WriteString("<" + name + ` type="` + t.Type + `" nil="true"/>` + "\n")
		} else {
			b.WriteString("<" + name + ` nil="true"/>` + "\n")
		}
	default:
		b.WriteString("<" + name + ` nil="true"/>` + "\n")
	}
}

// xmlEscape escapes text and drops characters XML 1.0 cannot carry, so
// any stored string yields a well-formed document.
func xmlEscape(b *bytes.Buffer, s string) {
	clean := strings.Map(func(r rune) rune {
		if r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF) {
			return r
		}
		return '\uFFFD'
	}, s)
	xml.EscapeText(b, []byte(clean))
}

// Input side: JSON and XML bodies decode to the same generic tree with
// canonical (hyphenated, lower-case) keys: map[string]any, []any, string,
// json.Number, bool, nil. Binding to typed values happens afterwards, per
// element, so type errors name the element.

// errBodyFormat is a body that is neither JSON nor XML (415).
var errBodyFormat = errors.New("unsupported content type")

// bodyFormat maps a Content-Type to a decoder; an empty header sniffs the
// first byte so that curl users without -H still get an answer.
func bodyFormat(contentType string, body []byte) (format, error) {
	if strings.TrimSpace(contentType) == "" {
		t := bytes.TrimLeft(body, " \t\r\n\ufeff")
		if len(t) > 0 && t[0] == '<' {
			return formatXML, nil
		}
		return formatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, errBodyFormat
	}
	switch {
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		return formatJSON, nil
	case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
		return formatXML, nil
	}
	return 0, errBodyFormat
}

// maxDepth bounds nesting so a hostile body cannot exhaust the stack.
const maxDepth = 32

// decodeBody decodes body into a map. An empty body is an empty map. root
// is the resource's wrapper element: JSON may wrap the object in it, XML
// must use it (or any single root element).
func decodeBody(f format, body []byte, root string) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil
	}
	if f == formatXML {
		return decodeXML(body)
	}
	return decodeJSON(body, root)
}

func decodeJSON(body []byte, root string) (map[string]any, error) {
	// encoding/json would silently turn bad bytes into U+FFFD; storing
	// that is a quiet corruption, so refuse the body instead.
	if !utf8.Valid(body) {
		return nil, errors.New("request body is not valid UTF-8")
	}
	// The same holds for a \u escape of half a surrogate pair.
	if off, ok := loneSurrogate(body); ok {
		return nil, fmt.Errorf("request body is not valid JSON: lone UTF-16 surrogate escape at byte %d", off)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("request body is not valid JSON: %s", jsonErrText(err, body))
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("request body is not valid JSON: data after the top-level value")
	}
	v, err := normalizeTree(v, 0)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("request body must be a JSON object")
	}
	// Accept Rails' {"integration-history-record": {...}} wrapper too.
	if len(m) == 1 {
		if inner, ok := m[root].(map[string]any); ok {
			return inner, nil
		}
	}
	return m, nil
}

func jsonErrText(err error, body []byte) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s at byte %d", te.Error(), te.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Sprintf("unexpected end of input at byte %d", len(body))
	}
	return err.Error()
}

func normalizeTree(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("request body nests too deeply")
	}
	switch t := v.(type) {
	case map[string]any:
		// Clients mostly send the canonical spelling: then the keys
		// stay as they are and the values are normalized in place,
		// without a second map per object (the create path's body).
		if canonicalKeys(t) {
			for k, e := range t {
				n, err := normalizeTree(e, depth+1)
				if err != nil {
					return nil, err
				}
				t[k] = n
			}
			return t, nil
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			n, err := normalizeTree(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[record.NormalizeKey(k)] = n
		}
		return out, nil
	case []any:
		for i := range t {
			n, err := normalizeTree(t[i], depth+1)
			if err != nil {
				return nil, err
			}
			t[i] = n
		}
		return t, nil
	}
	return v, nil
}

// canonicalKeys reports whether every key of m is its own
// record.NormalizeKey, so that no two keys can fold into one.
func canonicalKeys(m map[string]any) bool {
	for k := range m {
		if record.NormalizeKey(k) != k {
			return false
		}
	}
	return true
}

// decodeXML reads Rails-style XML: the root element's children are the
// elements; nil="true" is null; type="array" (or repeated children) is a
// list; an element with children is an object; otherwise its text.
func decodeXML(body []byte) (map[string]any, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	// Refuse external entities and odd charsets rather than fetch or guess.
	d.CharsetReader = func(charset string, input io.Reader) (io.Reader, error) {
		if strings.EqualFold(charset, "utf-8") || strings.EqualFold(charset, "us-ascii") {
			return input, nil
		}
		return nil, fmt.Errorf("unsupported XML encoding %q", charset)
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, xmlErr(err, d)
		}
		if se, ok := tok.(xml.StartElement); ok {
			v, err := readXMLElem(d, se, 0)
			if err != nil {
				return nil, err
			}
			// Anything after the root other than whitespace/comments is an error.
			for {
				tok, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					return nil, xmlErr(err, d)
				}
				switch t := tok.(type) {
				case xml.CharData:
					if len(bytes.TrimSpace(t)) != 0 {
						return nil, errors.New("request body is not valid XML: text after the root element")
					}
				case xml.Comment, xml.ProcInst:
				default:
					return nil, errors.New("request body is not valid XML: more than one root element")
				}
			}
			m, ok := v.(map[string]any)
			if !ok {
				if v == nil || v == "" {
					return map[string]any{}, nil
				}
				return nil, errors.New("request body is not valid XML: the root element must contain elements")
			}
			return m, nil
		}
		if _, ok := tok.(xml.Directive); ok {
			return nil, errors.New("request body is not valid XML: DTDs are not accepted")
		}
	}
}

func xmlErr(err error, d *xml.Decoder) error {
	if err == io.EOF {
		return errors.New("request body is not valid XML: no root element")
	}
	line, col := d.InputPos()
	return fmt.Errorf("request body is not valid XML: line %d, column %d: %v", line, col, err)
}

func readXMLElem(d *xml.Decoder, start xml.StartElement, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("request body nests too deeply")
	}
	isNil, isArray, isString := false, false, false
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "nil":
			isNil = a.Value == "true"
		case "type":
			isArray = a.Value == "array"
			isString = a.Value == "string"
		}
	}
	var text strings.Builder
	type child struct {
		name string
		val  any
	}
	var children []child
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, xmlErr(err, d)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			v, err := readXMLElem(d, t, depth+1)
			if err != nil {
				return nil, err
			}
			children = append(children, child{record.NormalizeKey(t.Name.Local), v})
		case xml.CharData:
			if text.Len()+len(t) > 1<<24 {
				return nil, errors.New("request body is not valid XML: text too long")
			}
			text.Write(t)
		case xml.Directive:
			return nil, errors.New("request body is not valid XML: DTDs are not accepted")
		case xml.EndElement:
			if isNil {
				return nil, nil
			}
			if isArray {
				list := make([]any, 0, len(children))
				for _, c := range children {
					list = append(list, c.val)
				}
				return list, nil
			}
			if len(children) == 0 {
				// Rails (Hash.from_xml) reads an empty element, <x/> or
				// <x></x>, as nil unless it is typed string.
				if text.Len() == 0 && !isString {
					return nil, nil
				}
				return text.String(), nil
			}
			m := make(map[string]any, len(children))
			for _, c := range children {
				if prev, dup := m[c.name]; dup {
					if l, ok := prev.(xmlList); ok {
						m[c.name] = append(l, c.val)
					} else {
						m[c.name] = xmlList{prev, c.val}
					}
					continue
				}
				m[c.name] = c.val
			}
			for k, v := range m {
				if l, ok := v.(xmlList); ok {
					m[k] = []any(l)
				}
			}
			return m, nil
		}
	}
}

type xmlList []any

// loneSurrogate finds a \uD800-\uDFFF escape inside a JSON string that is
// not a high surrogate followed at once by an escaped low one: text no
// UTF-8 can hold, which encoding/json would store as U+FFFD. It returns
// the escape's byte offset. Invalid JSON is left to the decoder.
func loneSurrogate(b []byte) (int, bool) {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			in = !in
		case in && c == '\\':
			r, ok := hex4(i)
			if !ok {
				i++ // a one-character escape: skip the escaped byte
				continue
			}
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return i, true
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := hex4(i + 6)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return i, true
				}
				i += 6
			}
			i += 5
		}
	}
	return 0, false
}
