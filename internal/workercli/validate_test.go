package workercli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs the command line in process.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// validateConfig writes a configuration whose API key comes from an
// environment variable that is not set: validate must not need it.
func validateConfig(t *testing.T) (cfg, root string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "erp")
	os.MkdirAll(filepath.Join(root, "inbox"), 0o755)
	cfg = filepath.Join(dir, "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`api:
  url: https://acme.coupahost.com
  api_key: ${IHR_TEST_UNSET_KEY}
state: sqlite:%s
sources:
  - name: erp
    url: file://%s
    integration: ERP-INVOICES
`, filepath.Join(dir, "state.db"), root)), 0o600)
	return cfg, root
}

func TestValidateWithoutCredentials(t *testing.T) {
	os.Unsetenv("IHR_TEST_UNSET_KEY")
	cfg, root := validateConfig(t)
	f := filepath.Join(root, "inbox", "a.csv")
	os.WriteFile(f, []byte("external-id,document-type,document-id,status,contact-alert-type\nV-1,InvoiceHeader,1,Success,Functional\n"), 0o644)
	code, out, errs := cli(t, "validate", "--config", cfg, "--source", "erp", "a.csv")
	if code != 0 || !strings.Contains(errs, "1 row(s), 1 valid, 0 invalid") || !strings.Contains(out, ",valid,") {
		t.Fatalf("validate without credentials: exit %d\n%s\n%s", code, out, errs)
	}
	// Commands that call the API still require them.
	if code, _, errs := cli(t, "run", "--config", cfg); code != 2 || !strings.Contains(errs, "IHR_TEST_UNSET_KEY") {
		t.Fatalf("run without credentials: exit %d\n%s", code, errs)
	}
}

func TestValidateWholeFileRejectedHasNoNegativeCount(t *testing.T) {
	cfg, root := validateConfig(t)
	f := filepath.Join(root, "inbox", "empty.csv")
	os.WriteFile(f, nil, 0o644)
	code, _, errs := cli(t, "validate", "--config", cfg, "--source", "erp", "empty.csv")
	if code != 1 || strings.Contains(errs, "-1") || !strings.Contains(errs, "rejected as a whole") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	code, out, _ := cli(t, "validate", "--config", cfg, "--source", "erp", "empty.csv", "--json")
	var v struct{ Rows, Valid, Invalid int }
	if code != 1 || json.Unmarshal([]byte(out), &v) != nil || v.Valid != 0 || v.Rows != 0 {
		t.Fatalf("--json: exit %d %s", code, out)
	}
}

func TestLogFlagsCheckedByEveryCommand(t *testing.T) {
	cfg, _ := validateConfig(t)
	for _, args := range [][]string{
		{"status", "--config", cfg, "--log-level", "bogus"},
		{"status", "--config", cfg, "--log-format", "xml"},
		{"version", "--log-level", "loud"},
	} {
		if code, _, errs := cli(t, args...); code != 2 || !strings.Contains(errs, "--log-") {
			t.Errorf("%v: exit %d\n%s", args, code, errs)
		}
	}
}
