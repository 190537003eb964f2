package state

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// A ledger a year old holds tens of thousands of files and millions of
// row outcomes. What reads it on every pass or every status must cost
// O(what it shows), never O(history): the functions here read bounded
// pages through the indexes of migration 4, and PruneOutcomes lets an
// operator drop old per-row history while keeping each file's identity.
// They take any Ledger this package opened (as OpsOf does), so the
// Ledger contract itself stays as it is.

// FileQuery selects a page of one source's files, newest change first.
type FileQuery struct {
	Source   string   // "": every source's (no index serves that order)
	Statuses []Status // any of these; none: every status
	// Since and Until bound File.UpdatedAt (the file's last change):
	// Since <= UpdatedAt < Until; zero means unbounded.
	Since, Until time.Time
	Limit        int // at most this many (<= 0: 50)
}

// StatusTotal is what a source's files of one status add up to.
type StatusTotal struct {
	Files  int64
	Rows   int64
	Counts Counts
}

// sqlLedger is the shared ledger behind l, and whether its names are
// stored escaped (pgNames).
func sqlLedger(l Ledger) (*ledger, bool, error) {
	switch x := l.(type) {
	case *SQLite:
		return &x.ledger, false, nil
	case *Postgres:
		return &x.ledger, false, nil
	case pgNames:
		return &x.ledger, true, nil
	}
	return nil, false, fmt.Errorf("state: %T keeps no history tables", l)
}

func (q FileQuery) where() (string, []any) {
	// The condition on source is left out rather than written as
	// (? = '' OR source = ?), which no index can serve.
	w, args := `1 = 1`, []any{}
	if q.Source != "" {
		w, args = `source = ?`, []any{q.Source}
	}
	if len(q.Statuses) > 0 {
		w += ` AND status IN (?` + strings.Repeat(",?", len(q.Statuses)-1) + `)`
		for _, s := range q.Statuses {
			args = append(args, string(s))
		}
	}
	if !q.Since.IsZero() {
		w += ` AND updated_at >= ?`
		args = append(args, ns(q.Since))
	}
	if !q.Until.IsZero() {
		w += ` AND updated_at < ?`
		args = append(args, ns(q.Until))
	}
	return w, args
}

// FilePage lists the files q selects, most recently changed first, and
// reports whether more match than the page holds. It reads at most
// Limit+1 rows through the (source, updated_at) or (source, status,
// updated_at) index.
func FilePage(ctx context.Context, l Ledger, q FileQuery) (files []File, more bool, err error) {
	sl, esc, err := sqlLedger(l)
	if err != nil {
		return nil, false, err
	}
	out, more, err := sl.filePage(ctx, q)
	if err != nil {
		return nil, false, err
	}
	if esc {
		for i := range out {
			out[i] = loadedFile(out[i])
		}
	}
	return out, more, nil
}

// filePage is FilePage with names as stored (Ops.RecentFiles reads it too).
func (l *ledger) filePage(ctx context.Context, q FileQuery) ([]File, bool, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	w, args := q.where()
	out, err := all(ctx, l, l.db, scanFile, `SELECT `+fileCols+` FROM {t}files WHERE `+w+`
		ORDER BY updated_at DESC, name{bytes} LIMIT ?`, append(args, q.Limit+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("state: files of %s: %w", q.Source, err)
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

// FileTotals adds up the files q selects (Limit aside) by status, from
// the files' own counts: no row outcome is read, and a bounded window or
// a status reads only its part of an index.
func FileTotals(ctx context.Context, l Ledger, q FileQuery) (map[Status]StatusTotal, error) {
	sl, _, err := sqlLedger(l)
	if err != nil {
		return nil, err
	}
	source := q.Source
	w, args := q.where()
	out := map[Status]StatusTotal{}
	err = sl.each(ctx, sl.db, `SELECT status, COUNT(*), COALESCE(SUM(rows), 0), COALESCE(SUM(n_created), 0),
		COALESCE(SUM(n_already), 0), COALESCE(SUM(n_invalid), 0), COALESCE(SUM(n_failed), 0)
		FROM {t}files WHERE `+w+` GROUP BY status`, args, func(r scanner) error {
		var s string
		var t StatusTotal
		err := r.Scan(&s, &t.Files, &t.Rows, &t.Counts.Created, &t.Counts.AlreadyRecorded, &t.Counts.Invalid, &t.Counts.Failed)
		out[Status(s)] = t
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("state: totals of %s: %w", source, err)
	}
	return out, nil
}

// Sources lists the sources the ledger has files of, by name: one index
// probe per source (a loose scan), not a read of every file.
func Sources(ctx context.Context, l Ledger) ([]string, error) {
	sl, _, err := sqlLedger(l)
	if err != nil {
		return nil, err
	}
	out, err := all(ctx, sl, sl.db, func(r scanner) (string, error) {
		var s string
		return s, r.Scan(&s)
	}, `WITH RECURSIVE s(source) AS (
			SELECT MIN(source) FROM {t}files
			UNION ALL
			SELECT (SELECT MIN(source) FROM {t}files WHERE source > s.source) FROM s WHERE s.source IS NOT NULL
		) SELECT source FROM s WHERE source IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("state: sources: %w", err)
	}
	return out, nil
}

// Unsettled lists the source's files whose planned move a crash may have
// interrupted (File.Destination set): what a pass reconciles first. It
// reads the partial index of those files only; a ledger this package did
// not open is filtered from Files.
func Unsettled(ctx context.Context, l Ledger, source string) ([]File, error) {
	sl, esc, err := sqlLedger(l)
	if err != nil {
		all, err := l.Files(ctx, source)
		var out []File
		for _, f := range all {
			if f.Destination != "" {
				out = append(out, f)
			}
		}
		return out, err
	}
	out, err := all(ctx, sl, sl.db, scanFile, `SELECT `+fileCols+` FROM {t}files{unsettled}
		WHERE source = ? AND destination <> '' ORDER BY name{bytes}`, source)
	if err != nil {
		return nil, fmt.Errorf("state: unsettled files of %s: %w", source, err)
	}
	if esc {
		for i := range out {
			out[i] = loadedFile(out[i])
		}
	}
	return out, err
}

// Pruned is what PruneOutcomes deleted (or, in a dry run, would delete).
type Pruned struct {
	Files    int64 // files whose row outcomes went
	Outcomes int64 // row outcomes deleted
	Prints   int64 // replaced contents (Recorded's memory) deleted
}

// pruneBatch files share one transaction: one commit per batch, short
// enough that a worker's claim waiting on a file's row lock waits little.
const pruneBatch = 100

// prunable: a file prune may touch. Only finished files (an unfinished
// run resumes from its outcomes), held by no live claim, last changed
// before the cutoff, whose last run's outcomes are still there.
const prunable = `status IN ('done', 'failed', 'skipped') AND updated_at < ? AND pruned_run < run
	AND (owner = '' OR lease_until <= {now})`

// PruneOutcomes deletes the row outcomes (and the replaced contents kept
// for Recorded) of every file last changed before before, and marks each
// such file pruned. The file's own entry stays: its name, size, mtime,
// SHA-256, status, counts, report and location. With dryRun it only
// counts. Each file is re-checked under its row lock when pruned, so a
// worker that claims it meanwhile keeps every outcome.
func PruneOutcomes(ctx context.Context, l Ledger, before time.Time, dryRun bool) (Pruned, error) {
	sl, _, err := sqlLedger(l)
	if err != nil {
		return Pruned{}, err
	}
	var p Pruned
	if dryRun {
		err := sl.row(ctx, sl.db, `SELECT COUNT(*), COALESCE(SUM((SELECT COUNT(*) FROM {t}row_outcomes o
				WHERE o.source = f.source AND o.filename = f.name)), 0),
			COALESCE(SUM((SELECT COUNT(*) FROM {t}row_prints r WHERE r.source = f.source AND r.filename = f.name)), 0)
			FROM {t}files f WHERE `+prunable, ns(before)).Scan(&p.Files, &p.Outcomes, &p.Prints)
		if err != nil {
			return Pruned{}, fmt.Errorf("state: prune: %w", err)
		}
		return p, nil
	}
	ids, err := all(ctx, sl, sl.db, func(r scanner) (FileID, error) {
		var id FileID
		return id, r.Scan(&id.Source, &id.Name)
	}, `SELECT source, name FROM {t}files WHERE `+prunable+` ORDER BY updated_at`, ns(before))
	if err != nil {
		return Pruned{}, fmt.Errorf("state: prune: %w", err)
	}
	for len(ids) > 0 {
		n := min(len(ids), pruneBatch)
		batch := ids[:n]
		ids = ids[n:]
		var b Pruned
		err := sl.db.tx(ctx, func(c conn) error {
			b = Pruned{}
			for _, id := range batch {
				// The update takes the row lock and re-checks the file in
				// one statement: a claim taken since the listing wins.
				n, err := sl.exec(ctx, c, `UPDATE {t}files SET pruned_at = {now}, pruned_run = run WHERE source = ? AND name = ? AND `+prunable,
					id.Source, id.Name, ns(before))
				if err != nil || n == 0 {
					if err != nil {
						return fmt.Errorf("%s: %w", id, err)
					}
					continue
				}
				o, err := sl.exec(ctx, c, `DELETE FROM {t}row_outcomes WHERE source = ? AND filename = ?`, id.Source, id.Name)
				if err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				r, err := sl.exec(ctx, c, `DELETE FROM {t}row_prints WHERE source = ? AND filename = ?`, id.Source, id.Name)
				if err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				b.Files, b.Outcomes, b.Prints = b.Files+1, b.Outcomes+o, b.Prints+r
			}
			return nil
		})
		if err != nil {
			return p, fmt.Errorf("state: prune: %w", err)
		}
		p.Files, p.Outcomes, p.Prints = p.Files+b.Files, p.Outcomes+b.Outcomes, p.Prints+b.Prints
	}
	return p, nil
}

// PrunedAt is when the row outcomes of the file's current run were
// pruned; zero when they were not, or the file has run again since.
func PrunedAt(ctx context.Context, l Ledger, id FileID) (time.Time, error) {
	sl, esc, err := sqlLedger(l)
	if err != nil {
		return time.Time{}, nil
	}
	if esc {
		id = storedID(id)
	}
	var at int64
	err = sl.row(ctx, sl.db, `SELECT CASE WHEN pruned_run = run AND run > 0 THEN pruned_at ELSE 0 END FROM {t}files
		WHERE source = ? AND name = ?`, id.Source, id.Name).Scan(&at)
	if isNoRows(err) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("state: file %s: %w", id, err)
	}
	return fromNS(at), nil
}
