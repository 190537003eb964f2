package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/unwrap"
)

// passInfo is what the first pass learns about a file.
type passInfo struct {
	sum  string // SHA-256, hex
	rows int64  // data rows
	// unique: no external-id repeats (checked only when the source may
	// split files), so ranges can be processed in any order.
	unique bool
	// quotes are the file's unclosed quotes: every later read passes them
	// to the parser (parse.Options.UnclosedQuotes), so each fails its own
	// row only instead of swallowing the rest of the file.
	quotes []parse.Position
}

// parseOptions are the parser options for every read of the file after
// the first pass.
func (pi passInfo) parseOptions() parse.Options {
	return parse.Options{UnclosedQuotes: pi.quotes}
}

// maxQuotePasses bounds the extra passes over a file with unclosed quotes
// (each finds the next one); past it the rest of the file stays in one
// failed row, whose line says why.
const maxQuotePasses = 8

// scan reads the whole file before any row is posted: it hashes it and
// counts its data rows. fileErr says why the file as a whole cannot be
// processed; err is a failure to read it.
// A file with an unclosed quote is read again, with the quote's position,
// until every row is counted.
func (im *Importer) scan(ctx context.Context, src Source, name, loc string) (pi passInfo, fileErr, err error) {
	for pass := 0; ; pass++ {
		var r scanned
		r, fileErr, err = im.scanFile(ctx, src, name, loc, pi.parseOptions(), pass == 0, pass >= maxQuotePasses)
		if pass == 0 {
			pi.sum = r.sum
		}
		pi.rows, pi.unique = r.rows, r.unique
		if err != nil || fileErr != nil || r.quote == nil || pass >= maxQuotePasses {
			return pi, fileErr, err
		}
		pi.quotes = append(pi.quotes, *r.quote)
		// Ranges would each have to find the quote again.
		pi.unique = false
	}
}

// scanned is what one read of a file found.
type scanned struct {
	sum    string // SHA-256, hex, when asked for
	rows   int64  // data rows
	unique bool   // see passInfo
	quote  *parse.Position
}

// scanFile reads the file once: with hash, its SHA-256 too. It counts the
// data rows and returns the position of a quote that runs to the end of
// the file, if any. On the last pass the count is final even so: the
// manifest and trailer are checked against it, so a file is never posted
// unchecked however many quotes it leaves open. A decryption, signature,
// decompression or completeness failure is the file's (fileErr): it is
// rejected as a whole, before any row is posted.
func (im *Importer) scanFile(ctx context.Context, src Source, name, loc string, popts parse.Options, hash, last bool) (r scanned, fileErr, err error) {
	rc, err := im.openContent(ctx, src, src.Store, name, loc)
	if unwrap.IsFileError(err) {
		return r, fmt.Errorf("%s: %w", name, err), nil
	}
	if err != nil {
		return r, nil, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, SafeName(loc), err)
	}
	defer rc.Close()
	h := sha256.New()
	var in io.Reader = rc
	if hash {
		in = io.TeeReader(rc, h)
	}
	ioErr := func(err error) error {
		return fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, SafeName(loc), err)
	}
	if rc.Archive {
		// Read whole: its signature and manifest are settled now.
		if fileErr, err := drain(in, name, ioErr); fileErr != nil || err != nil {
			return scanned{}, fileErr, err
		}
		return scanned{sum: hex.EncodeToString(h.Sum(nil))}, errArchive, nil
	}
	popts.File = name
	r, fileErr, err = scanCSV(src, name, in, popts, ioErr)
	if err != nil || unwrap.IsFileError(fileErr) {
		return scanned{}, fileErr, err
	}
	if hash {
		if ferr, err := drain(in, name, ioErr); ferr != nil || err != nil {
			return scanned{}, ferr, err
		}
		r.sum = hex.EncodeToString(h.Sum(nil))
	}
	// The row count is final once no quote makes another pass.
	if fileErr == nil && (r.quote == nil || last) {
		if err := rc.CheckRows(r.rows); err != nil {
			return scanned{}, fmt.Errorf("%s: %w", name, err), nil
		}
	}
	return r, fileErr, nil
}

// drain reads the rest of in (so that the hash covers it and the
// unwrapping's end-of-file checks run).
func drain(in io.Reader, name string, ioErr func(error) error) (fileErr, err error) {
	if _, err := io.Copy(io.Discard, in); unwrap.IsFileError(err) {
		return fmt.Errorf("%s: %w", name, err), nil
	} else if err != nil {
		return nil, ioErr(err)
	}
	return nil, nil
}

// scanCSV parses in as the source's CSV and counts its rows. A fileErr
// that unwrap.IsFileError ends the scan at once; another (no header, a
// column missing, no rows…) still lets the content be hashed.
func scanCSV(src Source, name string, in io.Reader, popts parse.Options, ioErr func(error) error) (r scanned, fileErr, err error) {
	rd, perr := parse.NewReader(in, src.Encoding, popts)
	switch {
	case perr == nil:
	case errors.Is(perr, parse.ErrUnknownEncoding):
		return r, nil, fmt.Errorf("importer: %s: %w", src.Name, perr)
	case unwrap.IsFileError(perr):
		return r, fmt.Errorf("%s: %w", name, perr), nil
	case isFileError(perr):
		return r, perr, nil
	default:
		return r, nil, ioErr(perr)
	}
	mp, merr := mapping.New(src.Mapping, rd.Header(), src.Integration)
	if merr != nil {
		var ce *mapping.ConfigError
		if errors.As(merr, &ce) {
			return r, nil, fmt.Errorf("importer: %s: mapping: %w", src.Name, merr)
		}
		return r, fmt.Errorf("%s: %w", name, merr), nil
	}
	return countRows(src, name, rd, mp, popts, ioErr)
}

// countRows reads every row. Only a file that may be split needs its keys
// checked here (in the tracker's flat memory): ranges run in any order, so
// a repeated external-id would not reliably lose to its first row.
func countRows(src Source, name string, rd *parse.Reader, mp *mapping.Mapper, popts parse.Options, ioErr func(error) error) (r scanned, fileErr, err error) {
	var dups *mapping.DupTracker
	if src.SplitRows > 0 && !src.ResolvePrevious {
		dups = mapping.NewDupTracker(0)
	}
	repeated := false
	recName := recordName(name) // once per file, not per row
	for {
		row, err := rd.Read()
		if err == io.EOF {
			break
		}
		var pe *parse.ParseError
		if unwrap.IsFileError(err) {
			return scanned{}, fmt.Errorf("%s: %w", name, err), nil
		}
		if err != nil && !errors.As(err, &pe) {
			return scanned{}, nil, ioErr(err)
		}
		r.rows++
		if pe != nil && errors.Is(pe, parse.ErrUnclosedQuote) && !slices.Contains(popts.UnclosedQuotes, parse.Position{Line: pe.Line, Column: pe.Column}) {
			r.quote = &parse.Position{Line: pe.Line, Column: pe.Column}
		}
		if dups != nil && err == nil && !repeated {
			if m, ferrs := mp.Map(row, recName); len(ferrs) == 0 && dups.Check(m) != nil {
				repeated = true
			}
		}
	}
	r.unique = dups != nil && !repeated && !dups.Full()
	if r.rows == 0 {
		return r, fmt.Errorf("%s: %w", name, parse.ErrNoRows), nil
	}
	return r, nil, nil
}

func isFileError(err error) bool {
	var pe *parse.ParseError
	return errors.Is(err, parse.ErrEmptyFile) || errors.Is(err, parse.ErrBinary) ||
		errors.Is(err, parse.ErrNoHeader) || errors.Is(err, parse.ErrEncoding) || errors.As(err, &pe)
}
