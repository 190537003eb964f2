package filestore

import (
	"context"
	"io"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// The helpers below are for Store implementations: the checks every store
// makes the same way, so that all of them refuse and report alike.

// CleanFileName is CleanName for an operation that needs a file name, not
// the root (Write): the root is refused with ErrBadName, reported under op
// ("sftp write").
func CleanFileName(op, name string) (string, error) {
	n, err := CleanName(name)
	if err == nil && n == "" {
		return "", &PathError{Op: op, Name: name, Err: ErrBadName}
	}
	return n, err
}

// CleanMoveNames checks Move's two names: both must stay inside the root
// and neither may be the root itself, which is refused with ErrBadName
// reported under op ("ftp move") and src.
func CleanMoveNames(op, src, dst string) (from, to string, err error) {
	if from, err = CleanName(src); err != nil {
		return "", "", err
	}
	if to, err = CleanName(dst); err != nil {
		return "", "", err
	}
	if from == "" || to == "" {
		return "", "", &PathError{Op: op, Name: src, Err: ErrBadName}
	}
	return from, to, nil
}

// Listed reports whether a store offers a file its server listed in dir:
// never an upload in progress (IsTempName), never a name that could lead
// outside the folder (CheckListedName); the latter is logged, as kind
// ("sftp"), since it means something odd on the server.
func Listed(log *zap.Logger, kind, dir, name string) bool {
	if IsTempName(name) {
		return false
	}
	if err := CheckListedName(name); err != nil {
		log.Warn(kind+": skipping listed name", zap.String("dir", dir), zap.Error(err))
		return false
	}
	return true
}

// SortByName orders a listing as List returns it.
func SortByName(fis []FileInfo) {
	slices.SortFunc(fis, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
}

// ContextReader reads r until ctx is done and then fails with ctx's error:
// for streams that end with their context, as the Store contract says,
// and for copies that must stop with it.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
