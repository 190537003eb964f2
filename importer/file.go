package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
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
	log := im.log.With(zap.String("source", src.Name), zap.String("file", name))
	f, err := im.ledger.Claim(ctx, src.Name, name, im.cfg.Owner, im.cfg.Lease)
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
		return im.ledger.Heartbeat(ctx, src.Name, name, im.cfg.Owner, im.cfg.Lease)
	})
	defer stop()

	if f.Destination != "" {
		err := im.finishMove(fctx, src, &f)
		return im.result(f, err), nil
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
	if err := im.ledger.Release(ctx, source, name, im.cfg.Owner); err != nil {
		im.log.Warn("release claim", zap.String("source", source), zap.String("file", name), zap.Error(err))
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
}

// scan reads the whole file once, before any row is posted: it hashes it
// and counts its data rows. fileErr says why the file as a whole cannot be
// processed; err is a failure to read it.
func (im *Importer) scan(ctx context.Context, src Source, name, loc string) (pi passInfo, fileErr, err error) {
	sum, rows, unique, fileErr, err := im.scanFile(ctx, src, name, loc)
	return passInfo{sum: sum, rows: rows, unique: unique}, fileErr, err
}

// scanFile is scan with its results spelled out.
func (im *Importer) scanFile(ctx context.Context, src Source, name, loc string) (sum string, rows int64, unique bool, fileErr, err error) {
	rc, err := src.Store.Open(ctx, loc, 0)
	if err != nil {
		return "", 0, false, nil, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, loc, err)
	}
	defer rc.Close()
	h := sha256.New()
	tee := io.TeeReader(rc, h)
	ioErr := func(err error) error {
		return fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, loc, err)
	}
	rd, perr := parse.NewReader(tee, src.Encoding, parse.Options{File: name})
	switch {
	case perr == nil:
		mp, merr := mapping.New(src.Mapping, rd.Header(), src.Integration)
		if merr != nil {
			var ce *mapping.ConfigError
			if errors.As(merr, &ce) {
				return "", 0, false, nil, fmt.Errorf("importer: %s: mapping: %w", src.Name, merr)
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
			if err != nil && !errors.As(err, &pe) {
				return "", 0, false, nil, ioErr(err)
			}
			rows++
			if dups != nil && err == nil && !repeated {
				if m, ferrs := mp.Map(row, name); len(ferrs) == 0 && dups.Check(m) != nil {
					repeated = true
				}
			}
		}
		unique = dups != nil && !repeated && !dups.Full()
		if rows == 0 {
			fileErr = fmt.Errorf("%s: %w", name, parse.ErrNoRows)
		}
	case errors.Is(perr, parse.ErrUnknownEncoding):
		return "", 0, false, nil, fmt.Errorf("importer: %s: %w", src.Name, perr)
	case isFileError(perr):
		fileErr = perr
	default:
		return "", 0, false, nil, ioErr(perr)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", 0, false, nil, ioErr(err)
	}
	return hex.EncodeToString(h.Sum(nil)), rows, unique, fileErr, nil
}

func isFileError(err error) bool {
	var pe *parse.ParseError
	return errors.Is(err, parse.ErrEmptyFile) || errors.Is(err, parse.ErrBinary) ||
		errors.Is(err, parse.ErrNoHeader) || errors.Is(err, parse.ErrEncoding) || errors.As(err, &pe)
}

// run takes a claimed file through one (new or resumed) run.
func (im *Importer) run(ctx context.Context, src Source, f *state.File, loc string) FileResult {
	log := im.log.With(zap.String("source", src.Name), zap.String("file", f.Name))
	gone := func() FileResult {
		// Taken away between listing and claiming: another worker
		// archived it (the ledger then says where it went), or someone
		// removed it. Either way there is nothing to do and nothing wrong
		// with the source.
		log.Debug("file left the inbox before it was claimed", zap.String("status", string(f.Status)),
			zap.String("location", f.Location))
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
	sum, rows := pi.sum, pi.rows
	if errors.Is(err, filestore.ErrNotExist) {
		return gone()
	}
	if err != nil {
		return im.result(*f, err)
	}

	resume := f.Status == state.Processing && f.SHA256 == sum && f.Run > 0
	var skip string
	if !resume && fileErr == nil && !src.AllowDuplicateContent {
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
		f.Counts, f.SkipReason, f.ReportPath = state.Counts{}, "", ""
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
	}
	switch split, err := im.maybeSplit(ctx, src, f, pi.unique); {
	case err != nil:
		return im.result(*f, err)
	case split:
		return FileResult{Source: f.Source, Name: f.Name, Status: f.Status, Rows: f.Rows, split: true}
	}
	if err := im.dispatch(ctx, src, f, im.fileSpan(src, f)); err != nil {
		return im.result(*f, err)
	}
	return im.conclude(ctx, src, f)
}

// conclude writes the report of a run whose every row has its outcome,
// then moves the file and marks it done.
func (im *Importer) conclude(ctx context.Context, src Source, f *state.File) FileResult {
	counts, err := im.writeReport(ctx, src, f)
	if err != nil {
		return im.result(*f, err)
	}
	final := state.Done
	if counts.Invalid+counts.Failed > 0 {
		final = state.Failed
	}
	err = im.finish(ctx, src, f, final, counts, "")
	return im.result(*f, err)
}

// rejectWhole writes a one-line report and moves the file to failed/.
func (im *Importer) rejectWhole(ctx context.Context, src Source, f *state.File, status state.Status, reason, result string) FileResult {
	rp := path.Join(src.Folders.Reports, reportName(f.Name))
	pr, pw := io.Pipe()
	go func() {
		w := exporter.NewReportWriter(pw)
		err := w.Write(exporter.ReportLine{Row: 0, Result: result, Message: reason})
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err)
	}()
	if err := src.Store.Write(ctx, rp, pr); err != nil {
		pr.CloseWithError(err)
		return im.result(*f, fmt.Errorf("%w: %s: write %s: %w", ErrSourceUnavailable, src.Name, rp, err))
	}
	f.ReportPath = rp
	im.log.Warn("file rejected", zap.String("source", src.Name), zap.String("file", f.Name), zap.String("reason", reason))
	err := im.finish(ctx, src, f, status, state.Counts{}, reason)
	return im.result(*f, err)
}

// writeReport writes reports/NAME.response.csv from the file and the
// ledger and returns the counts it wrote.
func (im *Importer) writeReport(ctx context.Context, src Source, f *state.File) (state.Counts, error) {
	rp := path.Join(src.Folders.Reports, reportName(f.Name))
	var counts state.Counts
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := im.reportLines(ctx, src, f, exporter.NewReportWriter(pw), &counts)
		pw.CloseWithError(err)
		done <- err
	}()
	werr := src.Store.Write(ctx, rp, pr)
	pr.CloseWithError(errUploadEnded)
	gerr := <-done
	switch {
	case gerr != nil && !errors.Is(gerr, errUploadEnded):
		return counts, gerr
	case werr != nil:
		return counts, fmt.Errorf("%w: %s: write %s: %w", ErrSourceUnavailable, src.Name, rp, werr)
	}
	f.ReportPath = rp
	return counts, nil
}

var errUploadEnded = errors.New("importer: report upload ended")

// reportLines emits one line per data row, in input order.
func (im *Importer) reportLines(ctx context.Context, src Source, f *state.File, w *exporter.ReportWriter, counts *state.Counts) error {
	rc, rd, mp, err := im.rowsReader(ctx, src, f)
	if err != nil {
		return err
	}
	defer rc.Close()
	type line struct {
		l   exporter.ReportLine
		key string
	}
	chunk := make([]line, 0, im.cfg.Window)
	var keys []string
	emit := func() error {
		outs, err := im.ledger.Outcomes(ctx, src.Name, f.Name, keys)
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
				case ok && o.Result.Recorded():
					l.Result, l.RecordID, l.Message = exporter.AlreadyRecorded, o.RecordID, "recorded by an earlier run"
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
			m, ferrs := mp.Map(row, f.Name)
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
				chunk = append(chunk, line{l: l, key: k})
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

// finish notes the final state and destination, moves the file, and
// settles its new location (see the package doc on moving).
func (im *Importer) finish(ctx context.Context, src Source, f *state.File, status state.Status, counts state.Counts, reason string) error {
	folder := src.Folders.Archive
	if status != state.Done {
		folder = src.Folders.Failed
	}
	dst := f.Location
	if path.Dir(f.Location) != folder {
		var err error
		if dst, err = im.freeName(ctx, src, folder, f.Name); err != nil {
			return err
		}
	}
	f.Status, f.Counts, f.SkipReason, f.FinishedAt, f.Destination = status, counts, reason, im.cfg.Now(), dst
	if err := im.ledger.PutFile(ctx, im.cfg.Owner, *f); err != nil {
		return err
	}
	if dst != f.Location {
		if err := im.moveTo(ctx, src, f, dst); err != nil {
			return err
		}
		im.moveMarkers(ctx, src, f.Name, path.Dir(f.Location), folder)
	}
	if err := im.settle(ctx, f); err != nil {
		return err
	}
	im.log.Info("file finished", zap.String("source", src.Name), zap.String("file", f.Name),
		zap.String("status", string(status)), zap.String("to", f.Location),
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
			im.log.Warn("moving marker", zap.String("marker", p), zap.Error(err))
		}
	}
}
