package state

import (
	"context"
	"fmt"
	"math"
	"time"
)

// firstArrivalSQL reads files_by_arrival from from on and stops at the
// first row: its cost does not depend on how many files the source has.
// A first_seen of 0 (never recorded) is no arrival.
const firstArrivalSQL = `SELECT ` + fileCols + ` FROM {t}files
	WHERE source = ? AND first_seen >= ? AND first_seen < ? ORDER BY first_seen, name LIMIT 1`

func arrivalBounds(from, to time.Time) (int64, int64) {
	lo, hi := max(ns(from), 1), int64(math.MaxInt64)
	if !to.IsZero() {
		hi = ns(to)
	}
	return lo, hi
}

// FirstArrival implements Ops.
func (o *opsSQL) FirstArrival(ctx context.Context, source string, from, to time.Time) (File, bool, error) {
	lo, hi := arrivalBounds(from, to)
	f, err := scanFile(o.l.row(ctx, o.l.db, firstArrivalSQL, source, lo, hi))
	if isNoRows(err) {
		return File{}, false, nil
	}
	if err != nil {
		return File{}, false, fmt.Errorf("state: arrivals of %s: %w", source, err)
	}
	return f, true, nil
}

// FirstArrival implements Ops, giving the name back as it was.
func (o pgNamesOps) FirstArrival(ctx context.Context, source string, from, to time.Time) (File, bool, error) {
	f, ok, err := o.opsSQL.FirstArrival(ctx, source, from, to)
	return loadedFile(f), ok, err
}
