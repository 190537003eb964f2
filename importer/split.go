package importer

import (
	"context"
	"errors"
	"math"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/state"
)

// span is the part of a file one dispatch covers and the claim that fences
// its writes: the whole file under the file's claim, or one range of a
// split file under the range's claim.
type span struct {
	first, last int64 // data rows, inclusive
	mark        int64 // dispatch mark at the start
	setMark     func(context.Context, int64) error
	record      func(context.Context, []state.Outcome) error
	// stored: a mark up to this is durable already (stored with the
	// run's start), so setMark need not write it.
	stored int64
	// fresh: the ledger holds no outcome of the file, and only this span
	// can write one (inflight).
	fresh bool
	// gate, when the report follows the dispatch (reportGate).
	gate *reportGate
}

func (sp *span) total(f *state.File) int64 {
	if sp.last == math.MaxInt64 {
		return f.Rows
	}
	return sp.last - sp.first + 1
}

// fileSpan is the whole file under its claim; the mark follows in f.
func (im *Importer) fileSpan(src Source, f *state.File) *span {
	sp := &span{first: 1, last: math.MaxInt64, mark: f.DispatchMark,
		record: func(ctx context.Context, outs []state.Outcome) error {
			return im.ledger.RecordOutcomes(ctx, state.FileID{Source: src.Name, Name: f.Name}.HeldBy(im.cfg.Owner), outs)
		},
	}
	sp.setMark = func(ctx context.Context, mark int64) error {
		defer im.lap(StagePlan, im.clock())
		if mark > sp.stored {
			if err := im.ledger.SetMark(ctx, state.FileID{Source: src.Name, Name: f.Name}.HeldBy(im.cfg.Owner), mark); err != nil {
				return err
			}
		}
		f.DispatchMark = mark
		return nil
	}
	return sp
}

// rangeSpan is one range under its own claim.
func (im *Importer) rangeSpan(src Source, r state.Range) *span {
	return &span{first: r.First, last: r.Last, mark: r.DispatchMark,
		setMark: func(ctx context.Context, mark int64) error {
			defer im.lap(StagePlan, im.clock())
			return im.ledger.SetMark(ctx, r.ID().HeldBy(im.cfg.Owner), mark)
		},
		record: func(ctx context.Context, outs []state.Outcome) error {
			return im.ledger.RecordOutcomes(ctx, r.ID().HeldBy(im.cfg.Owner), outs)
		},
	}
}

// maybeSplit splits f's run when the source asks for it and the file
// allows it, or finds the run already split (a run that was split stays
// split whatever the configuration says now, since its rows' dispatch
// marks live in its ranges). It needs the file's claim.
func (im *Importer) maybeSplit(ctx context.Context, src Source, f *state.File, unique bool) (bool, error) {
	rs, err := im.ledger.Ranges(ctx, state.FileID{Source: src.Name, Name: f.Name})
	if err != nil {
		return false, err
	}
	if len(rs) > 0 && rs[0].Run == f.Run {
		return true, nil
	}
	if src.SplitRows <= 0 || f.Rows <= src.SplitRows || !unique || src.ResolvePrevious {
		return false, nil
	}
	rs, err = im.ledger.SplitFile(ctx, state.FileID{Source: src.Name, Name: f.Name}, im.cfg.Owner, src.SplitRows)
	if err != nil {
		return false, err
	}
	im.log.Info("file split into ranges", zap.String("source", src.Name), zap.String("file", SafeName(f.Name)),
		zap.Int64("run", f.Run), zap.Int("ranges", len(rs)), zap.Int64("rows_per_range", src.SplitRows))
	return true, nil
}

// splitInProgress reports whether the file's current run is split and
// still to finish, with the file still where the split saw it (same size
// and mtime: re-hashing a large file for every worker that joins would
// cost what splitting saves). Anything else goes the claim's way, which
// sorts it out.
func (im *Importer) splitInProgress(ctx context.Context, src Source, name string) (state.File, bool) {
	f, err := im.ledger.File(ctx, state.FileID{Source: src.Name, Name: name})
	if err != nil || f.Status != state.Processing || f.Run == 0 || f.Destination != "" || f.Location == "" {
		return state.File{}, false
	}
	rs, err := im.ledger.Ranges(ctx, state.FileID{Source: src.Name, Name: name})
	if err != nil || len(rs) == 0 || rs[0].Run != f.Run {
		return state.File{}, false
	}
	info, err := src.Store.Stat(ctx, f.Location)
	if err != nil || info.Size != f.Size || !info.ModTime.Equal(f.ModTime) {
		return state.File{}, false
	}
	return f, true
}

// workSplit takes ranges of f's split run one after another until none is
// left to take, then, if every range is done, finishes the file. Ranges
// held by live workers are theirs: the result is then state.Claimed.
func (im *Importer) workSplit(ctx context.Context, src Source, f state.File) FileResult {
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(f.Name)), zap.Int64("run", f.Run))
	pending := func(err error) FileResult {
		return FileResult{Source: f.Source, Name: f.Name, Status: state.Processing, Rows: f.Rows, Err: err}
	}
	for ctx.Err() == nil {
		r, err := im.ledger.ClaimRange(ctx, state.FileID{Source: src.Name, Name: f.Name}, f.Run, im.cfg.Owner, im.cfg.Lease)
		if errors.Is(err, state.ErrNotFound) {
			break
		}
		if err != nil {
			return pending(err)
		}
		if err := im.runRange(ctx, src, &f, r); err != nil {
			return pending(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return pending(err)
	}
	rs, err := im.ledger.Ranges(ctx, state.FileID{Source: src.Name, Name: f.Name})
	if err != nil {
		return pending(err)
	}
	for _, r := range rs {
		if r.Run != f.Run || !r.Done {
			log.Debug("the file's other ranges are held by other workers", zap.Int("range", r.Index),
				zap.String("owner", r.Owner))
			return FileResult{Source: f.Source, Name: f.Name, Status: state.Claimed, Rows: f.Rows}
		}
	}
	return im.finishSplit(ctx, src, f)
}

// runRange dispatches one claimed range and marks it done.
func (im *Importer) runRange(ctx context.Context, src Source, f *state.File, r state.Range) error {
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(f.Name)), zap.Int("range", r.Index))
	log.Info("processing range", zap.Int64("first", r.First), zap.Int64("last", r.Last),
		zap.Int64("dispatch_mark", r.DispatchMark))
	rctx, stop := im.keepAlive(ctx, log, func(ctx context.Context) error {
		return im.ledger.Heartbeat(ctx, r.ID().HeldBy(im.cfg.Owner), im.cfg.Lease)
	})
	err := im.dispatch(rctx, src, f, im.rangeSpan(src, r))
	if err != nil && rctx.Err() != nil && ctx.Err() == nil {
		err = context.Cause(rctx) // lease lost
	}
	stop()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
	defer cancel()
	if err != nil {
		if rerr := im.ledger.Release(lctx, r.ID().HeldBy(im.cfg.Owner), false); rerr != nil {
			log.Warn("release range", zap.Error(rerr))
		}
		return err
	}
	return im.ledger.Release(lctx, r.ID().HeldBy(im.cfg.Owner), true)
}

// finishSplit writes the report of a split run whose ranges are all done
// and moves the file, under the file's claim. Of several workers that
// complete the last ranges at once, the one that gets the claim does it;
// the others see it claimed or already finished.
func (im *Importer) finishSplit(ctx context.Context, src Source, split state.File) FileResult {
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(split.Name)))
	elsewhere := FileResult{Source: split.Source, Name: split.Name, Status: state.Claimed, Rows: split.Rows}
	f, err := im.ledger.Claim(ctx, state.FileID{Source: src.Name, Name: split.Name}, im.cfg.Owner, im.cfg.Lease)
	if errors.Is(err, state.ErrClaimed) {
		log.Debug("another worker is finishing the split file")
		return elsewhere
	}
	if err != nil {
		return FileResult{Source: split.Source, Name: split.Name, Status: state.Processing, Rows: split.Rows, Err: err}
	}
	defer im.releaseHeld(&f)
	fctx, stop := im.keepAlive(ctx, log, func(ctx context.Context) error {
		return im.ledger.Heartbeat(ctx, state.FileID{Source: src.Name, Name: f.Name}.HeldBy(im.cfg.Owner), im.cfg.Lease)
	})
	defer stop()
	if f.Destination != "" {
		err := im.finishMove(fctx, src, &f)
		if errors.Is(err, errReplaced) {
			return elsewhere // the new drop is the next pass's
		}
		return im.result(f, err)
	}
	if f.Status != state.Processing || f.Run != split.Run {
		log.Debug("the split file was finished by another worker", zap.String("status", string(f.Status)))
		return elsewhere
	}
	log.Info("every range done; writing the report")
	res := im.conclude(fctx, src, &f)
	if res.Err != nil && fctx.Err() != nil && ctx.Err() == nil {
		res.Err = context.Cause(fctx)
	}
	im.obs.FileDone(src.Name, f.Name, res)
	return res
}
