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
)

// Defaults applied to keys the file leaves out.
const (
	DefaultRateLimit   = 20.0 // requests per second, all sources together
	DefaultConcurrency = 4
	DefaultTimeout     = 60 * time.Second
	DefaultMaxRetries  = 6
	DefaultInclude     = "*.csv"
	DefaultEncoding    = "auto"
	DefaultStableFor   = 10 * time.Second
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

	file  string         // path given to Load, for messages
	lines map[string]int // key path → line, for validation messages
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
	// extension of the spec's keys, default DefaultMaxRetries.
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

// OAuth is the client-credentials grant Coupa uses for API access.
type OAuth struct {
	ClientID     string   `yaml:"client_id"`
	ClientSecret Secret   `yaml:"client_secret"` // or client_secret_file
	Scopes       []string `yaml:"scopes"`
	TokenURL     string   `yaml:"token_url"` // default: {api.url}/oauth2/token
}

// Source is one ERP drop folder and how its files map to records. Store
// settings sit on the source, flat, as the spec has them; each applies to
// some URL schemes only, and validation refuses the others.
type Source struct {
	Name                  string        `yaml:"name"`
	URL                   string        `yaml:"url"`
	Integration           string        `yaml:"integration"`
	Include               string        `yaml:"include"`
	Encoding              string        `yaml:"encoding"`
	Mapping               Mapping       `yaml:"mapping"`
	Schedule              string        `yaml:"schedule"`
	Poll                  time.Duration `yaml:"poll"`
	ResolvePrevious       bool          `yaml:"resolve_previous"`
	StableFor             time.Duration `yaml:"stable_for"`
	Folders               Folders       `yaml:"folders"`
	AllowDuplicateContent bool          `yaml:"allow_duplicate_content"`
	SplitRows             int           `yaml:"split_rows"` // > 0: split files above this many rows among workers (importer.Source.SplitRows)

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

// Mapping adapts an input layout to the record elements. Element names in
// Columns and Defaults are normalised to their hyphenated lower-case form.
type Mapping struct {
	Columns  map[string]string `yaml:"columns"`  // element → input column
	Defaults map[string]string `yaml:"defaults"` // element → value when absent or empty
	Actions  map[string]string `yaml:"actions"`  // status value (or "*") → action
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
}

// Load reads, decodes and validates the configuration file at path.
// Relative file paths inside it are relative to the file's folder.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, Options{File: path, Dir: filepath.Dir(path)})
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
	if len(d.errs) > 0 {
		return nil, d.errs.withFile(opt.File)
	}
	c.finish()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// defaults returns a Config holding every top-level default; sources get
// theirs as the decoder creates them (see newSource).
func defaults() *Config {
	return &Config{API: API{RateLimit: DefaultRateLimit, Concurrency: DefaultConcurrency, Timeout: DefaultTimeout, MaxRetries: DefaultMaxRetries}}
}

func newSource() Source {
	return Source{
		Include:   DefaultInclude,
		Encoding:  DefaultEncoding,
		StableFor: DefaultStableFor,
		Folders:   Folders{Inbox: "inbox", Archive: "archive", Failed: "failed", Reports: "reports"},
	}
}

// finish fills defaults that depend on other keys.
func (c *Config) finish() {
	if c.API.Burst == 0 && c.API.RateLimit > 0 {
		c.API.Burst = int(c.API.RateLimit)
		if float64(c.API.Burst) < c.API.RateLimit {
			c.API.Burst++
		}
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

// Scheme returns the source URL's scheme in lower case ("" if unparsable).
func (s *Source) Scheme() string {
	u, err := url.Parse(s.URL)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// RedactedURL is the source URL safe to log: any password in it is masked.
func (s *Source) RedactedURL() string { return RedactURL(s.URL) }

// RedactURL masks the password of a URL, for logs and messages. A string
// that does not parse is returned as "<invalid URL>" rather than risk
// printing a secret.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
}

// String prints a one-line description without secrets.
func (s Source) String() string {
	return fmt.Sprintf("%s (%s)", s.Name, s.RedactedURL())
}
