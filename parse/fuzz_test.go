package parse

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzParse: any input either fails as a whole with an error, or reads to
// io.EOF with consistent row numbers and positions, never panics, never
// returns an error that is neither a *ParseError nor the end. When the
// whole file reads cleanly (and has no CR, which encoding/csv treats
// differently on purpose), encoding/csv must agree field for field.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a,b\r\n1,2\r\n", "\xef\xbb\xbfa,b\n\"x\ny\",\"q\"\"\"\n", "a\n\"unterminated\n", "a,b\n1,x\"y\n\"1\"z,2\n",
		"a,b\n\xff,\xc3\n", "a\r1\r", ",\n,\n", "", "\x00", "\xff\xfe", "a,b\n1\n1,2,3\n", "\"a\"\"\"\n\"\"\"\"\n",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Add([]byte("a,b\r\n\x93\x8c,\x82\xa0\r\n\x81\n"), uint8(2))
	encs := []string{"auto", "utf-8", "shift_jis"}
	f.Fuzz(func(t *testing.T, data []byte, enc uint8) {
		encoding := encs[int(enc)%len(encs)]
		r, err := NewReader(bytes.NewReader(data), encoding, Options{MaxFieldBytes: 64, MaxRowBytes: 256, MaxFields: 32})
		if err != nil {
			var pe *ParseError
			if !errors.Is(err, ErrEmptyFile) && !errors.Is(err, ErrBinary) && !errors.Is(err, ErrNoHeader) &&
				!errors.Is(err, ErrEncoding) && !errors.As(err, &pe) {
				t.Fatalf("NewReader: unexpected error %v", err)
			}
			return
		}
		header := r.Header()
		if len(header) == 0 || len(header) > 32 {
			t.Fatalf("header %q", header)
		}
		rows := [][]string{header}
		clean, lastLine := true, 1
		for n := 1; ; n++ {
			row, err := r.Read()
			if err == io.EOF {
				break
			}
			if row.Number != n || row.Line <= lastLine || len(row.Fields) > len(header) {
				t.Fatalf("row %d: %+v after line %d", n, row, lastLine)
			}
			lastLine = row.Line
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Row != n || pe.Line < row.Line || pe.Column < 0 {
					t.Fatalf("row %d: error %v (%+v)", n, err, pe)
				}
				clean = false
				continue
			}
			if len(row.Fields) != len(header) {
				t.Fatalf("row %d: %d fields without error", n, len(row.Fields))
			}
			for _, v := range row.Fields {
				if !utf8.ValidString(v) || len(v) > 64 {
					t.Fatalf("row %d: bad field %q without error", n, v)
				}
			}
			rows = append(rows, row.Fields)
		}
		if !clean || encoding == "shift_jis" || bytes.ContainsRune(data, '\r') {
			return
		}
		cr := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))))
		want, err := cr.ReadAll()
		if err != nil {
			t.Fatalf("we read it cleanly, encoding/csv says %v", err)
		}
		if !slices.EqualFunc(rows, want, slices.Equal) {
			t.Fatalf("records differ:\n ours %q\n csv  %q", rows, want)
		}
	})
}
