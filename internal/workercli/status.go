package workercli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

func newStatusCommand(g *globals) *cobra.Command {
	var source string
	cmd := &cobra.Command{
		Use:   "status --config FILE [--source NAME]",
		Short: "Show what the state store knows: files seen, processed, skipped and why, rows pending",
		Long: `status reads the worker's ledger (read-only, so it is safe while a worker runs)
and lists every file it has seen per source: its status, row counts by result,
where the file is now, and why a file was skipped or rejected. Rows pending are
rows of unfinished files that have no recorded outcome yet.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			if source != "" {
				if _, err := g.source(cfg, source); err != nil {
					return err
				}
			}
			return g.status(cmd.Context(), cfg, source)
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "only this source")
	return cmd
}

// statusSource is one source in status --json: the --json vocabulary of
// run (jsonout.go), over every file the ledger has seen.
type statusSource struct {
	Name    string      `json:"name"`
	Summary jsonSummary `json:"summary"`
	// Alerts are the source's open events: missed deliveries, outages,
	// rejected files not yet fixed (see serve).
	Alerts []statusAlert `json:"alerts"`
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

func (g *globals) status(ctx context.Context, cfg *config.Config, only string) error {
	led, err := openLedger(ctx, cfg.State, true)
	if errors.Is(err, fs.ErrNotExist) {
		// No ledger yet: the worker has never run. Not an error.
		led = nil
	} else if err != nil {
		return exitErr(ExitUnreachable, fmt.Errorf("state %s: %w", storeurl.Redact(cfg.State), err))
	}
	var files []state.File
	if led != nil {
		defer led.Close()
		files, err = led.Files(ctx, only)
		if err != nil {
			return exitErr(ExitUnreachable, fmt.Errorf("state: %w", err))
		}
	}
	var out []*statusSource
	bySource := map[string]*statusSource{}
	for _, s := range cfg.Sources {
		if only != "" && s.Name != only {
			continue
		}
		ss := &statusSource{Name: s.Name, Summary: jsonSummary{Files: []jsonFile{}}}
		out = append(out, ss)
		bySource[s.Name] = ss
	}
	for _, f := range files {
		ss := bySource[f.Source]
		if ss == nil {
			// A source since removed from the configuration: still shown.
			ss = &statusSource{Name: f.Source, Summary: jsonSummary{Files: []jsonFile{}}}
			out = append(out, ss)
			bySource[f.Source] = ss
		}
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
		ss.Summary.add(jf)
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
		g.say("%s: %d file(s) seen: %d archived, %d failed, %d skipped, %d pending; rows: %d created, %d already recorded, %d invalid, %d failed, %d not yet recorded\n",
			ss.Name, len(sum.Files), sum.Archived, sum.Failed, sum.Skipped, sum.Pending,
			sum.Rows.Created, sum.Rows.AlreadyRecorded, sum.Rows.Invalid, sum.Rows.Failed, sum.RowsPending)
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
