package importer

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
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
// makes no API call, touches no ledger and moves nothing. Duplicate
// external-ids are found within mapping.DupTracker's memory budget.
// The result's Status is state.Done when every row is valid, else
// state.Failed; Counts.Invalid counts invalid rows.
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
		if l.Result == exporter.Invalid {
			res.Counts.Invalid++
			res.Status = state.Failed
		}
		return cw.Write(rec)
	}
	rc, err := im.openContent(ctx, src, store, base, name)
	if unwrap.IsFileError(err) {
		return whole(res, line, cw, fmt.Errorf("%s: %w", base, err))
	}
	if err != nil {
		return res, fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
	}
	defer rc.Close()
	if !rc.Archive {
		if err := validateRows(ctx, src, rc.Content, base, name, "", &res, line); err != nil {
			var fe *wholeFileError
			if errors.As(err, &fe) {
				return whole(res, line, cw, fe.err)
			}
			return res, err
		}
		cw.Flush()
		return res, cw.Error()
	}
	// A zip: every CSV entry in turn, each line's message naming its entry.
	a, err := unwrap.OpenArchive(rc.Content, "", src.Unwrap.Limits)
	if unwrap.IsFileError(err) {
		return whole(res, line, cw, fmt.Errorf("%s: %w", base, err))
	}
	if err != nil {
		return res, fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, name, err)
	}
	defer a.Close()
	if len(a.Entries()) == 0 {
		return whole(res, line, cw, fmt.Errorf("%s: zip archive holds no .csv entry", base))
	}
	ecfg := unwrapEntries(src.Unwrap)
	for _, e := range a.Entries() {
		er, err := a.Open(e)
		if err != nil {
			return whole(res, line, cw, fmt.Errorf("%s: %w", base, err))
		}
		c, err := unwrap.Open(er, ecfg)
		if err == nil {
			err = validateRows(ctx, src, c, e.Name, name, e.Name+": ", &res, line)
			c.Close()
		}
		er.Close()
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
	cw.Flush()
	return res, cw.Error()
}

// wholeFileError: the file (or zip entry) cannot be read as CSV at all.
type wholeFileError struct{ err error }

func (e *wholeFileError) Error() string { return e.err.Error() }

func whole(res FileResult, line func(exporter.ReportLine) error, cw *csv.Writer, err error) (FileResult, error) {
	res.Reason = err.Error()
	if werr := line(exporter.ReportLine{Result: exporter.Invalid, Message: err.Error()}); werr != nil {
		return res, werr
	}
	res.Status = state.Failed
	res.Counts.Invalid++ // line counted it in the caller's copy
	cw.Flush()
	return res, cw.Error()
}

// validateRows checks the rows of one CSV stream; prefix starts each
// line's message (the entry of a zip). A *wholeFileError says the stream
// is not CSV at all, or broke off (decryption, signature, completeness).
func validateRows(ctx context.Context, src Source, r *unwrap.Content, base, name, prefix string, res *FileResult, line func(exporter.ReportLine) error) error {
	fileErr := func(err error) error { return &wholeFileError{fmt.Errorf("%s: %w", base, err)} }
	rd, err := parse.NewReader(r, src.Encoding, parse.Options{File: base})
	switch {
	case err != nil && (isFileError(err) || unwrap.IsFileError(err)):
		return fileErr(err)
	case err != nil:
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
		rows++
		res.Rows++
		var pe *parse.ParseError
		if errors.As(err, &pe) {
			if err := line(exporter.ReportLine{Row: row.Number, Result: exporter.Invalid, Message: prefix + pe.Error()}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, name, err)
		}
		m, ferrs := mp.Map(row, base)
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
	if err := r.CheckRows(rows); err != nil {
		return fileErr(err)
	}
	return nil
}
