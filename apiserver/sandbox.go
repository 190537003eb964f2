package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
)

// The sandbox endpoints (our choice) expose what Coupa does out of sight:
// the alerts create_alert raises and the export registry mark_exported
// updates, so integration tests can assert on them. They answer JSON only.

var alertResource = &resource{
	name: "alert",
	cols: map[string]column{
		"id":                 {"id", kInt},
		"record-id":          {"record_id", kInt},
		"document-type":      {"document_type", kString},
		"document-id":        {"document_id", kInt},
		"external-id":        {"external_id", kString},
		"contact-alert-type": {"contact_alert_type", kString},
		"integration":        {"integration_code", kString},
		"created-at":         {"created_at", kTime},
	},
}

var documentResource = &resource{
	name: "document",
	cols: map[string]column{
		"document-type":    {"document_type", kString},
		"document-id":      {"document_id", kInt},
		"exported":         {"exported", kBool},
		"last-exported-at": {"last_exported_at", kTime},
	},
}

// raiseAlert records an alert for x to the contacts of its integration
// whose alert type matches; Both on either side matches everything. The
// alert is recorded even with no recipients.
func (s *Server) raiseAlert(ctx context.Context, tx *wtx, x *recordRow) error {
	recips := array{Item: "recipient"}
	if x.IntegrationID.Valid {
		rows, err := tx.QueryContext(ctx, s.st.d.q(`SELECT id, name, email, contact_alert_type FROM integration_contacts
 WHERE integration_id = ? AND (LOWER(contact_alert_type) = 'both' OR LOWER(?) = 'both' OR LOWER(contact_alert_type) = LOWER(?)) ORDER BY id`),
			x.IntegrationID.Int64, x.ContactAlertType.String, x.ContactAlertType.String)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var name, email, typ sqlString
			if err := rows.Scan(&id, &name, &email, &typ); err != nil {
				rows.Close()
				return err
			}
			recips.Elems = append(recips.Elems, object{{"id", id}, {"name", str(name)}, {"email", str(email)}, {"contact-alert-type", str(typ)}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	encodeJSON(&b, recips)
	_, err := tx.ExecContext(ctx, s.st.d.q(`INSERT INTO alerts (record_id, document_type, document_id, external_id, contact_alert_type, integration_code, recipients, created_at)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), x.ID, x.DocumentType, x.DocumentID, x.ExternalID, x.ContactAlertType, x.IntegrationCode, b.String(), x.CreatedAt)
	return err
}

// sandboxAlerts is GET /sandbox/alerts, filterable like an index.
func (s *Server) sandboxAlerts(w http.ResponseWriter, r *http.Request) {
	s.sandboxList(w, r, alertResource, `SELECT id, record_id, document_type, document_id, external_id, contact_alert_type, integration_code, recipients, created_at FROM alerts`, "id", "id",
		func(sc scanner) (any, error) {
			var id, recID, created int64
			var docID sqlInt
			var docType, extID, typ, code sqlString
			var recips string
			err := sc.Scan(&id, &recID, &docType, &docID, &extID, &typ, &code, &recips, &created)
			return object{
				{"id", id}, {"record-id", recID}, {"document-type", str(docType)}, {"document-id", i64(docID)},
				{"external-id", str(extID)}, {"contact-alert-type", str(typ)}, {"integration", str(code)},
				{"recipients", json.RawMessage(recips)}, {"created-at", unixUTC(created)},
			}, err
		})
}

// sandboxDocuments is GET /sandbox/documents: the export registry.
func (s *Server) sandboxDocuments(w http.ResponseWriter, r *http.Request) {
	s.sandboxList(w, r, documentResource, `SELECT document_type, document_id, exported, last_exported_at FROM exported_documents`, "document_type", "document_id",
		func(sc scanner) (any, error) {
			var typ string
			var id, exported, at int64
			err := sc.Scan(&typ, &id, &exported, &at)
			return object{{"document-type", typ}, {"document-id", id}, {"exported", exported != 0}, {"last-exported-at", unixUTC(at)}}, err
		})
}

// sandboxList answers a sandbox index: JSON only, no match is []. order
// is the default sort column where res has no id; idCol breaks ties.
func (s *Server) sandboxList(w http.ResponseWriter, r *http.Request, res *resource, sel, order, idCol string, scan func(scanner) (any, error)) {
	q, err := parseQuery(res, s.st.d, r.URL.Query())
	if err != nil {
		s.fail(w, r, res.name, err)
		return
	}
	if q.orderBy == "" {
		q.orderBy = order
	}
	text, args := q.sql(sel, idCol)
	list, err := queryAll(r.Context(), s.st.r, s.st.d.q(text), args, scan)
	if err != nil {
		s.fail(w, r, res.name, err)
		return
	}
	writeJSONObject(w, http.StatusOK, list)
}
