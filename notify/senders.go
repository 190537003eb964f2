package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"strings"
	"time"

	"github.com/ihr-tools/ihr/internal/certpool"
)

// Webhook POSTs the event as JSON (the Event fields; see docs).
type Webhook struct {
	URL    string
	Client *http.Client // default: http.DefaultClient (attempts are bounded by ctx)
}

// ID implements Channel.
func (w *Webhook) ID() string { return channelID("webhook", w.URL) }

// Send implements Channel.
func (w *Webhook) Send(ctx context.Context, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return post(ctx, w.Client, w.URL, body)
}

// Slack POSTs {"text": …} to a Slack-compatible incoming webhook
// (Slack, Mattermost, Rocket.Chat, Teams' Slack-compatible connector).
type Slack struct {
	URL    string
	Client *http.Client
}

// ID implements Channel.
func (s *Slack) ID() string { return channelID("slack", s.URL) }

// Send implements Channel.
func (s *Slack) Send(ctx context.Context, e Event) error {
	text := e.Text()
	if e.URL != "" {
		text += " <" + e.URL + "|details>"
	}
	body, err := json.Marshal(map[string]string{"text": text})
	if err != nil {
		return err
	}
	return post(ctx, s.Client, s.URL, body)
}

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ihr-worker")
	resp, err := c.Do(req)
	if err != nil {
		// The URL may hold a token: report the host only.
		return fmt.Errorf("POST %s: %w", req.URL.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: HTTP %d", req.URL.Host, resp.StatusCode)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// Email sends the event as a plain-text mail over SMTP.
type Email struct {
	Addr     string // host:port
	From     string
	To       []string
	Username string
	Password string
	StartTLS bool   // require STARTTLS before AUTH and DATA
	CAFile   string // verify the server against this CA (default: system roots)
}

// ID implements Channel.
func (m *Email) ID() string { return channelID("email", m.Addr+" "+strings.Join(m.To, ",")) }

// Send implements Channel.
func (m *Email) Send(ctx context.Context, e Event) error {
	host, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.Addr, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.Addr, err)
	}
	// net/smtp has no context: the deadline bounds the whole exchange, and
	// a cancel closes the connection.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", m.Addr, err)
	}
	defer c.Close()
	if err := m.session(c, host, e); err != nil {
		return fmt.Errorf("smtp %s: %w", m.Addr, err)
	}
	return nil
}

func (m *Email) session(c *smtp.Client, host string, e Event) error {
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	if m.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS (starttls: true)")
		}
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if m.CAFile != "" {
			pool, err := certpool.Load(m.CAFile)
			if err != nil {
				return err
			}
			tc.RootCAs = pool
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if m.Username != "" {
		// PlainAuth refuses to send the password unencrypted except to
		// localhost.
		if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password, host)); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return err
	}
	for _, to := range m.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(m.message(e)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func (m *Email) message(e Event) []byte {
	var b bytes.Buffer
	subject := strings.NewReplacer("\r", " ", "\n", " ").Replace(e.Text())
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@ihr-worker>\r\n",
		m.From, strings.Join(m.To, ", "), subject, e.At.Format(time.RFC1123Z), channelID("m", e.ID)[2:])
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	body, _ := json.MarshalIndent(e, "", "  ")
	fmt.Fprintf(&b, "%s\r\n\r\n%s\r\n", e.Text(), strings.ReplaceAll(string(body), "\n", "\r\n"))
	return b.Bytes()
}
