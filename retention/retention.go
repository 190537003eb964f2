// Package retention deletes old files from a source's archive/ and
// reports/ folders, when a source opts in with retain: {archive: 90d,
// reports: 180d}. It is the only code in the worker that deletes; it
// never touches any other folder (the caller names the folder, and the
// worker names only those two), and it logs every deletion.
package retention

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
)

// Sweep deletes the files directly in dir whose modification time is
// older than maxAge before now, and returns their names. A file the
// store reports no modification time for is kept: its age is unknown.
// maxAge <= 0 deletes nothing.
func Sweep(ctx context.Context, st filestore.Store, dir string, maxAge time.Duration, now time.Time, log *zap.Logger) ([]string, error) {
	if maxAge <= 0 {
		return nil, nil
	}
	rm, ok := st.(filestore.Remover)
	if !ok {
		return nil, fmt.Errorf("retention: %s: this store cannot delete files", dir)
	}
	files, err := st.List(ctx, dir)
	if errors.Is(err, filestore.ErrNotExist) {
		return nil, nil // nothing archived yet
	}
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	cutoff := now.Add(-maxAge)
	var deleted []string
	var errs []error
	for _, f := range files {
		if f.ModTime.IsZero() || !f.ModTime.Before(cutoff) {
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
		return deleted, fmt.Errorf("retention: %w", errors.Join(errs...))
	}
	return deleted, nil
}
