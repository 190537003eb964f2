package storeurl_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/storetest"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/internal/testservers"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"sftp://coupa:s3cret@host:22/x":  "sftp://coupa:xxxxx@host:22/x",
		"ftp://coupa@host/x":             "ftp://coupa@host/x",
		"s3://bucket/prefix":             "s3://bucket/prefix",
		"ftp://u:p%zz@host/x":            "ftp://xxxxx@host/x", // unparsable escape
		"sftp://u:\x7fbad@host/":         "sftp://xxxxx@host/",
		"mailto:someone:secret@host.com": "mailto:someone:secret@host.com",
	} {
		if got := storeurl.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenRefusesWithoutLeaking(t *testing.T) {
	ctx := context.Background()
	const secret = "Sup3rSecret"
	for _, c := range []struct {
		url  string
		set  storeurl.Settings
		want string
	}{
		{"sftp://host/x", storeurl.Settings{Password: secret}, "no user"},
		{"sftp://u:" + secret + "@/x", storeurl.Settings{}, "no host"},
		{"sftp://u:" + secret + "@host/x", storeurl.Settings{Password: "other"}, "password given both"},
		{"ftp://u:" + secret + "@host/x", storeurl.Settings{CAFile: "/ca.pem"}, "ca_file does not apply to ftp://"},
		{"ftps://u:" + secret + "@host/x", storeurl.Settings{KeyFile: "/k"}, "key_file does not apply"},
		{"s3://bucket/p", storeurl.Settings{Password: secret}, "password does not apply to s3://"},
		{"s3://ak:" + secret + "@bucket/p", storeurl.Settings{}, "credentials go in the settings"},
		{"http://u:" + secret + "@host/x", storeurl.Settings{}, "unsupported scheme"},
		{"ftp://u:" + secret + "%zz@host/x", storeurl.Settings{}, "not a valid URL"},
		{"file://otherhost/x", storeurl.Settings{}, "use file:///path"},
		{"sftp://u@host/x?opt=1", storeurl.Settings{}, "query"},
		{"/no/scheme", storeurl.Settings{}, "no scheme"},
	} {
		_, err := storeurl.Open(ctx, c.url, c.set, zaptest.NewLogger(t))
		if err == nil {
			t.Errorf("Open(%q) succeeded", storeurl.Redact(c.url))
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want it to say %q", storeurl.Redact(c.url), err, c.want)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error leaks the secret: %v", err)
		}
	}
}

// exercise writes, lists, moves and reads a file through a store opened
// from a URL.
func exercise(t *testing.T, st filestore.Store) {
	t.Helper()
	defer st.Close()
	ctx := context.Background()
	if err := st.MkdirAll(ctx, "inbox"); err != nil {
		t.Fatal(err)
	}
	if err := st.MkdirAll(ctx, "archive"); err != nil {
		t.Fatal(err)
	}
	storetest.Put(t, st, "inbox/a b.csv", []byte("x,y\n"))
	fis, err := st.List(ctx, "inbox")
	if err != nil || len(fis) != 1 || fis[0].Name != "a b.csv" {
		t.Fatalf("List: %v, %v", fis, err)
	}
	if err := st.Move(ctx, "inbox/a b.csv", "archive/a b.csv"); err != nil {
		t.Fatal(err)
	}
	if got := storetest.Get(t, st, "archive/a b.csv"); string(got) != "x,y\n" {
		t.Fatalf("content %q", got)
	}
}

func open(t *testing.T, raw string, s storeurl.Settings) filestore.Store {
	t.Helper()
	st, err := storeurl.Open(context.Background(), raw, s, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "drop folder")
	os.Mkdir(dir, 0o755)
	u := url.URL{Scheme: "file", Path: dir}
	exercise(t, open(t, u.String(), storeurl.Settings{}))
}

func TestSFTPKey(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	raw := fmt.Sprintf("sftp://%s@%s%s", srv.User, srv.Addr, srv.Root)
	exercise(t, open(t, raw, storeurl.Settings{KeyFile: srv.KeyFile, KnownHosts: srv.KnownHostsFile}))
}

func TestSFTPPasswordInURL(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{Password: true})
	u := url.URL{Scheme: "sftp", User: url.UserPassword(srv.User, srv.Password), Host: srv.Addr, Path: srv.Root}
	exercise(t, open(t, u.String(), storeurl.Settings{KnownHosts: srv.KnownHostsFile}))
}

func TestFTPAndFTPS(t *testing.T) {
	srv := testservers.StartFTP(t)
	st := open(t, fmt.Sprintf("ftp://%s@%s/", srv.User, srv.Addr), storeurl.Settings{Password: srv.Password})
	for _, d := range []string{"plain", "tls"} {
		if err := st.MkdirAll(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	exercise(t, open(t, fmt.Sprintf("ftp://%s@%s/plain", srv.User, srv.Addr), storeurl.Settings{Password: srv.Password}))
	exercise(t, open(t, fmt.Sprintf("ftps://%s@%s/tls", srv.User, srv.Addr),
		storeurl.Settings{Password: srv.Password, CAFile: srv.CAFile}))
}

func TestS3(t *testing.T) {
	srv := testservers.StartS3(t)
	exercise(t, open(t, "s3://"+srv.Bucket+"/some/prefix", storeurl.Settings{
		Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	}))
	if _, err := os.Stat(filepath.Join(srv.Root, srv.Bucket, "some/prefix/archive/a b.csv")); err != nil {
		t.Errorf("object not under the URL's prefix: %v", err)
	}
}

// Check, LocalPath and Misapplied are what the worker's configuration
// uses instead of knowing schemes itself.
func TestCheckLocalPathMisapplied(t *testing.T) {
	for _, ok := range []string{"file:///srv/erp", "FILE:///srv/erp", "sftp://u@h:22/x", "ftp://u@h/x", "ftps://u@h/", "s3://bucket/p"} {
		if _, err := storeurl.Check(ok); err != nil {
			t.Errorf("Check(%q) = %v", ok, err)
		}
	}
	if u, _ := storeurl.Check("SFTP://u@h/x"); u == nil || u.Scheme != "sftp" {
		t.Errorf("scheme not lower-cased: %v", u)
	}
	for raw, want := range map[string]string{"sftp://h/x": "no user", "gopher://x/a": `unsupported scheme "gopher"`, "s3:///p": "no bucket", "file://": "no folder path"} {
		if _, err := storeurl.Check(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want %q", raw, err, want)
		}
	}
	if p, ok := storeurl.LocalPath("file:///srv/drop%20folder"); !ok || p != "/srv/drop folder" {
		t.Errorf("LocalPath = %q, %v", p, ok)
	}
	if _, ok := storeurl.LocalPath("sftp://u@h/x"); ok {
		t.Error("an sftp URL is local")
	}
	m := storeurl.Settings{Password: "p", Region: "eu", CAFile: "/ca"}.Misapplied("sftp")
	if fmt.Sprint(m) != "[{ca_file [ftps]} {region [s3]}]" {
		t.Errorf("Misapplied(sftp) = %v", m)
	}
	if m := (storeurl.Settings{Password: "p"}).Misapplied("ftps"); m != nil {
		t.Errorf("password is misapplied to ftps: %v", m)
	}
}
