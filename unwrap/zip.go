package unwrap

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Archive is a zip archive spooled to a temporary file (a zip is read from
// its end, so it cannot be a stream). Its CSV entries are the files.
type Archive struct {
	f       *os.File
	zr      *zip.Reader
	lim     Limits
	entries []*zip.File
	// Ignored lists the entries that are not CSV files (folders, other
	// extensions), for the log.
	Ignored []string
}

// Entry is one CSV file of an archive. Name is its base name: the
// integration_filename of its rows.
type Entry struct {
	Name string
	Path string // full path inside the archive
	Size int64  // declared uncompressed size
	f    *zip.File
}

// OpenArchive copies the archive content (the whole of c, which must be
// Archive) to a temporary file in dir ("" for the system's) and checks it:
// the number of entries, their declared sizes and ratios, and that no two
// CSV entries share a base name (their integration_filename would clash,
// so the archive is refused as a whole). Reading c to its end also settles
// its signature and manifest. Close removes the temporary file.
func OpenArchive(c *Content, dir string, lim Limits) (*Archive, error) {
	lim = lim.withDefaults()
	f, err := os.CreateTemp(dir, "ihr-zip-*")
	if err != nil {
		return nil, err
	}
	a := &Archive{f: f, lim: lim}
	fail := func(err error) (*Archive, error) {
		a.Close()
		return nil, err
	}
	// The archive itself is bounded too: its compressed size counts
	// against max_size, so a huge archive is refused before its entries.
	size, err := io.Copy(f, io.LimitReader(c, lim.MaxSize+1))
	if err != nil {
		return fail(err)
	}
	if size > lim.MaxSize {
		return fail(fmt.Errorf("%w: zip archive is larger than %d bytes (limit max_size)", ErrBomb, lim.MaxSize))
	}
	if _, err := io.Copy(io.Discard, c); err != nil { // settle the checks at EOF
		return fail(err)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrArchive, err))
	}
	a.zr = zr
	if len(zr.File) > lim.MaxEntries {
		return fail(fmt.Errorf("%w: zip archive has %d entries (limit max_entries %d)", ErrBomb, len(zr.File), lim.MaxEntries))
	}
	seen := map[string]string{}
	var total uint64
	for _, zf := range zr.File {
		name := zf.Name
		if zf.FileInfo().IsDir() || !strings.EqualFold(path.Ext(name), ".csv") || strings.HasPrefix(path.Base(name), ".") ||
			strings.HasPrefix(name, "__MACOSX/") {
			a.Ignored = append(a.Ignored, name)
			continue
		}
		base := path.Base(strings.ReplaceAll(name, `\`, "/"))
		if prev, dup := seen[strings.ToLower(base)]; dup {
			return fail(fmt.Errorf("%w: entries %q and %q have the same file name %q; rename one of them", ErrArchive, prev, name, base))
		}
		seen[strings.ToLower(base)] = name
		if err := a.checkDeclared(zf); err != nil {
			return fail(err)
		}
		total += zf.UncompressedSize64
		if total > uint64(lim.MaxSize) {
			return fail(fmt.Errorf("%w: zip entries declare more than %d bytes together (limit max_size)", ErrBomb, lim.MaxSize))
		}
		a.entries = append(a.entries, zf)
	}
	sort.SliceStable(a.entries, func(i, j int) bool { return path.Base(a.entries[i].Name) < path.Base(a.entries[j].Name) })
	return a, nil
}

func (a *Archive) checkDeclared(zf *zip.File) error {
	if zf.UncompressedSize64 > uint64(a.lim.MaxSize) {
		return fmt.Errorf("%w: zip entry %q declares %d bytes (limit max_size %d)", ErrBomb, zf.Name, zf.UncompressedSize64, a.lim.MaxSize)
	}
	if zf.UncompressedSize64 > ratioFloor && float64(zf.UncompressedSize64) > a.lim.MaxRatio*float64(max(zf.CompressedSize64, 1)) {
		return fmt.Errorf("%w: zip entry %q expands %d bytes to %d, more than %g times (limit max_ratio)", ErrBomb,
			zf.Name, zf.CompressedSize64, zf.UncompressedSize64, a.lim.MaxRatio)
	}
	return nil
}

// Entries lists the CSV entries, by name.
func (a *Archive) Entries() []Entry {
	out := make([]Entry, len(a.entries))
	for i, zf := range a.entries {
		out[i] = Entry{Name: path.Base(strings.ReplaceAll(zf.Name, `\`, "/")), Path: zf.Name, Size: int64(zf.UncompressedSize64), f: zf}
	}
	return out
}

// Open streams an entry's content, bounded by the limits whatever its
// header declared.
func (a *Archive) Open(e Entry) (io.ReadCloser, error) {
	rc, err := e.f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: entry %q: %v", ErrArchive, e.Path, err)
	}
	in := int64(e.f.CompressedSize64)
	lr := &limitReader{r: zipErrs{rc, e.Path}, in: &in, lim: a.lim, what: fmt.Sprintf("zip entry %q", e.Path)}
	return struct {
		io.Reader
		io.Closer
	}{lr, rc}, nil
}

type zipErrs struct {
	r    io.Reader
	name string
}

func (z zipErrs) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	if err != nil && err != io.EOF && !IsFileError(err) {
		err = fmt.Errorf("%w: entry %q: %v", ErrArchive, z.name, err)
	}
	return n, err
}

// Close removes the temporary copy.
func (a *Archive) Close() error {
	if a.f == nil {
		return nil
	}
	err := errors.Join(a.f.Close(), os.Remove(a.f.Name()))
	a.f = nil
	return err
}
