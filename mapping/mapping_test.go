package mapping

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
)

func row(n int, f ...string) parse.Row { return parse.Row{Number: n, Line: n + 1, Fields: f} }

func msgs(errs []record.FieldError) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Element + ": " + e.Message
	}
	return strings.Join(s, " | ")
}

func mustNew(t *testing.T, cfg Config, header ...string) *Mapper {
	t.Helper()
	m, err := New(cfg, header, "ERP-INVOICES")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCanonicalLayout(t *testing.T) {
	m := mustNew(t, Config{}, "External_ID", "DOCUMENT-TYPE", "document_id", "Document-Revision", "document-status",
		"Status", "contact_alert_type", "creation-method", "response-code", "Response_Message", "unknown column")
	got, errs := m.Map(row(1, " AP-1 ", "InvoiceHeader", "5101", "2", "approved", "Success", "Functional", "ERP", "OK", "Posted", "ignored"), "/Outgoing/inbox/results.csv")
	if errs != nil {
		t.Fatal(msgs(errs))
	}
	r := got.Record
	if got.Row != 1 || got.Action != record.MarkExported || r.ExternalID != "AP-1" || r.DocumentType != "InvoiceHeader" ||
		*r.DocumentID != 5101 || *r.DocumentRevision != 2 || r.DocumentStatus != "approved" || r.Status != "Success" ||
		r.ContactAlertType != "Functional" || r.CreationMethod != "ERP" || r.IntegrationFilename != "results.csv" ||
		r.Integration.Code != "ERP-INVOICES" || len(r.Responses) != 1 || r.Responses[0] != (record.Response{ResponseCode: "OK", ResponseMessage: "Posted"}) {
		t.Errorf("mapped %+v", got)
	}
	if c := m.Column("document-id"); c != "document_id" {
		t.Errorf("Column(document-id) = %q", c)
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		cfg          Config
		status, act  string
		want         record.Action
		wantErrMatch string
	}{
		{Config{}, "Success", "", record.MarkExported, ""},
		{Config{}, "SUCCESS", "", record.MarkExported, ""},
		{Config{}, "error", "", record.CreateAlert, ""},
		{Config{}, "Pending", "", record.Create, ""},
		{Config{}, "", "", record.Create, ""},
		{Config{}, "Success", "Acknowledge", record.Acknowledge, ""},
		{Config{}, "Error", "create-alert-and-mark-exported", record.CreateAlertAndMarkExported, ""},
		{Config{}, "Error", "delete", "", `action: Action "delete" is not one of create, create_alert, create_alert_and_mark_exported, mark_exported, acknowledge (column "action")`},
		{Config{Actions: map[string]string{"success": "create"}}, "Success", "", record.Create, ""},
		{Config{Actions: map[string]string{"success": "create"}}, "Error", "", record.CreateAlert, ""},
		{Config{Actions: map[string]string{"*": "acknowledge", "Warn": "create_alert"}}, "Other", "", record.Acknowledge, ""},
		{Config{Actions: map[string]string{"*": "acknowledge", "Warn": "create_alert"}}, "warn", "", record.CreateAlert, ""},
		{Config{Defaults: map[string]string{"action": "create"}}, "Success", "", record.Create, ""},
	}
	for i, tt := range tests {
		m := mustNew(t, tt.cfg, "document-type", "document-id", "contact-alert-type", "status", "action")
		got, errs := m.Map(row(1, "InvoiceHeader", "1", "Functional", tt.status, tt.act), "f.csv")
		if msgs(errs) != tt.wantErrMatch || got.Action != tt.want {
			t.Errorf("%d: %q/%q: action %q errs %q; want %q %q", i, tt.status, tt.act, got.Action, msgs(errs), tt.want, tt.wantErrMatch)
		}
	}
}

func TestColumnsAndDefaults(t *testing.T) {
	cfg := Config{
		Columns:  map[string]string{"document-id": "ID", "external-id": "erp doc no", "document-status": "Status", "response-message": "Message"},
		Defaults: map[string]string{"document-type": "InvoiceHeader", "contact-alert-type": "Functional", "status": "Success", "integration": "COUPA-AP"},
	}
	// "document-id" is an element name but mapping.columns names "ID" for
	// it, so the column feeds nothing; "Status" feeds only document-status.
	m := mustNew(t, cfg, "ID", "Invoice Number", "Status", "ERP Doc No", "Message", "document-id", "contact-alert-type")
	got, errs := m.Map(row(7, "7001", "INV-1", "approved", "ERP-55001", "Voucher created", "999", ""), `C:\exports\inv.csv`)
	if errs != nil {
		t.Fatal(msgs(errs))
	}
	r := got.Record
	if *r.DocumentID != 7001 || r.ExternalID != "ERP-55001" || r.DocumentStatus != "approved" || r.Status != "Success" ||
		r.DocumentType != "InvoiceHeader" || r.ContactAlertType != "Functional" || r.Integration.Code != "COUPA-AP" ||
		r.Responses[0].ResponseMessage != "Voucher created" || r.Responses[0].ResponseCode != "" ||
		r.IntegrationFilename != "inv.csv" || got.Action != record.MarkExported {
		t.Errorf("mapped %+v", got)
	}
	// An integration column wins over the default and the source's code.
	m = mustNew(t, Config{}, "document-type", "document-id", "contact-alert-type", "integration")
	got, _ = m.Map(row(1, "Invoice", "1", "Both", "OTHER"), "f.csv")
	if got.Record.Integration.Code != "OTHER" {
		t.Errorf("integration %+v", got.Record.Integration)
	}
	got, _ = m.Map(row(1, "Invoice", "1", "Both", ""), "f.csv")
	if got.Record.Integration.Code != "ERP-INVOICES" || got.Record.Responses != nil {
		t.Errorf("integration %+v responses %v", got.Record.Integration, got.Record.Responses)
	}
	// No integration anywhere: no reference at all.
	m, _ = New(Config{}, []string{"document-type", "document-id", "contact-alert-type"}, "")
	got, _ = m.Map(row(1, "Invoice", "1", "Both"), "f.csv")
	if got.Record.Integration != nil {
		t.Errorf("integration %+v", got.Record.Integration)
	}
}

func TestRowErrors(t *testing.T) {
	m := mustNew(t, Config{}, "external-id", "document-type", "document-id", "contact-alert-type", "document-revision", "response-code")
	long := strings.Repeat("é", 256)
	tests := []struct {
		fields []string
		want   string
	}{
		{[]string{"A", "InvoiceHeader", "1", "Functional", "", ""}, ""},
		{[]string{"A", "invoiceheader", "1", "Functional", "", ""},
			`document-type: Document type "invoiceheader" is not a valid document type (column "document-type") (did you mean "InvoiceHeader"? the match is case-sensitive)`},
		{[]string{"A", "InvoiceHeader", "12a", "Functional", "x", ""},
			`document-id: Document id is not a number (column "document-id": "12a") | document-revision: Document revision is not a number (column "document-revision": "x")`},
		{[]string{"A", "", "", "", "", ""},
			`contact-alert-type: Contact alert type can't be blank (column "contact-alert-type") | document-id: Document id can't be blank (column "document-id") | document-type: Document type can't be blank (column "document-type")`},
		{[]string{long, "InvoiceHeader", "1", "Functional", "", long},
			`external-id: External id is too long (maximum is 255 characters) (column "external-id") | response-code: Response code is too long (maximum is 255 characters) (column "response-code")`},
		// A ragged row's short Fields must not panic; missing cells are empty.
		{[]string{"A", "InvoiceHeader"},
			`contact-alert-type: Contact alert type can't be blank (column "contact-alert-type") | document-id: Document id can't be blank (column "document-id")`},
		{nil,
			`contact-alert-type: Contact alert type can't be blank (column "contact-alert-type") | document-id: Document id can't be blank (column "document-id") | document-type: Document type can't be blank (column "document-type")`},
	}
	for i, tt := range tests {
		_, errs := m.Map(row(i+1, tt.fields...), "f.csv")
		if msgs(errs) != tt.want {
			t.Errorf("%d:\n got %s\nwant %s", i, msgs(errs), tt.want)
		}
	}
	// An element with neither column nor default says how to fix it.
	m = mustNew(t, Config{Defaults: map[string]string{"contact-alert-type": "Both", "document-type": "Invoice", "document-id": "1"}})
	if _, errs := m.Map(row(1), "f.csv"); errs != nil {
		t.Errorf("all defaults: %s", msgs(errs))
	}
}

func TestNewErrors(t *testing.T) {
	canon := []string{"external-id", "document-type", "document-id", "contact-alert-type"}
	tests := []struct {
		name   string
		cfg    Config
		header []string
		key    string // ConfigError.Key, or the sentinel's text
		substr string
	}{
		{"bad column key", Config{Columns: map[string]string{"document_idd": "ID"}}, canon, "mapping.columns.document_idd", "not an element"},
		{"integration-filename is not mappable", Config{Columns: map[string]string{"integration-filename": "F"}}, canon, "mapping.columns.integration-filename", "not an element"},
		{"empty column name", Config{Columns: map[string]string{"document-id": " "}}, canon, "mapping.columns.document-id", "empty"},
		{"bad default key", Config{Defaults: map[string]string{"colour": "x"}}, canon, "mapping.defaults.colour", "not an element"},
		{"bad default type", Config{Defaults: map[string]string{"document-type": "Invoices"}}, canon, "mapping.defaults.document-type", `"Invoices" is not one of the 31 document types`},
		{"bad default id", Config{Defaults: map[string]string{"document-id": "x1"}}, canon, "mapping.defaults.document-id", "not an integer"},
		{"bad default action", Config{Defaults: map[string]string{"action": "post"}}, canon, "mapping.defaults.action", "not an action"},
		{"long default", Config{Defaults: map[string]string{"status": strings.Repeat("s", 256)}}, canon, "mapping.defaults.status", "longer than 255"},
		{"bad action rule", Config{Actions: map[string]string{"Success": "export"}}, canon, "mapping.actions.Success", `"export" is not an action`},
		{"missing column", Config{}, []string{"external-id", "document-type", "contact-alert-type"}, ErrMissingColumn.Error(),
			`missing required column document-id (header: "external-id", "document-type", "contact-alert-type"`},
		{"mapped column absent", Config{Columns: map[string]string{"document-id": "ID"}}, canon, ErrMissingColumn.Error(),
			`mapping.columns.document-id: column "ID" is not in the header`},
		{"header row missing", Config{}, []string{"N-1", "InvoiceHeader", "1"}, ErrMissingColumn.Error(), "is the header row missing?"},
		{"duplicate element", Config{}, []string{"document-id", "document-type", "Document_ID", "contact-alert-type"}, ErrDuplicateColumn.Error(),
			`columns 1 ("document-id") and 3 ("Document_ID") both feed document-id`},
		{"ambiguous mapped column", Config{Columns: map[string]string{"document-id": "id"}}, append([]string{"ID", " Id"}, canon[1:]...), ErrDuplicateColumn.Error(),
			`columns 1 and 2 both match "id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.header, "X")
			if err == nil {
				t.Fatal("no error")
			}
			var ce *ConfigError
			switch {
			case errors.As(err, &ce):
				if ce.Key != tt.key {
					t.Errorf("key %q, want %q (%v)", ce.Key, tt.key, err)
				}
				if ps := Check(tt.cfg); len(ps) == 0 || ps[0].err().Error() != err.Error() {
					t.Errorf("Check gives %v, New %v", ps, err)
				}
			case errors.Is(err, ErrMissingColumn) && tt.key == ErrMissingColumn.Error(),
				errors.Is(err, ErrDuplicateColumn) && tt.key == ErrDuplicateColumn.Error():
			default:
				t.Errorf("error %v (%T), want %s", err, err, tt.key)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error %q lacks %q", err, tt.substr)
			}
		})
	}
	// An optional mapped column that this file lacks is only a warning.
	m, err := New(Config{Columns: map[string]string{"response-message": "Message"}}, canon, "X")
	if err != nil || len(m.Warnings()) != 1 {
		t.Errorf("err %v warnings %q", err, m.Warnings())
	}
}

func TestDupTracker(t *testing.T) {
	d := NewDupTracker(0)
	mk := func(row int, id string) Mapped { return Mapped{Row: row, Record: record.Record{ExternalID: id}} }
	if d.Check(mk(1, "A")) != nil || d.Check(mk(2, "B")) != nil || d.Check(mk(3, "")) != nil || d.Check(mk(4, "")) != nil {
		t.Fatal("false duplicate")
	}
	fe := d.Check(mk(5, "A"))
	if fe == nil || fe.Element != "external-id" || fe.Message != `duplicate external-id "A" (first at row 1)` {
		t.Fatalf("got %v", fe)
	}
	if fe := d.Check(mk(6, "A")); fe == nil || !strings.Contains(fe.Message, "first at row 1") {
		t.Errorf("third occurrence: %v", fe)
	}
	// Many ids through several growths: every repeat found, none invented.
	d = NewDupTracker(0)
	for i := 1; i <= 200000; i++ {
		if fe := d.Check(mk(i, fmt.Sprint("ID-", i))); fe != nil {
			t.Fatalf("row %d: %v", i, fe)
		}
	}
	for i := 1; i <= 200000; i += 997 {
		fe := d.Check(mk(300000+i, fmt.Sprint("ID-", i)))
		if fe == nil || !strings.HasSuffix(fe.Message, fmt.Sprintf("(first at row %d)", i)) {
			t.Fatalf("repeat of row %d: %v", i, fe)
		}
	}
	if d.Len() != 200000 || d.Full() {
		t.Errorf("len %d full %v", d.Len(), d.Full())
	}
	// A tiny budget fills up, keeps finding the ids it holds, says so.
	d = NewDupTracker(1)
	for i := 1; i <= 2000; i++ {
		d.Check(mk(i, fmt.Sprint(i)))
	}
	if !d.Full() || d.Len() != 768 || d.Check(mk(3000, "1")) == nil {
		t.Errorf("full %v len %d", d.Full(), d.Len())
	}
}
