// Package local is the file store for a folder on a local (or mounted)
// file system.
//
// Every access goes through an os.Root, so neither a crafted name nor a
// symbolic link planted in a drop folder can reach outside the folder.
//
// Write is atomic: the data goes to a hidden temporary file in the same
// folder, is fsynced, and is renamed over the final name; the folder is
// fsynced too so the rename survives a crash.
//
// Move never replaces an existing file. It creates a hard link at dst
// (link(2) fails with EEXIST if dst is taken, atomically, with no window
// for a race) and then removes src. If removing src fails, the link at dst
// is removed again, so the file is at exactly one of the two names. On file
// systems without hard links (some FUSE and SMB mounts) it falls back to
// checking that dst is free and then renaming: correct unless another
// process creates dst in the instant between the check and the rename.
// (renameat2 with RENAME_NOREPLACE would close that gap but is Linux-only,
// unsupported on many of the same file systems, and not reachable through
// os.Root.)
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
)

// Store is a folder on the local file system. It is safe for concurrent
// use.
type Store struct {
	root *os.Root
	log  *zap.Logger
}

var _ filestore.Store = (*Store)(nil)

// New opens the existing folder dir as a store. log may be nil.
func New(dir string, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	return &Store{root: root, log: log}, nil
}

func pathErr(op, name string, err error) error {
	// os errors repeat the path (relative to the root) and the syscall; the
	// PathError we build names both already, so keep only the cause.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	return &filestore.PathError{Op: "local " + op, Name: name, Err: err}
}

// rel turns a checked name into the root-relative form os.Root expects.
func rel(clean string) string {
	if clean == "" {
		return "."
	}
	return clean
}

func (s *Store) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	d, err := filestore.CleanName(dir)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.root.Open(rel(d))
	if err != nil {
		return nil, pathErr("list", dir, err)
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			err = fmt.Errorf("not a folder: %w", filestore.ErrNotExist)
		}
		return nil, pathErr("list", dir, err)
	}
	out := make([]filestore.FileInfo, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		// Symbolic links and other non-regular entries are left out: the
		// store hands out regular files only, and never follows a link.
		if !e.Type().IsRegular() || !filestore.Listed(s.log, "local", dir, name) {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		} else if err != nil {
			return nil, pathErr("list", path.Join(d, name), err)
		}
		out = append(out, filestore.FileInfo{Name: name, Size: info.Size(), ModTime: info.ModTime()})
	}
	filestore.SortByName(out)
	return out, nil
}

func (s *Store) Stat(ctx context.Context, name string) (filestore.FileInfo, error) {
	n, err := filestore.CleanName(name)
	if err != nil {
		return filestore.FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return filestore.FileInfo{}, err
	}
	info, err := s.root.Stat(rel(n))
	if err != nil {
		return filestore.FileInfo{}, pathErr("stat", name, err)
	}
	if !info.Mode().IsRegular() {
		return filestore.FileInfo{}, pathErr("stat", name, fmt.Errorf("not a regular file: %w", filestore.ErrNotExist))
	}
	return filestore.FileInfo{Name: path.Base(n), Size: info.Size(), ModTime: info.ModTime()}, nil
}

func (s *Store) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	n, err := filestore.CleanName(name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.root.Open(rel(n))
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file: %w", filestore.ErrNotExist)
	}
	if err == nil && offset != 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, pathErr("open", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{filestore.ContextReader(ctx, f), f}, nil
}

func (s *Store) Write(ctx context.Context, name string, r io.Reader) (err error) {
	n, err := filestore.CleanFileName("local write", name)
	if err != nil {
		return err
	}
	dir := path.Dir(n)
	tmp := path.Join(dir, filestore.TempName())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return pathErr("write", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = s.root.Remove(tmp)
		}
	}()
	if _, err = io.Copy(f, filestore.ContextReader(ctx, r)); err != nil {
		return pathErr("write", name, err)
	}
	if err = f.Sync(); err != nil {
		return pathErr("write", name, err)
	}
	if err = f.Close(); err != nil {
		return pathErr("write", name, err)
	}
	if err = s.root.Rename(tmp, n); err != nil {
		return pathErr("write", name, err)
	}
	if err := s.syncDir(dir); err != nil {
		// The file is in place; only its durability across a crash is in
		// doubt. Report it without undoing the write.
		return pathErr("write", name, err)
	}
	return nil
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: the file system cannot sync folders; nothing to do
	}
	return nil
}

func (s *Store) Move(ctx context.Context, src, dst string) error {
	from, to, err := filestore.CleanMoveNames("local move", src, dst)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := s.root.Lstat(from)
	if err != nil {
		return pathErr("move", src, err)
	}
	if !info.Mode().IsRegular() {
		return pathErr("move", src, fmt.Errorf("not a regular file: %w", filestore.ErrNotExist))
	}
	if err := s.root.Link(from, to); err != nil {
		switch {
		case errors.Is(err, fs.ErrExist):
			return pathErr("move", src, fmt.Errorf("destination %s: %w", dst, filestore.ErrExist))
		case errors.Is(err, fs.ErrNotExist):
			return pathErr("move", src, fmt.Errorf("to %s: %w", dst, err))
		}
		s.log.Debug("local: hard link refused, moving by check and rename",
			zap.String("src", src), zap.String("dst", dst), zap.Error(err))
		return s.checkAndRename(src, dst, from, to)
	}
	if err := s.root.Remove(from); err != nil {
		// Undo the link: the file must end up at exactly one name.
		if uerr := s.root.Remove(to); uerr != nil {
			s.log.Error("local: file left under two names", zap.String("src", src),
				zap.String("dst", dst), zap.NamedError("remove_src", err), zap.NamedError("remove_dst", uerr))
		}
		return pathErr("move", src, err)
	}
	if err := s.syncDir(path.Dir(to)); err != nil {
		return pathErr("move", src, err)
	}
	if path.Dir(to) != path.Dir(from) {
		if err := s.syncDir(path.Dir(from)); err != nil {
			return pathErr("move", src, err)
		}
	}
	return nil
}

// checkAndRename is Move for file systems without hard links.
func (s *Store) checkAndRename(src, dst, from, to string) error {
	if _, err := s.root.Lstat(to); err == nil {
		return pathErr("move", src, fmt.Errorf("destination %s: %w", dst, filestore.ErrExist))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return pathErr("move", src, err)
	}
	if err := s.root.Rename(from, to); err != nil {
		return pathErr("move", src, err)
	}
	return nil
}

func (s *Store) MkdirAll(ctx context.Context, dir string) error {
	d, err := filestore.CleanName(dir)
	if err != nil {
		return err
	}
	if d == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.root.MkdirAll(d, 0o755); err != nil {
		return pathErr("mkdir", dir, err)
	}
	return nil
}

// Close releases the folder handle.
func (s *Store) Close() error { return s.root.Close() }
