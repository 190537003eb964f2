// Package apitest starts an in-process ihr-api for tests: an httptest
// server on loopback over a fresh SQLite file (or a given PostgreSQL
// database), with one API key and one OAuth client configured.
package apitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/apiserver"
)

// Server is a running test instance. URL has no trailing slash.
type Server struct {
	URL         string
	APIKey      string
	OAuthID     string
	OAuthSecret string
	Server      *apiserver.Server
}

// Option adjusts the configuration before the server starts.
type Option func(*apiserver.Config)

// WithRateLimit turns on per-credential rate limiting.
func WithRateLimit(rps float64, burst int) Option {
	return func(c *apiserver.Config) { c.RateLimit, c.Burst = rps, burst }
}

// WithStrict ignores integration_filename on input.
func WithStrict() Option { return func(c *apiserver.Config) { c.Strict = true } }

// WithPostgres stores in the PostgreSQL database dsn instead of SQLite.
func WithPostgres(dsn string) Option { return func(c *apiserver.Config) { c.DB = dsn } }

// WithMaxBodyBytes sets the request body limit.
func WithMaxBodyBytes(n int64) Option { return func(c *apiserver.Config) { c.MaxBodyBytes = n } }

// WithConfig gives full control for anything the other options miss.
func WithConfig(f func(*apiserver.Config)) Option { return Option(f) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start starts a server and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	ts := &Server{
		APIKey:      "key-" + randomHex(12),
		OAuthID:     "client-" + randomHex(4),
		OAuthSecret: "secret-" + randomHex(12),
	}
	cfg := apiserver.Config{
		DB:           "sqlite:" + filepath.Join(t.TempDir(), "ihr-api.db"),
		APIKeys:      []string{ts.APIKey},
		OAuthClients: map[string]string{ts.OAuthID: ts.OAuthSecret},
		Logger:       zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := apiserver.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("apitest: start ihr-api: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	ts.URL = hs.URL
	ts.Server = s
	return ts
}

// CommitCounts are the SQLite group-commit counters of ihr-api's /metrics:
// commits, and the writes (creates, updates…) they carried.
type CommitCounts struct{ Commits, Writes int64 }

// Commits reads base's counters. The benchmarks take creates per commit
// from two readings: Commits(…).Since(before).PerCommit().
func Commits(t testing.TB, hc *http.Client, base string) CommitCounts {
	t.Helper()
	res, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var c CommitCounts
	for _, line := range strings.Split(string(raw), "\n") {
		var v float64
		if _, err := fmt.Sscanf(line, "ihr_api_sqlite_commits_total %g", &v); err == nil {
			c.Commits = int64(v)
		}
		if _, err := fmt.Sscanf(line, "ihr_api_sqlite_writes_total %g", &v); err == nil {
			c.Writes = int64(v)
		}
	}
	return c
}

// Since is what was counted between an earlier reading and c.
func (c CommitCounts) Since(earlier CommitCounts) CommitCounts {
	return CommitCounts{c.Commits - earlier.Commits, c.Writes - earlier.Writes}
}

// PerCommit is writes per commit, 0 without a commit.
func (c CommitCounts) PerCommit() float64 {
	if c.Commits <= 0 {
		return 0
	}
	return float64(c.Writes) / float64(c.Commits)
}
