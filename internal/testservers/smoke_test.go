package testservers

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var payload = []byte("supplier_id,amount\n42,10.50\n")

func timed(t *testing.T, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	t.Logf("%s started in %v", what, time.Since(start).Round(time.Millisecond))
}

func TestSFTPKey(t *testing.T) {
	t.Parallel()
	var s *SFTP
	timed(t, "sshd", func() { s = StartSFTP(t, SFTPOptions{}) })
	if s.Password != "" {
		t.Fatal("key variant must not have a password")
	}
	smokeSFTP(t, s, ssh.PublicKeys(userKey(t, s)))
}

func userKey(t *testing.T, s *SFTP) ssh.Signer {
	t.Helper()
	pemBytes, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

func TestSFTPPassword(t *testing.T) {
	t.Parallel()
	var s *SFTP
	timed(t, "sshd (password)", func() { s = StartSFTP(t, SFTPOptions{Password: true}) })
	if s.Password == "" || s.User == "root" {
		t.Fatalf("password variant: user %q, password set %v", s.User, s.Password != "")
	}
	smokeSFTP(t, s, ssh.Password(s.Password))

	// The key works for the password user too.
	cfg := s.ClientConfig(t)
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(userKey(t, s))}
	conn, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatalf("key auth for the password user: %v\n--- sshd log ---\n%s", err, tailFile(s.LogFile, 4<<10))
	}
	conn.Close()

	// A wrong password must be refused, or the test proves nothing.
	hk, err := knownhosts.New(s.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.Password("wrong")},
		HostKeyCallback: hk, Timeout: 10 * time.Second})
	if err == nil {
		t.Fatal("wrong password accepted")
	}
}

func smokeSFTP(t *testing.T, s *SFTP, auth ssh.AuthMethod) {
	t.Helper()
	hk, err := knownhosts.New(s.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: hk, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("ssh dial: %v\n--- sshd log ---\n%s", err, tailFile(s.LogFile, 4<<10))
	}
	defer conn.Close()
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.Mkdir(path.Join(s.Root, "in")); err != nil {
		t.Fatal(err)
	}
	name := path.Join(s.Root, "in", "a.csv")
	f, err := c.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	infos, err := c.ReadDir(path.Join(s.Root, "in"))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Name() != "a.csv" || infos[0].Size() != int64(len(payload)) {
		t.Fatalf("listing: %v", infos)
	}
	if err := c.Rename(name, path.Join(s.Root, "in", "b.csv")); err != nil {
		t.Fatal(err)
	}
	r, err := c.Open(path.Join(s.Root, "in", "b.csv"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("download: %q, %v", got, err)
	}
	// Root is the same directory on the local disk.
	if b, err := os.ReadFile(filepath.Join(s.Root, "in", "b.csv")); err != nil || !bytes.Equal(b, payload) {
		t.Fatalf("local copy: %q, %v", b, err)
	}
}

func TestFTP(t *testing.T) {
	t.Parallel()
	var f *FTP
	timed(t, "vsftpd", func() { f = StartFTP(t) })
	t.Run("plain", func(t *testing.T) { smokeFTP(t, f, nil, "plain") })
	t.Run("explicit-tls", func(t *testing.T) {
		pemBytes, err := os.ReadFile(f.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			t.Fatal("CAFile holds no certificate")
		}
		smokeFTP(t, f, &tls.Config{RootCAs: pool, ServerName: f.Host, MinVersion: tls.VersionTLS12}, "tls")
	})
	t.Run("tls-unknown-ca-refused", func(t *testing.T) {
		c, err := ftp.Dial(f.Addr, ftp.DialWithTimeout(10*time.Second),
			ftp.DialWithExplicitTLS(&tls.Config{ServerName: f.Host}))
		if err == nil {
			// The handshake happens on first use.
			err = c.Login(f.User, f.Password)
			c.Quit()
		}
		if err == nil {
			t.Fatal("TLS with an untrusted certificate succeeded")
		}
	})
}

func smokeFTP(t *testing.T, f *FTP, tlsConf *tls.Config, dir string) {
	opts := []ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}
	if tlsConf != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(tlsConf))
	}
	c, err := ftp.Dial(f.Addr, opts...)
	if err != nil {
		t.Fatalf("dial: %v\n--- vsftpd log ---\n%s", err, tailFile(f.LogFile, 4<<10))
	}
	defer c.Quit()
	if err := c.Login(f.User, f.Password); err != nil {
		t.Fatalf("login: %v\n--- vsftpd log ---\n%s", err, tailFile(f.LogFile, 4<<10))
	}
	if err := c.MakeDir("/" + dir); err != nil {
		t.Fatal(err)
	}
	if err := c.Stor("/"+dir+"/a.csv", bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	entries, err := c.List("/" + dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name != "a.csv" || entries[0].Size != uint64(len(payload)) {
		t.Fatalf("listing: %+v", entries)
	}
	if err := c.Rename("/"+dir+"/a.csv", "/"+dir+"/b.csv"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("/" + dir + "/b.csv")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("download: %q, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(f.Root, dir, "b.csv")); err != nil || !bytes.Equal(b, payload) {
		t.Fatalf("local copy under Root: %q, %v", b, err)
	}
}

func TestS3(t *testing.T) {
	t.Parallel()
	var s *S3
	timed(t, "versitygw", func() { s = StartS3(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.Bucket, Key: aws.String("in/a.csv"), Body: bytes.NewReader(payload)}); err != nil {
		t.Fatalf("put: %v\n--- log ---\n%s", err, tailFile(s.LogFile, 4<<10))
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: aws.String("in/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 1 || *out.Contents[0].Key != "in/a.csv" || *out.Contents[0].Size != int64(len(payload)) {
		t.Fatalf("listing: %+v", out.Contents)
	}
	get := func() []byte {
		o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: aws.String("in/a.csv")})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Body.Close()
		b, err := io.ReadAll(o.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := get(); !bytes.Equal(got, payload) {
		t.Fatalf("get: %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(s.Root, s.Bucket, "in", "a.csv")); err != nil || !bytes.Equal(b, payload) {
		t.Fatalf("posix copy: %q, %v", b, err)
	}

	// Restart keeps endpoint and data; while stopped, requests fail.
	s.Stop()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.Bucket}); err == nil {
		t.Fatal("request succeeded while the gateway was stopped")
	}
	timed(t, "versitygw restart", func() { s.Restart(t) })
	if got := get(); !bytes.Equal(got, payload) {
		t.Fatalf("get after restart: %q", got)
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	var pg *Postgres
	timed(t, "postgres", func() { pg = StartPostgres(t) })
	var dsn1, dsn2 string
	timed(t, "NewDatabase", func() { dsn1 = pg.NewDatabase(t) })
	dsn2 = pg.NewDatabase(t)
	if dsn1 == dsn2 {
		t.Fatal("NewDatabase returned the same database twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dsn := range []string{dsn1, dsn2} {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("select 1: %d, %v", one, err)
		}
		c.Close(ctx)
	}
}

// TestPostgresShared checks the cluster sharing that Main switches on.
func TestPostgresShared(t *testing.T) {
	if pgBinDir() == "" {
		t.Skip("no PostgreSQL")
	}
	t.Cleanup(sharePostgres())
	var a, b *Postgres
	t.Run("first", func(t *testing.T) { a = StartPostgres(t); a.NewDatabase(t) })
	t.Run("second", func(t *testing.T) {
		start := time.Now()
		b = StartPostgres(t)
		t.Logf("shared StartPostgres in %v", time.Since(start))
		dsn := b.NewDatabase(t)
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		c.Close(context.Background())
	})
	if a != b || a.p.exited() {
		t.Fatal("shared cluster was not reused or was stopped by a test's cleanup")
	}
}

// TestMissingBinary checks the skip-or-fail rule without a real binary.
func TestMissingBinary(t *testing.T) {
	if findBinary("ihr-no-such-server-binary") != "" {
		t.Fatal("found a binary that cannot exist")
	}
	if os.Getenv(RequireEnv) == "1" {
		return // missing would fail this test, which is its point
	}
	var skipped bool
	t.Run("skips", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Missing(t, "test")
	})
	if !skipped {
		t.Fatal("missing binary did not skip")
	}
}
