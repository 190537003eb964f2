package mapping

import (
	"errors"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/parse"
	"github.com/ihr-tools/ihr/record"
)

// FuzzMap: whatever the header, the row and the mapping config, New and
// Map never panic; a row Map accepts passes record.Validate and has a
// known action; every FieldError names a known element; the key is
// stable. Inputs are split on '|' (header, row) and ';' / '=' (config).
func FuzzMap(f *testing.F) {
	f.Add("external-id|document-type|document-id|contact-alert-type|status", "A-1|InvoiceHeader|1|Functional|Success", "", "", "", "f.csv")
	f.Add("ID|Invoice Number|Status|Message", "7001|INV-1|approved|ok", "document-id=ID;document-status=Status",
		"document-type=InvoiceHeader;contact-alert-type=Both;status=Success", "Success=mark_exported;*=create", "/in/x.csv")
	f.Add("Document_ID|DOCUMENT-TYPE|contact_alert_type|action|integration|response-code", "12a|invoice| |delete||E", "", "", "", `C:\a\b.csv`)
	f.Add("document-id|document-id", "1|2", "", "", "", "")
	f.Add("a|b", "", "document-id=a;external-id=a", "document-type=Invoice;contact-alert-type=x", "Error=create_alert_and_mark_exported", "..")
	f.Fuzz(func(t *testing.T, header, row, columns, defaults, actions, filename string) {
		cfg := Config{Columns: kv(columns), Defaults: kv(defaults), Actions: kv(actions)}
		m, err := New(cfg, strings.Split(header, "|"), "SRC")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) && !errors.Is(err, ErrMissingColumn) && !errors.Is(err, ErrDuplicateColumn) {
				t.Fatalf("New: unexpected error %v", err)
			}
			if len(Check(cfg)) > 0 && !errors.As(err, &ce) {
				t.Fatalf("Check rejects a config New accepted before the header: %v", err)
			}
			return
		}
		var fields []string
		if row != "" {
			fields = strings.Split(row, "|")
		}
		got, errs := m.Map(parse.Row{Number: 3, Line: 4, Fields: fields}, filename)
		if got.Row != 3 {
			t.Fatalf("row %d", got.Row)
		}
		for _, fe := range errs {
			if elementIndex(fe.Element) < 0 && fe.Element != "integration-filename" || fe.Message == "" {
				t.Fatalf("field error %+v", fe)
			}
		}
		if errs == nil {
			if v := record.Validate(&got.Record); v != nil {
				t.Fatalf("accepted a record that fails validation: %v", v)
			}
			if _, ok := record.ParseAction(string(got.Action)); !ok {
				t.Fatalf("accepted action %q", got.Action)
			}
		}
		if strings.ContainsAny(got.Record.IntegrationFilename, `/\`) {
			t.Fatalf("filename %q", got.Record.IntegrationFilename)
		}
	})
}

func kv(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, p := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return m
}
