package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/state"
)

// rowsReader opens the file and prepares its parser and mapper.
func (im *Importer) rowsReader(ctx context.Context, src Source, f *state.File) (io.ReadCloser, *parse.Reader, *mapping.Mapper, error) {
	rc, err := im.openContent(ctx, src, src.Store, f.Name, f.Location)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, SafeName(f.Location), err)
	}
	rd, err := parse.NewReader(rc, src.Encoding, parse.Options{File: f.Name})
	if err != nil {
		rc.Close()
		return nil, nil, nil, fmt.Errorf("importer: %s: %s changed since it was hashed: %w", src.Name, f.Location, err)
	}
	mp, err := mapping.New(src.Mapping, rd.Header(), src.Integration)
	if err != nil {
		rc.Close()
		return nil, nil, nil, fmt.Errorf("importer: %s: %s: %w", src.Name, f.Location, err)
	}
	return rc, rd, mp, nil
}

// windowReader is the read stage: it yields the rows of a span (data rows
// first..last) that map and validate, at most size at a time.
// Invariants: rows come in file order; a row outside the span is never
// yielded (it is another range's); a row that does not parse or map is
// passed to invalid and never yielded, so it is never sent.
type windowReader struct {
	rd          *parse.Reader
	mp          *mapping.Mapper
	first, last int64
	recName     string // the records' integration_filename: recordName of the file's name, worked out once
	size        int
	invalid     func()
	readErr     func(error) error // wraps a failure to read
	buf         []item
	// stages is Config.StageTimer (nil: not timed).
	stages func(Stage, time.Duration)
}

// next returns the next window. Its error is io.EOF after the last window
// (which may hold rows), or a failure to read, after the rows before it.
// The window is valid until the next call.
func (r *windowReader) next() ([]item, error) {
	if r.stages != nil {
		start := time.Now()
		defer func() { r.stages(StageParse, time.Since(start)) }()
	}
	r.buf = r.buf[:0]
	for len(r.buf) < r.size {
		row, err := r.rd.Read()
		if err == io.EOF {
			return r.buf, io.EOF
		}
		var pe *parse.ParseError
		isPE := errors.As(err, &pe)
		if err != nil && !isPE {
			return r.buf, r.readErr(err)
		}
		if n := int64(row.Number); n < r.first {
			continue
		} else if n > r.last {
			return r.buf, io.EOF
		}
		if isPE {
			r.invalid()
			continue
		}
		m, ferrs := r.mp.Map(row, r.recName)
		if len(ferrs) > 0 {
			r.invalid()
			continue
		}
		r.buf = append(r.buf, newItem(row.Number, m))
	}
	return r.buf, nil
}
