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
	"net"
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
	checked time.Time // when the database last confirmed it
}

// tokenRecheck is how long a validated token is trusted from memory
// before the database is asked again: a token revoked by another
// instance (or by the per-client cap) stops working within it.
const tokenRecheck = 30 * time.Second

// maxCachedTokens bounds the validation cache; entries reload from the
// database.
const maxCachedTokens = 100000

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
	if ok && now.Before(c.checked.Add(tokenRecheck)) {
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
		if ok {
			s.tokMu.Lock()
			delete(s.tokens, hash)
			s.tokMu.Unlock()
		}
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
	if len(s.tokens) >= maxCachedTokens {
		s.pruneCache(now)
	}
	s.tokens[hash] = cachedToken{p: p, expires: expires, checked: now}
	s.tokMu.Unlock()
	return p, true
}

// token is POST /oauth2/token, the client-credentials grant. Credentials
// come from the form or HTTP Basic. An empty scope grants both scopes
// (our choice); an unknown scope is invalid_scope.
//
// Abuse limits (our choice): an address out of failed attempts gets 429
// before its body is read; the body must arrive within SmallBodyTimeout;
// a client holds at most MaxTokensPerClient live tokens.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	addr := clientAddr(r.RemoteAddr)
	if wait, blocked := s.guard.blocked(addr, time.Now()); blocked {
		dropBody(w, r)
		tooManyFailures(w, r, "oauth2", wait, true)
		return
	}
	// A slow body would hold the connection (and a slot of the
	// connection limit) for the server's whole read timeout.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.SmallBodyTimeout))
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.Header().Set("Connection", "close")
			oauthError(w, http.StatusRequestTimeout, "invalid_request", "the body did not arrive within "+s.cfg.SmallBodyTimeout.String())
			return
		}
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if kind, desc := checkTokenForm(r.PostForm); kind != "" {
		oauthError(w, http.StatusBadRequest, kind, desc)
		return
	}
	id := s.checkClient(readClient(r))
	if id == "" {
		s.guard.failed(addr, time.Now())
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
	var revoked []string
	err := s.st.tx(ctx, func(tx *wtx) error {
		revoked = revoked[:0]
		// Expired tokens are dropped here, where writes happen anyway.
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM oauth_tokens WHERE expires_at < ?`), s.now().Unix()); err != nil {
			return err
		}
		// Bound the client's live tokens: those beyond the newest
		// MaxTokensPerClient-1 are revoked to make room for this one. A
		// client that keeps its token never notices; one that mints a
		// token per request cannot fill the table.
		rows, err := tx.QueryContext(ctx, d.q(`SELECT token_hash FROM oauth_tokens WHERE client_id = ? ORDER BY issued_at DESC, token_hash`), id)
		if err != nil {
			return err
		}
		for n := 1; rows.Next(); n++ {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			if n >= s.cfg.MaxTokensPerClient {
				revoked = append(revoked, h)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, h := range revoked {
			if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM oauth_tokens WHERE token_hash = ?`), h); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, d.q(`INSERT INTO oauth_tokens (token_hash, client_id, scope, expires_at, issued_at) VALUES (?, ?, ?, ?, ?)`),
			hex.EncodeToString(sum[:]), id, scope, exp, time.Now().UnixNano())
		return err
	})
	if err == nil && len(revoked) > 0 {
		// Minting adds nothing to the validation cache (authenticate
		// fills it, and prunes it when full), so only the revoked
		// tokens leave it here.
		s.tokMu.Lock()
		for _, h := range revoked {
			delete(s.tokens, h)
		}
		s.tokMu.Unlock()
	}
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

// pruneCache drops expired tokens from the validation cache, and
// everything when it is still full (entries reload from the database).
// The caller holds tokMu.
func (s *Server) pruneCache(now time.Time) {
	for h, c := range s.tokens {
		if !now.Before(c.expires) {
			delete(s.tokens, h)
		}
	}
	if len(s.tokens) >= maxCachedTokens {
		clear(s.tokens)
	}
}
