package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ihr-tools/ihr/scheduler"
)

// Defaults of the operator's view keys.
const (
	// DefaultDownAfter is how many failed passes in a row make a source
	// (or the API) "down" for notifications.
	DefaultDownAfter = 3
	// DefaultOverdueAfter is how long a pass may run before serve reports
	// it overdue.
	DefaultOverdueAfter = time.Hour
	// DefaultMaxConnections is Coupa's SFTP limit per account.
	DefaultMaxConnections = 5
)

// Events are the notification event kinds a notify entry may name.
var Events = []string{"file_failed", "source_down", "delivery_missed", "recovered"}

// Notify is one notification channel: exactly one of Webhook, Slack and
// Email, and the events it receives (empty: all).
type Notify struct {
	Webhook Secret   `yaml:"webhook"` // or webhook_file: URLs often carry a token
	Slack   Secret   `yaml:"slack"`   // or slack_file
	Email   *Email   `yaml:"email"`
	Events  []string `yaml:"events"`
}

// Email sends notifications over SMTP.
type Email struct {
	SMTP     string   `yaml:"smtp"` // host:port
	From     string   `yaml:"from"`
	To       []string `yaml:"to"`
	Username string   `yaml:"username"`
	Password Secret   `yaml:"password"` // or password_file
	StartTLS bool     `yaml:"starttls"`
	// CAFile verifies the server's certificate (default: system roots).
	CAFile string `yaml:"ca_file" path:"true"`
}

// Dashboard protects serve's dashboard. With neither set the dashboard is
// open to whoever reaches --metrics-addr (loopback by default).
type Dashboard struct {
	// URL is where operators reach the dashboard (behind a proxy, say);
	// notifications link to it. Optional.
	URL      string `yaml:"url"`
	Token    Secret `yaml:"token"` // or token_file: "Authorization: Bearer …"
	Username string `yaml:"username"`
	Password Secret `yaml:"password"` // or password_file: HTTP basic auth
}

// Expect declares when a source's file must arrive: one file first seen
// within Within after each firing of the cron Schedule.
type Expect struct {
	Schedule string        `yaml:"schedule"`
	Within   time.Duration `yaml:"within"`
}

// Retain turns on deletion of old files, from archive/ and reports/ only.
// Zero leaves a folder alone.
type Retain struct {
	Archive time.Duration `yaml:"archive"`
	Reports time.Duration `yaml:"reports"`
}

// parseDuration is time.ParseDuration plus a whole-days form ("90d"), the
// unit retention periods are thought in.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func (s *Source) validateOperations(v *validator, p string) {
	if e := s.Expect; e != nil {
		if e.Schedule == "" {
			v.add(p+".expect.schedule", "is required (cron, e.g. \"0 2 * * 1-5\")")
		} else if _, err := scheduler.ParseSchedule(e.Schedule); err != nil {
			v.add(p+".expect.schedule", "%v", err)
		}
		if e.Within <= 0 {
			v.add(p+".expect.within", "must be a positive duration such as 2h")
		}
	}
	if r := s.Retain; r != nil {
		if r.Archive < 0 || r.Reports < 0 {
			v.add(p+".retain", "periods must not be negative")
		}
		if r.Archive > 0 && r.Archive < time.Hour || r.Reports > 0 && r.Reports < time.Hour {
			// A typo like "90s" for "90d" would delete almost everything.
			v.add(p+".retain", "a retention period under 1h is refused (did you mean days, e.g. 90d?)")
		}
	}
	if s.DownAfter < 1 {
		v.add(p+".down_after", "must be at least 1")
	}
	if s.OverdueAfter < 0 {
		v.add(p+".overdue_after", "must not be negative (0: never report a pass overdue)")
	}
	if s.MaxConnections < 1 {
		v.add(p+".max_connections", "must be at least 1")
	}
}

// Account is the SFTP login a source uses ("sftp://user@host:port", the
// port always spelled out), or "" for other stores. Sources with the same
// account share one connection budget (max_connections); the SFTP store
// shares its connections by the same host, port and user, so
// sftp://u@h/a and sftp://u@h:22/b are one account here as there. FTP
// stores share nothing and take no max_connections.
func (s *Source) Account() string {
	u, err := url.Parse(s.URL)
	if err != nil || !strings.EqualFold(u.Scheme, "sftp") {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	return "sftp://" + u.User.Username() + "@" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func (c *Config) validateOperations(v *validator) {
	for i := range c.Notify {
		n := &c.Notify[i]
		p := fmt.Sprintf("notify[%d]", i)
		set := 0
		for _, b := range []bool{n.Webhook != "", n.Slack != "", n.Email != nil} {
			if b {
				set++
			}
		}
		if set != 1 {
			v.add(p, "set exactly one of webhook, slack and email")
		}
		for _, k := range []struct {
			key string
			val Secret
		}{{"webhook", n.Webhook}, {"slack", n.Slack}} {
			if k.val == "" {
				continue
			}
			if u, err := url.Parse(k.val.Reveal()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(p+"."+k.key, "must be an http:// or https:// URL")
			}
		}
		if e := n.Email; e != nil {
			if e.SMTP == "" {
				v.add(p+".email.smtp", "is required (host:port)")
			}
			if e.From == "" {
				v.add(p+".email.from", "is required")
			}
			if len(e.To) == 0 {
				v.add(p+".email.to", "needs at least one address")
			}
			if e.Password != "" && e.Username == "" {
				v.add(p+".email.username", "is required with a password")
			}
		}
		for j, ev := range n.Events {
			if !slices.Contains(Events, ev) {
				v.add(fmt.Sprintf("%s.events[%d]", p, j), "unknown event %q (want one of %s)", ev, strings.Join(Events, ", "))
			}
		}
	}
	if d := c.Dashboard; d.Token != "" && (d.Username != "" || d.Password != "") {
		v.add("dashboard", "set either token or username/password, not both")
	} else if (d.Username == "") != (d.Password == "") {
		v.add("dashboard", "basic auth needs both username and password")
	}
	// One budget per account: its sources must agree on its size.
	first := map[string]int{}
	for i := range c.Sources {
		s := &c.Sources[i]
		a := s.Account()
		if a == "" {
			continue
		}
		if j, ok := first[a]; ok && c.Sources[j].MaxConnections != s.MaxConnections {
			v.add(fmt.Sprintf("sources[%d].max_connections", i), "%d differs from sources[%d] (%s), which uses the same account and so the same connection budget (%d)",
				s.MaxConnections, j, c.Sources[j].Name, c.Sources[j].MaxConnections)
		} else if !ok {
			first[a] = i
		}
	}
}
