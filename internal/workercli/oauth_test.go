package workercli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/config"
)

// TestOAuthAuthMethodReachesTheClient: api.oauth.auth_method from a
// configuration file decides how the worker authenticates, against the
// real ihr-api, with a secret full of reserved characters given through
// the environment as the docs advise.
func TestOAuthAuthMethodReachesTheClient(t *testing.T) {
	const id, secret = "worker+eu@acme.example/1", "s3cr+t%2F:@/ ü"
	ts := apitest.Start(t, apitest.WithConfig(func(c *apiserver.Config) { c.OAuthClients[id] = secret }))
	var basic atomic.Bool // the last token request came in HTTP Basic
	h := ts.Server.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth2/token" {
			_, _, ok := r.BasicAuth()
			basic.Store(ok)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		doc := "api:\n  url: " + srv.URL + "\n  oauth:\n    client_id: \"" + id + "\"\n    client_secret: ${SECRET}\n    auth_method: " + method +
			"\nstate: sqlite:state.db\nsources:\n  - name: a\n    url: file:///data/a\n"
		cfg, err := config.Parse([]byte(doc), config.Options{File: "w.yaml", LookupEnv: func(k string) (string, bool) {
			return secret, k == "SECRET"
		}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := newAPIClient(cfg, zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = c.Integrations(ctx, nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if basic.Load() != (method == "client_secret_basic") {
			t.Fatalf("%s: token request in HTTP Basic = %v", method, basic.Load())
		}
	}
}
