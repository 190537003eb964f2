// Package storeurl opens a file store from a source URL and the source's
// settings, as the worker's configuration gives them:
//
//	file:///srv/erp/invoices
//	sftp://coupa@sftp.example.com:22/Outgoing/InvoiceResults
//	ftp://coupa@ftp.example.com/outgoing        (passive, plain)
//	ftps://coupa@ftp.example.com:21/outgoing    (explicit TLS: AUTH TLS)
//	s3://bucket/some/prefix
//
// For sftp, ftp and ftps the path is absolute on the server; a path
// starting with "/~/" is relative to the login folder (curl's convention),
// and an empty path is the login folder. Default ports: 22 (sftp), 21
// (ftp, ftps).
//
// Secrets belong in Settings (which the configuration fills from the
// environment or *_file paths). A password in the URL is accepted but
// discouraged; either way no error or log line from this package carries
// it (see Redact).
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/ftpstore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/s3store"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
)

// Settings are a source's store settings, flat as in the worker's
// configuration; each field's comment gives its configuration key. A
// setting that does not apply to the URL's scheme is an error, so a typo'd
// source does not silently run with defaults.
type Settings struct {
	Password string // password: SFTP or FTP(S) login, or an SFTP key's passphrase

	KeyFile               string // key_file: SFTP private key
	KnownHosts            string // known_hosts: SFTP known_hosts file (default ~/.ssh/known_hosts)
	InsecureIgnoreHostKey bool   // insecure_ignore_host_key: SFTP, accept any host key (tests only)

	CAFile             string // ca_file: FTPS, PEM bundle replacing the system roots
	InsecureSkipVerify bool   // insecure_skip_verify: FTPS, accept any certificate (tests only)

	Endpoint        string // endpoint: S3-compatible service URL
	Region          string // region: S3
	PathStyle       bool   // path_style: S3 path-style addressing
	AccessKeyID     string // access_key_id: S3 (else the AWS credential chain)
	SecretAccessKey string // secret_access_key: S3

	Timeout time.Duration // timeout: connect and per-read/write inactivity limit (default 30 s)

	// MaxConns: max_connections, SFTP connections open at once (0: the
	// store's default). With Accounts, SFTP sources of the same host and
	// user share the budget and the connections.
	MaxConns int
	Accounts *sftpstore.Accounts
}

// Open returns the store the URL names. It checks the URL and settings and
// reads key, known_hosts and CA files, but does not connect: the first
// operation does, so a server that is down is that operation's (retryable)
// error. The store is not wrapped in filestore.WithRetry; callers add it.
// log may be nil.
func Open(ctx context.Context, rawURL string, s Settings, log *zap.Logger) (filestore.Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	safe := Redact(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the raw URL, password and all.
		return nil, fmt.Errorf("source url %s: not a valid URL", safe)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("source url %s: %s", safe, fmt.Sprintf(format, args...))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fail("query, fragment or opaque part not supported")
	}
	if err := checkApplies(u.Scheme, s); err != nil {
		return nil, fail("%v", err)
	}
	log = log.With(zap.String("source", safe))
	var st filestore.Store
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fail("file URLs name a local folder: use file:///path")
		}
		if u.User != nil {
			return nil, fail("file URLs take no user")
		}
		if u.Path == "" {
			return nil, fail("no folder path")
		}
		st, err = local.New(u.Path, log)
	case "sftp":
		addr, user, password, perr := login(u, s, "22")
		if perr != nil {
			return nil, fail("%v", perr)
		}
		st, err = sftpstore.New(sftpstore.Config{
			Addr: addr, User: user, Password: password, KeyFile: s.KeyFile,
			KnownHosts: s.KnownHosts, InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
			Root: serverPath(u.Path), Timeout: s.Timeout, MaxConns: s.MaxConns, Accounts: s.Accounts,
		}, log)
	case "ftp", "ftps":
		addr, user, password, perr := login(u, s, "21")
		if perr != nil {
			return nil, fail("%v", perr)
		}
		st, err = ftpstore.New(ftpstore.Config{
			Addr: addr, User: user, Password: password, TLS: u.Scheme == "ftps",
			CAFile: s.CAFile, InsecureSkipVerify: s.InsecureSkipVerify,
			Root: serverPath(u.Path), Timeout: s.Timeout,
		}, log)
	case "s3":
		if u.User != nil || u.Port() != "" {
			return nil, fail("s3 URLs are s3://bucket/prefix (credentials go in the settings)")
		}
		if u.Host == "" {
			return nil, fail("no bucket")
		}
		st, err = s3store.New(ctx, s3store.Config{
			Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: s.Endpoint, Region: s.Region,
			PathStyle: s.PathStyle, AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
			Timeout: s.Timeout,
		}, log)
	case "":
		return nil, fail("no scheme (file, sftp, ftp, ftps or s3)")
	default:
		return nil, fail("unsupported scheme %q (file, sftp, ftp, ftps or s3)", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("source url %s: %w", safe, err)
	}
	return st, nil
}

// login returns host:port, the user and the password from u and s.
func login(u *url.URL, s Settings, defaultPort string) (addr, user, password string, err error) {
	if u.Hostname() == "" {
		return "", "", "", errors.New("no host")
	}
	if u.User == nil || u.User.Username() == "" {
		return "", "", "", errors.New("no user (write scheme://user@host/path)")
	}
	user = u.User.Username()
	password = s.Password
	if p, ok := u.User.Password(); ok {
		if s.Password != "" {
			return "", "", "", errors.New("password given both in the URL and in the settings")
		}
		password = p
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(u.Hostname(), port), user, password, nil
}

// serverPath maps the URL path to the store root: "/~/x" and "/~" are
// relative to the login folder, anything else is absolute.
func serverPath(p string) string {
	switch {
	case p == "/~" || p == "":
		return ""
	case strings.HasPrefix(p, "/~/"):
		return strings.TrimPrefix(p, "/~/")
	}
	return p
}

// checkApplies refuses settings that the scheme would ignore, naming the
// configuration key.
func checkApplies(scheme string, s Settings) error {
	type setting struct {
		key     string
		set     bool
		schemes string
	}
	for _, st := range []setting{
		{"password", s.Password != "", "sftp ftp ftps"},
		{"key_file", s.KeyFile != "", "sftp"},
		{"known_hosts", s.KnownHosts != "", "sftp"},
		{"insecure_ignore_host_key", s.InsecureIgnoreHostKey, "sftp"},
		{"ca_file", s.CAFile != "", "ftps"},
		{"insecure_skip_verify", s.InsecureSkipVerify, "ftps"},
		{"endpoint", s.Endpoint != "", "s3"},
		{"region", s.Region != "", "s3"},
		{"path_style", s.PathStyle, "s3"},
		{"access_key_id", s.AccessKeyID != "", "s3"},
		{"secret_access_key", s.SecretAccessKey != "", "s3"},
	} {
		if st.set && !strings.Contains(" "+st.schemes+" ", " "+scheme+" ") {
			return fmt.Errorf("setting %s does not apply to %s:// sources", st.key, scheme)
		}
	}
	if s.Timeout < 0 {
		return errors.New("setting timeout is negative")
	}
	return nil
}

// Redact returns rawURL with any password replaced by "xxxxx", for logs
// and error messages. A URL too malformed to parse loses everything
// between "://" and its last "@".
func Redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	i := strings.Index(rawURL, "://")
	if i < 0 {
		// No authority to speak of; an "@" still hints at credentials.
		if strings.Contains(rawURL, "@") {
			return "(unparsable URL with credentials)"
		}
		return rawURL
	}
	rest := rawURL[i+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return rawURL[:i+3] + "xxxxx" + rest[at:]
	}
	return rawURL
}
