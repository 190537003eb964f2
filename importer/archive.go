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
		im.release(src.Name, f.Name)
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
	log := im.log.With(zap.String("source", src.Name), zap.String("file", SafeName(f.Name)))
	if _, err := src.Store.Stat(ctx, f.Destination); err == nil {
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

// settle records that the file is at its destination.
func (im *Importer) settle(ctx context.Context, f *state.File) error {
	f.Location, f.ArchivedTo, f.Destination = f.Destination, f.Destination, ""
	if f.FinishedAt.IsZero() {
		f.FinishedAt = im.cfg.Now()
	}
	return im.ledger.PutFile(ctx, im.cfg.Owner, *f)
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
