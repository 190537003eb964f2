package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/state"
)

// conclude writes the report of a run whose every row has its outcome,
// then moves the file and marks it done. The report is spooled first: its
// counts decide the destination, whose name the report's name follows,
// and a spooled report can be uploaded again when a try fails.
func (im *Importer) conclude(ctx context.Context, src Source, f *state.File) FileResult {
	t := im.clock()
	return im.concludeSpooled(ctx, src, f, t, im.spoolReport(ctx, src, f, nil))
}

// spooled is spoolReport's answer.
type spooled struct {
	spool  *spoolFile
	counts state.Counts
	err    error
}

// concludeSpooled is conclude with the report spooled already (from t).
func (im *Importer) concludeSpooled(ctx context.Context, src Source, f *state.File, t time.Time, r spooled) FileResult {
	spool, counts, err := r.spool, r.counts, r.err
	if err != nil {
		return im.result(*f, err)
	}
	defer spool.Close()
	final := state.Done
	if counts.Invalid+counts.Failed > 0 {
		final = state.Failed
	}
	dst, report, err := im.destination(ctx, src, f, final)
	if err != nil {
		return im.result(*f, err)
	}
	if err := im.putReport(ctx, src, f, dst, report, spool); err != nil {
		return im.result(*f, err)
	}
	im.lap(StageReport, t)
	defer im.lap(StageArchive, im.clock())
	err = im.finish(ctx, src, f, final, counts, "", dst)
	return im.result(*f, err)
}

// rejectWhole writes a one-line report and moves the file to failed/.
func (im *Importer) rejectWhole(ctx context.Context, src Source, f *state.File, status state.Status, reason string, result state.Result) FileResult {
	t := im.clock()
	var buf bytes.Buffer
	w := im.reportWriter(src, &buf)
	if err := w.Write(exporter.ReportLine{Row: 0, Result: result, Message: reason}); err != nil {
		return im.result(*f, err)
	}
	if err := w.Flush(); err != nil {
		return im.result(*f, err)
	}
	dst, report, err := im.destination(ctx, src, f, status)
	if err != nil {
		return im.result(*f, err)
	}
	if err := im.putReport(ctx, src, f, dst, report, bytes.NewReader(buf.Bytes())); err != nil {
		return im.result(*f, err)
	}
	im.log.Warn("file rejected", zap.String("source", src.Name), zap.String("file", SafeName(f.Name)), zap.String("reason", reason))
	im.lap(StageReport, t)
	defer im.lap(StageArchive, im.clock())
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
// into a temporary file, rewound, and returns it with the counts it wrote.
// The caller closes the file, which removes it. With a gate, each window
// waits for its rows' outcomes (reportGate).
func (im *Importer) spoolReport(ctx context.Context, src Source, f *state.File, gate *reportGate) spooled {
	var counts state.Counts
	tmp, err := os.CreateTemp("", "ihr-report-*.csv")
	if err != nil {
		return spooled{err: fmt.Errorf("importer: spool the report of %s: %w", SafeName(f.Name), err)}
	}
	sp := &spoolFile{File: tmp}
	bw := bufio.NewWriterSize(tmp, 64<<10)
	err = im.reportLines(ctx, src, f, gate, im.reportWriter(src, bw), &counts)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		sp.Close()
		return spooled{err: err}
	}
	return spooled{sp, counts, nil}
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
// seekable so a failed try can be repeated (filestore.WithRetry). report
// is the name destination found free with dst ("": look for one).
func (im *Importer) putReport(ctx context.Context, src Source, f *state.File, dst, report string, body io.ReadSeeker) error {
	if f.ReportPath == "" {
		if report == "" {
			// The file stays where it is (reprocessed in place), so
			// destination looked for no report name: the report alone
			// gets a timestamp if its name is taken.
			stem, ext := src.reportParts(path.Base(dst))
			base, err := im.freeBase(ctx, src, stem, ext, func(base string) []string {
				return []string{path.Join(src.Folders.Reports, base)}
			})
			if err != nil {
				return err
			}
			report = path.Join(src.Folders.Reports, base)
		}
		f.ReportPath = report
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

// reportLines emits one line per data row, in input order, from the file
// (what each row is) and the ledger (what became of it). Reading the
// file, the ledger's reads of the windows after the next, and writing run
// side by side: one goroutine reads and maps the file into windows, each
// waiting at gate for its rows' outcomes, up to reportReads windows read
// their outcomes at once, and this goroutine writes them in order.
func (im *Importer) reportLines(ctx context.Context, src Source, f *state.File, gate *reportGate, w *exporter.ReportWriter, counts *state.Counts) error {
	rc, rd, mp, err := im.rowsReader(ctx, src, f)
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fl := im.fileLedger(src, f)
	// Windows leave the reader in file order; each is written once its
	// read is done. The queue's capacity bounds the windows held.
	queue := make(chan *reportWindow, reportReads+1)
	reads := make(chan struct{}, reportReads)
	var wg sync.WaitGroup
	var readErr error
	wg.Go(func() {
		defer close(queue)
		send := func(win *reportWindow) bool {
			if gate.wait(ctx, int64(win.lines[len(win.lines)-1].l.Row)) != nil {
				return false
			}
			select {
			case reads <- struct{}{}:
			case <-ctx.Done():
				return false
			}
			wg.Go(func() {
				defer func() { <-reads }()
				defer close(win.done)
				win.outs, win.err = reportOutcomes(ctx, gate, fl, win.keys)
			})
			select {
			case queue <- win:
				return true
			case <-ctx.Done():
				return false
			}
		}
		recName := recordName(f.Name) // once per file, not per row
		win := newReportWindow(im.cfg.Window)
		for {
			row, err := rd.Read()
			if err == io.EOF {
				break
			}
			var pe *parse.ParseError
			switch {
			case errors.As(err, &pe):
				win.add(exporter.ReportLine{Row: row.Number, Result: state.Invalid, Message: pe.Error()}, nil)
			case err != nil:
				readErr = fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)
				return
			default:
				m, ferrs := mp.Map(row, recName)
				l := rowLine(row.Number, m)
				if len(ferrs) > 0 {
					l.Result, l.Message = state.Invalid, fieldMessage(ferrs)
					win.add(l, nil)
				} else {
					it := keyedItem(row.Number, m)
					win.add(l, &it)
				}
			}
			if len(win.lines) >= im.cfg.Window {
				if !send(win) {
					return
				}
				win = newReportWindow(im.cfg.Window)
			}
		}
		if len(win.lines) > 0 {
			send(win)
		}
	})
	err = func() error {
		for win := range queue {
			<-win.done
			if win.err != nil {
				return win.err
			}
			if err := win.write(w, counts, f.Run); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		cancel() // the reader stops at its next window
		for range queue {
		}
	}
	wg.Wait()
	if err == nil {
		err = readErr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

// reportOutcomes is the stored outcome of each of keys: what gate kept,
// and the ledger's for the rest.
func reportOutcomes(ctx context.Context, gate *reportGate, fl fileLedger, keys []string) (map[string]state.Outcome, error) {
	outs, missing := gate.take(keys)
	if len(missing) == 0 {
		return outs, nil
	}
	read, err := fl.outcomes(ctx, missing)
	for k, o := range read {
		outs[k] = o
	}
	return outs, err
}

// reportReads bounds the report's ledger reads in flight.
const reportReads = 2

// rowLine is the report line of a mapped row, before its result: what the
// row is, as the report, validate and the ledger's outcome all name it.
func rowLine(row int, m mapping.Mapped) exporter.ReportLine {
	return exporter.ReportLine{Row: row, ExternalID: m.Record.ExternalID, DocumentType: m.Record.DocumentType,
		DocumentID: documentID(m), Action: string(m.Action)}
}

// fieldMessage is the message of a row that failed mapping or validation.
func fieldMessage(ferrs []record.FieldError) string {
	msgs := make([]string, len(ferrs))
	for i, fe := range ferrs {
		msgs[i] = fe.Message
	}
	return strings.Join(msgs, "; ")
}

// reportWindow is a window of report lines and, once done is closed, the
// stored outcomes of its dispatchable rows (one ledger read per window).
type reportWindow struct {
	lines []reportRow
	keys  []string
	outs  map[string]state.Outcome
	err   error
	done  chan struct{}
}

func newReportWindow(size int) *reportWindow {
	return &reportWindow{lines: make([]reportRow, 0, size), done: make(chan struct{})}
}

// reportRow is a line waiting for its window; it is nil when the file
// alone settles the line (the row does not parse or map).
type reportRow struct {
	l  exporter.ReportLine
	it *item
}

func (rw *reportWindow) add(l exporter.ReportLine, it *item) {
	rw.lines = append(rw.lines, reportRow{l: l, it: it})
	if it != nil {
		rw.keys = append(rw.keys, it.key)
	}
}

// write completes the window's lines from its outcomes and writes them.
func (rw *reportWindow) write(w *exporter.ReportWriter, counts *state.Counts, run int64) error {
	for _, r := range rw.lines {
		l := r.l
		if r.it != nil {
			o, ok := rw.outs[r.it.key]
			l = resultLine(l, *r.it, o, ok, run)
		}
		counts.Add(l.Result)
		if err := w.Write(l); err != nil {
			return err
		}
	}
	return nil
}

// resultLine completes a dispatchable row's line from its stored outcome
// (o, if ok), by the table dispatch used (settledBy). A row with no
// outcome that settles it keeps its line, as failed: no row is dropped
// from a report.
func resultLine(l exporter.ReportLine, it item, o state.Outcome, ok bool, run int64) exporter.ReportLine {
	switch settledBy(it, o, ok, run) {
	case doneThisRun:
		l.Result, l.RecordID, l.HTTPStatus, l.Message = o.Result, o.RecordID, o.HTTPStatus, o.Message
	case duplicateKey:
		l.Result, l.Message = state.Invalid, fmt.Sprintf("duplicate external-id %q (first at row %d)", l.ExternalID, o.Row)
	case recordedBefore:
		l.Result, l.RecordID, l.Message = state.AlreadyRecorded, o.RecordID, msgRecordedBefore
	default:
		l.Result, l.Message = state.FailedRow, "row was not processed"
	}
	return l
}
