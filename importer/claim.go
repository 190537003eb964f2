package importer

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
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
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(name)))
	t := im.clock()
	f, err := im.ledger.Claim(ctx, state.FileID{Source: src.Name, Name: name}, im.cfg.Owner, im.cfg.Lease)
	im.lap(StageClaim, t)
	if errors.Is(err, state.ErrClaimed) {
		log.Info("claimed by another worker; left alone")
		res.Status = state.Claimed
		return res, nil
	}
	if err != nil {
		res.Status, res.Err = state.Processing, err
		return res, nil
	}
	defer im.releaseHeld(&f)

	// The heartbeat keeps the claim; losing it stops the file at once.
	fctx, stop := im.keepAlive(ctx, log, func(ctx context.Context) error {
		return im.ledger.Heartbeat(ctx, state.FileID{Source: src.Name, Name: name}.HeldBy(im.cfg.Owner), im.cfg.Lease)
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

// releaseHeld gives f's claim back unless settle already did.
func (im *Importer) releaseHeld(f *state.File) {
	if f.Owner != "" {
		im.release(f.Source, f.Name)
	}
}

func (im *Importer) release(source, name string) {
	defer im.lap(StageRelease, im.clock())
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	if err := im.ledger.Release(ctx, state.FileID{Source: source, Name: name}.HeldBy(im.cfg.Owner), false); err != nil {
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

// run takes a claimed file through one (new or resumed) run: scan, start
// the run in the ledger, then reject, skip, split or dispatch and report.
func (im *Importer) run(ctx context.Context, src Source, f *state.File, loc string) FileResult {
	t := im.clock()
	info, err := src.Store.Stat(ctx, loc)
	if errors.Is(err, filestore.ErrNotExist) {
		return im.gone(f)
	}
	if err != nil {
		return im.result(*f, fmt.Errorf("%w: %s: stat %s: %w", ErrSourceUnavailable, src.Name, loc, err))
	}
	src.Store = im.readOnce(src, f.Name, loc, info.Size)
	pi, fileErr, err := im.scan(ctx, src, f.Name, loc)
	archive := errors.Is(fileErr, errArchive)
	if archive {
		fileErr = nil
	}
	if errors.Is(err, filestore.ErrNotExist) {
		return im.gone(f)
	}
	if err != nil {
		return im.result(*f, err)
	}
	resume := f.Status == state.Processing && f.SHA256 == pi.sum && f.Run > 0
	var skip string
	if !resume && fileErr == nil && !archive && !src.AllowDuplicateContent {
		if skip, err = im.duplicateContent(ctx, src, f, pi.sum); err != nil {
			return im.result(*f, err)
		}
	}
	if !resume {
		im.newRun(src, f, loc)
	}
	f.Size, f.ModTime, f.SHA256, f.Rows, f.Location, f.Status = info.Size, info.ModTime, pi.sum, pi.rows, loc, state.Processing
	stored := *f
	pi.newRun = !resume
	if !resume && fileErr == nil && skip == "" && !archive && pi.rows <= int64(im.cfg.Window) &&
		(src.SplitRows <= 0 || pi.rows <= src.SplitRows) {
		// A file of one window: its dispatch mark (its last row) is
		// stored with the run's start, which saves dispatch the commit
		// of its own. The mark in f stays where the run started, so no
		// row of this run is looked up before it is posted; a crash
		// before the posts costs one lookup per row on resume.
		stored.DispatchMark = max(f.DispatchMark, pi.rows)
		pi.marked = stored.DispatchMark
	}
	if err := im.ledger.PutFile(ctx, im.cfg.Owner, stored); err != nil {
		return im.result(*f, err)
	}
	im.log.Info("processing", zap.String("source", src.Name), zap.String("file", SafeName(f.Name)),
		zap.Int64("rows", pi.rows), zap.Int64("run", f.Run), zap.Bool("resumed", resume), zap.Int64("dispatch_mark", f.DispatchMark))
	im.obs.FileStarted(src.Name, f.Name, pi.rows)
	im.lap(StageScan, t)

	switch {
	case fileErr != nil:
		return im.rejectWhole(ctx, src, f, state.Failed, fileErr.Error(), state.Invalid)
	case skip != "":
		return im.rejectWhole(ctx, src, f, state.Skipped, skip, state.FailedRow)
	case archive:
		return im.runArchive(ctx, src, f)
	}
	return im.runRows(ctx, src, f, pi)
}

// gone: the file was taken away between listing and claiming: another
// worker archived it (the ledger then says where it went), or someone
// removed it. Either way there is nothing to do and nothing wrong with the
// source.
func (im *Importer) gone(f *state.File) FileResult {
	im.log.Debug("file left the inbox before it was claimed", zap.String("source", f.Source),
		zap.String("file", SafeName(f.Name)), zap.String("status", string(f.Status)),
		zap.String("location", SafeName(f.Location)))
	return FileResult{Source: f.Source, Name: f.Name, Status: f.Status, gone: true}
}

// duplicateContent says why f is skipped when another file of the source with
// its content (SHA-256 sum) was processed already, or "" if none was.
func (im *Importer) duplicateContent(ctx context.Context, src Source, f *state.File, sum string) (string, error) {
	same, err := im.ledger.FilesByHash(ctx, src.Name, sum)
	if err != nil {
		return "", err
	}
	for _, o := range same {
		if o.Name != f.Name && o.Rows > 0 && (o.Status == state.Done || o.Status == state.Failed || o.Status == state.Processing) {
			return fmt.Sprintf("same content (SHA-256 %s) as %s, already processed; not processed again", sum[:12], o.Name), nil
		}
	}
	return "", nil
}

// newRun starts a new run over f, found at loc (not yet stored).
func (im *Importer) newRun(src Source, f *state.File, loc string) {
	interrupted := f.Status == state.Processing && f.Run > 0
	f.Run++
	f.DispatchMark = 0
	if interrupted {
		// The earlier run over other content may have sent any key.
		f.DispatchMark = state.MarkAll
	}
	f.Counts, f.SkipReason = state.Counts{}, ""
	// A new drop (a file in the inbox) gets a report of its own; a file
	// reprocessed from where its last run left it is the same drop run
	// again, and rewrites that drop's report.
	if loc != f.Location || path.Dir(loc) == src.Folders.Inbox {
		f.ReportPath = ""
	}
	f.StartedAt, f.FinishedAt = im.cfg.Now(), time.Time{}
}

// runRows runs a started run's rows: split among workers, or dispatched
// here and concluded.
func (im *Importer) runRows(ctx context.Context, src Source, f *state.File, pi passInfo) FileResult {
	t := im.clock()
	// A new run has no ranges yet: only a source that splits files asks.
	if !pi.newRun || src.SplitRows > 0 {
		switch split, err := im.maybeSplit(ctx, src, f, pi.unique); {
		case err != nil:
			return im.result(*f, err)
		case split:
			return FileResult{Source: f.Source, Name: f.Name, Status: f.Status, Rows: f.Rows, split: true}
		}
	}
	im.lap(StageScan, t)
	t = im.clock()
	sp := im.fileSpan(src, f)
	sp.stored = pi.marked
	// The first run of a name: no run before it recorded an outcome (runs
	// only count up, and prune keeps the count), and the claim fences
	// every other writer out.
	sp.fresh = pi.newRun && f.Run == 1
	// The report is written as the rows' outcomes are committed
	// (reportGate), from a copy of f: dispatch moves f's mark meanwhile.
	sp.gate = newReportGate()
	rctx, cancelReport := context.WithCancel(ctx)
	defer cancelReport()
	early := make(chan spooled, 1)
	go func(f state.File) { early <- im.spoolReport(rctx, src, &f, sp.gate) }(*f)
	err := im.dispatch(ctx, src, f, sp)
	im.lap(StageDispatch, t)
	if err != nil {
		cancelReport()
		if r := <-early; r.spool != nil {
			r.spool.Close()
		}
		return im.result(*f, err)
	}
	sp.gate.finish()
	t = im.clock()
	r := <-early
	return im.concludeSpooled(ctx, src, f, t, r)
}
