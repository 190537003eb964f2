package main_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// TestEncryptedDropsCLI: the source keys decrypt, verify,
// encrypt_reports_to and decompression from a configuration file;
// validate and run on a GnuPG-encrypted, signed gzip file and zip
// archive; the reports come back encrypted and gpg reads them; a wrong
// passphrase is a configuration error that never shows the passphrase.
func TestEncryptedDropsCLI(t *testing.T) {
	g := testservers.StartGPG(t)
	g.GenKey("ihr@example.com", testservers.KeyCurve25519, "worker-pass-31337")
	g.GenKey("erp@example.com", testservers.KeyRSA, "erp-pass")
	keyFile := g.ExportSecret("ihr@example.com", "worker-pass-31337", false)
	erpPub := g.ExportPublic("erp@example.com")
	dir := t.TempDir()
	passFile := filepath.Join(dir, "pgp-pass")
	os.WriteFile(passFile, []byte("worker-pass-31337\n"), 0o600)
	extra := fmt.Sprintf(`    include: "*"
    decrypt:
      key_file: %s
      passphrase_file: %s
    verify:
      public_key_file: %s
    encrypt_reports_to:
      public_key_file: %s
    completeness:
      manifest: optional
    decompression:
      max_ratio: 100
      max_size_mb: 1024
      max_entries: 50
`, keyFile, passFile, erpPub, erpPub)
	api := startAPI(t, "ERP-INVOICES")
	e := newEnv(t, api, extra, "")

	seal := func(data []byte) []byte {
		return g.Encrypt(data, "ihr@example.com", "erp@example.com", "erp-pass", false)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(goodRows("GZ", 5)))
	zw.Close()
	e.drop("a.csv.gz.pgp", string(seal(gz.Bytes())))
	var zb bytes.Buffer
	w := zip.NewWriter(&zb)
	for name, rows := range map[string]string{"one.csv": goodRows("ZA", 3), "two.csv": goodRows("ZB", 4)} {
		f, _ := w.Create(name)
		f.Write([]byte(rows))
	}
	w.Close()
	e.drop("bundle.zip.pgp", string(seal(zb.Bytes())))
	e.drop("unsigned.csv.pgp", string(g.Encrypt([]byte(goodRows("UN", 2)), "ihr@example.com", "", "", true)))

	// validate reads each through the same layers.
	r := e.worker("validate", "--config", e.config, "--source", "erp", "inbox/a.csv.gz.pgp").expect(t, 0)
	if n := strings.Count(r.stdout, ",valid,"); n != 5 {
		t.Errorf("validate a.csv.gz.pgp:\n%s", r.stdout)
	}
	r = e.worker("validate", "--config", e.config, "--source", "erp", "inbox/bundle.zip.pgp").expect(t, 0)
	if n := strings.Count(r.stdout, ",valid,"); n != 7 || !strings.Contains(r.stdout, "two.csv") {
		t.Errorf("validate bundle.zip.pgp:\n%s", r.stdout)
	}
	r = e.worker("validate", "--config", e.config, "--source", "erp", "inbox/unsigned.csv.pgp").expect(t, 1)
	if !strings.Contains(r.stdout, "not signed") {
		t.Errorf("validate unsigned.csv.pgp:\n%s", r.stdout)
	}

	e.worker("run", "--config", e.config).expect(t, 1) // unsigned.csv.pgp is rejected
	for _, p := range []string{"archive/a.csv.gz.pgp", "archive/bundle.zip.pgp", "failed/unsigned.csv.pgp"} {
		if !exists(filepath.Join(e.src, p)) {
			t.Errorf("%s missing", p)
		}
	}
	recs := records(t, api)
	if len(recs) != 12 || recs["GZ-00001"] != 1 || recs["ZA-00003"] != 1 || recs["ZB-00004"] != 1 || recs["UN-00001"] != 0 {
		t.Errorf("records: %v", recs)
	}
	for rp, want := range map[string]int{"a.csv.gz.pgp.response.csv.pgp": 5, "bundle.zip.pgp/one.response.csv.pgp": 3,
		"bundle.zip.pgp/two.response.csv.pgp": 4, "unsigned.csv.pgp.response.csv.pgp": 1} {
		msg, err := os.ReadFile(filepath.Join(e.src, "reports", rp))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := g.Decrypt(msg, "erp-pass")
		if err != nil {
			t.Fatalf("gpg -d %s: %v", rp, err)
		}
		lines, err := csv.NewReader(bytes.NewReader(plain)).ReadAll()
		if err != nil || len(lines) != want+1 {
			t.Errorf("%s: %v %q", rp, err, plain)
		}
	}

	// A wrong passphrase: exit 2, and the passphrase is not shown.
	os.WriteFile(passFile, []byte("not-the-passphrase\n"), 0o600)
	r = e.worker("run", "--config", e.config).expect(t, 2)
	if !strings.Contains(r.stderr, "passphrase does not unlock") || strings.Contains(r.stderr+r.stdout, "not-the-passphrase") ||
		strings.Contains(r.stderr+r.stdout, "worker-pass-31337") {
		t.Errorf("wrong passphrase:\n%s\n%s", r.stderr, r.stdout)
	}
}
