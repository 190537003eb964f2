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
	"slices"
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
// setting that does not apply to the URL's scheme is an error (see
// Misapplied).
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

	// Timeout is the connect and per-read/write inactivity limit; 0 is
	// filestore.DefaultTimeout. The worker's configuration has no key for
	// it: only callers that build Settings themselves (tests) change it.
	Timeout time.Duration

	// MaxConns: max_connections, SFTP connections open at once (0: the
	// store's default). With Accounts, SFTP sources of the same host and
	// user share the budget and the connections.
	MaxConns int
	Accounts *sftpstore.Accounts
}

// schemeList names the URL schemes Open accepts, for messages. This
// package is the one place that knows them: the worker's configuration
// checks source URLs with Check and store settings with
// Settings.Misapplied.
const schemeList = "file, sftp, ftp, ftps or s3"

// Check parses a source URL and checks its shape for its scheme (a host
// and user for sftp/ftp/ftps, a bucket for s3, a local path for file),
// without reading or opening anything. The error does not repeat the URL
// (the caller names it, redacted); the scheme of the URL returned is in
// lower case.
func Check(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the raw URL, password and all.
		return nil, errors.New("not a valid URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, errors.New("query, fragment or opaque part not supported")
	}
	switch u.Scheme {
	case "file":
		switch {
		case u.Host != "" && u.Host != "localhost":
			return nil, errors.New("file URLs name a local folder: use file:///path")
		case u.User != nil:
			return nil, errors.New("file URLs take no user")
		case u.Path == "":
			return nil, errors.New("no folder path")
		}
	case "sftp", "ftp", "ftps":
		if u.Hostname() == "" {
			return nil, errors.New("no host")
		}
		if u.User == nil || u.User.Username() == "" {
			return nil, errors.New("no user (write scheme://user@host/path)")
		}
	case "s3":
		if u.User != nil || u.Port() != "" {
			return nil, errors.New("s3 URLs are s3://bucket/prefix (credentials go in the settings)")
		}
		if u.Host == "" {
			return nil, errors.New("no bucket")
		}
	case "":
		return nil, errors.New("no scheme (" + schemeList + ")")
	default:
		return nil, fmt.Errorf("unsupported scheme %q (%s)", u.Scheme, schemeList)
	}
	return u, nil
}

// LocalPath returns the folder a file:// URL names; false for any other
// URL. Local sources differ from remote ones in two ways callers care
// about: a missing folder is an unmounted share, and people want a path
// rather than a URL in messages.
func LocalPath(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil || !strings.EqualFold(u.Scheme, "file") {
		return "", false
	}
	return u.Path, true
}

// Open returns the store the URL names. It checks the URL (Check) and
// settings (Settings.Misapplied) and reads key, known_hosts and CA files,
// but does not connect: the first operation does, so a server that is
// down is that operation's (retryable) error. The store is not wrapped in
// filestore.WithRetry; callers add it. log may be nil.
func Open(ctx context.Context, rawURL string, s Settings, log *zap.Logger) (filestore.Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	safe := Redact(rawURL)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("source url %s: %s", safe, fmt.Sprintf(format, args...))
	}
	u, err := Check(rawURL)
	if err != nil {
		return nil, fail("%v", err)
	}
	if err := checkApplies(u.Scheme, s); err != nil {
		return nil, fail("%v", err)
	}
	log = log.With(zap.String("source", safe))
	var st filestore.Store
	switch u.Scheme {
	case "file":
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
		st, err = s3store.New(ctx, s3store.Config{
			Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: s.Endpoint, Region: s.Region,
			PathStyle: s.PathStyle, AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
			Timeout: s.Timeout,
		}, log)
	}
	if err != nil {
		return nil, fmt.Errorf("source url %s: %w", safe, err)
	}
	return st, nil
}

// login returns host:port, the user and the password from u (which Check
// accepted) and s.
func login(u *url.URL, s Settings, defaultPort string) (addr, user, password string, err error) {
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

// settingKeys are the settings' configuration keys and the schemes each
// applies to.
var settingKeys = []struct {
	key     string
	schemes []string
	isSet   func(*Settings) bool
}{
	{"password", []string{"sftp", "ftp", "ftps"}, func(s *Settings) bool { return s.Password != "" }},
	{"key_file", []string{"sftp"}, func(s *Settings) bool { return s.KeyFile != "" }},
	{"known_hosts", []string{"sftp"}, func(s *Settings) bool { return s.KnownHosts != "" }},
	{"insecure_ignore_host_key", []string{"sftp"}, func(s *Settings) bool { return s.InsecureIgnoreHostKey }},
	{"ca_file", []string{"ftps"}, func(s *Settings) bool { return s.CAFile != "" }},
	{"insecure_skip_verify", []string{"ftps"}, func(s *Settings) bool { return s.InsecureSkipVerify }},
	{"endpoint", []string{"s3"}, func(s *Settings) bool { return s.Endpoint != "" }},
	{"region", []string{"s3"}, func(s *Settings) bool { return s.Region != "" }},
	{"path_style", []string{"s3"}, func(s *Settings) bool { return s.PathStyle }},
	{"access_key_id", []string{"s3"}, func(s *Settings) bool { return s.AccessKeyID != "" }},
	{"secret_access_key", []string{"s3"}, func(s *Settings) bool { return s.SecretAccessKey != "" }},
}

// A Misapplied setting is set for a scheme that would ignore it. Key is
// its configuration key; Schemes are those it applies to.
type Misapplied struct {
	Key     string
	Schemes []string
}

// Misapplied returns the settings of s that scheme ignores, in the order
// of Settings' fields. Open refuses them, so a typo'd source does not
// silently run with defaults; the worker's configuration reports them all
// at load time, each at its key.
func (s Settings) Misapplied(scheme string) []Misapplied {
	var out []Misapplied
	for _, k := range settingKeys {
		if k.isSet(&s) && !slices.Contains(k.schemes, scheme) {
			out = append(out, Misapplied{k.key, k.schemes})
		}
	}
	return out
}

// checkApplies refuses settings that the scheme would ignore, naming the
// configuration key.
func checkApplies(scheme string, s Settings) error {
	if m := s.Misapplied(scheme); len(m) > 0 {
		return fmt.Errorf("setting %s does not apply to %s:// sources", m[0].Key, scheme)
	}
	if s.Timeout < 0 {
		return errors.New("Settings.Timeout is negative")
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
