// Package filestore is the one interface through which the worker reads ERP
// drop folders and writes reports, whatever they live on: a local folder,
// SFTP, FTP/FTPS or S3. Each implementation lives in its own sub-package and
// must pass the conformance suite in filestore/storetest.
//
// Names are slash-separated paths relative to the store's root (the path of
// the source URL). A name that is absolute or climbs out of the root with
// ".." is refused with ErrBadName before any I/O.
package filestore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// Errors every store reports, wrapped, so callers use errors.Is.
var (
	// ErrNotExist: the file or folder is not there.
	ErrNotExist = fs.ErrNotExist
	// ErrExist: Move's destination is already taken.
	ErrExist = fs.ErrExist
	// ErrBadName: the name is absolute, climbs out of the root, or is empty.
	ErrBadName = errors.New("filestore: name escapes the store root")
)

// DefaultTimeout is a remote store's connect and inactivity limit when its
// Config leaves Timeout at 0: long enough for a slow server's first byte,
// short enough that a dead connection is noticed within a pass.
const DefaultTimeout = 30 * time.Second

// FileInfo describes a file as a listing reports it.
type FileInfo struct {
	Name    string    // base name, never a path
	Size    int64     // bytes
	ModTime time.Time // as the store reports it (S3: LastModified)
	ETag    string    // content tag where the store has one (S3), else ""
}

// Store is a folder tree on some storage. Implementations are safe for
// concurrent use by several goroutines.
type Store interface {
	// List returns the regular files directly inside dir (not recursive,
	// folders left out), sorted by name. A missing dir wraps ErrNotExist.
	List(ctx context.Context, dir string) ([]FileInfo, error)

	// Stat describes one file; a missing file wraps ErrNotExist.
	Stat(ctx context.Context, name string) (FileInfo, error)

	// Open streams the file from byte offset on; it never reads the whole
	// file into memory. The context bounds opening the stream, and the
	// stream is no longer usable once ctx is done. A missing file wraps
	// ErrNotExist.
	Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error)

	// Write stores everything r yields under name, replacing any previous
	// file, atomically: a reader sees the old content or the whole new
	// content, never part of it. The parent folder must exist. If r fails,
	// nothing is left under name.
	Write(ctx context.Context, name string, r io.Reader) error

	// Move renames src to dst without ever losing the file: afterwards it is
	// at dst, or still at src. It never replaces an existing dst: it fails
	// with an error wrapping ErrExist instead. The parent folder of dst
	// must exist.
	Move(ctx context.Context, src, dst string) error

	// MkdirAll creates dir and its parents; existing folders are fine.
	// Stores without real folders (S3) may do nothing.
	MkdirAll(ctx context.Context, dir string) error

	// Close releases connections. The store is unusable afterwards.
	Close() error
}

// CleanName checks that name stays inside the store root and returns it in
// canonical form ("a/b.csv"). "" and "." name the root itself.
func CleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", &PathError{Op: "check", Name: name, Err: ErrBadName}
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", &PathError{Op: "check", Name: name, Err: ErrBadName}
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// PathError records the operation and the name that failed. Store
// implementations return it so messages read "sftp open inbox/a.csv: …".
// It never carries credentials.
type PathError struct {
	Op   string
	Name string
	Err  error
}

func (e *PathError) Error() string { return e.Op + " " + e.Name + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }
