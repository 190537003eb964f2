package dashboard_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/dashboard"
	"github.com/ihr-tools/ihr/state"
)

// TestRunningPass: a pass past its expected time shows as overdue on its
// source, one within it as running, and a source without one shows none.
func TestRunningPass(t *testing.T) {
	l, err := state.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), state.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ops, err := state.OpsOf(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	h, err := dashboard.New(dashboard.Config{
		Sources: []dashboard.Source{{Name: "erp"}, {Name: "crm"}, {Name: "idle"}},
		Ops:     ops, Ledger: l, Now: func() time.Time { return now },
		Passes: func() []dashboard.Pass {
			return []dashboard.Pass{
				{Source: "erp", Since: now.Add(-72 * time.Minute), Expected: time.Hour},
				{Source: "crm", Since: now.Add(-3*time.Minute - 5*time.Second), Expected: time.Hour},
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	code, page := get(t, h, "/", nil)
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	section := func(name string) string {
		i := strings.Index(page, `data-source="`+name+`"`)
		if i < 0 {
			t.Fatalf("no section for %s", name)
		}
		rest := page[i:]
		if j := strings.Index(rest[1:], `<section class="source"`); j >= 0 {
			rest = rest[:j+1]
		}
		return rest
	}
	if s := section("erp"); !strings.Contains(s, `class="tile bad" data-health="running"><b>Pass running</b> for 1h12m<br>overdue: expected under 1h`) {
		t.Errorf("erp's overdue pass is not shown:\n%s", s)
	}
	if s := section("crm"); !strings.Contains(s, `class="tile ok" data-health="running"><b>Pass running</b> for 3m5s<br>expected under 1h`) {
		t.Errorf("crm's pass is not shown as running in time:\n%s", s)
	}
	if s := section("idle"); strings.Contains(s, `data-health="running"`) {
		t.Errorf("idle shows a pass it does not have:\n%s", s)
	}
}
