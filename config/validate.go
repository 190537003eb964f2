package config

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
	"github.com/ihr-tools/ihr/scheduler"
)

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks the whole configuration and returns every problem as
// Errors. Load calls it; call it again after changing a Config (command-line
// overrides).
func (c *Config) Validate() error {
	v := &validator{c: c}
	c.validateAPI(v)
	c.validateState(v)
	if len(c.Sources) == 0 {
		v.add("sources", "at least one source is required")
	}
	names := map[string]int{}
	for i := range c.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		s := &c.Sources[i]
		if j, dup := names[s.Name]; dup && s.Name != "" {
			v.add(p+".name", "%q is already the name of sources[%d]", s.Name, j)
		}
		names[s.Name] = i
		s.validate(v, p)
		s.validateOperations(v, p)
	}
	c.validateOperations(v)
	if len(v.errs) == 0 {
		return nil
	}
	sort.SliceStable(v.errs, func(i, j int) bool {
		li, lj := v.errs[i].Line, v.errs[j].Line
		return li != 0 && (lj == 0 || li < lj)
	})
	return v.errs
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) add(key, format string, args ...any) {
	line := v.c.lines[key]
	if line == 0 {
		// A missing key: point at its parent.
		for p := key; line == 0 && p != ""; {
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
			line = v.c.lines[p]
		}
	}
	v.errs = append(v.errs, &Error{File: v.c.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validateAPI(v *validator) {
	a := &c.API
	switch u, err := url.Parse(a.URL); {
	case a.URL == "":
		v.add("api.url", "is required (your Coupa instance, e.g. https://acme.coupahost.com, or the bundled ihr-api)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.add("api.url", "must be an http:// or https:// URL, got %q", a.URL)
	case u.User != nil:
		v.add("api.url", "must not carry credentials; use api_key or oauth")
	case cleartextTo(u) && !a.AllowInsecureHTTP:
		v.add("api.url", "http:// to %s would send the credentials in cleartext; use https:// (or set api.allow_insecure_http: true)", u.Hostname())
	}
	switch {
	case a.APIKey != "" && a.OAuth != nil:
		v.add("api.oauth", "set either api_key or oauth, not both")
	case a.APIKey == "" && a.OAuth == nil:
		v.add("api.api_key", "set api_key (or api_key_file), or oauth")
	}
	if o := a.OAuth; o != nil {
		if o.ClientID == "" {
			v.add("api.oauth.client_id", "is required")
		}
		if o.ClientSecret == "" {
			v.add("api.oauth.client_secret", "is required (or client_secret_file)")
		}
		if len(o.Scopes) == 0 {
			v.add("api.oauth.scopes", "must list at least one scope")
		}
		switch o.AuthMethod {
		case "", "client_secret_post", "client_secret_basic":
		default:
			v.add("api.oauth.auth_method", "must be client_secret_post or client_secret_basic, got %q", o.AuthMethod)
		}
		if u, err := url.Parse(o.TokenURL); o.TokenURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			v.add("api.oauth.token_url", "must be an http:// or https:// URL, got %q", o.TokenURL)
		} else if o.TokenURL != "" && cleartextTo(u) && !a.AllowInsecureHTTP {
			v.add("api.oauth.token_url", "http:// to %s would send the client secret in cleartext; use https:// (or set api.allow_insecure_http: true)", u.Hostname())
		}
	}
	if a.RateLimit < 0 {
		v.add("api.rate_limit", "must not be negative (0 means unlimited)")
	}
	if a.Burst < 0 {
		v.add("api.burst", "must not be negative")
	}
	if a.Concurrency < 1 || a.Concurrency > 256 {
		v.add("api.concurrency", "must be between 1 and 256, got %d", a.Concurrency)
	}
	if a.MaxRetries < 0 || a.MaxRetries > 100 {
		v.add("api.max_retries", "must be between 0 and 100, got %d", a.MaxRetries)
	}
	if a.Timeout <= 0 {
		v.add("api.timeout", "must be positive, got %s", a.Timeout)
	}
}

func (c *Config) validateState(v *validator) {
	if c.Lease < 0 || (c.Lease > 0 && c.Lease < time.Second) {
		v.add("lease", "must be at least 1s, got %s", c.Lease)
	}
	s := c.State
	switch {
	case s == "":
		v.add("state", "is required: sqlite:/path/state.db or postgres://user@host/db")
	case strings.HasPrefix(s, "sqlite:"):
		if strings.TrimPrefix(strings.TrimPrefix(s, "sqlite:"), "//") == "" {
			v.add("state", "sqlite: needs a file path, e.g. sqlite:/var/lib/ihr/state.db")
		}
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := url.Parse(s); err != nil {
			v.add("state", "invalid PostgreSQL URL")
		}
	default:
		v.add("state", "must start with sqlite: or postgres://, got %q", storeurl.Redact(s))
	}
}

func (s *Source) validate(v *validator, p string) {
	if s.Name == "" {
		v.add(p+".name", "is required")
	} else if !sourceName.MatchString(s.Name) {
		v.add(p+".name", "%q: use letters, digits, '.', '_' and '-' only", s.Name)
	}
	scheme := ""
	switch u, err := storeurl.Check(s.URL); {
	case s.URL == "":
		v.add(p+".url", "is required (file:///…, sftp://…, ftp://…, ftps://… or s3://bucket/prefix)")
	case err != nil:
		v.add(p+".url", "%v", err)
	default:
		scheme = u.Scheme
		if _, has := u.User.Password(); u.User != nil && has {
			v.add(p+".url", "must not carry a password; use password or password_file")
		}
		if host := s.cleartextFTP(); host != "" && !s.AllowInsecureFTP {
			v.add(p+".url", "ftp:// to %s would send the password in cleartext; use ftps:// (or set %s.allow_insecure_ftp: true)", host, p)
		}
	}
	if scheme != "" {
		for _, m := range s.StoreSettings().Misapplied(scheme) {
			v.add(p+"."+m.Key, "applies to %s sources only, this one is %s://", strings.Join(m.Schemes, "/"), scheme)
		}
		if s.AllowInsecureFTP && scheme != "ftp" {
			v.add(p+".allow_insecure_ftp", "applies to ftp sources only, this one is %s://", scheme)
		}
		if s.KnownHosts != "" && s.InsecureIgnoreHostKey {
			v.add(p+".insecure_ignore_host_key", "set either known_hosts or insecure_ignore_host_key, not both")
		}
		if s.SecretAccessKey != "" && s.AccessKeyID == "" {
			v.add(p+".access_key_id", "is required with secret_access_key")
		}
		if s.AccessKeyID != "" && s.SecretAccessKey == "" {
			v.add(p+".secret_access_key", "is required with access_key_id (or secret_access_key_file)")
		}
		if s.Endpoint != "" {
			if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(p+".endpoint", "must be an http:// or https:// URL, got %q", s.Endpoint)
			}
		}
	}
	if s.Include == "" {
		v.add(p+".include", "must not be empty (default %q)", DefaultInclude)
	} else if _, err := path.Match(s.Include, ""); err != nil || strings.Contains(s.Include, "/") {
		v.add(p+".include", "invalid file name pattern %q", s.Include)
	}
	if enc, ok := parse.Encoding(s.Encoding); ok {
		s.Encoding = enc
	} else {
		v.add(p+".encoding", "unsupported encoding %q (use %s)", s.Encoding, strings.Join(parse.Encodings, ", "))
	}
	if s.Schedule != "" {
		if _, err := scheduler.ParseSchedule(s.Schedule); err != nil {
			v.add(p+".schedule", "invalid cron expression %q: %v", s.Schedule, err)
		}
	}
	if s.Poll < 0 || (s.Poll > 0 && s.Poll.Seconds() < 1) {
		v.add(p+".poll", "must be at least 1s, got %s", s.Poll)
	}
	if s.StableFor < 0 {
		v.add(p+".stable_for", "must not be negative, got %s", s.StableFor)
	}
	if s.SplitRows < 0 {
		v.add(p+".split_rows", "must not be negative (0 = never split), got %d", s.SplitRows)
	}
	s.validateFolders(v, p)
	s.validateMapping(v, p)
	s.validateUnwrap(v, p)
}

func (s *Source) validateFolders(v *validator, p string) {
	f := &s.Folders
	seen := map[string]string{}
	for _, e := range []struct {
		key string
		val *string
	}{{"inbox", &f.Inbox}, {"archive", &f.Archive}, {"failed", &f.Failed}, {"reports", &f.Reports}} {
		k := p + ".folders." + e.key
		c, err := filestore.CleanName(*e.val)
		switch {
		case err != nil:
			v.add(k, "%q must be a relative path inside the source", *e.val)
			continue
		case c == "":
			v.add(k, "must not be empty or the source root")
			continue
		}
		*e.val = c
		if other, dup := seen[c]; dup {
			v.add(k, "%q is also the %s folder; each folder must be distinct", c, other)
		}
		seen[c] = e.key
	}
}

// validateMapping reports every problem mapping.Check finds, at the
// key's path, then normalises the element names (so a later repeat of an
// element in another spelling is caught here).
func (s *Source) validateMapping(v *validator, p string) {
	m := &s.Mapping
	for _, pr := range mapping.Check(*m) {
		v.add(fmt.Sprintf("%s.mapping.%s[%q]", p, pr.Block, pr.Name), "%s", pr.Msg)
	}
	m.Columns = normalizeElements(v, p+".mapping.columns", m.Columns)
	m.Defaults = normalizeElements(v, p+".mapping.defaults", m.Defaults)
}

// normalizeElements rewrites element names to their canonical spelling.
// A name that is not an element is left out (Check has reported it).
func normalizeElements(v *validator, key string, in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if !mapping.IsElement(k) {
			continue
		}
		n := record.NormalizeKey(k)
		if _, dup := out[n]; dup {
			v.add(fmt.Sprintf("%s[%q]", key, k), "names the element %s twice", n)
		}
		out[n] = in[k]
	}
	return out
}

// cleartextTo reports an http:// URL whose host is not loopback: what is
// sent there crosses the network readable by anyone on the path.
func cleartextTo(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, "http") && !isLoopback(u.Hostname())
}

// cleartextFTP is the host an ftp:// source would send its password to in
// cleartext: "" for another scheme, no password or a loopback host. The
// check (refused without allow_insecure_ftp) and the warning (with it)
// both ask here.
func (s *Source) cleartextFTP() string {
	u, err := url.Parse(s.URL)
	if err != nil || !strings.EqualFold(u.Scheme, "ftp") || s.Password == "" || u.Hostname() == "" || isLoopback(u.Hostname()) {
		return ""
	}
	return u.Hostname()
}

// isLoopback reports localhost, 127.0.0.0/8 and ::1. Other names are not
// resolved: a name that resolves to loopback today may not tomorrow.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Warnings lists what the configuration allows that is unsafe: cleartext
// credentials by api.allow_insecure_http or allow_insecure_ftp. The
// commands log each on every start, so it is never forgotten.
func (c *Config) Warnings() []string {
	var out []string
	if c.API.AllowInsecureHTTP {
		for _, e := range []struct{ key, raw string }{{"api.url", c.API.URL}, {"api.oauth.token_url", c.oauthTokenURL()}} {
			if u, err := url.Parse(e.raw); e.raw != "" && err == nil && cleartextTo(u) {
				out = append(out, fmt.Sprintf("%s: credentials go to %s in cleartext (api.allow_insecure_http: true)", e.key, u.Hostname()))
			}
		}
	}
	for i, s := range c.Sources {
		if host := s.cleartextFTP(); host != "" && s.AllowInsecureFTP {
			out = append(out, fmt.Sprintf("sources[%d].url: the FTP password goes to %s in cleartext (allow_insecure_ftp: true)", i, host))
		}
	}
	return out
}

func (c *Config) oauthTokenURL() string {
	if c.API.OAuth == nil {
		return ""
	}
	return c.API.OAuth.TokenURL
}
