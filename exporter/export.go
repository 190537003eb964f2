package exporter

import (
	"context"
	"errors"
	"io"
	"strconv"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/record"
)

// Indexer reads one page of records; *apiclient.Client is one.
type Indexer interface {
	Index(ctx context.Context, q *apiclient.Query) ([]*record.Record, error)
}

// Records writes every record newQuery selects to rw, oldest id first,
// flushes rw and returns how many it wrote. newQuery is called once a page
// and must return a fresh query holding only the filters. The caller makes
// rw (NewRecordWriter), so it chooses the columns and any output option.
//
// It pages by id (id > the last one seen, ordered by id) rather than by
// offset: records created meanwhile are neither skipped nor repeated, and
// one page is in memory at a time, whatever the number of records.
func Records(ctx context.Context, api Indexer, newQuery func() *apiclient.Query, rw *RecordWriter) (int64, error) {
	var n, last int64
	for {
		q := newQuery().OrderBy("id", false).Limit(apiclient.MaxPageSize)
		if last > 0 {
			q.Where("id", apiclient.Gt, strconv.FormatInt(last, 10))
		}
		page, err := api.Index(ctx, q)
		if err != nil {
			return n, err
		}
		for _, r := range page {
			if err := rw.Write(r); err != nil {
				return n, err
			}
			n++
			last = max(last, r.ID)
		}
		if len(page) < apiclient.MaxPageSize {
			return n, rw.Flush()
		}
	}
}

// ToStore writes what produce writes as the file name on st, streaming
// through a pipe so memory stays flat. Store.Write is atomic and sees
// produce's error, so a failure leaves nothing behind. The error is
// produce's when it failed (the API's, not the pipe's echo of it), else
// the store's.
func ToStore(ctx context.Context, st filestore.Store, name string, produce func(io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := produce(pw)
		pw.CloseWithError(err) // nil closes normally: EOF for Write
		done <- err
	}()
	werr := st.Write(ctx, name, pr)
	pr.CloseWithError(errWriteEnded) // unblocks the producer if Write quit early
	if perr := <-done; perr != nil && !errors.Is(perr, errWriteEnded) {
		return perr
	}
	return werr
}

var errWriteEnded = errors.New("export: the store stopped reading")
