package importer

import (
	"context"
	"errors"
	"fmt"
	"path"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/state"
)

// destination is where f goes with status: its place in archive/ or
// failed/, or where it is if already in that folder. A new name is one
// that is free there and whose report name is free too, so that the file
// and its report pair (archive/daily.20240602T020000Z.csv,
// reports/daily.20240602T020000Z.response.csv).
// report is the report path found free with it, when f has none yet (""
// otherwise): putReport takes it without asking the store again.
func (im *Importer) destination(ctx context.Context, src Source, f *state.File, status state.Status) (dst, report string, err error) {
	folder := src.Folders.Archive
	if status != state.Done {
		folder = src.Folders.Failed
	}
	if path.Dir(f.Location) == folder {
		return f.Location, "", nil
	}
	stem, ext := splitExt(f.Name)
	base, err := im.freeBase(ctx, src, stem, ext, func(base string) []string {
		if f.ReportPath != "" {
			return []string{path.Join(folder, base)}
		}
		return []string{path.Join(folder, base), reportFor(src, base)}
	})
	if err != nil {
		return "", "", err
	}
	if f.ReportPath == "" {
		report = reportFor(src, base)
	}
	return path.Join(folder, base), report, nil
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
		// destination() just found dst free: should it be taken
		// meanwhile, Move says so and moveTo picks another name.
		switch err := im.completeMove(ctx, src, f, false); {
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
// under the same name is not mistaken for finished. Best effort. When the
// pass listed the inbox, only the markers it saw are moved here, without
// asking the store about the others; one that came after the listing is
// moved by sweepMarkers at the end of the pass.
func (im *Importer) moveMarkers(ctx context.Context, src Source, name, from, to string) {
	for _, m := range markersOf(name) {
		p := path.Join(from, m)
		if src.listed != nil && from == src.Folders.Inbox {
			if !src.listed[m] {
				continue
			}
		} else if _, err := src.Store.Stat(ctx, p); err != nil {
			continue
		}
		im.moveMarker(ctx, src, p, to)
	}
}

func (im *Importer) moveMarker(ctx context.Context, src Source, p, to string) {
	dst, err := im.freeName(ctx, src, to, path.Base(p))
	if err == nil {
		err = src.Store.Move(ctx, p, dst)
	}
	if err != nil && !errors.Is(err, filestore.ErrNotExist) {
		im.log.Warn("moving marker", zap.String("marker", SafeName(p)), zap.Error(err))
	}
}

// sweepMarkers moves the markers that reached the inbox after the pass
// listed it and announce a file the pass moved away (and that no new drop
// under that name replaced): one listing per pass instead of asking the
// store about every marker name of every file. Best effort.
func (im *Importer) sweepMarkers(ctx context.Context, src Source, sum Summary) {
	to := map[string]string{} // marker → folder its file went to
	for _, r := range sum.Files {
		if r.MovedTo == "" || path.Dir(r.MovedTo) == src.Folders.Inbox {
			continue
		}
		for _, m := range markersOf(r.Name) {
			if _, ok := to[m]; !ok && !src.listed[m] {
				to[m] = path.Dir(r.MovedTo)
			}
		}
	}
	if len(to) == 0 {
		return
	}
	l, err := im.listInbox(ctx, src)
	if err != nil {
		im.log.Warn("listing the inbox for late markers", zap.String("source", src.Name), zap.Error(err))
		return
	}
	for n := range l.files {
		for _, m := range markersOf(n) {
			delete(to, m) // a new drop's marker now
		}
	}
	for m := range l.markers {
		if dir, ok := to[m]; ok {
			im.moveMarker(ctx, src, path.Join(src.Folders.Inbox, m), dir)
		}
	}
}

// reconcile finishes the moves a crash interrupted: files whose ledger
// entry still has a planned destination. Only those are read: listing
// every file of the source here cost each pass O(its history).
func (im *Importer) reconcile(ctx context.Context, src Source) error {
	files, err := state.Unsettled(ctx, im.ledger, src.Name)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.Destination == "" {
			continue
		}
		cf, err := im.ledger.Claim(ctx, state.FileID{Source: src.Name, Name: f.Name}, im.cfg.Owner, im.cfg.Lease)
		if err != nil {
			if errors.Is(err, state.ErrClaimed) {
				continue
			}
			return err
		}
		if cf.Destination == "" {
			im.release(src.Name, f.Name)
			continue
		}
		err = im.finishMove(ctx, src, &cf)
		im.releaseHeld(&cf)
		if err != nil && !errors.Is(err, errReplaced) {
			return err
		}
	}
	return nil
}

// errReplaced: a file whose move a crash interrupted was replaced at its
// location by a new drop under the same name, which is not moved but
// processed as a new drop.
var errReplaced = errors.New("importer: file replaced by a new drop before it was moved")

// finishMove completes a planned move recorded in f.Destination. If the
// file at f.Location is no longer the one the run processed (another size
// or mtime: a new drop under the same name), it is left there and
// errReplaced returned: moving it would archive rows never posted.
func (im *Importer) finishMove(ctx context.Context, src Source, f *state.File) error {
	return im.completeMove(ctx, src, f, true)
}

// completeMove is finishMove; atDst says whether the file may be at its
// destination already (a move a crash interrupted), to be looked for.
func (im *Importer) completeMove(ctx context.Context, src Source, f *state.File, atDst bool) error {
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(f.Name)))
	if _, err := statIf(ctx, src, f.Destination, atDst); err == nil {
		log.Info("finishing a move interrupted by a crash: already at destination", zap.String("to", SafeName(f.Destination)))
	} else if info, serr := src.Store.Stat(ctx, f.Location); serr == nil && (info.Size != f.Size || !info.ModTime.Equal(f.ModTime)) {
		log.Warn("the file was replaced by a new drop before its move; the new drop is processed",
			zap.String("location", SafeName(f.Location)))
		f.Destination, f.ArchivedTo = "", ""
		if err := im.ledger.PutFile(ctx, im.cfg.Owner, *f); err != nil {
			return err
		}
		return errReplaced
	} else if serr == nil {
		if err := im.moveTo(ctx, src, f, f.Destination); err != nil {
			return err
		}
		log.Debug("moved", zap.String("to", SafeName(f.Destination)))
	} else {
		log.Error("file vanished: neither at its location nor at its destination",
			zap.String("location", SafeName(f.Location)), zap.String("destination", SafeName(f.Destination)))
	}
	return im.settle(ctx, f)
}

// statIf is Stat when ask, else the answer that name is not there.
func statIf(ctx context.Context, src Source, name string, ask bool) (filestore.FileInfo, error) {
	if !ask {
		return filestore.FileInfo{}, filestore.ErrNotExist
	}
	return src.Store.Stat(ctx, name)
}

// settle records that the file is at its destination, and gives its
// claim back in the same commit: it is the run's last write. f.Owner is
// then "", so the caller's release has nothing left to do.
func (im *Importer) settle(ctx context.Context, f *state.File) error {
	f.Location, f.ArchivedTo, f.Destination = f.Destination, f.Destination, ""
	if f.FinishedAt.IsZero() {
		f.FinishedAt = im.cfg.Now()
	}
	if err := im.ledger.PutFileAndRelease(ctx, im.cfg.Owner, *f); err != nil {
		return err
	}
	f.Owner = ""
	return nil
}

// moveTo moves f from its location to dst, choosing another free name if
// dst got taken meanwhile (the ledger's Destination follows before each
// try, so a crash never loses track of the file).
func (im *Importer) moveTo(ctx context.Context, src Source, f *state.File, dst string) error {
	for attempt := 0; ; attempt++ {
		err := src.Store.Move(ctx, f.Location, dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, filestore.ErrExist) || attempt >= 5 {
			return fmt.Errorf("%w: %s: move %s to %s: %w", ErrSourceUnavailable, src.Name, f.Location, dst, err)
		}
		next, err := im.freeName(ctx, src, path.Dir(dst), f.Name)
		if err != nil {
			return err
		}
		dst = next
		f.Destination = dst
		if err := im.ledger.PutFile(ctx, im.cfg.Owner, *f); err != nil {
			return err
		}
	}
}
