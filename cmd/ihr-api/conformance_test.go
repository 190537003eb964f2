package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/record"
)

// TestOAuthConformanceThroughTheCommand starts ihr-api as its users do
// (flags, the real listener) with an OAuth client whose id and secret
// hold + % @ / (and ':' in the secret; --oauth-client splits at the first
// ':' so an id cannot hold one there), then gets tokens with
// golang.org/x/oauth2/clientcredentials, an RFC 6749 client from outside
// this project, and with our apiclient, through client_secret_basic and
// client_secret_post, and uses them on the API.
func TestOAuthConformanceThroughTheCommand(t *testing.T) {
	const id, secret = "erp+client%41@acme.example/eu", "p+ss%2Fw0rd@host:443/path ?&=ü"
	addr, _ := start(t, "--db", "sqlite:"+filepath.Join(t.TempDir(), "o.db"), "--oauth-client", id+":"+secret)
	base := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	post := func(hc *http.Client) *http.Response {
		t.Helper()
		res, err := hc.Post(base+"/api/integration_history_records", "application/json",
			strings.NewReader(`{"contact-alert-type":"Technical","document-id":1,"document-type":"InvoiceHeader"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for name, style := range map[string]oauth2.AuthStyle{"client_secret_basic": oauth2.AuthStyleInHeader, "client_secret_post": oauth2.AuthStyleInParams} {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth2/token", AuthStyle: style}
		if res := post(cc.Client(ctx)); res.StatusCode != 201 {
			t.Fatalf("x/oauth2 %s: create answered %d", name, res.StatusCode)
		}
		bad := cc
		bad.ClientSecret = "p+ss/w0rd@host:443/path ?&=ü" // what a server decoding nothing would compare
		var re *oauth2.RetrieveError
		if _, err := bad.Token(ctx); !errors.As(err, &re) || re.Response.StatusCode != 401 || !strings.HasPrefix(re.Response.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("x/oauth2 %s with a wrong secret: %v", name, err)
		}
		ro := cc
		ro.Scopes = []string{"core.integration.read"}
		if res := post(ro.Client(ctx)); res.StatusCode != 403 || !strings.Contains(res.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Fatalf("x/oauth2 %s read-only token: %d %q", name, res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	for _, method := range []string{apiclient.AuthBasic, apiclient.AuthPost} {
		c, err := apiclient.New(apiclient.Config{BaseURL: base, RateLimit: -1, Timeout: 10 * time.Second,
			OAuth: &apiclient.OAuthConfig{ClientID: id, ClientSecret: secret, AuthMethod: method}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		doc := int64(2)
		r, err := c.Create(ctx, record.Create, &record.Record{ContactAlertType: "Functional", DocumentID: &doc, DocumentType: "InvoiceHeader"})
		if err != nil {
			t.Fatalf("apiclient %s: %v", method, err)
		}
		if r.CreatedBy == nil || r.CreatedBy.Login != id {
			t.Fatalf("apiclient %s: created-by %+v", method, r.CreatedBy)
		}
	}
}
