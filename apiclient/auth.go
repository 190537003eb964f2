package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// authenticator puts credentials on a request and, after a 401, says
// whether fresh credentials are worth one more try.
type authenticator interface {
	apply(ctx context.Context, req *http.Request) error
	// invalidate is told the Authorization header a 401 came back for.
	invalidate(used string) bool
}

// apiKeyAuth holds the key as the header's value, shared by every request.
type apiKeyAuth struct{ header []string }

func (k apiKeyAuth) apply(_ context.Context, req *http.Request) error {
	req.Header[apiKeyHeader] = k.header
	return nil
}

// apiKeyHeader is X-COUPA-API-KEY in net/http's canonical spelling.
var apiKeyHeader = http.CanonicalHeaderKey("X-COUPA-API-KEY")

// An API key cannot be refreshed: a 401 is final.
func (apiKeyAuth) invalidate(string) bool { return false }

// oauthAuth caches one client-credentials token for the whole Client. We
// keep the cache ourselves rather than use oauth2.ReuseTokenSource because a
// 401 must drop the token (revoked server-side before its expiry), which
// ReuseTokenSource cannot do.
type oauthAuth struct {
	cl    *Client
	cc    clientcredentials.Config
	early time.Duration
	// tokenPath names the endpoint in errors.
	tokenPath string

	sem       chan struct{} // one fetch at a time; ctx-aware, unlike a mutex
	tok       *oauth2.Token
	refreshAt time.Time
}

// OAuth client authentication methods, named as RFC 7591 names them.
const (
	AuthPost  = "client_secret_post"
	AuthBasic = "client_secret_basic"
)

func newOAuth(cl *Client, o OAuthConfig) (*oauthAuth, error) {
	if o.ClientID == "" || o.ClientSecret == "" {
		return nil, errors.New("apiclient: OAuth needs a client id and a client secret")
	}
	// Never auto-detect: that spends a token request on a guess, and a
	// failed guess looks like a wrong secret in the server's logs.
	var style oauth2.AuthStyle
	switch o.AuthMethod {
	case "", AuthPost:
		style = oauth2.AuthStyleInParams
	case AuthBasic:
		// x/oauth2 form-urlencodes the id and secret before base64.
		style = oauth2.AuthStyleInHeader
	default:
		return nil, fmt.Errorf("apiclient: OAuth auth method %q is not %s or %s", o.AuthMethod, AuthPost, AuthBasic)
	}
	if o.TokenURL == "" {
		o.TokenURL = cl.base.String() + "/oauth2/token"
	}
	if o.EarlyRefresh <= 0 {
		o.EarlyRefresh = time.Minute
	}
	return &oauthAuth{
		cl: cl,
		cc: clientcredentials.Config{
			ClientID: o.ClientID, ClientSecret: o.ClientSecret, TokenURL: o.TokenURL, Scopes: o.Scopes,
			AuthStyle: style,
		},
		early:     o.EarlyRefresh,
		tokenPath: tokenPath(o.TokenURL),
		sem:       make(chan struct{}, 1),
	}, nil
}

func (a *oauthAuth) apply(ctx context.Context, req *http.Request) error {
	tok, err := a.token(ctx)
	if err != nil {
		return err
	}
	tok.SetAuthHeader(req)
	return nil
}

func (a *oauthAuth) token(ctx context.Context) (*oauth2.Token, error) {
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-a.sem }()
	if a.tok != nil && (a.refreshAt.IsZero() || time.Now().Before(a.refreshAt)) {
		return a.tok, nil
	}
	tok, err := a.fetch(ctx)
	if err != nil {
		return nil, err
	}
	a.tok = tok
	a.refreshAt = time.Time{}
	if !tok.Expiry.IsZero() {
		// Refresh early, but never so early that a short-lived token is
		// refreshed on every request.
		life := time.Until(tok.Expiry)
		a.refreshAt = tok.Expiry.Add(-min(a.early, life/4))
	}
	return tok, nil
}

// fetch asks the token endpoint once; the caller's retry loop handles
// transient failures. It spends a rate token like any other request.
func (a *oauthAuth) fetch(ctx context.Context) (*oauth2.Token, error) {
	t0 := time.Now()
	info := RequestInfo{Action: "token", Method: http.MethodPost}
	if err := a.cl.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	info.Waited = time.Since(t0)
	t1 := time.Now()
	fctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, a.cl.hc), a.cl.cfg.Timeout)
	defer cancel()
	tok, err := a.cc.Token(fctx)
	info.Duration = time.Since(t1)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		info.Status = re.Response.StatusCode
	} else if err == nil {
		info.Status = http.StatusOK
	}
	info.Err = err
	if a.cl.obs != nil {
		a.cl.obs.RequestDone(info)
	}
	if err != nil {
		if isRedirect(info.Status) {
			return nil, &Error{Status: info.Status, Method: http.MethodPost, Path: a.tokenPath,
				Messages: []string{redirectRefused(re.Response.Header.Get("Location"))}}
		}
		if IsCertificateError(err) {
			return nil, &Error{Method: http.MethodPost, Path: a.tokenPath, Err: err}
		}
		if info.Status >= 400 && info.Status < 500 && info.Status != http.StatusTooManyRequests {
			msg := re.ErrorCode
			if re.ErrorDescription != "" {
				msg += ": " + re.ErrorDescription
			}
			msgs := []string{msg}
			if msg == "" {
				msgs = errorMessages(re.Body)
			}
			return nil, &Error{Status: info.Status, Method: http.MethodPost, Path: a.tokenPath, Messages: msgs}
		}
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	a.cl.log.Debug("apiclient: fetched OAuth token", zap.Time("expiry", tok.Expiry))
	return tok, nil
}

func (a *oauthAuth) invalidate(used string) bool {
	a.sem <- struct{}{}
	defer func() { <-a.sem }()
	// Only drop the token the 401 was for: when many goroutines hit the
	// same revoked token, the first drops it and the rest reuse its
	// replacement instead of each fetching one.
	if a.tok != nil && used == a.tok.Type()+" "+a.tok.AccessToken {
		a.tok = nil
	}
	return true
}

func tokenPath(u string) string {
	if p, err := url.Parse(u); err == nil && p.Path != "" {
		return p.Path
	}
	return u
}
