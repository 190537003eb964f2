package record

import (
	"encoding/json"
	"testing"
)

func TestUnmarshalBothSpellings(t *testing.T) {
	for name, in := range map[string]string{
		"hyphen":     `{"id":7,"document-id":5,"document-type":"InvoiceHeader","external-id":"a_b","integration-filename":"x_y.csv","responses":[{"response-code":"OK"}],"integration":{"code":"ERP"}}`,
		"underscore": `{"id":7,"document_id":5,"document_type":"InvoiceHeader","external_id":"a_b","integration_filename":"x_y.csv","responses":[{"response_code":"OK"}],"integration":{"code":"ERP"}}`,
		"unknown":    `{"id":7,"document-id":5,"document-type":"InvoiceHeader","external-id":"a_b","integration-filename":"x_y.csv","responses":[{"response-code":"OK"}],"integration":{"code":"ERP"},"new-element":1}`,
	} {
		var r Record
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.ID != 7 || r.DocumentID == nil || *r.DocumentID != 5 || r.DocumentType != "InvoiceHeader" ||
			r.ExternalID != "a_b" || r.IntegrationFilename != "x_y.csv" || len(r.Responses) != 1 ||
			r.Responses[0].ResponseCode != "OK" || r.Integration == nil || r.Integration.Code != "ERP" {
			t.Errorf("%s: decoded %+v", name, r)
		}
	}
}

func TestUnmarshalRejectsMalformed(t *testing.T) {
	var r Record
	if err := json.Unmarshal([]byte(`{"document-id":"x"}`), &r); err == nil {
		t.Fatal("a string document-id decoded without error")
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	in := []byte(`{"id":7,"contact-alert-type":"Functional","created-at":"2026-11-29T21:04:05+00:00","document-id":5,"document-type":"InvoiceHeader","external-id":"AP_1","integration-filename":"x_y.csv","resolved":false,"status":"Success"}`)
	for b.Loop() {
		var r Record
		if err := json.Unmarshal(in, &r); err != nil {
			b.Fatal(err)
		}
	}
}
