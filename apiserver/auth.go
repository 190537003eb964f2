package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// TokenLifetime is expires_in of an access token, as Coupa issues it.
const TokenLifetime = 86399 * time.Second

type cachedToken struct {
	p       principal
	expires time.Time
}

// authenticate checks X-COUPA-API-KEY or a Bearer token. Tokens live in
// the database (hashed), so any instance sharing a PostgreSQL database
// accepts tokens another issued; validated tokens are cached in memory.
func (s *Server) authenticate(r *http.Request) (principal, bool) {
	if k := r.Header.Get("X-COUPA-API-KEY"); k != "" {
		for key, p := range s.apiKeys {
			if subtle.ConstantTimeCompare([]byte(key), []byte(k)) == 1 {
				return p, true
			}
		}
		return principal{}, false
	}
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return principal{}, false
	}
	tok := strings.TrimSpace(h[7:])
	if tok == "" {
		return principal{}, false
	}
	sum := sha256.Sum256([]byte(tok))
	hash := hex.EncodeToString(sum[:])
	now := s.now()
	s.tokMu.Lock()
	c, ok := s.tokens[hash]
	s.tokMu.Unlock()
	if ok {
		if now.Before(c.expires) {
			return c.p, true
		}
		return principal{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var clientID, scopes string
	var exp int64
	err := s.st.r.QueryRowContext(ctx, s.st.d.q(`SELECT client_id, scope, expires_at FROM oauth_tokens WHERE token_hash = ?`), hash).Scan(&clientID, &scopes, &exp)
	if err != nil {
		if !errors.Is(err, sql.ErrNoRows) {
			s.log.Warn("token lookup failed", zap.Error(err))
		}
		return principal{}, false
	}
	expires := time.Unix(exp, 0)
	if !now.Before(expires) {
		return principal{}, false
	}
	p := principal{login: clientID, userID: s.userIDs[clientID]}
	for _, sc := range strings.Fields(scopes) {
		switch sc {
		case ScopeRead:
			p.read = true
		case ScopeWrite:
			p.write = true
		}
	}
	s.tokMu.Lock()
	if len(s.tokens) > 100000 { // bound memory; entries reload from the DB
		clear(s.tokens)
	}
	s.tokens[hash] = cachedToken{p: p, expires: expires}
	s.tokMu.Unlock()
	return p, true
}

// token is POST /oauth2/token, the client-credentials grant. Credentials
// come from the form or HTTP Basic. An empty scope grants both scopes
// (our choice); an unknown scope is invalid_scope.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if kind, desc := checkTokenForm(r.PostForm); kind != "" {
		oauthError(w, http.StatusBadRequest, kind, desc)
		return
	}
	id := s.checkClient(readClient(r))
	if id == "" {
		invalidClient(w)
		return
	}
	scopes := strings.Fields(r.PostForm.Get("scope"))
	if len(scopes) == 0 {
		scopes = []string{ScopeRead, ScopeWrite}
	}
	for _, sc := range scopes {
		if sc != ScopeRead && sc != ScopeWrite {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "unknown scope "+sc)
			return
		}
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "no randomness")
		return
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(tok))
	scope := strings.Join(scopes, " ")
	exp := s.now().Add(TokenLifetime).Unix()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := s.st.d
	err := s.st.tx(ctx, func(tx *wtx) error {
		// Expired tokens are dropped here, where writes happen anyway.
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM oauth_tokens WHERE expires_at < ?`), s.now().Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, d.q(`INSERT INTO oauth_tokens (token_hash, client_id, scope, expires_at) VALUES (?, ?, ?, ?)`),
			hex.EncodeToString(sum[:]), id, scope, exp)
		return err
	})
	if err != nil {
		s.log.Error("token store failed", zap.Error(err))
		oauthError(w, http.StatusInternalServerError, "server_error", "could not store the token")
		return
	}
	noStore(w)
	writeJSONObject(w, http.StatusOK, object{
		{"access_token", tok},
		{"token_type", "bearer"},
		{"expires_in", int64(TokenLifetime / time.Second)},
		{"scope", scope},
	})
}

func oauthError(w http.ResponseWriter, code int, kind, desc string) {
	noStore(w)
	writeJSONObject(w, code, object{{"error", kind}, {"error_description", desc}})
}
