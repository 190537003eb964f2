// Package config reads the ihr-worker configuration file (YAML; JSON is
// valid YAML) whose keys are fixed by the worker spec.
//
// Load does, in order: strict decoding (an unknown or repeated key is an
// error), ${VAR} expansion of every scalar value from the environment,
// reading any secret given as a *_file path, defaults, then validation.
// Every error names the key at fault as a path such as
// `sources[1].schedule`, with the file and line where known.
//
// Secrets are held as Secret, which prints, logs and marshals as "***"; call
// Reveal only where the value goes on the wire.
package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/mapping"
)

// Defaults applied to keys the file leaves out. The api block's defaults
// are the API client's (apiclient.DefaultRateLimit, DefaultConcurrency,
// DefaultTimeout, DefaultMaxRetries, DefaultBurst), so the worker and the
// client cannot disagree.
const (
	DefaultInclude   = "*.csv"
	DefaultEncoding  = "auto"
	DefaultStableFor = 10 * time.Second
)

// DefaultScopes are requested when oauth.scopes is absent: what the worker
// needs to post records and to export them.
var DefaultScopes = []string{"core.integration.write", "core.integration.read"}

// Config is the whole file.
type Config struct {
	API     API      `yaml:"api"`
	State   string   `yaml:"state"` // sqlite:PATH or postgres://…
	Sources []Source `yaml:"sources"`
	// Lease is how long a file's claim outlives a worker that stopped
	// heartbeating (killed, host lost) before another replica on the same
	// PostgreSQL state may resume the file; 0 means the pipeline's
	// default (2m). An extension of the spec's keys.
	Lease time.Duration `yaml:"lease"`
	// Notify lists the channels operator notifications go to (see
	// operations.go); Dashboard protects serve's dashboard.
	Notify    []Notify  `yaml:"notify"`
	Dashboard Dashboard `yaml:"dashboard"`
	// Report tunes the response reports and export output.
	Report Report `yaml:"report"`

	file  string         // path given to Load, for messages
	lines map[string]int // key path → line, for validation messages
}

// Report tunes the CSV the worker writes (response reports, export).
type Report struct {
	// EscapeFormulas writes a cell taken from input that begins with =, +,
	// -, @, TAB or CR with a leading ' so spreadsheets do not run it
	// (OWASP's CSV-injection rule). Default true.
	EscapeFormulas bool `yaml:"escape_formulas"`
}

// API says how to reach the Integration History Records API.
type API struct {
	URL         string        `yaml:"url"`
	APIKey      Secret        `yaml:"api_key"` // or api_key_file
	OAuth       *OAuth        `yaml:"oauth"`
	RateLimit   float64       `yaml:"rate_limit"` // requests/s; 0 = unlimited
	Burst       int           `yaml:"burst"`      // default: ceil(rate_limit)
	Concurrency int           `yaml:"concurrency"`
	Timeout     time.Duration `yaml:"timeout"` // per request
	// MaxRetries bounds retries of a transient failure (connection
	// refused, timeout, 429, 502-504) per request; 0 disables them. An
	// extension of the spec's keys, default apiclient.DefaultMaxRetries.
	MaxRetries int `yaml:"max_retries"`
	// CAFile is a PEM bundle that replaces the system roots when
	// verifying the API's certificate (a self-hosted ihr-api with its own
	// CA). An extension of the spec's keys.
	CAFile string `yaml:"ca_file" path:"true"`
	// AllowInsecureHTTP lets url and oauth.token_url be http:// to a host
	// that is not loopback, sending the credentials in cleartext. Every
	// start then logs a warning (Config.Warnings).
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
}

// ClientConfig is the api block as apiclient.New takes it, secrets
// revealed. The file says 0 for "no limit" and "no retries", where the
// client reads 0 as "its default" and a negative number as "none"; this is
// the one place that translates.
func (a *API) ClientConfig() apiclient.Config {
	c := apiclient.Config{
		BaseURL:    a.URL,
		APIKey:     a.APIKey.Reveal(),
		RateLimit:  a.RateLimit,
		Burst:      a.Burst,
		Timeout:    a.Timeout,
		MaxRetries: a.MaxRetries,
	}
	if a.RateLimit == 0 {
		c.RateLimit = -1
	}
	if a.MaxRetries == 0 {
		c.MaxRetries = -1
	}
	if o := a.OAuth; o != nil {
		c.OAuth = &apiclient.OAuthConfig{
			TokenURL:     o.TokenURL,
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret.Reveal(),
			Scopes:       o.Scopes,
			AuthMethod:   o.AuthMethod,
		}
	}
	return c
}

// OAuth is the client-credentials grant Coupa uses for API access.
type OAuth struct {
	ClientID     string   `yaml:"client_id"`
	ClientSecret Secret   `yaml:"client_secret"` // or client_secret_file
	Scopes       []string `yaml:"scopes"`
	TokenURL     string   `yaml:"token_url"` // default: {api.url}/oauth2/token
	// AuthMethod is how the id and secret reach the token endpoint:
	// client_secret_post (default, form fields as Coupa documents) or
	// client_secret_basic (HTTP Basic, form-urlencoded per RFC 6749).
	AuthMethod string `yaml:"auth_method"`
}

// Source is one ERP drop folder and how its files map to records. Store
// settings sit on the source, flat, as the spec has them; each applies to
// some URL schemes only, and validation refuses the others.
type Source struct {
	Name                  string         `yaml:"name"`
	URL                   string         `yaml:"url"`
	Integration           string         `yaml:"integration"`
	Include               string         `yaml:"include"`
	Encoding              string         `yaml:"encoding"`
	Mapping               mapping.Config `yaml:"mapping"`
	Schedule              string         `yaml:"schedule"`
	Poll                  time.Duration  `yaml:"poll"`
	ResolvePrevious       bool           `yaml:"resolve_previous"`
	StableFor             time.Duration  `yaml:"stable_for"`
	Folders               Folders        `yaml:"folders"`
	AllowDuplicateContent bool           `yaml:"allow_duplicate_content"`
	SplitRows             int            `yaml:"split_rows"` // > 0: split files above this many rows among workers (importer.Source.SplitRows)
	// Operator's view (operations.go).
	Expect         *Expect `yaml:"expect"`
	Retain         *Retain `yaml:"retain"`
	DownAfter      int     `yaml:"down_after"`
	MaxConnections int     `yaml:"max_connections"`
	// OverdueAfter: serve reports a pass over the source still running
	// after this long (metrics, log, dashboard); 0 never does.
	OverdueAfter time.Duration `yaml:"overdue_after"`

	// Encrypted, compressed and manifest-checked drops (config/unwrap.go).
	Decrypt          *Decrypt       `yaml:"decrypt"`
	Verify           *PublicKey     `yaml:"verify"`
	EncryptReportsTo *PublicKey     `yaml:"encrypt_reports_to"`
	Completeness     *Completeness  `yaml:"completeness"`
	Decompression    *Decompression `yaml:"decompression"`

	// SFTP (password also FTP/FTPS).
	Password              Secret `yaml:"password"` // or password_file
	KeyFile               string `yaml:"key_file" path:"true"`
	KnownHosts            string `yaml:"known_hosts" path:"true"`
	InsecureIgnoreHostKey bool   `yaml:"insecure_ignore_host_key"`
	// AllowInsecureFTP lets an ftp:// source with a password reach a
	// host that is not loopback, sending the password in cleartext.
	AllowInsecureFTP bool `yaml:"allow_insecure_ftp"`
	// FTPS.
	CAFile             string `yaml:"ca_file" path:"true"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// S3.
	Endpoint        string `yaml:"endpoint"`
	Region          string `yaml:"region"`
	PathStyle       bool   `yaml:"path_style"`
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey Secret `yaml:"secret_access_key"` // or secret_access_key_file
}

// Folders are the source's folders, relative to the source URL's path.
type Folders struct {
	Inbox   string `yaml:"inbox"`
	Archive string `yaml:"archive"`
	Failed  string `yaml:"failed"`
	Reports string `yaml:"reports"`
}

// Options tune Parse. The zero value reads the process environment and
// resolves relative file paths against the working directory.
type Options struct {
	// File names the configuration in messages ("worker.yaml:12: …").
	File string
	// Dir resolves relative *_file, key_file, known_hosts and ca_file paths.
	Dir string
	// LookupEnv replaces os.LookupEnv, for tests.
	LookupEnv func(string) (string, bool)
	// NoAPI is for commands that make no API call (validate): problems
	// under the api key, such as credentials whose environment variable
	// is not set, are not errors then.
	NoAPI bool
}

// Load reads, decodes and validates the configuration file at path.
// Relative file paths inside it are relative to the file's folder.
func Load(path string) (*Config, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options; File and Dir are set from path.
func LoadWith(path string, opt Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	opt.File, opt.Dir = path, filepath.Dir(path)
	return Parse(data, opt)
}

// Parse decodes and validates a configuration held in memory.
func Parse(data []byte, opt Options) (*Config, error) {
	if opt.LookupEnv == nil {
		opt.LookupEnv = os.LookupEnv
	}
	c := defaults()
	d := &decoder{opt: opt, lines: map[string]int{}}
	d.decodeDocument(data, c)
	c.file, c.lines = opt.File, d.lines
	if opt.NoAPI {
		d.errs = d.errs.withoutAPI()
	}
	if len(d.errs) > 0 {
		return nil, d.errs.withFile(opt.File)
	}
	c.finish()
	if err := c.Validate(); err != nil {
		if es, ok := err.(Errors); ok && opt.NoAPI {
			if es = es.withoutAPI(); len(es) == 0 {
				return c, nil
			}
			return nil, es
		}
		return nil, err
	}
	return c, nil
}

// defaults returns a Config holding every top-level default; sources get
// theirs as the decoder creates them (see newSource).
func defaults() *Config {
	return &Config{API: API{
		RateLimit:   apiclient.DefaultRateLimit,
		Concurrency: apiclient.DefaultConcurrency,
		Timeout:     apiclient.DefaultTimeout,
		MaxRetries:  apiclient.DefaultMaxRetries,
	}, Report: Report{EscapeFormulas: true}}
}

func newSource() Source {
	return Source{
		Include:        DefaultInclude,
		Encoding:       DefaultEncoding,
		StableFor:      DefaultStableFor,
		DownAfter:      DefaultDownAfter,
		MaxConnections: DefaultMaxConnections,
		OverdueAfter:   DefaultOverdueAfter,
		Folders:        Folders{Inbox: "inbox", Archive: "archive", Failed: "failed", Reports: "reports"},
	}
}

// finish fills defaults that depend on other keys.
func (c *Config) finish() {
	if c.API.Burst == 0 && c.API.RateLimit > 0 {
		c.API.Burst = apiclient.DefaultBurst(c.API.RateLimit)
	}
	if o := c.API.OAuth; o != nil {
		if o.Scopes == nil {
			o.Scopes = append([]string(nil), DefaultScopes...)
		}
		if o.TokenURL == "" && c.API.URL != "" {
			if u, err := url.Parse(c.API.URL); err == nil {
				u.Path = singleSlashJoin(u.Path, "oauth2/token")
				u.RawQuery, u.Fragment = "", ""
				o.TokenURL = u.String()
			}
		}
	}
}

func singleSlashJoin(a, b string) string {
	for len(a) > 0 && a[len(a)-1] == '/' {
		a = a[:len(a)-1]
	}
	return a + "/" + b
}

// Source returns the source named name.
func (c *Config) Source(name string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

// RedactedURL is the source URL safe to log: any password in it is masked.
func (s *Source) RedactedURL() string { return storeurl.Redact(s.URL) }

// StoreSettings are the source's store settings as storeurl.Open takes
// them, secrets revealed: pass them on, never print them.
func (s *Source) StoreSettings() storeurl.Settings {
	return storeurl.Settings{
		Password: s.Password.Reveal(), KeyFile: s.KeyFile, KnownHosts: s.KnownHosts,
		InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
		CAFile:                s.CAFile, InsecureSkipVerify: s.InsecureSkipVerify,
		Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle,
		AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey.Reveal(),
	}
}

// String prints a one-line description without secrets.
func (s Source) String() string {
	return fmt.Sprintf("%s (%s)", s.Name, s.RedactedURL())
}
