package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const dropsSource = `
api: {url: "http://127.0.0.1:1", api_key: k}
state: sqlite:/tmp/x.db
sources:
  - name: pgp
    url: file:///srv/drop
    include: "*"
    decrypt:
      key_file: keys/worker.sec.asc
      passphrase_file: %s
    verify: {public_key_file: keys/erp.pub.asc}
    encrypt_reports_to: {public_key_file: /etc/erp.pub.asc}
    completeness: {manifest: %s, trailer: %q}
    decompression: {max_ratio: 50, max_size_mb: %d, max_entries: 10}
`

// TestDropKeys: the keys decode, relative paths resolve, the passphrase is
// read from its file and never prints, bad values name their key.
func TestDropKeys(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("s3cret-pass\n"), 0o600)
	c, err := Parse([]byte(fmt.Sprintf(dropsSource, pass, "required", "TRAILER,{rows}", 100)), Options{Dir: "/etc/ihr", LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources[0]
	if s.Decrypt.KeyFile != "/etc/ihr/keys/worker.sec.asc" || s.Decrypt.Passphrase.Reveal() != "s3cret-pass" ||
		s.Verify.PublicKeyFile != "/etc/ihr/keys/erp.pub.asc" || s.EncryptReportsTo.PublicKeyFile != "/etc/erp.pub.asc" ||
		s.Completeness.Manifest != ManifestRequired || s.Completeness.Trailer != "TRAILER,{rows}" {
		t.Fatalf("%+v", s)
	}
	if l := s.Limits(); l.MaxRatio != 50 || l.MaxSize != 100<<20 || l.MaxEntries != 10 {
		t.Fatalf("limits %+v", l)
	}
	out, _ := json.Marshal(c)
	if strings.Contains(string(out)+fmt.Sprintf("%+v %#v", s, s), "s3cret-pass") {
		t.Fatal("the passphrase prints")
	}
	if _, err := s.LoadKeys(); err == nil || strings.Contains(err.Error(), "s3cret-pass") {
		t.Fatalf("missing key file: %v", err)
	}
	_, err = Parse([]byte(fmt.Sprintf(dropsSource, pass, "always", "TRAILER", -1)), Options{LookupEnv: env(nil)})
	for _, want := range []string{
		`sources[0].completeness.manifest: must be "optional" or "required", got "always"`,
		`sources[0].completeness.trailer: trailer layout "TRAILER" must contain {rows} once`,
		`sources[0].decompression.max_size_mb: must not be negative`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
