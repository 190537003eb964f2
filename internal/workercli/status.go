package workercli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// statusFlags are status's filters and page size.
type statusFlags struct {
	source       string
	results      []string
	since, until string
	limit        int
}

// statusWindow is the default span of status's totals: a year-old ledger
// is not read whole for a headline.
const statusWindow = 30 * 24 * time.Hour

func newStatusCommand(g *globals) *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status --config FILE [--source NAME] [--result R] [--since DATE] [--until DATE] [--limit N]",
		Short: "Show what the state store knows: files seen, processed, skipped and why, rows pending",
		Long: `status reads the worker's ledger (read-only, so it is safe while a worker runs)
and lists, per source, the files it has seen, most recently changed first: their
status, row counts by result, where each file is now, and why a file was skipped or
rejected. Rows pending are rows of unfinished files that have no recorded outcome yet.

It shows at most --limit files per source (default 50) and says when more exist.
The totals count the files changed in the last 30 days (or between --since and
--until), from each file's own counts; unfinished files are always all counted.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			if f.source != "" {
				if _, err := g.source(cfg, f.source); err != nil {
					return err
				}
			}
			q, err := f.query(time.Now())
			if err != nil {
				return err
			}
			return g.status(cmd.Context(), cfg, f.source, q)
		},
	}
	cmd.Flags().StringVar(&f.source, "source", "", "only this source")
	cmd.Flags().StringSliceVar(&f.results, "result", nil, "only files with this result: archived, failed, skipped or pending (repeatable, or comma-separated)")
	cmd.Flags().StringVar(&f.since, "since", "", "only files changed at or after this date or time (e.g. 2026-06-01); also the totals' window")
	cmd.Flags().StringVar(&f.until, "until", "", "only files changed before the end of this date, or before this time")
	cmd.Flags().IntVar(&f.limit, "limit", 50, "at most this many files per source, newest first")
	return cmd
}

// statusQuery is what status reads: the page's filter and the totals'
// window.
type statusQuery struct {
	page         state.FileQuery // Source is set per source
	since, until time.Time       // the totals' window
	defaultSpan  bool            // the window is statusWindow, not asked for
}

// pendingStatuses are the statuses status calls pending (statusResult).
var pendingStatuses = []state.Status{state.Seen, state.Claimed, state.Processing}

func (f statusFlags) query(now time.Time) (statusQuery, error) {
	var q statusQuery
	if f.limit <= 0 {
		return q, usageErr("--limit: %d is not a positive number", f.limit)
	}
	q.page.Limit = f.limit
	for _, r := range f.results {
		switch strings.TrimSpace(r) {
		case "archived":
			q.page.Statuses = append(q.page.Statuses, state.Done)
		case "failed":
			q.page.Statuses = append(q.page.Statuses, state.Failed)
		case "skipped":
			q.page.Statuses = append(q.page.Statuses, state.Skipped)
		case "pending":
			q.page.Statuses = append(q.page.Statuses, pendingStatuses...)
		default:
			return q, usageErr("--result: %q is not archived, failed, skipped or pending", r)
		}
	}
	var err error
	if f.since != "" {
		if q.since, err = parseTime(f.since); err != nil {
			return q, usageErr("--since: %v", err)
		}
	}
	if f.until != "" {
		if q.until, err = parseTime(f.until); err != nil {
			return q, usageErr("--until: %v", err)
		}
		if len(f.until) == len("2006-01-02") {
			q.until = q.until.AddDate(0, 0, 1) // the whole day named
		}
	}
	if !q.since.IsZero() && !q.until.IsZero() && !q.until.After(q.since) {
		return q, usageErr("--until must be after --since")
	}
	q.page.Since, q.page.Until = q.since, q.until
	if q.since.IsZero() && q.until.IsZero() {
		q.since, q.defaultSpan = now.Add(-statusWindow), true
	}
	return q, nil
}

// statusSource is one source in status --json: the --json vocabulary of
// run (jsonout.go). Summary's counts are the totals over the window;
// its files are the page.
type statusSource struct {
	Name    string      `json:"name"`
	Summary jsonSummary `json:"summary"`
	// Window is the span the totals count (files changed in it); every
	// unfinished file is counted whenever it changed.
	Window statusSpan `json:"window"`
	// More: files beyond Summary.Files match too (see --limit, --since).
	More bool `json:"more"`
	// Alerts are the source's open events: missed deliveries, outages,
	// rejected files not yet fixed (see serve).
	Alerts []statusAlert `json:"alerts"`
}

// statusSpan is a window; nil ends are unbounded.
type statusSpan struct {
	Since *time.Time `json:"since"`
	Until *time.Time `json:"until"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// statusResult is a ledger status in the --json vocabulary. A file being
// worked on or interrupted is pending: the next pass takes it up.
func statusResult(s state.Status) string {
	if s == state.Claimed {
		// A run's summary says "elsewhere" for a file another worker
		// took; in the ledger a claim is simply not finished yet.
		return "pending"
	}
	return fileResult(s)
}

// runCounts are the outcomes recorded so far in f's current run, from
// the row ledger: a file's own counts are written only when its run ends,
// so for an unfinished file these are the true ones. false when f has no
// run yet or the ledger cannot say.
func runCounts(ctx context.Context, led state.Ledger, f state.File) (state.Counts, bool) {
	if f.Run == 0 {
		return state.Counts{}, false
	}
	c, err := led.RowCounts(ctx, f.ID(), f.Run)
	return c, err == nil
}

// maxPendingFiles bounds how many unfinished files status reads the row
// counts of for its totals; a backlog larger than that is counted by its
// files, and its rows pending from those read.
const maxPendingFiles = 1000

func (g *globals) status(ctx context.Context, cfg *config.Config, only string, q statusQuery) error {
	led, err := openLedger(ctx, cfg.State, true)
	if errors.Is(err, fs.ErrNotExist) {
		// No ledger yet: the worker has never run. Not an error.
		led = nil
	} else if err != nil {
		return exitErr(ExitUnreachable, fmt.Errorf("state %s: %w", storeurl.Redact(cfg.State), err))
	}
	names := []string{}
	for _, s := range cfg.Sources {
		if only == "" || s.Name == only {
			names = append(names, s.Name)
		}
	}
	if led != nil {
		defer led.Close()
		if only == "" {
			// A source since removed from the configuration: still shown.
			known, err := state.Sources(ctx, led)
			if err != nil {
				return exitErr(ExitUnreachable, fmt.Errorf("state: %w", err))
			}
			for _, s := range known {
				if !slices.Contains(names, s) {
					names = append(names, s)
				}
			}
		}
	}
	var out []*statusSource
	for _, name := range names {
		ss := &statusSource{Name: name, Summary: jsonSummary{Files: []jsonFile{}},
			Window: statusSpan{Since: optTime(q.since), Until: optTime(q.until)}}
		out = append(out, ss)
		if led == nil {
			continue
		}
		if err := ss.read(ctx, led, q); err != nil {
			return exitErr(ExitUnreachable, fmt.Errorf("state: %w", err))
		}
	}
	if err := addAlerts(ctx, led, out); err != nil {
		return exitErr(ExitUnreachable, err)
	}
	if g.jsonOut {
		return g.printJSON(map[string]any{"state": storeurl.Redact(cfg.State), "sources": out})
	}
	if led == nil {
		g.say("No state yet at %s: the worker has not run.\n", cfg.State)
	}
	for _, ss := range out {
		sum := ss.Summary
		total := sum.Archived + sum.Failed + sum.Skipped + sum.Pending
		g.say("%s: %d file(s) seen: %d archived, %d failed, %d skipped, %d pending; rows: %d created, %d already recorded, %d invalid, %d failed, %d not yet recorded (%s)\n",
			ss.Name, total, sum.Archived, sum.Failed, sum.Skipped, sum.Pending,
			sum.Rows.Created, sum.Rows.AlreadyRecorded, sum.Rows.Invalid, sum.Rows.Failed, sum.RowsPending, q.describe())
		for _, a := range ss.Alerts {
			g.say("  ! %s since %s: %s\n", a.Kind, a.Since.UTC().Format(time.RFC3339), oneLine(a.Detail))
		}
		if len(sum.Files) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(g.st.Err, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FILE\tRESULT\tROWS\tCREATED\tALREADY\tINVALID\tFAILED\tPENDING\tLOCATION\tWHY")
		for _, f := range sum.Files {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", importer.SafeName(f.Name), f.Result, f.Rows,
				f.Counts.Created, f.Counts.AlreadyRecorded, f.Counts.Invalid, f.Counts.Failed, f.RowsPending,
				importer.SafeName(f.Location), oneLine(importer.SafeText(f.Reason)))
		}
		tw.Flush()
		if ss.More {
			g.say("  showing the newest %d file(s) of more; use --limit, --since/--until or --result to see others\n", len(sum.Files))
		}
	}
	return nil
}

// describe says what the totals count.
func (q statusQuery) describe() string {
	const day = "2006-01-02"
	switch {
	case q.defaultSpan:
		return "counts over files changed in the last 30 days, and every unfinished file"
	case q.until.IsZero():
		return "counts over files changed since " + q.since.Format(day) + ", and every unfinished file"
	case q.since.IsZero():
		return "counts over files changed before " + q.until.Format(day) + ", and every unfinished file"
	}
	return "counts over files changed from " + q.since.Format(day) + " to before " + q.until.Format(day) + ", and every unfinished file"
}

// jsonFileOf is a ledger file in the --json vocabulary, with the counts
// an unfinished run has recorded so far.
func jsonFileOf(ctx context.Context, led state.Ledger, f state.File) jsonFile {
	jf := jsonFile{
		Name: f.Name, Result: statusResult(f.Status), Reason: f.SkipReason, Rows: f.Rows, Counts: f.Counts,
		Location: f.Location, Report: f.ReportPath, FirstSeen: optTime(f.FirstSeen), FinishedAt: optTime(f.FinishedAt),
	}
	if jf.Result == "pending" {
		// The file's own counts are written when its run ends; an
		// interrupted run's rows are in the row ledger already.
		if c, ok := runCounts(ctx, led, f); ok {
			jf.Counts = c
		}
		jf.RowsPending = max(0, f.Rows-jf.Counts.Total())
	}
	return jf
}

// read fills the source's page and totals: the page through the time
// index, the finished files' totals over the window from their own
// counts, and every unfinished file (few) from the row ledger.
func (ss *statusSource) read(ctx context.Context, led state.Ledger, q statusQuery) error {
	page := q.page
	page.Source = ss.Name
	files, more, err := state.FilePage(ctx, led, page)
	if err != nil {
		return err
	}
	ss.More = more
	for _, f := range files {
		ss.Summary.Files = append(ss.Summary.Files, jsonFileOf(ctx, led, f))
	}
	totals, err := state.FileTotals(ctx, led, state.FileQuery{Source: ss.Name, Since: q.since, Until: q.until,
		Statuses: []state.Status{state.Done, state.Failed, state.Skipped}})
	if err != nil {
		return err
	}
	sum := &ss.Summary
	for st, t := range totals {
		switch st {
		case state.Done:
			sum.Archived += int(t.Files)
		case state.Failed:
			sum.Failed += int(t.Files)
		case state.Skipped:
			sum.Skipped += int(t.Files)
		}
		sum.Rows.Plus(t.Counts)
	}
	unfinished, _, err := state.FilePage(ctx, led, state.FileQuery{Source: ss.Name, Statuses: pendingStatuses, Limit: maxPendingFiles})
	if err != nil {
		return err
	}
	pend, err := state.FileTotals(ctx, led, state.FileQuery{Source: ss.Name, Statuses: pendingStatuses})
	if err != nil {
		return err
	}
	for _, t := range pend {
		sum.Pending += int(t.Files)
	}
	for _, f := range unfinished {
		jf := jsonFileOf(ctx, led, f)
		sum.Rows.Plus(jf.Counts)
		sum.RowsPending += jf.RowsPending
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// openLedger opens the configured ledger. Read-only opens of SQLite take no
// lock, so status works next to a running worker; a missing SQLite file
// read-only reports fs.ErrNotExist.
func openLedger(ctx context.Context, dsn string, readOnly bool) (state.Ledger, error) {
	if p, ok := sqlitePath(dsn); ok {
		if readOnly {
			if _, err := os.Stat(p); err != nil {
				return nil, err
			}
		}
		l, err := state.OpenSQLite(ctx, p, state.SQLiteOptions{ReadOnly: readOnly})
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	return state.Open(ctx, dsn)
}

func sqlitePath(dsn string) (string, bool) {
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		return strings.TrimPrefix(dsn, "sqlite://"), true
	case strings.HasPrefix(dsn, "sqlite:"):
		return strings.TrimPrefix(dsn, "sqlite:"), true
	}
	return "", false
}
