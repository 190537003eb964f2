package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"

	"github.com/ihr-tools/ihr/filestore"
)

// onceLimit is the largest file a run keeps in memory after its first
// read, so that its later reads (dispatch, the report) cost no store
// round trip. Many ERPs write one small file per document: their per-file
// cost is round trips, not bytes.
const onceLimit = 1 << 20

// markerLimit bounds a control file kept in memory; a longer one is read
// from the store each time (it is not a manifest anyway).
const markerLimit = 64 << 10

// onceReads is the store as one file's run sees it: the file's repeated
// reads (scan, dispatch, report: the file and its control files, each
// read by openContent) are served from the first one. Everything else
// goes to the store.
//
// The file's bytes are kept only when it is at most onceLimit; then every
// pass over it parses exactly the bytes that were hashed. A control file
// is looked for once: found, its bytes are kept; missing, it stays
// missing for the run. When the pass's listing of the inbox is known
// (listed), a control file the listing did not show is not looked for at
// all: the file was found ready (or not) from that listing too.
type onceReads struct {
	filestore.Store
	loc     string          // the file
	small   bool            // its size is at most onceLimit
	markers map[string]bool // paths of its control files
	listed  map[string]bool // base names of the markers the listing saw (nil: unknown)

	mu   sync.Mutex
	data map[string]*onceEntry // path → what its first read found
}

type onceEntry struct {
	b   []byte
	err error
}

// readOnce wraps src's store for the run of the file name at loc, of size
// bytes.
func (im *Importer) readOnce(src Source, name, loc string, size int64) *onceReads {
	o := &onceReads{Store: src.Store, loc: loc, small: size <= onceLimit, markers: map[string]bool{},
		data: map[string]*onceEntry{}}
	for _, m := range markersOf(name) {
		o.markers[path.Join(path.Dir(loc), m)] = true
	}
	if src.listed != nil && path.Dir(loc) == src.Folders.Inbox {
		o.listed = src.listed
	}
	return o
}

func (o *onceReads) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	keep := offset == 0 && ((name == o.loc && o.small) || o.markers[name])
	if !keep {
		return o.Store.Open(ctx, name, offset)
	}
	if name != o.loc && o.listed != nil && !o.listed[path.Base(name)] {
		return nil, fmt.Errorf("importer: open %s: not in the inbox's listing: %w", SafeName(name), filestore.ErrNotExist)
	}
	o.mu.Lock()
	e, ok := o.data[name]
	o.mu.Unlock()
	if ok {
		if e.err != nil {
			return nil, e.err
		}
		return io.NopCloser(bytes.NewReader(e.b)), nil
	}
	rc, err := o.Store.Open(ctx, name, 0)
	if err != nil {
		if name != o.loc && isNotExist(err) {
			o.remember(name, &onceEntry{err: err})
		}
		return nil, err
	}
	limit := int64(onceLimit)
	if name != o.loc {
		limit = markerLimit
	}
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		rc.Close()
		return nil, err
	}
	if int64(len(b)) > limit {
		// Grew past the limit since it was listed: read it as it comes.
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), rc), rc}, nil
	}
	if err := rc.Close(); err != nil {
		return nil, err
	}
	o.remember(name, &onceEntry{b: b})
	return io.NopCloser(bytes.NewReader(b)), nil
}

func isNotExist(err error) bool { return errors.Is(err, filestore.ErrNotExist) }

func (o *onceReads) remember(name string, e *onceEntry) {
	o.mu.Lock()
	o.data[name] = e
	o.mu.Unlock()
}
