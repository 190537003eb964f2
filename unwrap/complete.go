package unwrap

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Manifest is what a control file announced about a file: its data row
// count and/or its SHA-256. The SHA-256 may be of the file as stored
// (encrypted, compressed) or of the CSV inside: ERP tools write either.
type Manifest struct {
	From   string // the control file's name, for messages
	Rows   int64  // -1: not given
	SHA256 string // lower-case hex; "": not given
}

// maxManifest bounds what is read of a control file.
const maxManifest = 64 << 10

// ParseManifest reads a control file: whitespace-separated key=value
// pairs, "rows=1234 sha256=ab12…" (rows also as count=; keys are case
// insensitive; other keys are ignored). An empty file is a plain "upload
// finished" marker and gives nil.
func ParseManifest(r io.Reader, from string) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifest {
		return nil, fmt.Errorf("%w: control file %s is larger than %d bytes", ErrIncomplete, from, maxManifest)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	m := &Manifest{From: from, Rows: -1}
	for _, tok := range strings.Fields(string(data)) {
		k, v, ok := strings.Cut(tok, "=")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "rows", "count":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: control file %s: rows=%q is not a row count", ErrIncomplete, from, v)
			}
			m.Rows = n
		case "sha256":
			v = strings.ToLower(v)
			if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
				return nil, fmt.Errorf("%w: control file %s: sha256=%q is not a SHA-256 in hex", ErrIncomplete, from, v)
			}
			m.SHA256 = v
		}
	}
	if m.Rows < 0 && m.SHA256 == "" {
		return nil, fmt.Errorf("%w: control file %s gives neither rows= nor sha256=", ErrIncomplete, from)
	}
	return m, nil
}

// Trailer is the layout of a trailer row, such as "TRAILER,{rows}":
// literal text, {rows} for the data row count and {*} for anything.
// Double quotes in the row are ignored, so "TRAILER","12" matches too.
type Trailer struct {
	layout string
	re     *regexp.Regexp
}

// ParseTrailer compiles a trailer layout; it must hold {rows} once.
func ParseTrailer(layout string) (*Trailer, error) {
	if strings.Count(layout, "{rows}") != 1 {
		return nil, fmt.Errorf("trailer layout %q must contain {rows} once", layout)
	}
	var b strings.Builder
	b.WriteString("^")
	rest := layout
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		b.WriteString(regexp.QuoteMeta(rest[:i]))
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, "{rows}"):
			b.WriteString(`\s*([0-9]+)\s*`)
			rest = rest[len("{rows}"):]
		case strings.HasPrefix(rest, "{*}"):
			b.WriteString(`.*?`)
			rest = rest[len("{*}"):]
		default:
			b.WriteString(regexp.QuoteMeta("{"))
			rest = rest[1:]
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("trailer layout %q: %v", layout, err)
	}
	return &Trailer{layout: layout, re: re}, nil
}

func (t *Trailer) String() string { return t.layout }

// maxTrailer: a longer last line is data, not a trailer.
const maxTrailer = 4 << 10

// trailerReader passes everything on but the last line, which it checks
// against the layout at EOF.
type trailerReader struct {
	r      io.Reader
	layout *Trailer
	// held is the data not yet passed on: its first given bytes are out
	// (already being given out), the rest is the current last line, if
	// short. One buffer, reused chunk after chunk.
	held  []byte
	given int
	out   []byte // ready to give out: held[:given], being consumed
	buf   []byte
	eof   bool
	found bool
	rows  int64
	line  string
}

func (t *trailerReader) Read(p []byte) (int, error) {
	for len(t.out) == 0 {
		if t.eof {
			return 0, io.EOF
		}
		if t.buf == nil {
			t.buf = make([]byte, 64<<10)
		}
		n, err := t.r.Read(t.buf)
		t.take(t.buf[:n])
		if err == io.EOF {
			t.eof = true
			if cerr := t.check(); cerr != nil {
				return 0, cerr
			}
		} else if err != nil {
			return 0, err
		}
	}
	n := copy(p, t.out)
	t.out = t.out[n:]
	return n, nil
}

// take appends data, moving all but the last (possibly unfinished) line
// to out. A line that ends with "\n" at the very end of the data so far
// is still held: it may be the last one. It is called only once out has
// been given out in full, so out's bytes can be dropped from held, and
// held's buffer reused: no allocation per chunk once it has grown.
func (t *trailerReader) take(b []byte) {
	if len(b) == 0 {
		return
	}
	t.held = append(t.held[:copy(t.held, t.held[t.given:])], b...)
	// The held line starts after the last "\n" that is not the final byte.
	search := t.held
	if n := len(search); search[n-1] == '\n' {
		search = search[:n-1]
	}
	t.given = bytes.LastIndexByte(search, '\n') + 1
	if len(t.held)-t.given > maxTrailer {
		// Too long for a trailer: give it out but keep looking.
		t.given = len(t.held)
	}
	t.out = t.held[:t.given]
}

func (t *trailerReader) check() error {
	line := strings.TrimRight(string(t.held[t.given:]), "\r\n")
	t.line = line
	m := t.layout.re.FindStringSubmatch(strings.ReplaceAll(line, `"`, ""))
	if m == nil {
		if len(line) > 80 {
			line = line[:80] + "…"
		}
		return fmt.Errorf("%w: the last line is not a trailer row %q (found %q)", ErrIncomplete, t.layout.layout, line)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: trailer row %q: %v", ErrIncomplete, line, err)
	}
	t.found, t.rows = true, n
	return nil
}
