package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// content is a stored file opened through package unwrap: what the
// parser reads is the plain CSV.
type content struct {
	*unwrap.Content
	rc io.ReadCloser
}

// Close closes the stream first: the goroutine reading ahead through the
// layers may be blocked on it.
func (c *content) Close() error {
	err := c.rc.Close()
	return errors.Join(c.Content.Close(), err)
}

// errArchive: the first pass found a zip archive (see runArchive).
var errArchive = errors.New("importer: zip archive")

// openContent opens the file at loc of store (the source's, or another
// for Validate) and peels off encryption and compression; its control
// file NAME.done, if any, is the manifest the content is checked
// against. An error that unwrap.IsFileError is the file's fault.
func (im *Importer) openContent(ctx context.Context, src Source, store filestore.Store, name, loc string) (*content, error) {
	cfg := src.Unwrap
	m, err := readManifest(ctx, store, name, loc)
	if err != nil {
		return nil, err
	}
	if m == nil && src.RequireManifest {
		return nil, fmt.Errorf("%w: no control file %s.done giving rows= or sha256= (the source requires one)", unwrap.ErrIncomplete, name)
	}
	cfg.Manifest = m
	rc, err := store.Open(ctx, loc, 0)
	if err != nil {
		return nil, err
	}
	c, err := unwrap.Open(rc, cfg)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &content{Content: c, rc: rc}, nil
}

// readManifest reads the first control file of name next to loc that has
// content; an empty one is only an "upload finished" marker.
func readManifest(ctx context.Context, store filestore.Store, name, loc string) (*unwrap.Manifest, error) {
	for _, mk := range markersOf(name) { // only names a store can hold
		p := path.Join(path.Dir(loc), mk)
		rc, err := store.Open(ctx, p, 0)
		if errors.Is(err, filestore.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open control file %s: %w", p, err)
		}
		m, err := unwrap.ParseManifest(rc, mk)
		rc.Close()
		if err != nil || m != nil {
			return m, err
		}
	}
	return nil, nil
}

// reportParts is reportParts with ".pgp" appended to the suffix when the
// source's reports are encrypted.
func (s Source) reportParts(name string) (stem, ext string) {
	stem, ext = reportParts(name)
	if len(s.EncryptReportsTo) > 0 {
		ext += ".pgp"
	}
	return stem, ext
}

// sealReport encrypts a report to Source.EncryptReportsTo into a
// temporary file, rewound (a failed upload is tried again from its
// start); closing it removes it. name is the plain report's name, kept
// in the message for whoever decrypts it.
func sealReport(src Source, body io.Reader, name string) (*spoolFile, error) {
	tmp, err := os.CreateTemp("", "ihr-report-*.pgp")
	if err != nil {
		return nil, fmt.Errorf("importer: encrypt report %s: %w", SafeName(name), err)
	}
	sp := &spoolFile{File: tmp}
	w, err := unwrap.EncryptTo(tmp, src.EncryptReportsTo, strings.TrimSuffix(name, ".pgp"))
	if err == nil {
		if _, err = io.Copy(w, body); err == nil {
			err = w.Close()
		}
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("importer: encrypt report %s: %w", SafeName(name), err)
	}
	return sp, nil
}

// runArchive processes a zip archive whose run is stored in f: each CSV
// entry is a file of its own (its name, a base name, is the rows'
// integration_filename), claimed, processed and reported like any other
// file, except that it is read from the archive and never moved. The
// archive itself moves, to archive/ when every entry was archived, else
// to failed/, only once every entry is done; an interrupted run resumes
// with the entries not yet done.
func (im *Importer) runArchive(ctx context.Context, src Source, f *state.File) FileResult {
	a, entries, done := im.openArchive(ctx, src, f)
	if done != nil {
		return *done
	}
	defer a.Close()
	es := entrySource(src, f, a, entries)
	if err := src.Store.MkdirAll(ctx, es.Folders.Reports); err != nil {
		return im.result(*f, fmt.Errorf("%w: %s: %w", ErrSourceUnavailable, src.Name, err))
	}
	final, counts, done := im.runEntries(ctx, es, f, entries)
	if done != nil {
		return *done
	}
	f.ReportPath = es.Folders.Reports + "/"
	reason := ""
	if final != state.Done {
		reason = "an entry was not archived; see the entries' reports"
	}
	dst, _, err := im.destination(ctx, src, f, final)
	if err != nil {
		return im.result(*f, err)
	}
	err = im.finish(ctx, src, f, final, counts, reason, dst)
	return im.result(*f, err)
}

// openArchive opens f as a zip and lists its CSV entries, checking a
// manifest's rows= (the data rows of all CSV entries) before any entry is
// posted. done is the file's result when it goes no further: rejected as
// a whole, or the store failed.
func (im *Importer) openArchive(ctx context.Context, src Source, f *state.File) (a *unwrap.Archive, entries []unwrap.Entry, done *FileResult) {
	stop := func(r FileResult) (*unwrap.Archive, []unwrap.Entry, *FileResult) { return nil, nil, &r }
	reject := func(err error) (*unwrap.Archive, []unwrap.Entry, *FileResult) {
		if unwrap.IsFileError(err) {
			return stop(im.rejectWhole(ctx, src, f, state.Failed, fmt.Sprintf("%s: %v", f.Name, err), state.Invalid))
		}
		return stop(im.result(*f, fmt.Errorf("%w: %s: read %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)))
	}
	c, err := im.openContent(ctx, src, src.Store, f.Name, f.Location)
	if err != nil && !unwrap.IsFileError(err) {
		return stop(im.result(*f, fmt.Errorf("%w: %s: open %s: %w", ErrSourceUnavailable, src.Name, f.Location, err)))
	}
	if err != nil {
		return reject(err)
	}
	a, err = unwrap.OpenArchive(c.Content, "", src.Unwrap.Limits)
	c.Close()
	if err != nil {
		return reject(err)
	}
	entries = a.Entries()
	if len(a.Ignored) > 0 {
		im.log.Info("zip entries that are not CSV files are ignored", zap.String("source", src.Name),
			zap.String("file", SafeName(f.Name)), zap.Strings("entries", a.Ignored))
	}
	if len(entries) == 0 {
		a.Close()
		return stop(im.rejectWhole(ctx, src, f, state.Failed, f.Name+": zip archive holds no .csv entry", state.Invalid))
	}
	if m := c.Manifest(); m != nil && m.Rows >= 0 {
		var total int64
		if total, err = countEntryRows(ctx, src, a, entries); err == nil {
			err = c.CheckRows(total)
		}
	}
	if err != nil {
		a.Close()
		return reject(err)
	}
	return a, entries, nil
}

// entrySource is the source the entries of archive f run in: the archive
// shown as a folder (entryStore), with folders of its own under the
// source's, never split, never waiting for a manifest.
func entrySource(src Source, f *state.File, a *unwrap.Archive, entries []unwrap.Entry) Source {
	es := src
	vs := &entryStore{Store: src.Store, arch: a, dir: f.Location, entries: map[string]unwrap.Entry{}, mod: f.ModTime}
	for _, e := range entries {
		vs.entries[e.Name] = e
	}
	es.Store = vs
	es.Folders = Folders{Inbox: f.Location, Archive: path.Join(src.Folders.Archive, f.Name),
		Failed: path.Join(src.Folders.Failed, f.Name), Reports: path.Join(src.Folders.Reports, f.Name)}
	vs.virtual = []string{es.Folders.Inbox, es.Folders.Archive, es.Folders.Failed}
	es.Unwrap = unwrapEntries(src.Unwrap)
	es.RequireManifest, es.SplitRows, es.EncryptReportsTo = false, 0, src.EncryptReportsTo
	return es
}

// runEntries runs every entry not done yet, as a file of its own, and sums
// their rows into f. done is the archive's result when an entry was
// interrupted or is held by another worker: the archive waits.
func (im *Importer) runEntries(ctx context.Context, es Source, f *state.File, entries []unwrap.Entry) (final state.Status, counts state.Counts, done *FileResult) {
	final = state.Done
	for _, e := range entries {
		var res FileResult
		if prev, ok := im.entryDone(ctx, es, f, e.Name); ok {
			res = im.result(prev, nil)
		} else {
			res, _ = im.claimAndRun(ctx, es, e.Name, path.Join(es.Folders.Inbox, e.Name))
		}
		switch res.Status {
		case state.Done:
		case state.Failed, state.Skipped:
			final = state.Failed
		default: // interrupted, or another worker holds a file of that name
			r := im.result(*f, res.Err)
			r.Status = state.Processing
			if res.Err == nil {
				r.Reason = fmt.Sprintf("entry %s is held by another worker; the archive resumes on a later pass", e.Name)
				im.log.Info("zip entry held elsewhere; archive left for a later pass", zap.String("source", f.Source),
					zap.String("file", SafeName(f.Name)), zap.String("entry", SafeName(e.Name)))
			}
			return final, counts, &r
		}
		f.Rows += res.Rows
		counts.Plus(res.Counts)
	}
	return final, counts, nil
}

// countEntryRows counts the data rows of the archive's CSV entries as the
// entries' own first passes will (a row that does not parse counts; an
// entry that is not CSV at all counts none and fails on its own).
func countEntryRows(ctx context.Context, src Source, a *unwrap.Archive, entries []unwrap.Entry) (int64, error) {
	var total int64
	cfg := unwrapEntries(src.Unwrap)
	for _, e := range entries {
		n, err := func() (int64, error) {
			er, err := a.Open(e)
			if err != nil {
				return 0, err
			}
			defer er.Close()
			c, err := unwrap.Open(er, cfg)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			rd, err := parse.NewReader(c, src.Encoding, parse.Options{File: e.Name})
			if err != nil {
				if unwrap.IsFileError(err) || !isFileError(err) {
					return 0, err
				}
				return 0, nil
			}
			var n int64
			for {
				if err := ctx.Err(); err != nil {
					return 0, err
				}
				_, err := rd.Read()
				if err == io.EOF {
					return n, nil
				}
				var pe *parse.ParseError
				if err != nil && !errors.As(err, &pe) {
					return 0, err
				}
				n++
			}
		}()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// entryDone: the entry was finished by this very run of the archive (a
// run interrupted after some entries resumes with the others).
func (im *Importer) entryDone(ctx context.Context, es Source, arch *state.File, name string) (state.File, bool) {
	e, err := im.ledger.File(ctx, state.FileID{Source: es.Name, Name: name})
	if err != nil || e.Destination != "" || e.FinishedAt.Before(arch.StartedAt) {
		return e, false
	}
	switch e.Status {
	case state.Done, state.Failed, state.Skipped:
		return e, path.Dir(e.Location) == es.Folders.Archive || path.Dir(e.Location) == es.Folders.Failed
	}
	return e, false
}

// unwrapEntries: an entry is already decrypted and its archive checked;
// it may still be compressed, and each CSV may end in its trailer.
func unwrapEntries(c unwrap.Config) unwrap.Config {
	return unwrap.Config{Limits: c.Limits, Trailer: c.Trailer}
}

// entryStore shows the entries of an archive as the files of a folder
// named after it (inbox/bundle.zip/a.csv); moving an entry out of it
// only notes where the entry went (archive/bundle.zip/a.csv). Everything
// else (reports) goes to the source's store.
type entryStore struct {
	filestore.Store
	arch    *unwrap.Archive
	dir     string
	virtual []string // dir and the folders entries "move" to
	entries map[string]unwrap.Entry
	mod     time.Time
}

func (s *entryStore) isVirtual(name string) bool {
	d := path.Dir(name)
	for _, v := range s.virtual {
		if d == v {
			return true
		}
	}
	return false
}

func (s *entryStore) entry(name string) (unwrap.Entry, bool) {
	if path.Dir(name) != s.dir {
		return unwrap.Entry{}, false
	}
	e, ok := s.entries[path.Base(name)]
	return e, ok
}

func (s *entryStore) Stat(ctx context.Context, name string) (filestore.FileInfo, error) {
	if e, ok := s.entry(name); ok {
		return filestore.FileInfo{Name: e.Name, Size: e.Size, ModTime: s.mod}, nil
	}
	if s.isVirtual(name) {
		return filestore.FileInfo{}, &filestore.PathError{Op: "stat", Name: name, Err: filestore.ErrNotExist}
	}
	return s.Store.Stat(ctx, name)
}

func (s *entryStore) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	if e, ok := s.entry(name); ok && offset == 0 {
		return s.arch.Open(e)
	}
	if s.isVirtual(name) {
		return nil, &filestore.PathError{Op: "open", Name: name, Err: filestore.ErrNotExist}
	}
	return s.Store.Open(ctx, name, offset)
}

func (s *entryStore) Move(ctx context.Context, src, dst string) error {
	if _, ok := s.entry(src); ok && s.isVirtual(dst) {
		return nil
	}
	if s.isVirtual(src) || s.isVirtual(dst) {
		return &filestore.PathError{Op: "move", Name: src, Err: filestore.ErrNotExist}
	}
	return s.Store.Move(ctx, src, dst)
}

func (s *entryStore) MkdirAll(ctx context.Context, dir string) error {
	for _, v := range s.virtual {
		if dir == v || strings.HasPrefix(dir, v+"/") {
			return nil
		}
	}
	return s.Store.MkdirAll(ctx, dir)
}

// Close leaves the source's store open: it is not the entry store's.
func (s *entryStore) Close() error { return nil }
