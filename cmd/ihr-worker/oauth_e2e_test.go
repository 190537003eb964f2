package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/internal/binharness"
)

// TestOAuthReservedCharactersEndToEnd runs the built ihr-api with an
// OAuth client whose id and secret hold + % @ / (the secret also ':'; the
// ID:SECRET setting splits at the first ':'), gets tokens from it with
// golang.org/x/oauth2/clientcredentials (an RFC 6749 client from outside
// this project) through client_secret_basic and client_secret_post, then
// runs the built worker with api.oauth.auth_method set to each, and checks
// every row was recorded by that client.
func TestOAuthReservedCharactersEndToEnd(t *testing.T) {
	const id, secret = "erp+client%41@acme.example/eu", "p+ss%2Fw0rd@host:443/path ?&=ü"
	api := binharness.StartAPI(t, binharness.APIOptions{Key: apiKey, OAuthID: id, OAuthSecret: secret, Integrations: []string{"ERP-INVOICES"}})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	for name, style := range map[string]oauth2.AuthStyle{"client_secret_basic": oauth2.AuthStyleInHeader, "client_secret_post": oauth2.AuthStyleInParams} {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: api.URL + "/oauth2/token", AuthStyle: style}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("x/oauth2 %s against the ihr-api binary: %v", name, err)
		}
		if tok.Extra("scope") != "core.integration.read core.integration.write" {
			t.Fatalf("x/oauth2 %s: scope %v", name, tok.Extra("scope"))
		}
	}

	for _, method := range []string{apiclient.AuthBasic, apiclient.AuthPost} {
		dir := t.TempDir()
		src := filepath.Join(dir, "erp")
		if err := os.MkdirAll(filepath.Join(src, "inbox"), 0o755); err != nil {
			t.Fatal(err)
		}
		prefix := map[string]string{apiclient.AuthBasic: "OB", apiclient.AuthPost: "OP"}[method]
		if err := os.WriteFile(filepath.Join(src, "inbox", "o.csv"), []byte(goodRows(prefix, 3)), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "worker.yaml")
		yaml := fmt.Sprintf(`api:
  url: %s
  oauth:
    client_id: %q
    client_secret: ${OAUTH_SECRET}
    auth_method: %s
  rate_limit: 0
  max_retries: 1
state: sqlite:%s
sources:
  - name: erp
    url: file://%s
    integration: ERP-INVOICES
    stable_for: 0s
`, api.URL, id, method, filepath.Join(dir, "state.db"), filepath.ToSlash(src))
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		r := binharness.Exec(t, 60*time.Second, []string{"OAUTH_SECRET=" + secret, "IHR_WORKER_CONFIG="},
			binharness.Binary(t, "ihr-worker"), "run", "--config", cfg)
		if r.Code != 0 {
			t.Fatalf("%s: worker exit %d\n%s", method, r.Code, r.Stderr)
		}
		n := 0
		for rec, err := range api.Client().All(ctx, apiclient.NewQuery().Eq("created-by[login]", id)) {
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(rec.ExternalID, prefix+"-") {
				n++
			}
		}
		if n != 3 {
			t.Fatalf("%s: %d records created by %q, want 3", method, n, id)
		}
	}
}
