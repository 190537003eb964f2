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

// statusSource is one source in status --json.
type statusSource struct {
	Name        string       `json:"name"`
	Files       int          `json:"files"`
	Done        int          `json:"done"`
	Failed      int          `json:"failed"`
	Skipped     int          `json:"skipped"`
	InProgress  int          `json:"in_progress"`
	RowsPending int64        `json:"rows_pending"`
	Rows        state.Counts `json:"rows"`
	FileList    []statusFile `json:"file_list"`
	// Alerts are the source's open events: missed deliveries, outages,
	// rejected files not yet fixed (see serve).
	Alerts []statusAlert `json:"alerts"`
}

type statusFile struct {
	Name        string       `json:"name"`
	Status      string       `json:"status"`
	Reason      string       `json:"reason,omitempty"`
	Rows        int64        `json:"rows"`
	Counts      state.Counts `json:"counts"`
	RowsPending int64        `json:"rows_pending"`
	Location    string       `json:"location,omitempty"`
	Report      string       `json:"report,omitempty"`
	FirstSeen   *time.Time   `json:"first_seen,omitempty"`
	FinishedAt  *time.Time   `json:"finished_at,omitempty"`
	Run         int64        `json:"run"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
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
		ss := &statusSource{Name: s.Name, FileList: []statusFile{}}
		out = append(out, ss)
		bySource[s.Name] = ss
	}
	for _, f := range files {
		ss := bySource[f.Source]
		if ss == nil {
			// A source since removed from the configuration: still shown.
			ss = &statusSource{Name: f.Source, FileList: []statusFile{}}
			out = append(out, ss)
			bySource[f.Source] = ss
		}
		sf := statusFile{
			Name: f.Name, Status: string(f.Status), Reason: f.SkipReason, Rows: f.Rows, Counts: f.Counts,
			Location: f.Location, Report: f.ReportPath, FirstSeen: optTime(f.FirstSeen), FinishedAt: optTime(f.FinishedAt), Run: f.Run,
		}
		ss.Files++
		switch f.Status {
		case state.Done:
			ss.Done++
		case state.Failed:
			ss.Failed++
		case state.Skipped:
			ss.Skipped++
		default:
			ss.InProgress++
			if p := f.Rows - f.Counts.Total(); p > 0 {
				sf.RowsPending = p
			}
		}
		ss.RowsPending += sf.RowsPending
		ss.Rows.Created += f.Counts.Created
		ss.Rows.AlreadyRecorded += f.Counts.AlreadyRecorded
		ss.Rows.Invalid += f.Counts.Invalid
		ss.Rows.Failed += f.Counts.Failed
		ss.FileList = append(ss.FileList, sf)
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
		g.say("%s: %d file(s) seen — %d done, %d failed, %d skipped, %d in progress; rows: %d created, %d already recorded, %d invalid, %d failed; %d pending\n",
			ss.Name, ss.Files, ss.Done, ss.Failed, ss.Skipped, ss.InProgress,
			ss.Rows.Created, ss.Rows.AlreadyRecorded, ss.Rows.Invalid, ss.Rows.Failed, ss.RowsPending)
		for _, a := range ss.Alerts {
			g.say("  ! %s since %s: %s\n", a.Kind, a.Since.UTC().Format(time.RFC3339), oneLine(a.Detail))
		}
		if len(ss.FileList) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(g.st.Err, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FILE\tSTATUS\tROWS\tCREATED\tALREADY\tINVALID\tFAILED\tPENDING\tWHERE\tWHY")
		for _, f := range ss.FileList {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", f.Name, f.Status, f.Rows,
				f.Counts.Created, f.Counts.AlreadyRecorded, f.Counts.Invalid, f.Counts.Failed, f.RowsPending,
				f.Location, oneLine(f.Reason))
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
