package workercli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/state/statetest"
)

// TestLedgerPrune: the command prunes what is older than --older-than,
// a dry run deletes nothing, it says what it can no longer know, and a
// bad duration is a usage error. status still lists the pruned files.
func TestLedgerPrune(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "s.db")
	ctx := context.Background()
	clock := statetest.NewClock()
	// 10 nights ending yesterday, 3 files of 5 rows each.
	h := statetest.AYear
	h.Nights, h.FilesPerNight, h.RowsPerFile = 10, 3, 5
	clock.Set(h.Until(time.Now()))
	l, err := state.OpenSQLite(ctx, db, state.SQLiteOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Build(ctx, l, clock, 1, nil); err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg := filepath.Join(dir, "w.yaml")
	os.WriteFile(cfg, []byte(`api: {url: "http://127.0.0.1:1", api_key: "k"}
state: "sqlite:`+db+`"
sources: [{name: `+h.Source+`, url: "file:///nonexistent"}]
`), 0o600)
	main := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(ctx, args, Streams{Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	// Nights 1..10 days ago at 02:00 or so: older than 5.5 days are 5 nights.
	code, out, _ := main("ledger", "prune", "--config", cfg, "--older-than", "132h", "--dry-run", "--json")
	var dry pruneResult
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || !dry.DryRun || dry.Files != 15 || dry.Outcomes != 75 {
		t.Fatalf("dry run: %d %s", code, out)
	}
	code, _, errs := main("ledger", "prune", "--config", cfg, "--older-than", "132h")
	if code != 0 || !strings.Contains(errs, "pruned the row outcomes of 15 file(s)") ||
		!strings.Contains(errs, "under the same name, or\nreprocessed, has its rows posted again") {
		t.Fatalf("prune: %d\n%s", code, errs)
	}
	if code, _, errs = main("ledger", "prune", "--config", cfg, "--older-than", "6d", "--dry-run"); code != 0 ||
		!strings.Contains(errs, "would prune (dry run, nothing deleted) the row outcomes of 0 file(s)") {
		t.Fatalf("nothing left to prune: %d\n%s", code, errs)
	}
	for _, bad := range []string{"0d", "-3h", "soon", "4x"} {
		if code, _, errs := main("ledger", "prune", "--config", cfg, "--older-than", bad); code != ExitUsage {
			t.Errorf("--older-than %s: exit %d\n%s", bad, code, errs)
		}
	}
	if code, _, _ := main("ledger", "prune", "--config", cfg); code != ExitUsage {
		t.Errorf("without --older-than: exit %d", code)
	}
	code, _, errs = main("status", "--config", cfg, "--limit", "5")
	if code != 0 || !strings.Contains(errs, "30 file(s) seen: 30 archived") || !strings.Contains(errs, "showing the newest 5 file(s) of more") {
		t.Fatalf("status after prune: %d\n%s", code, errs)
	}
}
