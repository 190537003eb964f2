// Package record holds the Integration History Record as both ends of the
// API see it: the element set, the 31 document types, the five POST actions
// and the validation rules that the server enforces and the worker checks
// before it spends an API call.
//
// On the wire, keys are hyphenated (document-id); on input both hyphen and
// underscore spellings are accepted, as Coupa does.
package record

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// MaxString is the length limit of every string(255) element, counted in
// characters (runes), not bytes, as Rails validates it.
const MaxString = 255

// Record is one Integration History Record. Optional integers are pointers
// so that "absent" and "zero" stay distinct on the wire.
type Record struct {
	ID                  int64           `json:"id,omitempty"`
	ContactAlertType    string          `json:"contact-alert-type,omitempty"`
	CreatedAt           *time.Time      `json:"created-at,omitempty"`
	UpdatedAt           *time.Time      `json:"updated-at,omitempty"`
	CreatedBy           *User           `json:"created-by,omitempty"`
	UpdatedBy           *User           `json:"updated-by,omitempty"`
	CreationMethod      string          `json:"creation-method,omitempty"`
	DocumentID          *int64          `json:"document-id,omitempty"`
	DocumentRevision    *int64          `json:"document-revision,omitempty"`
	DocumentStatus      string          `json:"document-status,omitempty"`
	DocumentType        string          `json:"document-type,omitempty"`
	ExternalID          string          `json:"external-id,omitempty"`
	Integration         *IntegrationRef `json:"integration,omitempty"`
	IntegrationRun      *IntegrationRef `json:"integration-run,omitempty"`
	IntegrationRunID    *int64          `json:"integration-run-id,omitempty"`
	IntegrationFilename string          `json:"integration-filename,omitempty"`
	Resolved            bool            `json:"resolved,omitempty"`
	Responses           []Response      `json:"responses,omitempty"`
	Status              string          `json:"status,omitempty"`
}

// User is the API user or OAuth client that created or updated a record.
type User struct {
	ID    int64  `json:"id,omitempty"`
	Login string `json:"login,omitempty"`
}

// IntegrationRef points at an integration (by id or code) or an integration
// run (by id).
type IntegrationRef struct {
	ID   int64  `json:"id,omitempty"`
	Code string `json:"code,omitempty"`
	Name string `json:"name,omitempty"`
}

// Response is one entry of a record's responses array.
type Response struct {
	ID              int64      `json:"id,omitempty"`
	ResponseCode    string     `json:"response-code,omitempty"`
	ResponseMessage string     `json:"response-message,omitempty"`
	CreatedAt       *time.Time `json:"created-at,omitempty"`
	UpdatedAt       *time.Time `json:"updated-at,omitempty"`
}

// Int64 returns a pointer to v, for the optional integer elements.
func Int64(v int64) *int64 { return &v }

// Action is one of the five POST actions that create a record.
type Action string

const (
	Create                     Action = "create"
	CreateAlert                Action = "create_alert"
	CreateAlertAndMarkExported Action = "create_alert_and_mark_exported"
	MarkExported               Action = "mark_exported"
	Acknowledge                Action = "acknowledge"
)

// Actions lists the POST actions in a stable order.
var Actions = []Action{Create, CreateAlert, CreateAlertAndMarkExported, MarkExported, Acknowledge}

// ParseAction accepts an action name in any case and with '-' or '_'.
func ParseAction(s string) (Action, bool) {
	n := Action(strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", "_")))
	for _, a := range Actions {
		if a == n {
			return a, true
		}
	}
	return "", false
}

// Path is the action's path below /api/integration_history_records.
func (a Action) Path() string {
	if a == Create {
		return ""
	}
	return "/" + string(a)
}

// RaisesAlert reports whether the action notifies the integration's contacts.
func (a Action) RaisesAlert() bool {
	return a == CreateAlert || a == CreateAlertAndMarkExported
}

// MarksExported reports whether the action marks the document exported.
func (a Action) MarksExported() bool {
	return a == MarkExported || a == CreateAlertAndMarkExported
}

// DocumentTypes are the 31 values Coupa accepts for document-type. Matching
// is exact and case-sensitive.
var DocumentTypes = []string{
	"ExternalOrderHeader", "OrderHeader", "InventoryTransaction", "InvoiceHeader",
	"ExpenseReport", "RequisitionHeader", "Account", "Supplier", "User", "Address",
	"RemitToAddress", "Contract", "ExchangeRate", "Invoice", "Requisition", "Payment",
	"ApprovalChain", "LookupValue", "Item", "SupplierInformation", "Asn::Header",
	"AccountValidationRule", "ContingentWorkOrderHeader", "Payables::External::Payable",
	"Charge", "Payables::Invoice", "Payables::Expense", "CoupaPay::Payment",
	"CoupaPay::Statement", "ReceiptRequest", "InventoryRequestHeader",
}

var documentTypeSet = func() map[string]bool {
	m := make(map[string]bool, len(DocumentTypes))
	for _, t := range DocumentTypes {
		m[t] = true
	}
	return m
}()

// IsDocumentType reports whether t is one of the 31 document types.
func IsDocumentType(t string) bool { return documentTypeSet[t] }

// NormalizeKey turns any accepted spelling of an element name into its
// canonical hyphenated, lower-case form: "Document_ID" → "document-id".
func NormalizeKey(k string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(k), "_", "-"))
}

// UnmarshalJSON accepts hyphen and underscore spellings of every key, at
// every depth, so the client reads Coupa's output and ours alike.
func (r *Record) UnmarshalJSON(b []byte) error {
	type plain Record
	// Fast path, one decode: every key is already in its canonical spelling.
	// An underscore key, or an element this package does not know, fails
	// it, and only then are the keys rewritten.
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p plain
	if err := d.Decode(&p); err == nil {
		*r = Record(p)
		return nil
	}
	nb, err := normalizeJSONKeys(b)
	if err != nil {
		return err
	}
	*r = Record{}
	return json.Unmarshal(nb, (*plain)(r))
}

func normalizeJSONKeys(b []byte) ([]byte, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(normalizeValue(v))
}

func normalizeValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[NormalizeKey(k)] = normalizeValue(e)
		}
		return out
	case []any:
		for i := range t {
			t[i] = normalizeValue(t[i])
		}
		return t
	}
	return v
}
