package importer

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// Valid is the result validate gives a row that would be posted. It only
// appears in dry-run output, never in a response report.
const Valid = "valid"

// Validate is the dry run: it parses, maps and validates the file at name
// in store (src gives encoding, mapping and integration) and writes a
// report in the response report's columns to w, with result "valid" or
// "invalid" per row (or one line when the whole file is unreadable). It
// reads the file as the pipeline does (decryption, signature,
// decompression, manifest and trailer; a zip's CSV entries one after the
// other, each line's message naming its entry). It makes no API call,
// touches no ledger and moves nothing. Duplicate external-ids are found
// within mapping.DupTracker's memory budget. The result's Status is
// state.Done when every row is valid, else state.Failed; Counts.Invalid
// counts invalid rows.
func (im *Importer) Validate(ctx context.Context, src Source, store filestore.Store, name string, w io.Writer) (FileResult, error) {
	base := path.Base(name)
	res := FileResult{Source: src.Name, Name: base, Status: state.Done}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(exporter.ReportHeader); err != nil {
		return res, err
	}
	line := func(l exporter.ReportLine) error {
		rec := []string{strconv.Itoa(l.Row), l.ExternalID, l.DocumentType, l.DocumentID, l.Action, l.Result, "", "",
			strings.Join(strings.Fields(l.Message), " ")}
		if !src.KeepFormulas {
			for _, i := range []int{1, 2, 3, 4, 8} {
				rec[i] = exporter.EscapeFormula(rec[i])
			}
		}
		if l.Result == exporter.Invalid {
			res.Counts.Invalid++
			res.Status = state.Failed
		}
		return cw.Write(rec)
	}
	whole := func(err error) (FileResult, error) {
		res.Reason = err.Error()
		if werr := line(exporter.ReportLine{Result: exporter.Invalid, Message: err.Error()}); werr != nil {
			return res, werr
		}
		cw.Flush()
		return res, cw.Error()
	}
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
		return whole(fmt.Errorf("%s: %w", base, err))
	case err != nil:
		return res, fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
	}
	if !c.Archive {
		closer.Close()
		if err := validateRows(ctx, src, open, base, name, "", &res, line); err != nil {
			var fe *wholeFileError
			if errors.As(err, &fe) {
				return whole(fe.err)
			}
			return res, err
		}
		cw.Flush()
		return res, cw.Error()
	}
	// A zip: every CSV entry in turn, each line's message naming its entry.
	a, err := unwrap.OpenArchive(c, "", src.Unwrap.Limits)
	closer.Close()
	if unwrap.IsFileError(err) {
		return whole(fmt.Errorf("%s: %w", base, err))
	}
	if err != nil {
		return res, fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, name, err)
	}
	defer a.Close()
	if len(a.Entries()) == 0 {
		return whole(fmt.Errorf("%s: zip archive holds no .csv entry", base))
	}
	ecfg := unwrapEntries(src.Unwrap)
	for _, e := range a.Entries() {
		openEntry := func() (*unwrap.Content, io.Closer, error) {
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
		err := validateRows(ctx, src, openEntry, e.Name, name, e.Name+": ", &res, line)
		var fe *wholeFileError
		switch {
		case errors.As(err, &fe):
			if werr := line(exporter.ReportLine{Result: exporter.Invalid, Message: fe.err.Error()}); werr != nil {
				return res, werr
			}
			if res.Reason == "" {
				res.Reason = fe.err.Error()
			}
		case unwrap.IsFileError(err):
			if werr := line(exporter.ReportLine{Result: exporter.Invalid, Message: e.Name + ": " + err.Error()}); werr != nil {
				return res, werr
			}
		case err != nil:
			return res, err
		}
	}
	// The archive's manifest counts the rows of all its entries.
	if err := c.CheckRows(res.Rows); err != nil {
		return whole(fmt.Errorf("%s: %w", base, err))
	}
	cw.Flush()
	return res, cw.Error()
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

// validateRows checks the rows of one CSV stream, which open opens (again
// when an unclosed quote makes the stream be read anew); prefix starts
// each line's message (the entry of a zip).
func validateRows(ctx context.Context, src Source, open func() (*unwrap.Content, io.Closer, error), base, name, prefix string,
	res *FileResult, line func(exporter.ReportLine) error) error {
	fileErr := func(err error) error { return &wholeFileError{fmt.Errorf("%s: %w", base, err)} }
	var opened closers
	defer func() { opened.Close() }()
	reader := func(popts parse.Options) (*unwrap.Content, *parse.Reader, error) {
		c, closer, err := open()
		if unwrap.IsFileError(err) {
			return nil, nil, fileErr(err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
		}
		popts.File = base
		rd, err := parse.NewReader(c, src.Encoding, popts)
		if err != nil {
			closer.Close()
			if isFileError(err) || unwrap.IsFileError(err) {
				return nil, nil, fileErr(err)
			}
			return nil, nil, err
		}
		opened = append(opened, closer)
		return c, rd, nil
	}
	c, rd, err := reader(parse.Options{})
	if err != nil {
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
	dups := mapping.NewDupTracker(0)
	var quotes []parse.Position
	skip := 0 // rows already written, when the file is read again
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
		if row.Number <= skip {
			continue
		}
		rows++
		res.Rows++
		var pe *parse.ParseError
		if errors.As(err, &pe) && errors.Is(pe, parse.ErrUnclosedQuote) && len(quotes) < maxQuotePasses &&
			!slices.Contains(quotes, parse.Position{Line: pe.Line, Column: pe.Column}) {
			// The quote swallowed the rest of the file (this is its last
			// row): read the file again, knowing it, from the row after.
			quotes = append(quotes, parse.Position{Line: pe.Line, Column: pe.Column})
			if c, rd, err = reader(parse.Options{UnclosedQuotes: quotes}); err != nil {
				return err
			}
			skip = row.Number - 1
			rows--
			res.Rows--
			continue
		}
		if errors.As(err, &pe) {
			if err := line(exporter.ReportLine{Row: row.Number, Result: exporter.Invalid, Message: prefix + pe.Error()}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, name, err)
		}
		m, ferrs := mp.Map(row, recordName(base))
		if len(ferrs) == 0 {
			if fe := dups.Check(m); fe != nil {
				ferrs = append(ferrs, *fe)
			}
		}
		l := exporter.ReportLine{Row: row.Number, ExternalID: m.Record.ExternalID, DocumentType: m.Record.DocumentType,
			Action: string(m.Action), Result: Valid, Message: strings.TrimSuffix(prefix, ": ")}
		if m.Record.DocumentID != nil {
			l.DocumentID = strconv.FormatInt(*m.Record.DocumentID, 10)
		}
		if len(ferrs) > 0 {
			msgs := make([]string, len(ferrs))
			for i, fe := range ferrs {
				msgs[i] = fe.Message
			}
			l.Result, l.Message = exporter.Invalid, prefix+strings.Join(msgs, "; ")
		}
		if err := line(l); err != nil {
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
