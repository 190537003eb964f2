package workercli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

func newRunCommand(g *globals) *cobra.Command {
	var source string
	var noProgress bool
	cmd := &cobra.Command{
		Use:   "run --config FILE [--source NAME]",
		Short: "One pass: process every ready file in every (or one) source's inbox",
		Long: `run makes one pass over the inbox of every source (or only --source NAME):
each ready file is parsed, its rows are posted to the API, a response report is
written to reports/ and the file is moved to archive/ (every row recorded) or
failed/. It prints a summary on stderr (--json: on stdout) and exits with
0 (all recorded), 1 (rows or files rejected), 2 (configuration) or 3 (a source
or the API unreachable, or interrupted: the next run resumes where this one
stopped).`,
		Example: `  ihr-worker run --config /etc/ihr/worker.yaml
  ihr-worker run --config worker.yaml --source erp-invoices --json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			var sources []*config.Source
			if source != "" {
				s, err := g.source(cfg, source)
				if err != nil {
					return err
				}
				sources = append(sources, s)
			} else {
				for i := range cfg.Sources {
					sources = append(sources, &cfg.Sources[i])
				}
			}
			w, done, err := g.runWorker(cmd.Context(), cfg, noProgress)
			if err != nil {
				return err
			}
			defer done()
			return g.finish(w.runOnce(cmd.Context(), sources))
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "only this source")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "no progress bar, even on a terminal")
	return cmd
}

// sourceRun is one source's pass in a run summary.
type sourceRun struct {
	Name     string
	URL      string
	Summary  importer.Summary
	Error    string
	Duration float64
	err      error
	src      *config.Source
}

// MarshalJSON writes the pass in the --json vocabulary (jsonout.go).
func (s *sourceRun) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name     string      `json:"name"`
		URL      string      `json:"url"`
		Summary  jsonSummary `json:"summary"`
		Error    string      `json:"error,omitempty"`
		Duration float64     `json:"duration_seconds"`
	}{s.Name, s.URL, runSummaryJSON(s.Summary), s.Error, s.Duration})
}

// runResult is the whole run's summary (--json prints it).
type runResult struct {
	Sources  []*sourceRun `json:"sources"`
	ExitCode int          `json:"exit_code"`
}

// runOnce makes one pass over each source in turn. A source that cannot be
// reached does not stop the others; an unreachable API does, since every
// source needs it.
func (w *worker) runOnce(ctx context.Context, sources []*config.Source) *runResult {
	res := &runResult{}
	for _, s := range sources {
		if ctx.Err() != nil {
			break
		}
		sr := w.pass(ctx, s)
		res.Sources = append(res.Sources, sr)
		if errors.Is(sr.err, importer.ErrAPIUnavailable) && !errors.As(sr.err, new(*missingIntegrationError)) {
			break
		}
	}
	res.ExitCode = res.exitCode(ctx)
	return res
}

// pass runs one source once: open its store, process, close.
func (w *worker) pass(ctx context.Context, s *config.Source) *sourceRun {
	start := time.Now()
	sr := &sourceRun{Name: s.Name, URL: s.RedactedURL(), src: s}
	defer func() { sr.Duration = time.Since(start).Seconds() }()
	log := w.log.With(zap.String("source", s.Name))
	store, err := w.store(ctx, s)
	if err != nil {
		sr.err, sr.Error = err, err.Error()
		log.Error("source unavailable", zap.Error(err))
		return sr
	}
	if err := w.preflight(ctx, s, store); err != nil {
		sr.err, sr.Error = err, err.Error()
		sr.Summary.Files = []importer.FileResult{}
		return sr
	}
	src, err := w.source(s, store)
	if err != nil {
		sr.err, sr.Error = err, err.Error()
		sr.Summary.Files = []importer.FileResult{}
		log.Error("source keys", zap.Error(err))
		return sr
	}
	sum, err := w.imp.RunSource(ctx, src)
	w.countInterrupted(ctx, s.Name, &sum)
	sr.Summary = sum
	if sr.Summary.Files == nil {
		sr.Summary.Files = []importer.FileResult{}
	}
	if err != nil {
		sr.err, sr.Error = err, err.Error()
	}
	return sr
}

// countInterrupted fills in the row counts of files whose run stopped
// part-way (Ctrl-C, an outage): the pipeline reports counts when a file
// ends, but the rows recorded before the stop are in the ledger, and the
// summary should say so rather than "0 created".
func (w *worker) countInterrupted(ctx context.Context, source string, sum *importer.Summary) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for i := range sum.Files {
		f := &sum.Files[i]
		if fileResult(f.Status) != "pending" || f.Counts.Total() > 0 {
			continue
		}
		lf, err := w.ledger.File(ctx, state.FileID{Source: source, Name: f.Name})
		if err != nil {
			continue
		}
		c, ok := runCounts(ctx, w.ledger, lf)
		if !ok {
			continue
		}
		f.Counts = c
		if f.Rows == 0 {
			f.Rows = lf.Rows
		}
		sum.Rows.Created += c.Created
		sum.Rows.AlreadyRecorded += c.AlreadyRecorded
		sum.Rows.Invalid += c.Invalid
		sum.Rows.Failed += c.Failed
	}
}

func (r *runResult) exitCode(ctx context.Context) int {
	code := ExitOK
	for _, s := range r.Sources {
		if s.err != nil {
			code = max(code, classify(s.err))
			continue
		}
		if s.Summary.Rejected > 0 || s.Summary.Skipped > 0 || s.Summary.Rows.Invalid > 0 || s.Summary.Rows.Failed > 0 {
			code = max(code, ExitRejected)
		}
		if s.Summary.Pending > 0 {
			// Claimed by another worker or interrupted: not processed now.
			code = max(code, ExitUnreachable)
		}
	}
	if ctx.Err() != nil {
		code = ExitUnreachable
	}
	return code
}

// finish prints a run's summary and ends the command with its exit code.
func (g *globals) finish(r *runResult) error {
	if g.jsonOut {
		if err := g.printJSON(r); err != nil {
			return err
		}
	} else {
		for _, s := range r.Sources {
			g.printSourceRun(s)
		}
	}
	if r.ExitCode != ExitOK {
		return silent{r.ExitCode}
	}
	return nil
}

func (g *globals) printSourceRun(s *sourceRun) {
	sum := s.Summary
	if s.err != nil && len(sum.Files) == 0 {
		g.say("%s\n", sourceLine(s.Name, errText(s.err)))
		return
	}
	elsewhere := ""
	if sum.Elsewhere > 0 {
		elsewhere = fmt.Sprintf(", %d held by another worker", sum.Elsewhere)
	}
	g.say("%s: %d file(s): %d archived, %d failed, %d skipped, %d pending%s; rows: %d created, %d already recorded, %d invalid, %d failed\n",
		s.Name, len(sum.Files), sum.Archived, sum.Rejected, sum.Skipped, sum.Pending, elsewhere,
		sum.Rows.Created, sum.Rows.AlreadyRecorded, sum.Rows.Invalid, sum.Rows.Failed)
	for _, f := range sum.Files {
		line := fmt.Sprintf("  %-8s %s (%d rows", fileResult(f.Status), importer.SafeName(f.Name), f.Rows)
		if f.Counts.Invalid+f.Counts.Failed > 0 {
			line += fmt.Sprintf(", %d invalid, %d failed", f.Counts.Invalid, f.Counts.Failed)
		}
		line += ")"
		if f.Reason != "" {
			line += ": " + oneLine(importer.SafeText(f.Reason))
		}
		if f.Err != nil && f.Status != state.Done {
			line += ": " + errText(f.Err)
		}
		g.say("%s\n", line)
		if f.Report != "" {
			g.say("           report: %s\n", importer.SafeName(storeLocation(s.src, f.Report)))
		}
	}
	if s.err != nil {
		for _, f := range sum.Files {
			if f.Err != nil && errText(f.Err) == errText(s.err) {
				return // already said on the file's line
			}
		}
		g.say("%s\n", sourceLine(s.Name, errText(s.err)))
	}
}

// sourceLine prefixes msg with the source's name unless it names it.
func sourceLine(name, msg string) string {
	if strings.HasPrefix(msg, "source "+name+":") {
		return msg
	}
	return name + ": " + msg
}

// errText is an error for the human summary. An interruption (Ctrl-C,
// SIGTERM) is said once, in words, instead of Go's "context canceled".
// File names in it are printed safely (importer.SafeText).
func errText(err error) string {
	if errors.Is(err, context.Canceled) {
		return "interrupted; the next run resumes where this one stopped"
	}
	var mi *missingIntegrationError
	if errors.As(err, &mi) {
		return importer.SafeText(mi.Error())
	}
	return importer.SafeText(err.Error())
}
