package workercli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/state"
)

// newLedgerCommand groups the ledger's maintenance; its one job so far is
// pruning old row outcomes.
func newLedgerCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Maintain the worker's ledger (prune old row outcomes)",
		Args:  exactArgs(),
		RunE:  func(cmd *cobra.Command, _ []string) error { return usageErr("ledger: name a subcommand: prune") },
	}
	cmd.AddCommand(newPruneCommand(g))
	return cmd
}

func newPruneCommand(g *globals) *cobra.Command {
	var olderThan string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune --config FILE --older-than DURATION [--dry-run]",
		Short: "Delete the per-row outcomes of files last changed longer ago than DURATION",
		Long: `prune deletes the per-row outcomes of finished files (archived, failed or skipped)
that nothing has changed for longer than --older-than (e.g. 400d or 9000h), and keeps
every file's own entry: name, size, SHA-256, result, counts, report and location.

What it can no longer know: which rows a pruned file recorded. A pruned file dropped
again under the same name, or reprocessed, has its rows posted again as new records
(the API does not reject a repeated external-id). A file with another name and the
same content is still skipped as a duplicate, and every file changed more recently
keeps its outcomes, so its re-drop is still recognised row by row.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			age, err := parseAge(olderThan)
			if err != nil {
				return usageErr("--older-than: %v", err)
			}
			cfg, err := g.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			led, err := openLedger(ctx, cfg.State, false)
			if errors.Is(err, state.ErrLocked) {
				return exitErr(ExitUnreachable, fmt.Errorf("state %s: %w: stop the worker (run or serve) first; a SQLite ledger has one writer", storeurl.Redact(cfg.State), err))
			}
			if err != nil {
				return exitErr(ExitUnreachable, fmt.Errorf("state %s: %w", storeurl.Redact(cfg.State), err))
			}
			defer led.Close()
			before := time.Now().Add(-age)
			p, err := state.PruneOutcomes(ctx, led, before, dryRun)
			if err != nil {
				return exitErr(ExitUnreachable, err)
			}
			if g.jsonOut {
				return g.printJSON(pruneResult{Before: before.UTC(), DryRun: dryRun, Files: p.Files,
					Outcomes: p.Outcomes, ReplacedContents: p.Prints})
			}
			day := before.Format("2006-01-02 15:04")
			verb := "pruned"
			if dryRun {
				verb = "would prune (dry run, nothing deleted)"
			}
			g.say("%s the row outcomes of %d file(s) last changed before %s: %d row outcome(s), %d replaced content(s).\n",
				verb, p.Files, day, p.Outcomes, p.Prints)
			g.say("Kept: every file's entry (name, size, SHA-256, result, counts, report, location); status still lists them,\n" +
				"and a file with another name and the same content is still skipped as a duplicate.\n")
			g.say("No longer known: which rows the pruned files recorded. Such a file dropped again under the same name, or\n"+
				"reprocessed, has its rows posted again as new records (the API does not reject a repeated external-id).\n"+
				"Files changed since %s keep every outcome: their re-drops are still recognised row by row.\n", day)
			return nil
		},
	}
	cmd.Flags().StringVar(&olderThan, "older-than", "", "prune files last changed longer ago than this: days (400d) or a Go duration (9000h)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be pruned; delete nothing")
	_ = cmd.MarkFlagRequired("older-than")
	return cmd
}

// pruneResult is ledger prune's --json summary.
type pruneResult struct {
	Before           time.Time `json:"before"`
	DryRun           bool      `json:"dry_run"`
	Files            int64     `json:"files"`
	Outcomes         int64     `json:"outcomes"`
	ReplacedContents int64     `json:"replaced_contents"`
}

// parseAge reads "400d" (days) or a Go duration ("9000h"); it must be
// positive.
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number of days (e.g. 400d)", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not a duration (e.g. 400d or 9000h)", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", s)
	}
	return d, nil
}
