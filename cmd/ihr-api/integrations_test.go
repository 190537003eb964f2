package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ihr-tools/ihr/internal/binharness"
)

// integrationCodes lists the codes the server at addr knows.
func integrationCodes(t *testing.T, addr, key string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/integrations", nil)
	req.Header.Set("X-COUPA-API-KEY", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list []struct{ Code string }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range list {
		out = append(out, i.Code)
	}
	return out
}

// runCLI runs ihr-api with args and returns stdout, stderr and the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newCommand(&errb)
	cmd.SetOut(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func TestIntegrationsFileSeedsAtStart(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "integrations.yaml")
	if err := os.WriteFile(seedFile, []byte(`integrations:
  - code: ERP-INVOICES
    name: ERP invoices
    direction: to_coupa
    end_system: SAP
    contacts:
      - {name: ERP team, email: erp@example.com, contact-alert-type: Functional}
  - {code: ERP-ORDERS, name: ERP orders}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	db := "sqlite:" + filepath.Join(dir, "api.db")
	// Seeding is idempotent: the same file on every start.
	for range 2 {
		t.Run("start", func(t *testing.T) {
			addr, stderr := start(t, "--db", db, "--api-key", "k", "--integrations-file", seedFile)
			if got := strings.Join(integrationCodes(t, addr, "k"), ","); got != "ERP-INVOICES,ERP-ORDERS" {
				t.Fatalf("integrations after seeding: %s\n%s", got, stderr)
			}
			// ISO 8601 timestamps, as the worker logs them.
			if !regexp.MustCompile(`"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`).MatchString(stderr.String()) {
				t.Errorf("log timestamps are not ISO 8601:\n%s", stderr)
			}
		})
	}
	// A bad file stops the server with a message naming it.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("- {name: no code}\n"), 0o644)
	if _, _, err := runCLI(t, "--addr", "127.0.0.1:0", "--db", db, "--api-key", "k", "--integrations-file", bad); err == nil || !strings.Contains(err.Error(), "code is required") {
		t.Fatalf("bad seed file: %v", err)
	}
}

func TestIntegrationsAddAndList(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "api.db")
	_, stderr, err := runCLI(t, "integrations", "add", "--db", db, "--code", "ERP-INVOICES", "--name", "ERP invoices", "--direction", "to_coupa")
	if err != nil || !strings.Contains(stderr, "integration ERP-INVOICES (id 1): created") {
		t.Fatalf("add: %v\n%s", err, stderr)
	}
	_, stderr, err = runCLI(t, "integrations", "add", "--db", db, "--code", "ERP-INVOICES")
	if err != nil || !strings.Contains(stderr, "exists already") {
		t.Fatalf("add again: %v\n%s", err, stderr)
	}
	// The API's own validation applies.
	if _, _, err := runCLI(t, "integrations", "add", "--db", db, "--code", "X", "--direction", "sideways"); err == nil || !strings.Contains(err.Error(), "sideways") {
		t.Fatalf("bad direction accepted: %v", err)
	}
	out, _, err := runCLI(t, "integrations", "list", "--db", db)
	if err != nil || !strings.Contains(out, "ERP-INVOICES") || !strings.Contains(out, "to_coupa") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "integrations", "list", "--db", db, "--json")
	var list []struct{ Code string }
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	// The server then sees it.
	addr, _ := start(t, "--db", db, "--api-key", "k")
	if got := integrationCodes(t, addr, "k"); len(got) != 1 || got[0] != "ERP-INVOICES" {
		t.Fatalf("server sees %v", got)
	}
}

// Every ihr-api flag, and each integrations subcommand, is in the user
// reference.
func TestFlagsDocumented(t *testing.T) {
	docs, err := os.ReadFile("../../docs/commands.md")
	if err != nil {
		t.Fatal(err)
	}
	root := newCommand(&binharness.SyncBuffer{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c != root && !strings.Contains(string(docs), "`"+c.CommandPath()) {
			t.Errorf("docs/commands.md does not show `%s`", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !strings.Contains(string(docs), "--"+f.Name) {
				t.Errorf("docs/commands.md does not document %s --%s", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			if sub.Name() != "help" && sub.Name() != "completion" {
				walk(sub)
			}
		}
	}
	walk(root)
}
