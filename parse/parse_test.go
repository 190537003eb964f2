package parse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ihr-tools/ihr/fixtures"

	"golang.org/x/text/encoding/japanese"
)

// got is one Read result in a compact, comparable form.
type got struct {
	Number, Line int
	Fields       []string
	Err          string // "" or "line:col:field:sentinel"
}

func (g got) String() string {
	return fmt.Sprintf("{%d %d %q %q}", g.Number, g.Line, g.Fields, g.Err)
}

func readAll(t *testing.T, r *Reader) []got {
	t.Helper()
	var out []got
	for {
		row, err := r.Read()
		if err == io.EOF {
			return out
		}
		g := got{Number: row.Number, Line: row.Line, Fields: row.Fields}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Read: %v (not a *ParseError)", err)
			}
			if pe.Row != row.Number {
				t.Errorf("ParseError.Row %d, Row.Number %d", pe.Row, row.Number)
			}
			g.Err = fmt.Sprintf("%d:%d:%s:%s", pe.Line, pe.Column, pe.Field, sentinel(err))
		}
		out = append(out, g)
	}
}

func sentinel(err error) string {
	for _, s := range []error{ErrFieldCount, ErrBareQuote, ErrUnclosedQuote, ErrQuote, ErrInvalidUTF8, ErrInvalidShiftJIS, ErrFieldTooLong, ErrRowTooLong,
		ErrEmptyFile, ErrBinary, ErrNoHeader, ErrEncoding, ErrUnknownEncoding} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "other: " + err.Error()
}

func TestRead(t *testing.T) {
	tests := []struct {
		name, in, enc string
		header        []string
		rows          []got
	}{
		{"crlf", "a,b\r\n1,2\r\n3,4\r\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "2"}, ""}, {2, 3, []string{"3", "4"}, ""}}},
		{"no final newline", "a,b\n1,2", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "2"}, ""}}},
		{"bom stripped", "\xef\xbb\xbfa,b\n1,2\n", "utf-8", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "2"}, ""}}},
		{"every field quoted", "\"a\",\"b\"\r\n\"1\",\"\"\r\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", ""}, ""}}},
		{"quoted newline and quotes", "a,b\n\"x\r\ny\",\"say \"\"hi\"\"\"\n3,4\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"x\ny", `say "hi"`}, ""}, {2, 4, []string{"3", "4"}, ""}}},
		{"lone CR line ends", "a,b\r1,2\r3,4", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "2"}, ""}, {2, 3, []string{"3", "4"}, ""}}},
		{"blank lines skipped, lines counted", "a,b\n\n1,2\r\n\r\n3,4\n", "auto", []string{"a", "b"},
			[]got{{1, 3, []string{"1", "2"}, ""}, {2, 5, []string{"3", "4"}, ""}}},
		{"empty fields", "a,b,c\n,,\n", "auto", []string{"a", "b", "c"},
			[]got{{1, 2, []string{"", "", ""}, ""}}},
		{"too few fields", "a,b,c\n1,2\n4,5,6\n", "auto", []string{"a", "b", "c"},
			[]got{{1, 2, []string{"1", "2"}, "2:0:c:wrong number of fields"}, {2, 3, []string{"4", "5", "6"}, ""}}},
		{"too many fields", "a,b\n1,2,3,4\n5,6\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "2"}, "2:0::wrong number of fields"}, {2, 3, []string{"5", "6"}, ""}}},
		{"bare quote", "a,b\n1,x\"y\n3,4\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", `x"y`}, `2:4:b:bare " in a non-quoted field`}, {2, 3, []string{"3", "4"}, ""}}},
		{"text after closing quote", "a,b\n\"1\"z,2\n3,4\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1z", "2"}, `2:4:a:extraneous or missing " in a quoted field`}, {2, 3, []string{"3", "4"}, ""}}},
		{"unterminated quote", "a,b\n1,2\n3,\"4\n5,6\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "2"}, ""}, {2, 3, []string{"3", "4\n5,6\n"}, `3:3:b:unclosed quote`}}},
		{"invalid utf-8 column counts characters", "a,b\n1,é\xffz\n3,4\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "é\xffz"}, "2:4:b:invalid UTF-8"}, {2, 3, []string{"3", "4"}, ""}}},
		{"invalid utf-8 in quoted field on 2nd line", "a,b\n1,\"ok\nx\xc3(\"\n", "utf-8", []string{"a", "b"},
			[]got{{1, 2, []string{"1", "ok\nx\xc3("}, "3:2:b:invalid UTF-8"}}},
		{"truncated utf-8 at eof", "a\n\xe3\x81", "auto", []string{"a"},
			[]got{{1, 2, []string{"\xe3\x81"}, "2:1:a:invalid UTF-8"}}},
		{"first error of a row wins", "a,b\n1\"\xff,2,3\n", "auto", []string{"a", "b"},
			[]got{{1, 2, []string{"1\"\xff", "2"}, `2:2:a:bare " in a non-quoted field`}}},
		{"valid U+FFFD is data in utf-8", "a\n\xef\xbf\xbd\n", "auto", []string{"a"},
			[]got{{1, 2, []string{"\ufffd"}, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, slow := range []bool{false, true} {
				var src io.Reader = strings.NewReader(tt.in)
				if slow {
					src = iotest.OneByteReader(src) // every buffer boundary
				}
				r, err := NewReader(src, tt.enc, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(r.Header()) != fmt.Sprint(tt.header) {
					t.Errorf("header %q, want %q", r.Header(), tt.header)
				}
				rows := readAll(t, r)
				if fmt.Sprint(rows) != fmt.Sprint(tt.rows) {
					t.Errorf("slow=%v\n got %v\nwant %v", slow, rows, tt.rows)
				}
			}
		})
	}
}

func TestWholeFileErrors(t *testing.T) {
	tests := []struct {
		name, in, enc, want string
	}{
		{"empty", "", "auto", "file is empty"},
		{"bom only", "\xef\xbb\xbf", "auto", "file is empty"},
		{"blank lines only", "\r\n\n\r\n", "auto", "file is empty"},
		{"binary", "PK\x03\x04\x00\x00", "auto", "file is binary, not CSV text"},
		{"nul late in first KB", strings.Repeat("a", 1000) + "\x00", "auto", "file is binary, not CSV text"},
		{"utf-16le", "\xff\xfea\x00", "auto", "file cannot be decoded"},
		{"utf-16be", "\xfe\xff\x00a", "utf-8", "file cannot be decoded"},
		{"bom with shift_jis", "\xef\xbb\xbfa\n", "shift_jis", "file cannot be decoded"},
		{"unknown encoding", "a\n", "latin-1", "unknown encoding"},
		{"empty header names", ",,\n1,2,3\n", "auto", "file has no header row"},
		{"header bad quoting", "a,\"b\n", "auto", `unclosed quote`},
		{"header invalid utf-8", "a,\xff\n", "auto", "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tt.in), tt.enc, Options{File: "x.csv"})
			if err == nil {
				t.Fatal("no error")
			}
			if got := sentinel(err); got != tt.want {
				t.Errorf("error %q: sentinel %q, want %q", err, got, tt.want)
			}
			if !strings.Contains(err.Error(), "x.csv") && tt.want != "unknown encoding" {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// A header longer than MaxFields.
	_, err := NewReader(strings.NewReader("a,b,c\n"), "auto", Options{MaxFields: 2})
	if !errors.Is(err, ErrNoHeader) {
		t.Errorf("MaxFields: %v", err)
	}
}

func TestShiftJIS(t *testing.T) {
	enc := japanese.ShiftJIS.NewEncoder()
	in, err := enc.String("external-id,message\r\nPO-東京-1,\"発注, 済み①\"\r\n")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(strings.NewReader(in), "cp932", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rows := readAll(t, r)
	want := []got{{1, 2, []string{"PO-東京-1", "発注, 済み①"}, ""}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("got %v want %v", rows, want)
	}

	// An invalid Shift_JIS sequence (0x85 0x40 is unassigned... use a
	// lead byte followed by a byte that cannot trail it).
	r, err = NewReader(bytes.NewReader([]byte("a,b\r\n1,x\x81\x0a")), "shift_jis", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rows = readAll(t, r)
	if len(rows) != 1 || rows[0].Err != "2:4:b:invalid Shift_JIS byte sequence" {
		t.Errorf("got %v", rows)
	}

	// The same Shift_JIS bytes read as UTF-8: invalid UTF-8 with a hint.
	r, err = NewReader(strings.NewReader(in), "auto", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Read()
	if !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), "shift_jis") {
		t.Errorf("got %v", err)
	}
}

// TestFieldLimits: an oversized field fails its row alone and is not
// buffered; the next row is read normally.
func TestFieldLimits(t *testing.T) {
	for _, quoted := range []bool{false, true} {
		big := strings.Repeat("x", 5000)
		if quoted {
			big = `"` + strings.Repeat("y\n", 2500) + `"`
		}
		in := "a,b\n1," + big + "\n3,4\n"
		r, err := NewReader(strings.NewReader(in), "auto", Options{MaxFieldBytes: 1000})
		if err != nil {
			t.Fatal(err)
		}
		rows := readAll(t, r)
		want := []got{{1, 2, []string{"1", ""}, "2:3:b:field too long"}}
		next := 3
		if quoted {
			next = 2503
		}
		want = append(want, got{2, next, []string{"3", "4"}, ""})
		if fmt.Sprint(rows) != fmt.Sprint(want) {
			t.Errorf("quoted=%v\n got %v\nwant %v", quoted, rows, want)
		}
	}
	r, err := NewReader(strings.NewReader("a,b,c\n12345,12345,12345\n1,2,3\n"), "auto", Options{MaxRowBytes: 12})
	if err != nil {
		t.Fatal(err)
	}
	rows := readAll(t, r)
	if len(rows) != 2 || rows[0].Err != "2:13:c:row too long" || rows[1].Err != "" {
		t.Errorf("got %v", rows)
	}
}

// errReader fails after its data, like a dropped SFTP connection.
type errReader struct {
	data []byte
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p[:min(len(p), 100)], e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestSourceErrorIsFinal(t *testing.T) {
	boom := errors.New("connection reset")
	data := "a,b\n" + strings.Repeat("1,2\n", 1000) + "3,"
	r, err := NewReader(&errReader{[]byte(data), boom}, "auto", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := r.Read(); err != nil {
			t.Fatalf("row %d: %v", i+1, err)
		}
	}
	_, err = r.Read()
	var pe *ParseError
	if !errors.Is(err, boom) || errors.As(err, &pe) {
		t.Fatalf("row 2: %v, want the source's error", err)
	}
}

func TestParseErrorMessage(t *testing.T) {
	e := &ParseError{File: "inv.csv", Row: 3, Line: 4, Column: 12, Field: "external-id", Err: ErrInvalidUTF8}
	want := `inv.csv: row 3 (line 4, column 12), field "external-id": invalid UTF-8`
	if e.Error() != want {
		t.Errorf("%q, want %q", e.Error(), want)
	}
}

// Test40MBField: the 40 MB single field, generated while read. It
// must fail its row alone and must not be buffered: the bytes allocated
// while reading the whole file stay far below the field's size.
func Test40MBField(t *testing.T) {
	for _, multiline := range []bool{false, true} {
		src := fixtures.HugeFieldReader(40<<20, multiline)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := NewReader(src, "auto", Options{File: "huge.csv"})
		if err != nil {
			t.Fatal(err)
		}
		rows := readAll(t, r)
		runtime.ReadMemStats(&after)
		src.Close()
		if len(rows) != 3 || rows[0].Err != "" || rows[2].Err != "" || rows[2].Fields[0] != "H-3" {
			t.Fatalf("multiline=%v: rows %v", multiline, rows)
		}
		if rows[1].Err != `3:38:response-message:field too long` || rows[1].Fields[0] != "H-2" {
			t.Errorf("row 2: %v", rows[1])
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("multiline=%v: %d bytes allocated reading a 40 MB field", multiline, alloc)
		}
	}
}

// TestLimitsWithAMillionRowsAfter: each limit the parser enforces (a field
// too long, a row too long, a quote left open, a quote that closes only
// a million lines on) is hit on row 2 of a file
// with a million rows after it. Reading must end, in one linear pass and
// without buffering the oversized bytes, with the error on row 2 and every
// row after it read as a row again where the input allows. The deadline
// only turns a hang into a failure; it is not a speed target.
func TestLimitsWithAMillionRowsAfter(t *testing.T) {
	const after = 1_000_000
	var tail strings.Builder
	for i := 3; i < 3+after; i++ {
		fmt.Fprintf(&tail, "Q-%d,InvoiceHeader,%d,Success,Functional\n", i, i)
	}
	const header = "external-id,document-type,document-id,status,contact-alert-type\nQ-1,InvoiceHeader,1,Success,Functional\n"
	long := strings.Repeat("x", 2<<20)
	cases := []struct {
		name     string
		row2     string // row 2, with its line end
		closeAt  string // text after the million rows
		opts     Options
		rows     int // rows read in all
		err      error
		contains string
	}{
		{name: "field too long", row2: "Q-2,InvoiceHeader,2," + long + ",Functional\n",
			rows: 2 + after, err: ErrFieldTooLong, contains: "row 2 (line 3, column 21), field \"status\": field too long"},
		{name: "row too long", row2: "Q-2,InvoiceHeader,2," + long[:40<<10] + "," + long[:40<<10] + "\n",
			opts: Options{MaxRowBytes: 64 << 10}, rows: 2 + after, err: ErrRowTooLong, contains: "field \"contact-alert-type\": row too long"},
		{name: "quote left open", row2: "Q-2,InvoiceHeader,2,\"Success,Functional\n",
			rows: 2, err: ErrUnclosedQuote, contains: "the quote at line 3, column 21 is never closed; it runs to the end of the file"},
		// A quote that does close, a million lines on, is an oversized
		// field: its row fails alone (a 40 MB quoted message is a row,
		// see Test40MBField).
		{name: "quote closed a million lines on", row2: "Q-2,InvoiceHeader,2,\"Success,Functional\n", closeAt: "end\",x\nQ-Z,InvoiceHeader,9,Success,Functional\n",
			rows: 3, err: ErrFieldTooLong, contains: "row 2 (line 3, column 21), field \"status\": field too long"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := header + c.row2 + tail.String() + c.closeAt
			type result struct {
				rows int
				bad  []*ParseError
				err  error
			}
			done := make(chan result, 1)
			var before, afterMem runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			go func() {
				var r result
				c.opts.File = "q.csv"
				rd, err := NewReader(strings.NewReader(in), "auto", c.opts)
				if err != nil {
					r.err = err
					done <- r
					return
				}
				for {
					_, err := rd.Read()
					if err == io.EOF {
						break
					}
					r.rows++
					var pe *ParseError
					if errors.As(err, &pe) {
						r.bad = append(r.bad, pe)
					} else if err != nil {
						r.err = err
						break
					}
				}
				done <- r
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(2 * time.Minute):
				t.Fatal("reading did not end: the parser hangs")
			}
			runtime.ReadMemStats(&afterMem)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.rows != c.rows || len(r.bad) != 1 || r.bad[0].Row != 2 || !errors.Is(r.bad[0], c.err) {
				t.Fatalf("%d rows, errors %v; want %d rows and row 2 failing with %v", r.rows, r.bad, c.rows, c.err)
			}
			if msg := r.bad[0].Error(); !strings.Contains(msg, c.contains) {
				t.Errorf("message %q does not say %q", msg, c.contains)
			}
			// A quote that swallowed the million rows must not have
			// buffered them.
			if alloc := afterMem.TotalAlloc - before.TotalAlloc; r.rows <= 3 && alloc > 8<<20 {
				t.Errorf("%d bytes allocated reading %d bytes into one field", alloc, len(in))
			}
		})
	}
}
