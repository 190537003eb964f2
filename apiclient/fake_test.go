package apiclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/record"
)

// fakeAPI is a small in-memory stand-in for ihr-api, for unit tests that
// need to see or shape what the server does (token lifetimes, revocation,
// exact request counts). End-to-end behaviour is proven against the real
// server in apitest_test.go.
type fakeAPI struct {
	t      testing.TB
	srv    *httptest.Server
	strict bool // ignore integration_filename, like Coupa

	mu      sync.Mutex
	records []*record.Record
	tokens  map[string]time.Time // token → expiry
	revoked map[string]bool

	tokenLife     time.Duration
	tokenRequests atomic.Int64
	apiRequests   atomic.Int64
	indexRequests atomic.Int64
	unauthorized  atomic.Int64
}

const fakeKey = "k-123"

func newFake(t testing.TB) *fakeAPI {
	f := &fakeAPI{t: t, tokens: map[string]time.Time{}, revoked: map[string]bool{}, tokenLife: time.Hour}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.records)
}

// revokeAll makes every token issued so far answer 401.
func (f *fakeAPI) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.tokens {
		f.revoked[k] = true
	}
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth2/token" {
		f.tokenRequests.Add(1)
		r.ParseForm()
		if r.PostForm.Get("client_id") != "cid" || r.PostForm.Get("client_secret") != "sec" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "wrong secret"})
			return
		}
		f.mu.Lock()
		tok := fmt.Sprintf("tok-%d", len(f.tokens)+1)
		f.tokens[tok] = time.Now().Add(f.tokenLife)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer",
			"expires_in": int(f.tokenLife / time.Second), "scope": r.PostForm.Get("scope")})
		return
	}
	f.apiRequests.Add(1)
	if !f.authorized(r) {
		f.unauthorized.Add(1)
		w.WriteHeader(401)
		w.Write([]byte(`{"errors":{"error":["Invalid or missing credentials"]}}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	p := strings.TrimPrefix(r.URL.Path, recordsPath)
	switch {
	case r.Method == http.MethodPost && (p == "" || slices.Contains(record.Actions, record.Action(strings.TrimPrefix(p, "/")))):
		var rec record.Record
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"errors":{"integration-history-record":[%q]}}`, err.Error())
			return
		}
		if errs := record.Validate(&rec); len(errs) > 0 {
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Message
			}
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]any{"errors": map[string]any{"integration-history-record": msgs}})
			return
		}
		if f.strict {
			rec.IntegrationFilename = ""
		}
		f.mu.Lock()
		rec.ID = int64(len(f.records) + 1)
		f.records = append(f.records, &rec)
		f.mu.Unlock()
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(&rec)
	case r.Method == http.MethodGet && p == "":
		f.index(w, r)
	case r.Method == http.MethodGet:
		id, _ := strconv.Atoi(strings.TrimPrefix(p, "/"))
		f.mu.Lock()
		defer f.mu.Unlock()
		if id < 1 || id > len(f.records) {
			w.WriteHeader(404)
			w.Write([]byte(`{"errors":{"error":["not found"]}}`))
			return
		}
		json.NewEncoder(w).Encode(f.records[id-1])
	default:
		w.WriteHeader(404)
		w.Write([]byte(`{"errors":{"error":["No route"]}}`))
	}
}

func (f *fakeAPI) authorized(r *http.Request) bool {
	if r.Header.Get("X-COUPA-API-KEY") == fakeKey {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.tokens[tok]
	return ok && !f.revoked[tok] && time.Now().Before(exp)
}

// index supports equality and [in] filters on the identity elements,
// order_by id with dir, limit (capped at 50) and offset. It counts its
// queries.
func (f *fakeAPI) index(w http.ResponseWriter, r *http.Request) {
	f.indexRequests.Add(1)
	q := r.URL.Query()
	f.mu.Lock()
	var out []*record.Record
	for _, rec := range f.records {
		ok := true
		for k, vs := range q {
			var have string
			k, in := strings.CutSuffix(k, "[in]")
			switch record.NormalizeKey(k) {
			case "external-id":
				have = rec.ExternalID
			case "document-type":
				have = rec.DocumentType
			case "document-id":
				have = strconv.FormatInt(*rec.DocumentID, 10)
			case "integration-filename":
				if f.strict {
					f.mu.Unlock()
					w.WriteHeader(400)
					w.Write([]byte(`{"errors":{"error":["Unknown attribute integration_filename"]}}`))
					return
				}
				have = rec.IntegrationFilename
			case "status":
				have = rec.Status
			default:
				continue
			}
			if in {
				ok = ok && slices.Contains(strings.Split(vs[0], ","), have)
			} else {
				ok = ok && have == vs[0]
			}
		}
		if ok {
			out = append(out, rec)
		}
	}
	f.mu.Unlock()
	if q.Get("dir") == "desc" {
		slices.Reverse(out)
	}
	off, _ := strconv.Atoi(q.Get("offset"))
	lim, _ := strconv.Atoi(q.Get("limit"))
	if lim <= 0 || lim > 50 {
		lim = 50
	}
	out = out[min(off, len(out)):]
	out = out[:min(lim, len(out))]
	if out == nil {
		out = []*record.Record{}
	}
	json.NewEncoder(w).Encode(out)
}
