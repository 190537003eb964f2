// Package parse decodes the CSV files ERPs drop for the worker, one row at a
// time, in constant memory, and tells exactly where a row is wrong.
//
// It reads RFC 4180 CSV (comma separated, double-quote quoting, quoted
// newlines, CRLF or LF line ends) in UTF-8 (with or without a byte-order
// mark) or Shift_JIS/CP932. A bad row (wrong field count, bad quoting,
// invalid bytes, an oversized field) is reported as a *ParseError for that
// row and reading goes on with the next one, so nothing is dropped
// silently. Problems with the file as a whole (empty, binary, no header,
// an encoding it cannot be) are returned by NewReader as distinct errors.
//
// Why not encoding/csv or gocarina/gocsv for the row loop: encoding/csv
// buffers a whole physical line or record before it looks at it (a 40 MB
// field costs 40 MB or more), and it cannot report invalid UTF-8 or an
// oversized field at its position and then carry on. gocsv sits on top of
// encoding/csv, maps rows to structs by tag (our columns come from a
// per-source config) and stops at the first error. So this package has its
// own small streaming tokenizer (see the README's "Dependencies").
package parse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

// Whole-file errors, returned (possibly wrapped) by NewReader. Test with
// errors.Is.
var (
	ErrEmptyFile = errors.New("file is empty")
	ErrBinary    = errors.New("file is binary, not CSV text")
	ErrNoHeader  = errors.New("file has no header row")
	ErrEncoding  = errors.New("file cannot be decoded")
	// ErrNoRows is for callers: the Reader itself reads a header-only
	// file without error (the first Read gives io.EOF). The importer and
	// the validate command wrap it when they reject such a file, so both
	// say so in the same words.
	ErrNoRows = errors.New("file has a header but no data rows")
	// ErrUnknownEncoding: the encoding name given to NewReader is not one
	// this package knows (a configuration error, not a file error).
	ErrUnknownEncoding = errors.New("unknown encoding")
)

// Row errors, wrapped in the Err of a *ParseError.
var (
	ErrFieldCount = errors.New("wrong number of fields")
	ErrBareQuote  = errors.New(`bare " in a non-quoted field`)
	ErrQuote      = errors.New(`extraneous or missing " in a quoted field`)
	// ErrUnclosedQuote: a quoted field is never closed, so it swallowed
	// the rest of the file: the rows after it cannot be told apart, and
	// callers reject the whole file. It is the file's last row.
	ErrUnclosedQuote   = errors.New(`unclosed quote`)
	ErrInvalidUTF8     = errors.New("invalid UTF-8")
	ErrInvalidShiftJIS = errors.New("invalid Shift_JIS byte sequence")
	ErrFieldTooLong    = errors.New("field too long")
	ErrRowTooLong      = errors.New("row too long")
)

// Defaults for the zero values of Options.
const (
	DefaultMaxFieldBytes = 1 << 20
	DefaultMaxRowBytes   = 16 << 20
	DefaultMaxFields     = 4096
)

// Options tunes a Reader. The zero value is ready to use.
type Options struct {
	// File names the file in error messages (usually its base name).
	File string
	// MaxFieldBytes bounds one field (decoded bytes); a longer field makes
	// its row fail with ErrFieldTooLong without being buffered.
	MaxFieldBytes int
	// MaxRowBytes bounds the fields of one row together (ErrRowTooLong).
	MaxRowBytes int
	// MaxFields bounds the number of header columns.
	MaxFields int
}

// Row is one data row.
type Row struct {
	// Number is the 1-based data row number, header excluded; it counts
	// rows that failed to parse too, so it matches the report's row column.
	Number int
	// Line is the 1-based physical line where the row starts (a quoted
	// newline makes a row span several lines).
	Line int
	// Fields holds one value per header column. On a *ParseError it holds
	// what could be read (a ragged row's fields, up to the header's count;
	// an oversized field is left empty) and may be shorter than the header.
	Fields []string
}

// ParseError is a problem at a position, like csv.ParseError. Row is 0 for
// the header. Column is the 1-based character position in the physical
// line (an invalid byte counts as one character), 0 when the error is
// about the row as a whole. Field is the header name of the column at
// fault, when there is one.
type ParseError struct {
	File   string
	Row    int
	Line   int
	Column int
	Field  string
	Err    error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Row > 0 {
		fmt.Fprintf(&b, "row %d (line %d", e.Row, e.Line)
	} else {
		fmt.Fprintf(&b, "header (line %d", e.Line)
	}
	if e.Column > 0 {
		fmt.Fprintf(&b, ", column %d", e.Column)
	}
	b.WriteString(")")
	if e.Field != "" {
		fmt.Fprintf(&b, ", field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Reader reads rows from a CSV file. It is not safe for concurrent use.
type Reader struct {
	opt    Options
	sjis   bool
	auto   bool
	s      scanner
	header []string
	row    int

	// the record being read
	rec       []byte
	ends      []int
	nf        int
	perr      *ParseError
	startLine int
	skip      bool // the current field is over a limit: drop its bytes
	limit     int  // len(rec) may grow up to this in the current field; -1 when skipping
	// where the current field starts, in rec and in the file
	fieldStart, fieldLine, fieldCol int
}

// Encodings are the canonical encoding names, as a source's configuration
// and NewReader take them: "auto" (UTF-8, a byte-order mark is stripped),
// "utf-8" and "shift_jis" (CP932). Encoding also accepts aliases.
var Encodings = []string{"auto", "utf-8", "shift_jis"}

// encodings maps accepted names (lower case) to their canonical name; ""
// is auto.
var encodings = map[string]string{
	"": "auto", "auto": "auto", "utf-8": "utf-8", "utf8": "utf-8",
	"shift_jis": "shift_jis", "shift-jis": "shift_jis", "sjis": "shift_jis",
	"cp932": "shift_jis", "windows-31j": "shift_jis", "ms932": "shift_jis",
}

// Encoding returns the canonical name (one of Encodings) of an encoding
// name or alias, case and surrounding spaces ignored; false when this
// package cannot read it. It is the one list: the worker's configuration
// accepts exactly what NewReader reads.
func Encoding(name string) (string, bool) {
	enc, ok := encodings[strings.ToLower(strings.TrimSpace(name))]
	return enc, ok
}

// sniffLen is how much of the start of a file is checked for NUL bytes.
const sniffLen = 1024

// NewReader reads the header of r and returns a Reader positioned at the
// first data row. encoding is "auto" (UTF-8, a byte-order mark is
// stripped), "utf-8" (the same) or "shift_jis" (CP932), or an alias
// Encoding accepts. Errors: ErrUnknownEncoding for a bad name;
// ErrEmptyFile, ErrBinary, ErrEncoding, ErrNoHeader (wrapped, errors.Is)
// for a file that cannot be read as CSV at all; a *ParseError with Row 0
// for a header that is malformed; any error of r itself.
func NewReader(r io.Reader, encoding string, opts Options) (*Reader, error) {
	enc, ok := Encoding(encoding)
	if !ok {
		return nil, fmt.Errorf("%w %q (want auto, utf-8 or shift_jis)", ErrUnknownEncoding, encoding)
	}
	if opts.MaxFieldBytes <= 0 {
		opts.MaxFieldBytes = DefaultMaxFieldBytes
	}
	if opts.MaxRowBytes <= 0 {
		opts.MaxRowBytes = DefaultMaxRowBytes
	}
	if opts.MaxFields <= 0 {
		opts.MaxFields = DefaultMaxFields
	}
	rd := &Reader{opt: opts, sjis: enc == "shift_jis", auto: enc == "auto"}
	fileErr := func(err error, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if opts.File != "" {
			return fmt.Errorf("%s: %w: %s", opts.File, err, msg)
		}
		return fmt.Errorf("%w: %s", err, msg)
	}

	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(sniffLen)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, err
	}
	if len(head) == 0 {
		return nil, fileErr(ErrEmptyFile, "0 bytes")
	}
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		if rd.sjis {
			return nil, fileErr(ErrEncoding, "it starts with a UTF-8 byte-order mark but the source's encoding is shift_jis")
		}
		br.Discard(3) //nolint:errcheck // the bytes are buffered
		head = head[3:]
		if len(head) == 0 {
			return nil, fileErr(ErrEmptyFile, "only a UTF-8 byte-order mark")
		}
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return nil, fileErr(ErrEncoding, "it is UTF-16 (byte-order mark % X); save it as UTF-8 or Shift_JIS", head[:2])
	}
	if i := bytes.IndexByte(head, 0); i >= 0 {
		return nil, fileErr(ErrBinary, "NUL byte at offset %d", i)
	}

	var src io.Reader = br
	if rd.sjis {
		src = transform.NewReader(br, japanese.ShiftJIS.NewDecoder())
	}
	rd.s = scanner{src: src, buf: make([]byte, 64<<10), line: 1, col: 1}

	got, err := rd.readRecord(opts.MaxFields)
	if err != nil {
		return nil, err
	}
	if !got {
		return nil, fileErr(ErrEmptyFile, "only blank lines")
	}
	if rd.perr != nil {
		return nil, rd.perr
	}
	if rd.nf > opts.MaxFields {
		return nil, &ParseError{File: opts.File, Line: rd.startLine,
			Err: fmt.Errorf("%w: the header has more than %d columns", ErrNoHeader, opts.MaxFields)}
	}
	rd.header = rd.fields()
	empty := true
	for _, h := range rd.header {
		if strings.TrimSpace(h) != "" {
			empty = false
			break
		}
	}
	if empty {
		return nil, &ParseError{File: opts.File, Line: rd.startLine,
			Err: fmt.Errorf("%w: every header name is empty", ErrNoHeader)}
	}
	return rd, nil
}

// Header returns the column names as they are in the file (BOM stripped,
// not trimmed). The slice must not be modified.
func (r *Reader) Header() []string { return r.header }

// Read returns the next data row. At the end it returns io.EOF. For a bad
// row it returns the Row (Number, Line and what Fields could be read) and a
// *ParseError; the next Read goes on with the following row. Any other
// error comes from the underlying reader and is final.
func (r *Reader) Read() (Row, error) {
	got, err := r.readRecord(len(r.header))
	if err != nil {
		return Row{}, err
	}
	if !got {
		return Row{}, io.EOF
	}
	r.row++
	row := Row{Number: r.row, Line: r.startLine, Fields: r.fields()}
	if r.perr == nil && r.nf != len(r.header) {
		pe := &ParseError{Line: r.startLine,
			Err: fmt.Errorf("%w: the row has %d fields, the header has %d", ErrFieldCount, r.nf, len(r.header))}
		if r.nf < len(r.header) {
			pe.Field = r.header[r.nf]
		}
		r.perr = pe
	}
	if r.perr != nil {
		r.perr.File, r.perr.Row = r.opt.File, r.row
		return row, r.perr
	}
	return row, nil
}

// fields turns the current record into strings: one allocation for all
// their bytes, one for the slice.
func (r *Reader) fields() []string {
	str := string(r.rec)
	out := make([]string, len(r.ends))
	prev := 0
	for i, e := range r.ends {
		out[i] = str[prev:e]
		prev = e
	}
	// After an oversized row, give the memory back rather than keep it
	// for the rest of the file.
	if cap(r.rec) > 256<<10 {
		r.rec = nil
	}
	return out
}

// The tokenizer.

type scanner struct {
	src      io.Reader
	buf      []byte
	pos, end int
	err      error // sticky: io.EOF at the end, or the source's error
	line     int   // line of buf[pos]
	col      int   // character column of buf[pos]
}

// fill reads more input after buf[pos:end], moving that tail to the front.
// It reports whether any byte is available at buf[pos].
func (s *scanner) fill() bool {
	if s.pos > 0 {
		s.end = copy(s.buf, s.buf[s.pos:s.end])
		s.pos = 0
	}
	for empty := 0; s.err == nil && s.end < len(s.buf); {
		n, err := s.src.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
			break
		}
		if n > 0 {
			break
		}
		if empty++; empty > 100 {
			s.err = io.ErrNoProgress
		}
	}
	return s.pos < s.end
}

// ioErr is the source's error, if it is not the end of the input.
func (s *scanner) ioErr() error {
	if s.err != nil && s.err != io.EOF {
		return s.err
	}
	return nil
}

// peek returns the byte at pos, reading more if needed.
func (s *scanner) peek() (byte, bool) {
	if s.pos >= s.end && !s.fill() {
		return 0, false
	}
	return s.buf[s.pos], true
}

// newline consumes a line break at pos ("\n", "\r\n" or a lone "\r").
func (s *scanner) newline() {
	c := s.buf[s.pos]
	s.pos++
	if c == '\r' {
		if n, ok := s.peek(); ok && n == '\n' {
			s.pos++
		}
	}
	s.line++
	s.col = 1
}

// Byte classes: which bytes end the fast loop in each state.
var stopUnquoted, stopQuoted [256]bool

func init() {
	for c := 0x80; c < 256; c++ {
		stopUnquoted[c], stopQuoted[c] = true, true
	}
	for _, c := range []byte{',', '\n', '\r', '"'} {
		stopUnquoted[c] = true
	}
	for _, c := range []byte{'\n', '\r', '"'} {
		stopQuoted[c] = true
	}
}

var lf, cr = []byte{'\n'}, []byte{'\r'}

type fieldEnd int

const (
	endComma fieldEnd = iota
	endLine
	endEOF
)

// readRecord reads the next record, storing at most maxStore fields and
// counting the rest. It skips blank lines. It reports false at the end of
// the input; the error is the source's.
func (r *Reader) readRecord(maxStore int) (bool, error) {
	s := &r.s
	r.rec, r.ends, r.nf, r.perr = r.rec[:0], r.ends[:0], 0, nil
	for {
		c, ok := s.peek()
		if !ok {
			return false, s.ioErr()
		}
		if c != '\n' && c != '\r' {
			break
		}
		s.newline()
	}
	r.startLine = s.line
	for {
		fieldStart := len(r.rec)
		r.skip = r.nf >= maxStore
		r.limit = min(fieldStart+r.opt.MaxFieldBytes, r.opt.MaxRowBytes)
		if r.skip {
			r.limit = -1
		}
		r.fieldStart, r.fieldLine, r.fieldCol = fieldStart, s.line, s.col
		end := r.readField(fieldStart)
		if r.nf < maxStore {
			r.ends = append(r.ends, len(r.rec))
		}
		r.nf++
		switch end {
		case endLine:
			return true, nil
		case endEOF:
			// A source error cut the record short: it is not a row.
			return true, s.ioErr()
		}
	}
}

// fail records the row's first error.
func (r *Reader) fail(line, col int, err error) {
	if r.perr != nil {
		return
	}
	r.perr = &ParseError{File: r.opt.File, Line: line, Column: col, Field: r.fieldName(), Err: err}
}

func (r *Reader) fieldName() string {
	if r.nf < len(r.header) {
		return r.header[r.nf]
	}
	return ""
}

// add appends field bytes, enforcing the field and row limits. The common
// case is small enough to inline.
func (r *Reader) add(p []byte) {
	if len(r.rec)+len(p) <= r.limit {
		r.rec = append(r.rec, p...)
		return
	}
	r.addSlow(p)
}

func (r *Reader) addSlow(p []byte) {
	if r.skip || len(p) == 0 {
		return
	}
	fieldStart, line, col := r.fieldStart, r.fieldLine, r.fieldCol
	switch {
	case len(r.rec)-fieldStart+len(p) > r.opt.MaxFieldBytes:
		r.fail(line, col, fmt.Errorf("%w: more than %d bytes", ErrFieldTooLong, r.opt.MaxFieldBytes))
	case len(r.rec)+len(p) > r.opt.MaxRowBytes:
		r.fail(line, col, fmt.Errorf("%w: more than %d bytes", ErrRowTooLong, r.opt.MaxRowBytes))
	default:
		r.rec = append(r.rec, p...)
		return
	}
	r.rec = r.rec[:fieldStart]
	r.skip, r.limit = true, -1
}

// readField reads one field starting at pos.
func (r *Reader) readField(fieldStart int) fieldEnd {
	s := &r.s
	line, col := s.line, s.col
	if c, ok := s.peek(); ok && c == '"' {
		s.pos++
		s.col++
		if end, done := r.readQuoted(fieldStart, line, col); done {
			return end
		}
	}
	return r.readUnquoted(fieldStart, line, col)
}

func (r *Reader) readUnquoted(fieldStart, line, col int) fieldEnd {
	s := &r.s
	for {
		b := s.buf[s.pos:s.end]
		i := 0
		for i < len(b) && !stopUnquoted[b[i]] {
			i++
		}
		r.add(b[:i])
		s.pos += i
		s.col += i
		if s.pos >= s.end {
			if !s.fill() {
				return endEOF
			}
			continue
		}
		switch c := s.buf[s.pos]; c {
		case ',':
			s.pos++
			s.col++
			return endComma
		case '\n', '\r':
			s.newline()
			return endLine
		case '"':
			r.fail(s.line, s.col, ErrBareQuote)
			r.add(s.buf[s.pos : s.pos+1])
			s.pos++
			s.col++
		default:
			r.nonASCII(fieldStart, line, col)
		}
	}
}

// readQuoted reads a quoted field after its opening quote. done is false
// when text follows the closing quote: the caller reads the rest of the
// field as unquoted text (the row has failed already).
func (r *Reader) readQuoted(fieldStart, line, col int) (end fieldEnd, done bool) {
	s := &r.s
	for {
		b := s.buf[s.pos:s.end]
		i := 0
		for i < len(b) && !stopQuoted[b[i]] {
			i++
		}
		r.add(b[:i])
		s.pos += i
		s.col += i
		if s.pos >= s.end {
			if !s.fill() {
				// This explains every other symptom (a field too long,
				// rows gone missing), so it replaces any earlier error.
				r.perr = nil
				r.fail(line, col, unclosed(line, col, "is never closed; it runs to the end of the file"))
				return endEOF, true
			}
			continue
		}
		switch c := s.buf[s.pos]; c {
		case '"':
			s.pos++
			s.col++
			n, ok := s.peek()
			switch {
			case !ok:
				return endEOF, true
			case n == '"':
				r.add(s.buf[s.pos : s.pos+1])
				s.pos++
				s.col++
			case n == ',':
				s.pos++
				s.col++
				return endComma, true
			case n == '\n' || n == '\r':
				s.newline()
				return endLine, true
			default:
				r.fail(s.line, s.col, fmt.Errorf("%w: unexpected text after the closing quote", ErrQuote))
				return 0, false
			}
		case '\n':
			r.add(s.buf[s.pos : s.pos+1])
			s.newline()
		case '\r':
			// CRLF inside quotes becomes LF, as encoding/csv does; a lone
			// CR stays (it still counts as a line for positions).
			s.pos++
			if n, ok := s.peek(); ok && n == '\n' {
				s.pos++
				r.add(lf)
			} else {
				r.add(cr)
			}
			s.line++
			s.col = 1
		default:
			r.nonASCII(fieldStart, line, col)
		}
	}
}

func unclosed(line, col int, what string) error {
	return fmt.Errorf("%w: the quote at line %d, column %d %s", ErrUnclosedQuote, line, col, what)
}

// nonASCII handles one character that starts with a byte >= 0x80.
func (r *Reader) nonASCII(fieldStart, line, col int) {
	s := &r.s
	if !utf8.FullRune(s.buf[s.pos:s.end]) {
		s.fill()
	}
	ru, size := utf8.DecodeRune(s.buf[s.pos:s.end])
	if ru == utf8.RuneError {
		switch {
		case r.sjis:
			// The x/text decoder writes U+FFFD for bytes that are not
			// Shift_JIS; no Shift_JIS text can contain U+FFFD itself.
			r.fail(s.line, s.col, ErrInvalidShiftJIS)
		case size == 1:
			hint := ""
			if r.auto {
				hint = " (if the file is Shift_JIS, set the source's encoding to shift_jis)"
			}
			r.fail(s.line, s.col, fmt.Errorf("%w: byte 0x%02X%s", ErrInvalidUTF8, s.buf[s.pos], hint))
		}
	}
	r.add(s.buf[s.pos : s.pos+size])
	s.pos += size
	s.col++
}
