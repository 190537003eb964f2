package workercli

import (
	"context"
	"errors"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

func newReprocessCommand(g *globals) *cobra.Command {
	var source string
	cmd := &cobra.Command{
		Use:   "reprocess --config FILE --source NAME FILE",
		Short: "Process one named file again (from inbox, archive or failed); rows already recorded are not posted twice",
		Long: `reprocess runs the pipeline over one file again, wherever it is now: FILE is its
original name (found through the ledger, then in inbox/, failed/ and archive/) or
a path inside the source such as failed/invoices.csv. Rows whose record already
exists are reported already-recorded and not posted again; the others are posted.
The report is rewritten and the file ends in archive/ or failed/ as usual.

Exit codes: 0 every row recorded, 1 rows still rejected, 2 no such file or a
configuration error, 3 the source or the API unreachable.`,
		Example: `  ihr-worker reprocess --config worker.yaml --source erp-invoices invoices-2024-06-01.csv`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, s, err := g.loadSource(cmd, source)
			if err != nil {
				return err
			}
			w, done, err := g.runWorker(cmd.Context(), cfg, false)
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			sr := &sourceRun{Name: s.Name, URL: s.RedactedURL(), src: s}
			store, err := w.store(ctx, s)
			if err != nil {
				return exitErr(classify(err), err)
			}
			if err := checkRoot(ctx, s, store); err != nil {
				return exitErr(classify(err), err)
			}
			notFound := func() error {
				return usageErr("%s: %s is not in %s, %s or %s of source %s", args[0], args[0], s.Folders.Inbox, s.Folders.Failed, s.Folders.Archive, s.Name)
			}
			// A name that is nowhere is a usage error, whatever the API's
			// state; the pipeline's own lookup below is the authority.
			if !w.mayExist(ctx, s, store, args[0]) {
				return notFound()
			}
			if err := checkIntegration(ctx, w.api, w.cfg, s); err != nil {
				return exitErr(classify(err), err)
			}
			src, err := w.source(s, store)
			if err != nil {
				return err
			}
			fr, err := w.imp.Reprocess(ctx, src, args[0])
			if errors.Is(err, importer.ErrNotFound) {
				return notFound()
			}
			sr.Summary.Files = []importer.FileResult{}
			if fr.Name != "" {
				sr.Summary = summaryOf(fr)
			}
			if err != nil {
				sr.err, sr.Error = err, err.Error()
			}
			res := &runResult{Sources: []*sourceRun{sr}}
			res.ExitCode = res.exitCode(ctx)
			return g.finish(res)
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "the source the file belongs to (required)")
	return cmd
}

// summaryOf makes a one-file Summary, so reprocess reports like run.
func summaryOf(fr importer.FileResult) importer.Summary {
	var s importer.Summary
	s.Files = []importer.FileResult{fr}
	switch fileResult(fr.Status) {
	case "archived":
		s.Archived = 1
	case "failed":
		s.Rejected = 1
	case "skipped":
		s.Skipped = 1
	default:
		s.Pending = 1
	}
	s.Rows = fr.Counts
	return s
}

// mayExist reports whether reprocess could find name: as a path in the
// store, in the inbox, failed or archive folder, or where the ledger last
// put it. A store error answers true, so that the real lookup reports it.
func (w *worker) mayExist(ctx context.Context, s *config.Source, store filestore.Store, name string) bool {
	clean, err := filestore.CleanName(name)
	if err != nil || clean == "" {
		return false
	}
	var cands []string
	if strings.Contains(clean, "/") {
		cands = []string{clean}
	} else {
		cands = []string{path.Join(s.Folders.Inbox, clean), path.Join(s.Folders.Failed, clean), path.Join(s.Folders.Archive, clean)}
		if f, err := w.ledger.File(ctx, state.FileID{Source: s.Name, Name: clean}); err == nil && f.Location != "" {
			cands = append(cands, f.Location)
		}
	}
	for _, c := range cands {
		if _, err := store.Stat(ctx, c); err == nil || !errors.Is(err, filestore.ErrNotExist) {
			return true
		}
	}
	return false
}
