package apiclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/record"
)

// TestRealServerOAuthReservedCharacters: our client gets a token from the
// real ihr-api with + % @ : / (and a space, & and =) in the client id and
// secret, through client_secret_basic and client_secret_post, and the
// token request on the wire is what RFC 6749 §2.3.1 asks for.
func TestRealServerOAuthReservedCharacters(t *testing.T) {
	const id, secret = "erp+client%41@acme.example:eu/1", "p+ss%2Fw0rd@host:443/path ?&=ü"
	ts := apitest.Start(t, apitest.WithConfig(func(cfg *apiserver.Config) { cfg.OAuthClients[id] = secret }))
	// Record each token request as it arrived, then let ihr-api answer it.
	var mu sync.Mutex
	var seen []*http.Request
	var forms []url.Values
	h := ts.Server.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth2/token" {
			r.ParseForm()
			mu.Lock()
			seen = append(seen, r)
			forms = append(forms, r.PostForm)
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	for _, method := range []string{AuthBasic, AuthPost, ""} {
		t.Run("method="+method, func(t *testing.T) {
			mu.Lock()
			seen, forms = nil, nil
			mu.Unlock()
			cfg := Config{BaseURL: srv.URL, RateLimit: -1, Timeout: 10 * time.Second,
				OAuth: &OAuthConfig{ClientID: id, ClientSecret: secret, AuthMethod: method}}
			c := mustNew(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			doc := int64(42)
			got, err := c.Create(ctx, record.Create, &record.Record{ContactAlertType: "Technical", DocumentID: &doc, DocumentType: "InvoiceHeader", ExternalID: "RC-" + method})
			if err != nil {
				t.Fatal(err)
			}
			if got.CreatedBy == nil || got.CreatedBy.Login != id {
				t.Fatalf("created-by %+v, want login %q", got.CreatedBy, id)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 1 {
				t.Fatalf("%d token requests, want 1", len(seen))
			}
			r, form := seen[0], forms[0]
			user, pass, basic := r.BasicAuth()
			switch method {
			case AuthBasic:
				// Form-urlencoded, then base64: the raw characters never
				// reach the Basic header, so its ':' is the only separator.
				if !basic || user != url.QueryEscape(id) || pass != url.QueryEscape(secret) {
					t.Fatalf("Basic %q:%q, want the form-urlencoded id and secret", user, pass)
				}
				if form.Has("client_secret") {
					t.Fatal("client_secret_basic also sent the secret in the form")
				}
			default:
				if basic || form.Get("client_id") != id || form.Get("client_secret") != secret {
					t.Fatalf("client_secret_post: basic=%v form=%v", basic, form)
				}
			}
		})
	}
	// A wrong secret is permanent (no retry loop), either way.
	for _, method := range []string{AuthBasic, AuthPost} {
		c := mustNew(t, Config{BaseURL: ts.URL, RateLimit: -1, Timeout: 10 * time.Second,
			OAuth: &OAuthConfig{ClientID: id, ClientSecret: secret + "x", AuthMethod: method}})
		_, err := c.Show(context.Background(), 1)
		if err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("%s wrong secret: %v", method, err)
		}
	}
	if _, err := New(Config{BaseURL: ts.URL, OAuth: &OAuthConfig{ClientID: "a", ClientSecret: "b", AuthMethod: "private_key_jwt"}}, nil); err == nil {
		t.Fatal("unknown auth method accepted")
	}
}
