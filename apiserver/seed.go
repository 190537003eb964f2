package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Seeding and administering integrations without an HTTP client: the
// integrations command and --integrations-file go through the same
// handlers as the API (same validation, same uniqueness rules), as a local
// administrator that needs no credential. The administrator exists only
// in a request context built in this process; nothing on the network can
// claim it.

// localKey marks an in-process administrative request.
type localKey struct{}

// adminLogin is the user local requests act as.
const adminLogin = "ihr-api-admin"

// Integration is one integration to create, with the API's element names
// (code and name are required): what a seed file lists.
type Integration map[string]any

// ParseIntegrations reads a seed file: YAML or JSON, either a list of
// integrations or {integrations: [...]}. Element names may be spelled with
// hyphens or underscores, as on the API.
func ParseIntegrations(data []byte) ([]Integration, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("integrations file: %w", err)
	}
	if m, ok := doc.(map[string]any); ok {
		doc = m["integrations"]
		if doc == nil {
			return nil, errors.New("integrations file: want a list of integrations, or a map with the key integrations")
		}
	}
	list, ok := doc.([]any)
	if !ok {
		return nil, errors.New("integrations file: want a list of integrations")
	}
	out := make([]Integration, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("integrations file: entry %d: want a map with code and name", i+1)
		}
		if c, _ := m["code"].(string); strings.TrimSpace(c) == "" {
			return nil, fmt.Errorf("integrations file: entry %d: code is required", i+1)
		}
		out = append(out, Integration(m))
	}
	return out, nil
}

// SeedResult says what EnsureIntegration did.
type SeedResult struct {
	Code    string `json:"code"`
	ID      int64  `json:"id"`
	Created bool   `json:"created"` // false: an integration with this code was there already (left unchanged)
}

// EnsureIntegration creates in unless an integration with its code
// exists, which is then left as it is: seeding at every start is safe.
func (s *Server) EnsureIntegration(ctx context.Context, in Integration) (SeedResult, error) {
	code, _ := in["code"].(string)
	res := SeedResult{Code: code}
	list, err := s.ListIntegrations(ctx, code)
	if err != nil {
		return res, err
	}
	if len(list) > 0 {
		res.ID = list[0].ID
		return res, nil
	}
	body, err := json.Marshal(map[string]any(in))
	if err != nil {
		return res, fmt.Errorf("integration %s: %w", code, err)
	}
	status, out, err := s.local(ctx, http.MethodPost, "/api/integrations", body)
	if err != nil {
		return res, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return res, fmt.Errorf("integration %s: %d %s", code, status, apiMessages(out))
	}
	var made IntegrationInfo
	if err := json.Unmarshal(out, &made); err != nil {
		return res, fmt.Errorf("integration %s: %w", code, err)
	}
	res.ID, res.Created = made.ID, true
	return res, nil
}

// IntegrationInfo is an integration as ListIntegrations returns it.
type IntegrationInfo struct {
	ID              int64  `json:"id"`
	Code            string `json:"code"`
	Name            string `json:"name"`
	Direction       string `json:"direction,omitempty"`
	EndSystem       string `json:"end-system,omitempty"`
	BusinessObject  string `json:"business-object,omitempty"`
	IntegrationType string `json:"integration-type,omitempty"`
}

// ListIntegrations returns the integrations by id, or only the one with
// code when code is not empty.
func (s *Server) ListIntegrations(ctx context.Context, code string) ([]IntegrationInfo, error) {
	var all []IntegrationInfo
	for offset := 0; ; offset += 50 {
		q := url.Values{"order_by": {"id"}, "limit": {"50"}, "offset": {fmt.Sprint(offset)}}
		if code != "" {
			q.Set("code", code)
		}
		status, out, err := s.local(ctx, http.MethodGet, "/api/integrations?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("list integrations: %d %s", status, apiMessages(out))
		}
		var page []IntegrationInfo
		if err := json.Unmarshal(out, &page); err != nil {
			return nil, fmt.Errorf("list integrations: %w", err)
		}
		all = append(all, page...)
		if len(page) < 50 {
			return all, nil
		}
	}
}

// local serves one request in process as the administrator.
func (s *Server) local(ctx context.Context, method, target string, body []byte) (int, []byte, error) {
	p := principal{login: adminLogin, userID: s.userIDs[adminLogin], read: true, write: true}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, localKey{}, p), method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	w := &memWriter{header: http.Header{}}
	s.handler.ServeHTTP(w, req)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.code, w.body.Bytes(), nil
}

// memWriter collects an in-process response.
type memWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *memWriter) Header() http.Header { return w.header }
func (w *memWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *memWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(b)
}

// apiMessages extracts the messages of an error body for a Go error.
func apiMessages(body []byte) string {
	var e struct {
		Errors map[string][]string `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		var msgs []string
		for _, m := range e.Errors {
			msgs = append(msgs, m...)
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimSpace(string(body))
}
