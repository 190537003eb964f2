package main_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// Errors about the setup, which no rerun fixes, exit 2 and leave the files
// where they are: a host key that does not match known_hosts, refused API
// credentials, an export URL no source describes, an export folder that
// does not exist.
func TestSetupErrorsExit2(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	sftp := testservers.StartSFTP(t, testservers.SFTPOptions{})
	dir := t.TempDir()
	inbox := mkdirOwned(t, sftp.Root, "erp/inbox")
	writeOwned(t, filepath.Join(inbox, "a.csv"), goodRows("HK", 2))

	// A known_hosts line for the server's address with another key.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub)
	wrongKH := filepath.Join(dir, "known_hosts.wrong")
	os.WriteFile(wrongKH, []byte(knownhosts.Line([]string{knownhosts.Normalize(sftp.Addr)}, other)+"\n"), 0o600)

	config := func(name, apiKeyRef, kh string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(fmt.Sprintf(`api: {url: %q, api_key: %q, rate_limit: 0, max_retries: 1}
state: sqlite:%s
sources:
  - name: erp
    url: sftp://%s@%s%s/erp
    key_file: %s
    known_hosts: %s
    integration: ERP-INVOICES
    stable_for: 0s
`, api.URL, apiKeyRef, filepath.Join(dir, name+".db"), sftp.User, sftp.Addr, sftp.Root, sftp.KeyFile, kh)), 0o600)
		return p
	}
	e := &env{t: t, dir: dir, api: api}

	must(t, e.worker("run", "--config", config("hostkey.yaml", "${E2E_API_KEY}", wrongKH)), 2, "host key does not match")
	if !exists(filepath.Join(inbox, "a.csv")) {
		t.Fatal("a host-key mismatch moved the file")
	}

	r := e.worker("run", "--config", config("badkey.yaml", "not-the-key", sftp.KnownHostsFile)).expect(t, 2)
	must(t, r, 2, "refused the credentials")
	if !exists(filepath.Join(inbox, "a.csv")) || exists(filepath.Join(sftp.Root, "erp/failed")) {
		t.Fatal("refused credentials touched the source")
	}

	good := config("good.yaml", "${E2E_API_KEY}", sftp.KnownHostsFile)
	must(t, e.worker("export", "--config", good, "--to", "sftp://nobody@elsewhere.example.com/x/records.csv"), 2,
		"no configured source is on sftp://nobody@elsewhere.example.com")
	must(t, e.worker("export", "--config", good, "--to", fmt.Sprintf("sftp://%s@%s%s/no-such-folder/records.csv", sftp.User, sftp.Addr, sftp.Root)), 2,
		"the folder does not exist")
	must(t, e.worker("export", "--config", good, "--to", filepath.Join(dir, "missing", "records.csv")), 2,
		"does not exist")
}

// A mistyped root on FTPS, or a bucket that does not exist on S3, is a
// configuration error too (exit 2), and nothing is created.
func TestMissingRootOnFTPAndS3Exit2(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	ftp := testservers.StartFTP(t)
	s3 := testservers.StartS3(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte(ftp.Password), 0o600)
	cfg := filepath.Join(dir, "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`api: {url: %q, api_key: "${E2E_API_KEY}", rate_limit: 0, max_retries: 1}
state: sqlite:%s
sources:
  - name: ftps
    url: ftps://%s@%s/no-such-folder
    password_file: %s
    ca_file: %s
    integration: ERP-INVOICES
  - name: s3
    url: s3://no-such-bucket-%s/erp
    endpoint: %s
    region: %s
    path_style: true
    access_key_id: %s
    secret_access_key: ${E2E_S3_SECRET}
    integration: ERP-INVOICES
`, api.URL, filepath.Join(dir, "state.db"), ftp.User, ftp.Addr, pw, ftp.CAFile, "x1", s3.Endpoint, s3.Region, s3.AccessKey)), 0o600)
	t.Setenv("E2E_S3_SECRET", s3.SecretKey)
	e := &env{t: t, dir: dir, api: api}
	for src, want := range map[string]string{"ftps": "no-such-folder/ does not exist", "s3": "NoSuchBucket"} {
		must(t, e.worker("run", "--config", cfg, "--source", src), 2, want)
	}
	if exists(filepath.Join(ftp.Root, "no-such-folder")) {
		t.Error("the mistyped FTP root was created")
	}
	if exists(filepath.Join(s3.Root, "no-such-bucket-x1")) {
		t.Error("the missing S3 bucket was created")
	}
}
