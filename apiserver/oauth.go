package apiserver

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// OAuth wire details (RFC 6749 and RFC 6750) kept apart from the token
// store: how client credentials are read from a token request and which
// challenge a refused API call carries.

// realm names the protection space in every WWW-Authenticate challenge.
const realm = "ihr-api"

// clientCredentials are the id and secret of a token request.
type clientCredentials struct {
	id, secret string
	basic      bool // from HTTP Basic (client_secret_basic)
}

// readClient takes the client credentials from HTTP Basic when present,
// else from the form (client_secret_post).
func readClient(r *http.Request) clientCredentials {
	if id, secret, ok := r.BasicAuth(); ok {
		return clientCredentials{id: id, secret: secret, basic: true}
	}
	return clientCredentials{id: r.PostForm.Get("client_id"), secret: r.PostForm.Get("client_secret")}
}

// checkClient reports the configured client the credentials name, or ""
// when they name none. RFC 6749 §2.3.1 has clients form-urlencode the id
// and secret before putting them in HTTP Basic, as x/oauth2, Spring
// Security and openid-client do; curl -u and older clients send them raw.
// So Basic credentials are tried decoded first and then as sent: a raw
// pair without '%' or '+' decodes to itself and works as before, and a
// raw secret with '+' still matches its configured value. Form values are
// already decoded by the form parser.
func (s *Server) checkClient(c clientCredentials) string {
	if c.basic {
		id, errID := url.QueryUnescape(c.id)
		secret, errSecret := url.QueryUnescape(c.secret)
		if errID == nil && errSecret == nil && s.clientMatches(id, secret) {
			return id
		}
	}
	if s.clientMatches(c.id, c.secret) {
		return c.id
	}
	return ""
}

func (s *Server) clientMatches(id, secret string) bool {
	want, ok := s.clients[id]
	return ok && id != "" && subtle.ConstantTimeCompare([]byte(want), []byte(secret)) == 1
}

// invalidClient is the 401 for unknown client credentials. RFC 6749 §5.2
// wants a challenge in the scheme the client used; a 401 needs one in
// any case, and Basic is the scheme the token endpoint offers.
func invalidClient(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
	oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
}

// bearerChallenge is WWW-Authenticate for an API call that failed to
// authenticate. RFC 6750 §3.1: a request that carried a bearer token
// learns it is invalid_token; one that carried no token (nothing, an API
// key, another scheme) gets the bare challenge without an error code.
func bearerChallenge(r *http.Request) string {
	if r.Header.Get("X-COUPA-API-KEY") == "" {
		if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") && strings.TrimSpace(h[7:]) != "" {
			return `Bearer realm="` + realm + `", error="invalid_token", error_description="The access token is unknown, expired or revoked"`
		}
	}
	return `Bearer realm="` + realm + `"`
}

// scopeChallenge is WWW-Authenticate for a 403 whose token lacks scope
// (RFC 6750 §3.1, insufficient_scope, naming the scope needed).
func scopeChallenge(scope string) string {
	return `Bearer realm="` + realm + `", error="insufficient_scope", scope="` + scope + `"`
}

// checkTokenForm checks a token request's parameters before the client is
// looked at (RFC 6749 §5.2): a missing or repeated parameter is
// invalid_request, a grant other than client_credentials is
// unsupported_grant_type. kind is "" when the form is fine.
func checkTokenForm(form url.Values) (kind, desc string) {
	for _, k := range []string{"grant_type", "client_id", "client_secret", "scope"} {
		if len(form[k]) > 1 {
			return "invalid_request", "the parameter " + k + " is repeated"
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
		return "", ""
	case "":
		return "invalid_request", "grant_type is missing; send grant_type=client_credentials"
	default:
		return "unsupported_grant_type", "grant_type must be client_credentials"
	}
}

// noStore marks a token endpoint answer uncacheable, in both the HTTP/1.1
// and the HTTP/1.0 header RFC 6749 §5.1 names.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}
