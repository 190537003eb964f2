// Package retention deletes old files from a source's archive/ and
// reports/ folders, when a source opts in with retain: {archive: 90d,
// reports: 180d}. It is the only code in the worker that deletes; it
// never touches any other folder (the caller names the folder, and the
// worker names only those two), and it logs every deletion. serve keeps
// a Folder per source and folder, which lists the folder only when
// something in it can be due.
package retention

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
)

// Sweep deletes the files directly in dir whose modification time is
// older than maxAge before now, and returns their names. A file the
// store reports no modification time for is kept: its age is unknown.
// maxAge <= 0 deletes nothing.
func Sweep(ctx context.Context, st filestore.Store, dir string, maxAge time.Duration, now time.Time, log *zap.Logger) ([]string, error) {
	deleted, _, err := sweep(ctx, st, dir, maxAge, now, log)
	return deleted, err
}

// sweep is Sweep that also returns the oldest modification time among
// the files it kept (zero when it kept none with one).
func sweep(ctx context.Context, st filestore.Store, dir string, maxAge time.Duration, now time.Time, log *zap.Logger) ([]string, time.Time, error) {
	var oldest time.Time
	if maxAge <= 0 {
		return nil, oldest, nil
	}
	rm, ok := st.(filestore.Remover)
	if !ok {
		return nil, oldest, fmt.Errorf("retention: %s: this store cannot delete files", dir)
	}
	files, err := st.List(ctx, dir)
	if errors.Is(err, filestore.ErrNotExist) {
		return nil, oldest, nil // nothing archived yet
	}
	if err != nil {
		return nil, oldest, fmt.Errorf("retention: %w", err)
	}
	cutoff := now.Add(-maxAge)
	var deleted []string
	var errs []error
	for _, f := range files {
		if f.ModTime.IsZero() {
			continue
		}
		if !f.ModTime.Before(cutoff) {
			if oldest.IsZero() || f.ModTime.Before(oldest) {
				oldest = f.ModTime
			}
			continue
		}
		name := path.Join(dir, f.Name)
		if err := rm.Remove(ctx, name); err != nil && !errors.Is(err, filestore.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, name)
		log.Info("retention: deleted", zap.String("file", name), zap.Time("modified", f.ModTime),
			zap.Duration("age", now.Sub(f.ModTime).Round(time.Second)), zap.Duration("retain", maxAge))
	}
	if len(errs) > 0 {
		return deleted, oldest, fmt.Errorf("retention: %w", errors.Join(errs...))
	}
	return deleted, oldest, nil
}

// Recheck is how long a Folder goes at most without listing: files put
// in the folder other than by a pass that told it (by hand, say) are
// found within a day of becoming due.
const Recheck = 24 * time.Hour

// Folder is the retention of one folder across passes. Rather than list
// the folder after every pass, it lists it only when something in it can
// be due: the oldest file it kept at the last listing, or a file a pass
// put there since (Added), has reached its age. Those listings are at
// least an hour apart (a tenth of the age when that is shorter), so a
// night's files coming of age one after another cost one listing, not
// one each; and the folder is listed at least every Recheck. A pass then
// costs nothing while nothing is due, and a listing costs the files
// kept, not the history. What is due is decided from the listing, file
// by file, as Sweep does, so nothing is deleted before its age; a file
// is deleted at most that hour after it (a day, for one put there by
// hand).
type Folder struct {
	Dir    string
	MaxAge time.Duration

	mu     sync.Mutex
	listed time.Time // the last listing; zero lists at the next sweep
	due    time.Time // when the first file known to be in the folder is due; zero: none
}

// Added notes that a file modified at mtime was put in the folder (zero
// when not known: it may be due already).
func (f *Folder) Added(mtime time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.listed
	if !mtime.IsZero() {
		d = mtime.Add(f.MaxAge)
	}
	if f.due.IsZero() || d.Before(f.due) {
		f.due = d
	}
}

// spacing is the least time between listings for something due.
func (f *Folder) spacing() time.Duration { return min(time.Hour, f.MaxAge/10) }

// Sweep deletes what is due in the folder, as the package's Sweep does,
// when something can be due (see Folder); listed says whether it listed
// the folder. After a failure it lists again at the next sweep.
func (f *Folder) Sweep(ctx context.Context, st filestore.Store, now time.Time, log *zap.Logger) (deleted []string, listed bool, err error) {
	if f.MaxAge <= 0 {
		return nil, false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.listed.IsZero() {
		since := now.Sub(f.listed)
		somethingDue := !f.due.IsZero() && now.After(f.due) && since >= f.spacing()
		if since < Recheck && !somethingDue {
			return nil, false, nil
		}
	}
	deleted, oldest, err := sweep(ctx, st, f.Dir, f.MaxAge, now, log)
	f.listed, f.due = now, time.Time{}
	if !oldest.IsZero() {
		f.due = oldest.Add(f.MaxAge)
	}
	if err != nil {
		f.listed = time.Time{}
	}
	return deleted, true, err
}
