package importer

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
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
// A file is ready when a marker announces it, or (without
// RequireManifest) when it is older than StableFor or kept its size, mtime
// and ETag across StableFor. markers are the markers listed (the last
// listing's, when there were two).
func (im *Importer) discover(ctx context.Context, src Source) (ready []filestore.FileInfo, markers map[string]bool, err error) {
	l, err := im.listInbox(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	ready, waiting := im.readiness(src, l)
	if len(waiting) == 0 {
		return ready, l.markers, nil
	}
	t := time.NewTimer(src.StableFor)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, nil, ctx.Err()
	case <-t.C:
	}
	again, err := im.listInbox(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	for _, fi := range waiting {
		now, ok := again.files[fi.Name]
		if ok && now.Size == fi.Size && now.ModTime.Equal(fi.ModTime) && now.ETag == fi.ETag {
			ready = append(ready, fi)
		} else {
			im.log.Debug("file still changing", zap.String("source", src.Name), zap.String("file", SafeName(fi.Name)))
		}
	}
	// Keep name order whatever the path to readiness.
	sortInfos(ready)
	return ready, again.markers, nil
}

// inboxListing is one listing of the inbox: the files the include glob
// takes (names in listing order) and the markers.
type inboxListing struct {
	files   map[string]filestore.FileInfo
	markers map[string]bool
	names   []string
}

func (im *Importer) listInbox(ctx context.Context, src Source) (inboxListing, error) {
	l := inboxListing{files: map[string]filestore.FileInfo{}, markers: map[string]bool{}}
	infos, err := src.Store.List(ctx, src.Folders.Inbox)
	if err != nil {
		return l, fmt.Errorf("%w: %s: list %s: %w", ErrSourceUnavailable, src.Name, src.Folders.Inbox, err)
	}
	for _, fi := range infos {
		// The stores already drop names that would escape the folder;
		// checking again here keeps one faulty store from turning a
		// hostile name into a claim and a failed pass on every run.
		if !filestore.Listed(im.log, "importer", src.Folders.Inbox, fi.Name) || strings.HasPrefix(fi.Name, ".") {
			continue
		}
		if isMarker(fi.Name) {
			l.markers[fi.Name] = true
			continue
		}
		ok, err := path.Match(src.include(), fi.Name)
		if err != nil {
			return l, fmt.Errorf("importer: %s: include %q: %w", src.Name, src.include(), err)
		}
		if ok {
			l.files[fi.Name] = fi
			l.names = append(l.names, fi.Name)
		}
	}
	return l, nil
}

// readiness sorts a listing's files into those ready now and those to
// look at again after StableFor; a file that waits for its control file
// is in neither.
func (im *Importer) readiness(src Source, l inboxListing) (ready, waiting []filestore.FileInfo) {
	for _, n := range l.names {
		fi := l.files[n]
		marked := false
		for _, m := range markersOf(n) {
			marked = marked || l.markers[m]
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
	return ready, waiting
}

func sortInfos(s []filestore.FileInfo) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Name < s[j-1].Name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
