package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// Validate is the dry run: it parses, maps and validates the file at name
// in store (src gives encoding, mapping and integration) and writes a
// report in the response report's columns, with the run's report writer,
// to w, with result state.Valid or state.Invalid per row (or one line when
// the whole file is unreadable). It reads the file as the pipeline does
// (decryption, signature, decompression, manifest and trailer; a zip's CSV
// entries one after the other, each line's message naming its entry). It
// makes no API call, touches no ledger and moves nothing. Duplicate
// external-ids are found within mapping.DupTracker's memory budget. The
// result's Status is state.Done when every row is valid, else
// state.Failed; Counts.Invalid counts invalid rows.
func (im *Importer) Validate(ctx context.Context, src Source, store filestore.Store, name string, w io.Writer) (FileResult, error) {
	base := path.Base(name)
	rw := im.reportWriter(src, w)
	rw.SetDryRun(true)
	d := &dryRun{w: rw, res: FileResult{Source: src.Name, Name: base, Status: state.Done}}
	open := func() (*unwrap.Content, io.Closer, error) {
		c, err := im.openContent(ctx, src, store, base, name)
		if err != nil {
			return nil, nil, err
		}
		return c.Content, c, nil
	}
	c, closer, err := open()
	switch {
	case unwrap.IsFileError(err):
		return d.whole(fmt.Errorf("%s: %w", base, err))
	case err != nil:
		return d.res, fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
	}
	if c.Archive {
		return d.archive(ctx, src, c, closer, base, name)
	}
	closer.Close()
	if err := validateRows(ctx, src, open, base, name, "", d); err != nil {
		var fe *wholeFileError
		if errors.As(err, &fe) {
			return d.whole(fe.err)
		}
		return d.res, err
	}
	return d.end()
}

// dryRun is one Validate's report and result.
type dryRun struct {
	w   *exporter.ReportWriter
	res FileResult
}

func (d *dryRun) line(l exporter.ReportLine) error {
	if l.Result == state.Invalid {
		d.res.Counts.Invalid++
		d.res.Status = state.Failed
	}
	return d.w.Write(l)
}

// whole ends the report with one line saying why the file as a whole is
// invalid.
func (d *dryRun) whole(err error) (FileResult, error) {
	d.res.Reason = err.Error()
	if werr := d.line(exporter.ReportLine{Result: state.Invalid, Message: err.Error()}); werr != nil {
		return d.res, werr
	}
	return d.end()
}

func (d *dryRun) end() (FileResult, error) { return d.res, d.w.Flush() }

// archive validates a zip: every CSV entry in turn, each line's message
// naming its entry; an entry unreadable as a whole gets one line.
func (d *dryRun) archive(ctx context.Context, src Source, c *unwrap.Content, closer io.Closer, base, name string) (FileResult, error) {
	a, err := unwrap.OpenArchive(c, "", src.Unwrap.Limits)
	closer.Close()
	if unwrap.IsFileError(err) {
		return d.whole(fmt.Errorf("%s: %w", base, err))
	}
	if err != nil {
		return d.res, fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, name, err)
	}
	defer a.Close()
	if len(a.Entries()) == 0 {
		return d.whole(fmt.Errorf("%s: zip archive holds no .csv entry", base))
	}
	ecfg := unwrapEntries(src.Unwrap)
	for _, e := range a.Entries() {
		err := validateRows(ctx, src, entryOpener(a, e, ecfg), e.Name, name, e.Name+": ", d)
		var fe *wholeFileError
		switch {
		case errors.As(err, &fe):
			if werr := d.line(exporter.ReportLine{Result: state.Invalid, Message: fe.err.Error()}); werr != nil {
				return d.res, werr
			}
			if d.res.Reason == "" {
				d.res.Reason = fe.err.Error()
			}
		case unwrap.IsFileError(err):
			if werr := d.line(exporter.ReportLine{Result: state.Invalid, Message: e.Name + ": " + err.Error()}); werr != nil {
				return d.res, werr
			}
		case err != nil:
			return d.res, err
		}
	}
	// The archive's manifest counts the rows of all its entries.
	if err := c.CheckRows(d.res.Rows); err != nil {
		return d.whole(fmt.Errorf("%s: %w", base, err))
	}
	return d.end()
}

// entryOpener opens a zip entry's content (again, on each call).
func entryOpener(a *unwrap.Archive, e unwrap.Entry, ecfg unwrap.Config) func() (*unwrap.Content, io.Closer, error) {
	return func() (*unwrap.Content, io.Closer, error) {
		er, err := a.Open(e)
		if err != nil {
			return nil, nil, err
		}
		c, err := unwrap.Open(er, ecfg)
		if err != nil {
			er.Close()
			return nil, nil, err
		}
		return c, closers{c, er}, nil
	}
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// wholeFileError: the file (or zip entry) cannot be read as CSV at all, or
// broke off (decryption, signature, completeness).
type wholeFileError struct{ err error }

func (e *wholeFileError) Error() string { return e.err.Error() }

// validateRows checks the rows of one CSV stream, which open opens;
// prefix starts each line's message (the entry of a zip). A quote left
// open ends it with the whole-file error the run gives such a file.
func validateRows(ctx context.Context, src Source, open func() (*unwrap.Content, io.Closer, error), base, name, prefix string, d *dryRun) error {
	v := &rowValidator{src: src, name: name, prefix: prefix, d: d, dups: mapping.NewDupTracker(0),
		recName: recordName(base), entry: strings.TrimSuffix(prefix, ": ")}
	fileErr := func(err error) error { return &wholeFileError{fmt.Errorf("%s: %w", base, err)} }
	c, closer, err := open()
	if unwrap.IsFileError(err) {
		return fileErr(err)
	}
	if err != nil {
		return fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
	}
	defer closer.Close()
	rd, err := parse.NewReader(c, src.Encoding, parse.Options{File: base})
	if err != nil {
		if isFileError(err) || unwrap.IsFileError(err) {
			return fileErr(err)
		}
		return err
	}
	mp, err := mapping.New(src.Mapping, rd.Header(), src.Integration)
	if err != nil {
		var ce *mapping.ConfigError
		if errors.As(err, &ce) {
			return err
		}
		return fileErr(err)
	}
	var rows int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		row, err := rd.Read()
		if err == io.EOF {
			break
		}
		if unwrap.IsFileError(err) {
			return fileErr(err)
		}
		var pe *parse.ParseError
		if errors.As(err, &pe) && errors.Is(pe, parse.ErrUnclosedQuote) {
			return &wholeFileError{unclosedQuote(pe)}
		}
		rows++
		d.res.Rows++
		if err := v.row(row, err, mp); err != nil {
			return err
		}
	}
	if rows == 0 {
		return fileErr(parse.ErrNoRows)
	}
	if err := c.CheckRows(rows); err != nil {
		return fileErr(err)
	}
	return nil
}

// rowValidator is one validateRows' stream.
type rowValidator struct {
	src     Source
	name    string
	prefix  string
	recName string // recordName(base), worked out once, not per row
	entry   string // a valid row's message: prefix without its ": "
	d       *dryRun
	dups    *mapping.DupTracker
}

// row writes one data row's line; rerr is the row's read error.
func (v *rowValidator) row(row parse.Row, rerr error, mp *mapping.Mapper) error {
	var pe *parse.ParseError
	if errors.As(rerr, &pe) {
		return v.d.line(exporter.ReportLine{Row: row.Number, Result: state.Invalid, Message: v.prefix + pe.Error()})
	}
	if rerr != nil {
		return fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, v.name, rerr)
	}
	m, ferrs := mp.Map(row, v.recName)
	if len(ferrs) == 0 {
		if fe := v.dups.Check(m); fe != nil {
			ferrs = append(ferrs, *fe)
		}
	}
	l := rowLine(row.Number, m)
	l.Result, l.Message = state.Valid, v.entry
	if len(ferrs) > 0 {
		l.Result, l.Message = state.Invalid, v.prefix+fieldMessage(ferrs)
	}
	return v.d.line(l)
}
