package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/ihr-tools/ihr/record"
)

const (
	integrationsPath = "/api/integrations"
	runsPath         = "/api/integration_runs"
)

// Integration is an entry of /api/integrations, which records point at by
// code.
type Integration struct {
	ID              int64      `json:"id,omitempty"`
	Code            string     `json:"code,omitempty"`
	Name            string     `json:"name,omitempty"`
	BusinessObject  string     `json:"business-object,omitempty"`
	Direction       string     `json:"direction,omitempty"` // to_coupa or from_coupa
	EndSystem       string     `json:"end-system,omitempty"`
	EndSystemType   string     `json:"end-system-type,omitempty"`
	IntegrationType string     `json:"integration-type,omitempty"`
	Contacts        []Contact  `json:"contacts,omitempty"` // our choice (spec §1)
	CreatedAt       *time.Time `json:"created-at,omitempty"`
	UpdatedAt       *time.Time `json:"updated-at,omitempty"`
}

// Contact is who an integration's alerts go to.
type Contact struct {
	ID               int64  `json:"id,omitempty"`
	Name             string `json:"name,omitempty"`
	Email            string `json:"email,omitempty"`
	ContactAlertType string `json:"contact-alert-type,omitempty"` // Technical, Functional or Both
}

// UnmarshalJSON accepts hyphen and underscore spellings.
func (i *Integration) UnmarshalJSON(b []byte) error {
	type plain Integration
	return unmarshalTolerant(b, (*plain)(i))
}

// IntegrationRun is one execution of an integration.
type IntegrationRun struct {
	ID           int64                  `json:"id,omitempty"`
	Status       string                 `json:"status,omitempty"` // pending, running, successful, failed …
	TotalRecords *int64                 `json:"total-records,omitempty"`
	Integration  *record.IntegrationRef `json:"integration,omitempty"`
	StartTime    *time.Time             `json:"start-time,omitempty"`
	EndTime      *time.Time             `json:"end-time,omitempty"`
	CreatedAt    *time.Time             `json:"created-at,omitempty"`
	UpdatedAt    *time.Time             `json:"updated-at,omitempty"`
}

// UnmarshalJSON accepts hyphen and underscore spellings.
func (r *IntegrationRun) UnmarshalJSON(b []byte) error {
	type plain IntegrationRun
	return unmarshalTolerant(b, (*plain)(r))
}

// CreateIntegration stores a new integration (code and name are required
// and unique). An attempt with an unknown outcome is followed by a lookup
// by code rather than a blind re-send.
func (cl *Client) CreateIntegration(ctx context.Context, in *Integration) (*Integration, error) {
	w := *in
	w.ID, w.CreatedAt, w.UpdatedAt = 0, nil, nil
	body, err := marshal(&w)
	if err != nil {
		return nil, err
	}
	var found *Integration
	c := &call{action: "integration_create", method: http.MethodPost, path: integrationsPath, body: body,
		onUnknown: func(ctx context.Context, wait time.Duration) (bool, error) {
			if err := sleep(ctx, wait); err != nil {
				return false, err
			}
			list, err := cl.Integrations(ctx, NewQuery().Eq("code", in.Code))
			if err != nil {
				return false, err
			}
			for _, i := range list {
				if i.Code == in.Code {
					found = i
					return true, nil
				}
			}
			return false, nil
		}}
	var out Integration
	if err := cl.do(ctx, c, &out); err != nil {
		if err == errFound {
			return found, ErrAlreadyRecorded
		}
		return nil, err
	}
	return &out, nil
}

// Integrations returns one page of integrations matching q (nil: all).
func (cl *Client) Integrations(ctx context.Context, q *Query) ([]*Integration, error) {
	var out []*Integration
	limit, offset := 0, 0
	if q != nil {
		limit, offset = q.limit, q.offset
	}
	c := &call{action: "integration_index", method: http.MethodGet, path: integrationsPath, query: q.values(limit, offset)}
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ShowIntegration fetches one integration.
func (cl *Client) ShowIntegration(ctx context.Context, id int64) (*Integration, error) {
	var out Integration
	c := &call{action: "integration_show", method: http.MethodGet, path: integrationsPath + "/" + strconv.FormatInt(id, 10)}
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateIntegration changes the non-zero elements of in.
func (cl *Client) UpdateIntegration(ctx context.Context, id int64, in *Integration) (*Integration, error) {
	w := *in
	w.ID, w.CreatedAt, w.UpdatedAt = 0, nil, nil
	body, err := marshal(&w)
	if err != nil {
		return nil, err
	}
	var out Integration
	c := &call{action: "integration_update", method: http.MethodPut, path: integrationsPath + "/" + strconv.FormatInt(id, 10), body: body}
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateRun starts a pending run of the integration with the given code.
// Runs have no natural key to look up, so an attempt with an unknown outcome
// is re-sent; the worst case is an orphan pending run, which is harmless.
func (cl *Client) CreateRun(ctx context.Context, integrationCode string) (*IntegrationRun, error) {
	body, err := marshal(map[string]any{"integration": map[string]string{"code": integrationCode}})
	if err != nil {
		return nil, err
	}
	return cl.run(ctx, &call{action: "run_create", method: http.MethodPost, path: runsPath, body: body})
}

// StartRun moves a run to running with the number of records it will carry.
func (cl *Client) StartRun(ctx context.Context, id, totalRecords int64) (*IntegrationRun, error) {
	body, err := marshal(map[string]int64{"total-records": totalRecords})
	if err != nil {
		return nil, err
	}
	return cl.run(ctx, &call{action: "run_run", method: http.MethodPut, path: runPath(id) + "/run", body: body})
}

// SucceedRun marks a run successful.
func (cl *Client) SucceedRun(ctx context.Context, id int64) (*IntegrationRun, error) {
	return cl.run(ctx, &call{action: "run_success", method: http.MethodPut, path: runPath(id) + "/success"})
}

// FailRun marks a run failed.
func (cl *Client) FailRun(ctx context.Context, id int64) (*IntegrationRun, error) {
	return cl.run(ctx, &call{action: "run_fail", method: http.MethodPut, path: runPath(id) + "/fail"})
}

// ShowRun fetches one run.
func (cl *Client) ShowRun(ctx context.Context, id int64) (*IntegrationRun, error) {
	return cl.run(ctx, &call{action: "run_show", method: http.MethodGet, path: runPath(id)})
}

func (cl *Client) run(ctx context.Context, c *call) (*IntegrationRun, error) {
	var out IntegrationRun
	if err := cl.do(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func runPath(id int64) string { return runsPath + "/" + strconv.FormatInt(id, 10) }

// unmarshalTolerant decodes b into v after rewriting every key, at every
// depth, to its hyphenated lower-case spelling.
func unmarshalTolerant(b []byte, v any) error {
	if bytes.IndexByte(b, '_') < 0 {
		return json.Unmarshal(b, v)
	}
	var raw any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		return err
	}
	nb, err := json.Marshal(normalizeKeys(raw))
	if err != nil {
		return err
	}
	return json.Unmarshal(nb, v)
}

func normalizeKeys(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[record.NormalizeKey(k)] = normalizeKeys(e)
		}
		return out
	case []any:
		for i := range t {
			t[i] = normalizeKeys(t[i])
		}
	}
	return v
}
