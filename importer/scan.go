package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

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
	// newRun: the run was started now, not resumed (set by run).
	newRun bool
	// marked: the dispatch mark stored with the run's start (0: none).
	marked int64
}

// scan reads the whole file once, before any row is posted: it hashes it
// and counts its data rows. fileErr says why the file as a whole cannot
// be processed: it cannot be read as CSV; its decryption, signature,
// decompression or completeness check failed; or a quote left open
// swallowed the rows after it. Such a file is rejected as a whole, before
// any row is posted. err is a failure to read it.
func (im *Importer) scan(ctx context.Context, src Source, name, loc string) (pi passInfo, fileErr, err error) {
	rc, err := im.openContent(ctx, src, src.Store, name, loc)
	if unwrap.IsFileError(err) {
		return pi, fmt.Errorf("%s: %w", name, err), nil
	}
	if err != nil {
		return pi, nil, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, SafeName(loc), err)
	}
	defer rc.Close()
	h := sha256.New()
	in := io.TeeReader(rc, h)
	ioErr := func(err error) error {
		return fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, SafeName(loc), err)
	}
	if rc.Archive {
		// Read whole: its signature and manifest are settled now.
		if fileErr, err := drain(in, name, ioErr); fileErr != nil || err != nil {
			return pi, fileErr, err
		}
		return passInfo{sum: hex.EncodeToString(h.Sum(nil))}, errArchive, nil
	}
	pi, fileErr, err = scanCSV(src, name, in, ioErr)
	if err != nil || unwrap.IsFileError(fileErr) {
		return passInfo{}, fileErr, err
	}
	// The rest of the file still counts: the hash covers it, and the
	// unwrapping's end-of-file checks run.
	if ferr, err := drain(in, name, ioErr); ferr != nil || err != nil {
		return passInfo{}, ferr, err
	}
	pi.sum = hex.EncodeToString(h.Sum(nil))
	if fileErr == nil {
		if err := rc.CheckRows(pi.rows); err != nil {
			return passInfo{}, fmt.Errorf("%s: %w", name, err), nil
		}
	}
	return pi, fileErr, nil
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
func scanCSV(src Source, name string, in io.Reader, ioErr func(error) error) (r passInfo, fileErr, err error) {
	rd, perr := parse.NewReader(in, src.Encoding, parse.Options{File: name})
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
	return countRows(src, name, rd, mp, ioErr)
}

// countRows reads every row. Only a file that may be split needs its keys
// checked here (in the tracker's flat memory): ranges run in any order, so
// a repeated external-id would not reliably lose to its first row.
func countRows(src Source, name string, rd *parse.Reader, mp *mapping.Mapper, ioErr func(error) error) (r passInfo, fileErr, err error) {
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
			return passInfo{}, fmt.Errorf("%s: %w", name, err), nil
		}
		if err != nil && !errors.As(err, &pe) {
			return passInfo{}, nil, ioErr(err)
		}
		if errors.Is(err, parse.ErrUnclosedQuote) {
			return passInfo{}, unclosedQuote(pe), nil
		}
		r.rows++
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

// unclosedQuote is the whole-file error of a quote left open: the rows
// after it were read into one field, so which of them are rows cannot be
// known, and recording only the rows before it would leave the file half
// done until the ERP sends it again, whole. Run and validate say it in
// the same words.
func unclosedQuote(pe *parse.ParseError) error {
	return fmt.Errorf("%w; the file is rejected as a whole and none of its rows is posted: close the quote and drop the file again", pe)
}

func isFileError(err error) bool {
	var pe *parse.ParseError
	return errors.Is(err, parse.ErrEmptyFile) || errors.Is(err, parse.ErrBinary) ||
		errors.Is(err, parse.ErrNoHeader) || errors.Is(err, parse.ErrEncoding) || errors.As(err, &pe)
}
