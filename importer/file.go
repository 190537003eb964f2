package importer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// processFile runs one file, found at loc, whose original name is name.
func (im *Importer) processFile(ctx context.Context, src Source, name, loc string) FileResult {
	// A split run in progress is joined without the file's claim: its
	// ranges have claims of their own.
	if f, ok := im.splitInProgress(ctx, src, name); ok {
		return im.workSplit(ctx, src, f)
	}
	res, split := im.claimAndRun(ctx, src, name, loc)
	if split != nil {
		// The run was just split (or found split): the file's claim is
		// released, and this worker now takes ranges like any other.
		return im.workSplit(ctx, src, *split)
	}
	return res
}

// claimAndRun claims the file and runs it. When the run is split it
// returns the file as split, with its claim released, instead of a result.
func (im *Importer) claimAndRun(ctx context.Context, src Source, name, loc string) (FileResult, *state.File) {
	res := FileResult{Source: src.Name, Name: name}
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(name)))
	f, err := im.ledger.Claim(ctx, state.FileID{Source: src.Name, Name: name}, im.cfg.Owner, im.cfg.Lease)
	if errors.Is(err, state.ErrClaimed) {
		log.Info("claimed by another worker; left alone")
		res.Status = state.Claimed
		return res, nil
	}
	if err != nil {
		res.Status, res.Err = state.Processing, err
		return res, nil
	}
	defer im.release(src.Name, name)

	// The heartbeat keeps the claim; losing it stops the file at once.
	fctx, stop := im.keepAlive(ctx, log, func(ctx context.Context) error {
		return im.ledger.Heartbeat(ctx, state.FileID{Source: src.Name, Name: name}, im.cfg.Owner, im.cfg.Lease)
	})
	defer stop()

	if f.Destination != "" {
		err := im.finishMove(fctx, src, &f)
		if !errors.Is(err, errReplaced) {
			return im.result(f, err), nil
		}
	}
	res = im.run(fctx, src, &f, loc)
	if res.split {
		return res, &f
	}
	if res.Err != nil && fctx.Err() != nil && ctx.Err() == nil {
		res.Err = context.Cause(fctx) // lease lost
	}
	if !res.gone {
		im.obs.FileDone(src.Name, name, res)
	}
	return res, nil
}

// keepAlive heartbeats a claim every third of the lease until stop is
// called; losing the claim cancels the returned context with
// state.ErrLeaseLost as its cause.
func (im *Importer) keepAlive(ctx context.Context, log *zap.Logger, beat func(context.Context) error) (context.Context, func()) {
	fctx, cancel := context.WithCancelCause(ctx)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		t := time.NewTicker(im.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
				hctx, c := context.WithTimeout(fctx, im.cfg.Lease/3)
				err := beat(hctx)
				c()
				if errors.Is(err, state.ErrLeaseLost) {
					cancel(err)
					return
				}
				if err != nil && fctx.Err() == nil {
					log.Warn("heartbeat failed", zap.Error(err))
				}
			}
		}
	}()
	return fctx, func() {
		cancel(nil)
		hb.Wait()
	}
}

func (im *Importer) release(source, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	if err := im.ledger.Release(ctx, state.FileID{Source: source, Name: name}, im.cfg.Owner); err != nil {
		im.log.Warn("release claim", zap.String("source", source), zap.String("file", SafeName(name)), zap.Error(err))
	}
}

func (im *Importer) result(f state.File, err error) FileResult {
	r := FileResult{Source: f.Source, Name: f.Name, Status: f.Status, Rows: f.Rows, Counts: f.Counts,
		Reason: f.SkipReason, Report: f.ReportPath, MovedTo: f.ArchivedTo, Err: err}
	if err != nil && (f.Status == state.Done || f.Status == state.Failed || f.Status == state.Skipped) && f.Destination != "" {
		r.Status = state.Processing // decided but not moved yet
	}
	return r
}

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
		var sum string
		var quote *parse.Position
		sum, pi.rows, pi.unique, quote, fileErr, err = im.scanFile(ctx, src, name, loc, pi.parseOptions(), pass == 0)
		if pass == 0 {
			pi.sum = sum
		}
		if err != nil || fileErr != nil || quote == nil || pass >= maxQuotePasses {
			return pi, fileErr, err
		}
		pi.quotes = append(pi.quotes, *quote)
		// Ranges would each have to find the quote again.
		pi.unique = false
	}
}

// scanFile reads the file once: with hash, its SHA-256 too. It counts the
// data rows and returns the position of a quote that runs to the end of
// the file, if any.
func (im *Importer) scanFile(ctx context.Context, src Source, name, loc string, popts parse.Options, hash bool) (sum string, rows int64, unique bool, quote *parse.Position, fileErr, err error) {
	// A decryption, signature, decompression or completeness failure is
	// the file's: it is rejected as a whole, before any row is posted.
	wrapped := func(err error) (string, int64, bool, *parse.Position, error, error) {
		return "", 0, false, nil, fmt.Errorf("%s: %w", name, err), nil
	}
	rc, err := im.openContent(ctx, src, src.Store, name, loc)
	if unwrap.IsFileError(err) {
		return wrapped(err)
	}
	if err != nil {
		return "", 0, false, nil, nil, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, SafeName(loc), err)
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
		if _, err := io.Copy(io.Discard, in); unwrap.IsFileError(err) {
			return wrapped(err)
		} else if err != nil {
			return "", 0, false, nil, nil, ioErr(err)
		}
		return hex.EncodeToString(h.Sum(nil)), 0, false, nil, errArchive, nil
	}
	popts.File = name
	rd, perr := parse.NewReader(in, src.Encoding, popts)
	switch {
	case perr == nil:
		mp, merr := mapping.New(src.Mapping, rd.Header(), src.Integration)
		if merr != nil {
			var ce *mapping.ConfigError
			if errors.As(merr, &ce) {
				return "", 0, false, nil, nil, fmt.Errorf("importer: %s: mapping: %w", src.Name, merr)
			}
			fileErr = fmt.Errorf("%s: %w", name, merr)
			break
		}
		// Only a file that may be split needs its keys checked here (in
		// the tracker's flat memory): ranges run in any order, so a
		// repeated external-id would not reliably lose to its first row.
		var dups *mapping.DupTracker
		if src.SplitRows > 0 && !src.ResolvePrevious {
			dups = mapping.NewDupTracker(0)
		}
		repeated := false
		for {
			row, err := rd.Read()
			if err == io.EOF {
				break
			}
			var pe *parse.ParseError
			if unwrap.IsFileError(err) {
				return wrapped(err)
			}
			if err != nil && !errors.As(err, &pe) {
				return "", 0, false, nil, nil, ioErr(err)
			}
			rows++
			if pe != nil && errors.Is(pe, parse.ErrUnclosedQuote) && !slices.Contains(popts.UnclosedQuotes, parse.Position{Line: pe.Line, Column: pe.Column}) {
				quote = &parse.Position{Line: pe.Line, Column: pe.Column}
			}
			if dups != nil && err == nil && !repeated {
				if m, ferrs := mp.Map(row, recordName(name)); len(ferrs) == 0 && dups.Check(m) != nil {
					repeated = true
				}
			}
		}
		unique = dups != nil && !repeated && !dups.Full()
		if rows == 0 {
			fileErr = fmt.Errorf("%s: %w", name, parse.ErrNoRows)
		}
	case errors.Is(perr, parse.ErrUnknownEncoding):
		return "", 0, false, nil, nil, fmt.Errorf("importer: %s: %w", src.Name, perr)
	case unwrap.IsFileError(perr):
		return wrapped(perr)
	case isFileError(perr):
		fileErr = perr
	default:
		return "", 0, false, nil, nil, ioErr(perr)
	}
	if hash {
		if _, err := io.Copy(io.Discard, in); unwrap.IsFileError(err) {
			return wrapped(err)
		} else if err != nil {
			return "", 0, false, nil, nil, ioErr(err)
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}
	// The row count is final only once no quote makes another pass.
	if fileErr == nil && quote == nil {
		if err := rc.CheckRows(rows); err != nil {
			return wrapped(err)
		}
	}
	return sum, rows, unique, quote, fileErr, nil
}

func isFileError(err error) bool {
	var pe *parse.ParseError
	return errors.Is(err, parse.ErrEmptyFile) || errors.Is(err, parse.ErrBinary) ||
		errors.Is(err, parse.ErrNoHeader) || errors.Is(err, parse.ErrEncoding) || errors.As(err, &pe)
}

// run takes a claimed file through one (new or resumed) run.
func (im *Importer) run(ctx context.Context, src Source, f *state.File, loc string) FileResult {
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(f.Name)))
	gone := func() FileResult {
		// Taken away between listing and claiming: another worker
		// archived it (the ledger then says where it went), or someone
		// removed it. Either way there is nothing to do and nothing wrong
		// with the source.
		log.Debug("file left the inbox before it was claimed", zap.String("status", string(f.Status)),
			zap.String("location", SafeName(f.Location)))
		return FileResult{Source: f.Source, Name: f.Name, Status: f.Status, gone: true}
	}
	info, err := src.Store.Stat(ctx, loc)
	if errors.Is(err, filestore.ErrNotExist) {
		return gone()
	}
	if err != nil {
		return im.result(*f, fmt.Errorf("%w: %s: stat %s: %w", ErrSourceUnavailable, src.Name, loc, err))
	}
	pi, fileErr, err := im.scan(ctx, src, f.Name, loc)
	archive := errors.Is(fileErr, errArchive)
	if archive {
		fileErr = nil
	}
	sum, rows := pi.sum, pi.rows
	if errors.Is(err, filestore.ErrNotExist) {
		return gone()
	}
	if err != nil {
		return im.result(*f, err)
	}

	resume := f.Status == state.Processing && f.SHA256 == sum && f.Run > 0
	var skip string
	if !resume && fileErr == nil && !archive && !src.AllowDuplicateContent {
		same, err := im.ledger.FilesByHash(ctx, src.Name, sum)
		if err != nil {
			return im.result(*f, err)
		}
		for _, o := range same {
			if o.Name != f.Name && o.Rows > 0 && (o.Status == state.Done || o.Status == state.Failed || o.Status == state.Processing) {
				skip = fmt.Sprintf("same content (SHA-256 %s) as %s, already processed; not processed again", sum[:12], o.Name)
				break
			}
		}
	}
	if !resume {
		interrupted := f.Status == state.Processing && f.Run > 0
		f.Run++
		f.DispatchMark = 0
		if interrupted {
			// The earlier run over other content may have sent any key.
			f.DispatchMark = state.MarkAll
		}
		f.Counts, f.SkipReason = state.Counts{}, ""
		// A new drop (a file in the inbox) gets a report of its own; a
		// file reprocessed from where its last run left it is the same
		// drop run again, and rewrites that drop's report.
		if loc != f.Location || path.Dir(loc) == src.Folders.Inbox {
			f.ReportPath = ""
		}
		f.StartedAt, f.FinishedAt = im.cfg.Now(), time.Time{}
	}
	f.Size, f.ModTime, f.SHA256, f.Rows, f.Location, f.Status = info.Size, info.ModTime, sum, rows, loc, state.Processing
	if err := im.ledger.PutFile(ctx, im.cfg.Owner, *f); err != nil {
		return im.result(*f, err)
	}
	log.Info("processing", zap.Int64("rows", rows), zap.Int64("run", f.Run), zap.Bool("resumed", resume),
		zap.Int64("dispatch_mark", f.DispatchMark))
	im.obs.FileStarted(src.Name, f.Name, rows)

	switch {
	case fileErr != nil:
		return im.rejectWhole(ctx, src, f, state.Failed, fileErr.Error(), exporter.Invalid)
	case skip != "":
		return im.rejectWhole(ctx, src, f, state.Skipped, skip, exporter.Failed)
	case archive:
		return im.runArchive(ctx, src, f)
	}
	switch split, err := im.maybeSplit(ctx, src, f, pi.unique); {
	case err != nil:
		return im.result(*f, err)
	case split:
		return FileResult{Source: f.Source, Name: f.Name, Status: f.Status, Rows: f.Rows, split: true}
	}
	sp := im.fileSpan(src, f)
	sp.parse = pi.parseOptions()
	if err := im.dispatch(ctx, src, f, sp); err != nil {
		return im.result(*f, err)
	}
	return im.conclude(ctx, src, f, pi.parseOptions())
}

// conclude writes the report of a run whose every row has its outcome,
// then moves the file and marks it done. The report is spooled first: its
// counts decide the destination, whose name the report's name follows,
// and a spooled report can be uploaded again when a try fails.
func (im *Importer) conclude(ctx context.Context, src Source, f *state.File, popts parse.Options) FileResult {
	spool, counts, err := im.spoolReport(ctx, src, f, popts)
	if err != nil {
		return im.result(*f, err)
	}
	defer spool.Close()
	final := state.Done
	if counts.Invalid+counts.Failed > 0 {
		final = state.Failed
	}
	dst, err := im.destination(ctx, src, f, final)
	if err != nil {
		return im.result(*f, err)
	}
	if err := im.putReport(ctx, src, f, dst, spool); err != nil {
		return im.result(*f, err)
	}
	err = im.finish(ctx, src, f, final, counts, "", dst)
	return im.result(*f, err)
}

// rejectWhole writes a one-line report and moves the file to failed/.
func (im *Importer) rejectWhole(ctx context.Context, src Source, f *state.File, status state.Status, reason, result string) FileResult {
	var buf bytes.Buffer
	w := im.reportWriter(src, &buf)
	if err := w.Write(exporter.ReportLine{Row: 0, Result: result, Message: reason}); err != nil {
		return im.result(*f, err)
	}
	if err := w.Flush(); err != nil {
		return im.result(*f, err)
	}
	dst, err := im.destination(ctx, src, f, status)
	if err != nil {
		return im.result(*f, err)
	}
	if err := im.putReport(ctx, src, f, dst, bytes.NewReader(buf.Bytes())); err != nil {
		return im.result(*f, err)
	}
	im.log.Warn("file rejected", zap.String("source", src.Name), zap.String("file", SafeName(f.Name)), zap.String("reason", reason))
	err = im.finish(ctx, src, f, status, state.Counts{}, reason, dst)
	return im.result(*f, err)
}

// reportWriter is a response report writer to w with the source's
// formula escaping.
func (im *Importer) reportWriter(src Source, w io.Writer) *exporter.ReportWriter {
	rw := exporter.NewReportWriter(w)
	rw.SetEscapeFormulas(!src.KeepFormulas)
	return rw
}

// spoolReport writes the report of f's run from the file and the ledger
// into a temporary file, rewound, and returns the counts it wrote. The
// caller closes the file, which removes it.
func (im *Importer) spoolReport(ctx context.Context, src Source, f *state.File, popts parse.Options) (*spoolFile, state.Counts, error) {
	var counts state.Counts
	tmp, err := os.CreateTemp("", "ihr-report-*.csv")
	if err != nil {
		return nil, counts, fmt.Errorf("importer: spool the report of %s: %w", SafeName(f.Name), err)
	}
	sp := &spoolFile{File: tmp}
	bw := bufio.NewWriterSize(tmp, 64<<10)
	err = im.reportLines(ctx, src, f, im.reportWriter(src, bw), &counts, popts)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		sp.Close()
		return nil, counts, err
	}
	return sp, counts, nil
}

// spoolFile is a temporary file removed when closed.
type spoolFile struct{ *os.File }

func (s *spoolFile) Close() error {
	err := s.File.Close()
	if rerr := os.Remove(s.Name()); err == nil {
		err = rerr
	}
	return err
}

// putReport uploads the report of f's run. Its name pairs with dst, where
// the file is going (reports/STEM.response.csv, STEM being dst's stem with
// any timestamp suffix), and is never another drop's report: a name
// already taken gets a timestamp suffix, and a name too long for the
// store is shortened with a hash. The name is stored before the upload, so
// that a resumed run rewrites its own report and no other. body must be
// seekable so a failed try can be repeated (filestore.WithRetry).
func (im *Importer) putReport(ctx context.Context, src Source, f *state.File, dst string, body io.ReadSeeker) error {
	if f.ReportPath == "" {
		// Usually free (destination chose dst so); not when the file
		// stays where it is (reprocessed in place) or a report appeared
		// meanwhile: then the report alone gets a timestamp.
		stem, ext := src.reportParts(path.Base(dst))
		base, err := im.freeBase(ctx, src, stem, ext, func(base string) []string {
			return []string{path.Join(src.Folders.Reports, base)}
		})
		if err != nil {
			return err
		}
		f.ReportPath = path.Join(src.Folders.Reports, base)
		if err := im.ledger.PutFile(ctx, im.cfg.Owner, *f); err != nil {
			return err
		}
	}
	if len(src.EncryptReportsTo) > 0 {
		sealed, err := sealReport(src, body, path.Base(f.ReportPath))
		if err != nil {
			return err
		}
		defer sealed.Close()
		body = sealed
	}
	if err := src.Store.Write(ctx, f.ReportPath, body); err != nil {
		return fmt.Errorf("%w: %s: write %s: %w", ErrSourceUnavailable, src.Name, SafeName(f.ReportPath), err)
	}
	return nil
}

// reportLines emits one line per data row, in input order.
func (im *Importer) reportLines(ctx context.Context, src Source, f *state.File, w *exporter.ReportWriter, counts *state.Counts, popts parse.Options) error {
	rc, rd, mp, err := im.rowsReader(ctx, src, f, popts)
	if err != nil {
		return err
	}
	defer rc.Close()
	type line struct {
		l   exporter.ReportLine
		key string
		it  item
	}
	chunk := make([]line, 0, im.cfg.Window)
	var keys []string
	emit := func() error {
		outs, err := im.ledger.Outcomes(ctx, state.FileID{Source: src.Name, Name: f.Name}, keys)
		if err != nil {
			return err
		}
		for _, ln := range chunk {
			l := ln.l
			if ln.key != "" {
				o, ok := outs[ln.key]
				switch {
				case ok && o.Run == f.Run && o.Row == int64(l.Row):
					l.Result, l.RecordID, l.HTTPStatus, l.Message = string(o.Result), o.RecordID, o.HTTPStatus, o.Message
				case ok && o.Run == f.Run:
					l.Result, l.Message = exporter.Invalid, fmt.Sprintf("duplicate external-id %q (first at row %d)", l.ExternalID, o.Row)
				case ok && o.Result.Recorded() && sameContent(o, ln.it):
					l.Result, l.RecordID, l.Message = exporter.AlreadyRecorded, o.RecordID, "recorded by an earlier run with the same content"
				default:
					l.Result, l.Message = exporter.Failed, "row was not processed"
				}
			}
			counts.Add(state.Result(l.Result))
			if err := w.Write(l); err != nil {
				return err
			}
		}
		chunk, keys = chunk[:0], keys[:0]
		return nil
	}
	for {
		row, err := rd.Read()
		if err == io.EOF {
			break
		}
		var pe *parse.ParseError
		switch {
		case errors.As(err, &pe):
			chunk = append(chunk, line{l: exporter.ReportLine{Row: row.Number, Result: exporter.Invalid, Message: pe.Error()}})
		case err != nil:
			return fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)
		default:
			m, ferrs := mp.Map(row, recordName(f.Name))
			l := exporter.ReportLine{Row: row.Number, ExternalID: m.Record.ExternalID, DocumentType: m.Record.DocumentType,
				Action: string(m.Action)}
			if m.Record.DocumentID != nil {
				l.DocumentID = strconv.FormatInt(*m.Record.DocumentID, 10)
			}
			if len(ferrs) > 0 {
				msgs := make([]string, len(ferrs))
				for i, fe := range ferrs {
					msgs[i] = fe.Message
				}
				l.Result, l.Message = exporter.Invalid, strings.Join(msgs, "; ")
				chunk = append(chunk, line{l: l})
			} else {
				k := state.Key(m.Record.ExternalID, int64(row.Number))
				chunk = append(chunk, line{l: l, key: k, it: item{row: int64(row.Number), key: k, fp: fingerprint(m), m: m}})
				keys = append(keys, k)
			}
		}
		if len(chunk) >= im.cfg.Window {
			if err := emit(); err != nil {
				return err
			}
		}
	}
	if err := emit(); err != nil {
		return err
	}
	return w.Flush()
}

// destination is where f goes with status: its place in archive/ or
// failed/, or where it is if already in that folder. A new name is one
// that is free there and whose report name is free too, so that the file
// and its report pair (archive/daily.20240602T020000Z.csv,
// reports/daily.20240602T020000Z.response.csv).
func (im *Importer) destination(ctx context.Context, src Source, f *state.File, status state.Status) (string, error) {
	folder := src.Folders.Archive
	if status != state.Done {
		folder = src.Folders.Failed
	}
	if path.Dir(f.Location) == folder {
		return f.Location, nil
	}
	stem, ext := splitExt(f.Name)
	base, err := im.freeBase(ctx, src, stem, ext, func(base string) []string {
		if f.ReportPath != "" {
			return []string{path.Join(folder, base)}
		}
		return []string{path.Join(folder, base), reportFor(src, base)}
	})
	return path.Join(folder, base), err
}

// finish notes the final state and destination dst, moves the file, and
// settles its new location (see the package doc on moving).
func (im *Importer) finish(ctx context.Context, src Source, f *state.File, status state.Status, counts state.Counts, reason, dst string) error {
	folder := path.Dir(dst)
	f.Status, f.Counts, f.SkipReason, f.FinishedAt, f.Destination = status, counts, reason, im.cfg.Now(), dst
	if err := im.ledger.PutFile(ctx, im.cfg.Owner, *f); err != nil {
		return err
	}
	if dst != f.Location {
		from := path.Dir(f.Location)
		// finishMove, not a plain move: a file replaced meanwhile by a
		// new drop under its name stays for the next pass.
		switch err := im.finishMove(ctx, src, f); {
		case errors.Is(err, errReplaced):
			return nil
		case err != nil:
			return err
		}
		im.moveMarkers(ctx, src, f.Name, from, folder)
	} else if err := im.settle(ctx, f); err != nil {
		return err
	}
	im.log.Info("file finished", zap.String("source", src.Name), zap.String("file", SafeName(f.Name)),
		zap.String("status", string(status)), zap.String("to", SafeName(f.Location)),
		zap.Int64("created", counts.Created), zap.Int64("already_recorded", counts.AlreadyRecorded),
		zap.Int64("invalid", counts.Invalid), zap.Int64("failed", counts.Failed))
	return nil
}

// moveMarkers takes the file's .done/.ok markers along, so a later upload
// under the same name is not mistaken for finished. Best effort.
func (im *Importer) moveMarkers(ctx context.Context, src Source, name, from, to string) {
	for _, m := range markersOf(name) {
		p := path.Join(from, m)
		if _, err := src.Store.Stat(ctx, p); err != nil {
			continue
		}
		dst, err := im.freeName(ctx, src, to, m)
		if err == nil {
			err = src.Store.Move(ctx, p, dst)
		}
		if err != nil && !errors.Is(err, filestore.ErrNotExist) {
			im.log.Warn("moving marker", zap.String("marker", SafeName(p)), zap.Error(err))
		}
	}
}
