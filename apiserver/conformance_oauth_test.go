package apiserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/apiserver/apitest"
)

// Client credentials holding every character RFC 6749 §2.3.1's
// form-urlencoding changes: '+' (a space when decoded raw), '%' (with a
// valid escape after it, so a raw reading would silently differ), '@',
// ':' (the Basic separator), '/', and a space, '&', '=' and non-ASCII.
const (
	reservedID     = "erp+client%41@acme.example:eu/1"
	reservedSecret = "p+ss%2Fw0rd@host:443/path ?&=ü"
)

// TestConformanceOAuthClientCredentials drives ihr-api with
// golang.org/x/oauth2/clientcredentials, an RFC 6749 client written
// outside this project, through client_secret_basic (AuthStyleInHeader,
// form-urlencoded then base64), client_secret_post (AuthStyleInParams)
// and auto-detection, then uses the token for API calls in JSON and XML.
func TestConformanceOAuthClientCredentials(t *testing.T) {
	backends(t, func(t *testing.T, c *client) {
		conformOAuth(t, c.ts.URL, reservedID, reservedSecret)
	}, apitest.WithConfig(func(cfg *apiserver.Config) {
		cfg.OAuthClients[reservedID] = reservedSecret
	}))
}

func conformOAuth(t *testing.T, base, id, secret string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	for _, style := range []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader},
		{"client_secret_post", oauth2.AuthStyleInParams},
		{"auto-detect", oauth2.AuthStyleAutoDetect},
	} {
		t.Run(style.name, func(t *testing.T) {
			cc := clientcredentials.Config{
				ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth2/token",
				Scopes: []string{apiserver.ScopeRead, apiserver.ScopeWrite}, AuthStyle: style.style,
			}
			tok, err := cc.Token(ctx)
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			if !strings.EqualFold(tok.TokenType, "bearer") || tok.AccessToken == "" ||
				time.Until(tok.Expiry) < 86000*time.Second || tok.Extra("scope") != "core.integration.read core.integration.write" {
				t.Fatalf("token: %+v scope %v", tok, tok.Extra("scope"))
			}
			api := cc.Client(ctx)
			res, err := api.Post(base+"/api/integration_history_records", "application/json",
				strings.NewReader(`{"contact-alert-type":"Technical","document-id":7,"document-type":"InvoiceHeader","status":"Success"}`))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			json.NewDecoder(res.Body).Decode(&m)
			res.Body.Close()
			if res.StatusCode != 201 {
				t.Fatalf("create with the token: %d %v", res.StatusCode, m)
			}
			if by := m["created-by"].(map[string]any); by["login"] != id {
				t.Fatalf("created-by %v, want login %q", by, id)
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/integration_history_records?document-id=7&return_object=shallow", nil)
			req.Header.Set("Accept", "application/xml")
			res, err = api.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(b), "<login>"+xmlText(id)+"</login>") {
				t.Fatalf("XML index with the token: %d %s", res.StatusCode, b)
			}

			// A wrong secret through the same style is invalid_client, 401,
			// with the Basic challenge RFC 6749 §5.2 asks for.
			bad := cc
			bad.ClientSecret = secret + "x"
			_, err = bad.Token(ctx)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 ||
				!strings.HasPrefix(re.Response.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("wrong secret: %v", err)
			}
		})
	}
}

// xmlText escapes s as the server prints text content.
func xmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&#39;", `"`, "&#34;").Replace(s)
}

// TestConformanceOAuthRawBasic: clients that put the credentials in HTTP
// Basic without form-urlencoding them (curl -u, older libraries) keep
// working, even when decoding would change them.
func TestConformanceOAuthRawBasic(t *testing.T) {
	const id, secret = "raw+user@acme.example/eu", "a+b%2Fc:d e"
	ts := apitest.Start(t, apitest.WithConfig(func(cfg *apiserver.Config) { cfg.OAuthClients[id] = secret }))
	hc := &http.Client{Timeout: 30 * time.Second}
	try := func(user, pass string) int {
		req, _ := http.NewRequest("POST", ts.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, pass)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		user, pass string
		want       int
	}{
		{id, secret, 200}, // raw
		{"raw%2Buser%40acme.example%2Feu", "a%2Bb%252Fc%3Ad+e", 200}, // form-urlencoded
		{ts.OAuthID, ts.OAuthSecret, 200},                            // plain: decodes to itself
		{id, "a b/c:d e", 401},                                       // the decoded reading of the raw secret is not the secret
		{id, secret + "%zz", 401},                                    // undecodable and wrong
	} {
		if got := try(tc.user, tc.pass); got != tc.want {
			t.Errorf("Basic %q:%q: %d, want %d", tc.user, tc.pass, got, tc.want)
		}
	}
}
