package importer

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/state"
)

// markerSuffixes are the optional "upload finished" markers.
var markerSuffixes = []string{".done", ".ok"}

func isMarker(name string) bool {
	for _, s := range markerSuffixes {
		if strings.HasSuffix(strings.ToLower(name), s) {
			return true
		}
	}
	return false
}

// markersOf lists the marker names that announce name: NAME.done and, for
// NAME.csv, NAME.done too (both spellings are in use).
// Names longer than any store allows are left out: no such marker can
// exist, and asking a server about one only earns an error.
func markersOf(name string) []string {
	var out []string
	stem := strings.TrimSuffix(name, path.Ext(name))
	for _, s := range markerSuffixes {
		if len(name+s) <= maxNameBytes {
			out = append(out, name+s)
		}
		if stem != name && stem != "" && len(stem+s) <= maxNameBytes {
			out = append(out, stem+s)
		}
	}
	return out
}

// discover lists the inbox and returns the files ready to take, by name.
func (im *Importer) discover(ctx context.Context, src Source) ([]filestore.FileInfo, error) {
	list := func() (map[string]filestore.FileInfo, map[string]bool, []string, error) {
		infos, err := src.Store.List(ctx, src.Folders.Inbox)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %s: list %s: %w", ErrSourceUnavailable, src.Name, src.Folders.Inbox, err)
		}
		files := map[string]filestore.FileInfo{}
		markers := map[string]bool{}
		var names []string
		for _, fi := range infos {
			// The stores already drop names that would escape the folder;
			// checking again here keeps one faulty store from turning a
			// hostile name into a claim and a failed pass on every run.
			if !filestore.Listed(im.log, "importer", src.Folders.Inbox, fi.Name) || strings.HasPrefix(fi.Name, ".") {
				continue
			}
			if isMarker(fi.Name) {
				markers[fi.Name] = true
				continue
			}
			ok, err := path.Match(src.include(), fi.Name)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("importer: %s: include %q: %w", src.Name, src.include(), err)
			}
			if ok {
				files[fi.Name] = fi
				names = append(names, fi.Name)
			}
		}
		return files, markers, names, nil
	}
	files, markers, names, err := list()
	if err != nil {
		return nil, err
	}
	var ready, waiting []filestore.FileInfo
	for _, n := range names {
		fi := files[n]
		marked := false
		for _, m := range markersOf(n) {
			marked = marked || markers[m]
		}
		// A file last changed longer than stable_for ago is stable
		// already: waiting stable_for again would only delay every run.
		old := !fi.ModTime.IsZero() && im.cfg.Now().Sub(fi.ModTime) >= src.StableFor
		switch {
		case marked || ((src.StableFor <= 0 || old) && !src.RequireManifest):
			ready = append(ready, fi)
		case src.RequireManifest:
			// Waits for its control file.
		default:
			waiting = append(waiting, fi)
		}
	}
	if len(waiting) == 0 {
		return ready, nil
	}
	t := time.NewTimer(src.StableFor)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, ctx.Err()
	case <-t.C:
	}
	again, _, _, err := list()
	if err != nil {
		return nil, err
	}
	for _, fi := range waiting {
		now, ok := again[fi.Name]
		if ok && now.Size == fi.Size && now.ModTime.Equal(fi.ModTime) && now.ETag == fi.ETag {
			ready = append(ready, fi)
		} else {
			im.log.Debug("file still changing", zap.String("source", src.Name), zap.String("file", SafeName(fi.Name)))
		}
	}
	// Keep name order whatever the path to readiness.
	sortInfos(ready)
	return ready, nil
}

func sortInfos(s []filestore.FileInfo) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Name < s[j-1].Name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// reconcile finishes the moves a crash interrupted: files whose ledger
// entry still has a planned destination.
func (im *Importer) reconcile(ctx context.Context, src Source) error {
	files, err := im.ledger.Files(ctx, src.Name)
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
