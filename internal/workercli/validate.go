package workercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/state"
)

func newValidateCommand(g *globals) *cobra.Command {
	var source, reportPath string
	cmd := &cobra.Command{
		Use:   "validate --config FILE --source NAME PATH",
		Short: "Dry run: parse, map and validate a local or remote file and print the report; no API call, nothing moved",
		Long: `validate checks a file as the source NAME would process it (its encoding, mapping
and integration): every row is parsed, mapped and validated, and a report in the
response report's columns is printed, with result "valid" or "invalid" per row.
It makes no API call, does not touch the ledger and moves nothing.

PATH is a local file, or a name in the source's store: "inbox/a.csv",
"failed/a.csv", or just "a.csv" (looked for in the inbox).

The report goes to stdout (or --report FILE); the summary to stderr (--json: a
JSON summary on stdout instead of the report). Exit 0 when every row is valid, 1
when some are not, 2 for a usage or configuration error or a missing file, 3
when the source cannot be reached.`,
		Example: `  ihr-worker validate --config worker.yaml --source erp-invoices ./invoices.csv
  ihr-worker validate --config worker.yaml --source erp-invoices inbox/invoices.csv --json`,
		Args: exactArgs("PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// No API call: the api block (and its credentials) may be
			// incomplete here, e.g. on a laptop without the secrets.
			if err := requireFlags(cmd, "source"); err != nil {
				return err
			}
			cfg, err := g.loadConfigWith(cmd.Flags(), config.Options{NoAPI: true})
			if err != nil {
				return err
			}
			s, err := g.source(cfg, source)
			if err != nil {
				return err
			}
			log, err := g.newLogger(false)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			ctx := cmd.Context()

			target := args[0]
			var store filestore.Store
			name := target
			where := target
			if fi, statErr := os.Stat(target); statErr == nil && !fi.IsDir() {
				abs, _ := filepath.Abs(target)
				store, err = local.New(filepath.Dir(abs), log)
				if err != nil {
					return exitErr(ExitUnreachable, err)
				}
				name, where = filepath.Base(abs), abs
			} else {
				store, err = openStore(ctx, s, log)
				if err != nil {
					return exitErr(classify(err), err)
				}
				name, err = locateForValidate(ctx, store, s.Folders.Inbox, target)
				if err != nil {
					store.Close()
					return err
				}
				where = storeLocation(s, name)
			}
			defer store.Close()

			var out io.Writer = io.Discard
			if !g.jsonOut {
				out = g.st.Out
			}
			var rf *os.File
			if reportPath != "" {
				if rf, err = os.Create(reportPath); err != nil {
					return usageErr("--report: %v", err)
				}
				defer rf.Close()
				if g.jsonOut {
					out = rf
				} else {
					out = io.MultiWriter(g.st.Out, rf)
				}
			}
			// An importer without API or ledger: Validate uses neither.
			imp := importer.New(importer.Config{}, nil, nil, log, nil)
			src, err := importerSource(cfg, s, store)
			if err != nil {
				return err
			}
			res, err := imp.Validate(ctx, src, store, name, out)
			if rf != nil {
				if cerr := rf.Close(); cerr != nil && err == nil {
					err = cerr
				}
			}
			if err != nil {
				var ce *mapping.ConfigError
				switch {
				case errors.As(err, &ce):
					return usageErr("invalid configuration: source %s: %v", s.Name, err)
				case errors.Is(err, filestore.ErrNotExist):
					return usageErr("%s: no such file", where)
				}
				return exitErr(classify(err), err)
			}
			// A file rejected as a whole has no valid row, whatever its
			// counts say (its one "invalid" line may be the header's).
			valid := max(0, res.Rows-res.Counts.Invalid)
			if res.Reason != "" && res.Status != state.Done {
				valid = 0
			}
			if g.jsonOut {
				if err := g.printJSON(map[string]any{
					"source": s.Name, "file": where, "rows": res.Rows, "valid": valid, "invalid": res.Counts.Invalid,
					"reason": res.Reason, "ok": res.Status == state.Done,
				}); err != nil {
					return err
				}
			} else {
				msg := fmt.Sprintf("%s: %d row(s), %d valid, %d invalid", where, res.Rows, valid, res.Counts.Invalid)
				if res.Reason != "" {
					msg = fmt.Sprintf("%s: rejected as a whole, no row checked: %s", where, res.Reason)
				}
				g.say("%s\n", msg)
			}
			if res.Status != state.Done {
				return silent{ExitRejected}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "the source whose encoding and mapping apply (required)")
	cmd.Flags().StringVar(&reportPath, "report", "", "also write the report to this local file")
	return cmd
}

// locateForValidate resolves a name in the store: a path as given, or a
// bare name, looked for in the inbox first.
func locateForValidate(ctx context.Context, store filestore.Store, inbox, target string) (string, error) {
	clean, err := filestore.CleanName(target)
	if err != nil || clean == "" {
		return "", usageErr("%s: not a local file, nor a name inside the source", target)
	}
	if !strings.Contains(clean, "/") {
		if _, err := store.Stat(ctx, path.Join(inbox, clean)); err == nil {
			return path.Join(inbox, clean), nil
		}
	}
	return clean, nil
}
