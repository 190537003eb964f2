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
	rc, err := store.Open(ctx, name, 0)
	if err != nil {
		return res, fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
	}
	defer rc.Close()
	whole := func(err error) (FileResult, error) {
		res.Reason = err.Error()
		if werr := line(exporter.ReportLine{Result: exporter.Invalid, Message: err.Error()}); werr != nil {
			return res, werr
		}
		cw.Flush()
		return res, cw.Error()
	}
	rd, err := parse.NewReader(rc, src.Encoding, parse.Options{File: base})
	switch {
	case err != nil && isFileError(err):
		return whole(err)
	case err != nil:
		return res, err
	}
	mp, err := mapping.New(src.Mapping, rd.Header(), src.Integration)
	if err != nil {
		var ce *mapping.ConfigError
		if errors.As(err, &ce) {
			return res, err
		}
		return whole(fmt.Errorf("%s: %w", base, err))
	}
	dups := mapping.NewDupTracker(0)
	var quotes []parse.Position
	skip := 0 // rows already written, when the file is read again
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		row, err := rd.Read()
		if err == io.EOF {
			break
		}
		if row.Number <= skip {
			continue
		}
		res.Rows++
		var pe *parse.ParseError
		if errors.As(err, &pe) && errors.Is(pe, parse.ErrUnclosedQuote) && len(quotes) < maxQuotePasses &&
			!slices.Contains(quotes, parse.Position{Line: pe.Line, Column: pe.Column}) {
			// The quote swallowed the rest of the file (this is its last
			// row): read the file again, knowing it, from the row after.
			quotes = append(quotes, parse.Position{Line: pe.Line, Column: pe.Column})
			rc.Close()
			if rc, err = store.Open(ctx, name, 0); err != nil {
				return res, fmt.Errorf("%w: open %s: %w", ErrSourceUnavailable, name, err)
			}
			defer rc.Close()
			if rd, err = parse.NewReader(rc, src.Encoding, parse.Options{File: base, UnclosedQuotes: quotes}); err != nil {
				return res, err
			}
			skip = row.Number - 1
			res.Rows--
			continue
		}
		if errors.As(err, &pe) {
			if err := line(exporter.ReportLine{Row: row.Number, Result: exporter.Invalid, Message: pe.Error()}); err != nil {
				return res, err
			}
			continue
		}
		if err != nil {
			return res, fmt.Errorf("%w: read %s: %w", ErrSourceUnavailable, name, err)
		}
		m, ferrs := mp.Map(row, recordName(base))
		if len(ferrs) == 0 {
			if fe := dups.Check(m); fe != nil {
				ferrs = append(ferrs, *fe)
			}
		}
		l := exporter.ReportLine{Row: row.Number, ExternalID: m.Record.ExternalID, DocumentType: m.Record.DocumentType,
			Action: string(m.Action), Result: Valid}
		if m.Record.DocumentID != nil {
			l.DocumentID = strconv.FormatInt(*m.Record.DocumentID, 10)
		}
		if len(ferrs) > 0 {
			msgs := make([]string, len(ferrs))
			for i, fe := range ferrs {
				msgs[i] = fe.Message
			}
			l.Result, l.Message = exporter.Invalid, strings.Join(msgs, "; ")
		}
		if err := line(l); err != nil {
			return res, err
		}
	}
	if res.Rows == 0 {
		return whole(fmt.Errorf("%s: %w", base, parse.ErrNoRows))
	}
	cw.Flush()
	return res, cw.Error()
}
