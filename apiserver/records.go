package apiserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ihr-tools/ihr/record"
)

const (
	recordRoot   = "integration-history-record"
	recordPlural = "integration-history-records"
)

// recordResource is what index may filter and sort records on.
var recordResource = &resource{
	name: recordRoot,
	cols: map[string]column{
		"id":                   {"r.id", kInt},
		"contact-alert-type":   {"r.contact_alert_type", kString},
		"created-at":           {"r.created_at", kTime},
		"updated-at":           {"r.updated_at", kTime},
		"creation-method":      {"r.creation_method", kString},
		"document-id":          {"r.document_id", kInt},
		"document-revision":    {"r.document_revision", kInt},
		"document-status":      {"r.document_status", kString},
		"document-type":        {"r.document_type", kString},
		"external-id":          {"r.external_id", kString},
		"integration-id":       {"r.integration_id", kInt},
		"integration-run-id":   {"r.integration_run_id", kInt},
		"integration-filename": {"r.integration_filename", kString},
		"resolved":             {"r.resolved", kBool},
		"status":               {"r.status", kString},
	},
	assocs: map[string]assoc{
		"integration": integrationAssoc("r.integration_id"),
		"integration-run": {
			cond: "%s",
			cols: map[string]column{"id": {"r.integration_run_id", kInt}},
		},
		"responses": {
			cond: "EXISTS (SELECT 1 FROM record_responses ra WHERE ra.record_id = r.id AND %s)",
			cols: map[string]column{
				"id": {"ra.id", kInt}, "response-code": {"ra.response_code", kString},
				"response-message": {"ra.response_message", kString},
				"created-at":       {"ra.created_at", kTime}, "updated-at": {"ra.updated_at", kTime},
			},
		},
		"created-by": {
			cond: "%s",
			cols: map[string]column{"id": {"r.created_by_id", kInt}, "login": {"r.created_by_login", kString}},
		},
		"updated-by": {
			cond: "%s",
			cols: map[string]column{"id": {"r.updated_by_id", kInt}, "login": {"r.updated_by_login", kString}},
		},
	},
}

// recordRow is a stored record with its integration and responses.
type recordRow struct {
	ID                                               int64
	ContactAlertType, CreationMethod, DocumentStatus sqlString
	DocumentType, ExternalID, IntegrationFilename    sqlString
	Status                                           sqlString
	DocumentID, DocumentRevision                     sqlInt
	IntegrationID, IntegrationRunID                  sqlInt
	IntegrationCode, IntegrationName                 sqlString
	Resolved                                         bool
	CreatedAt, UpdatedAt                             int64
	CreatedByID, UpdatedByID                         sqlInt
	CreatedByLogin, UpdatedByLogin                   sqlString
	Responses                                        []responseRow
}

type responseRow struct {
	ID                   int64
	Code, Message        sqlString
	CreatedAt, UpdatedAt int64
}

const recordSelect = `SELECT r.id, r.contact_alert_type, r.creation_method, r.document_id, r.document_revision,
 r.document_status, r.document_type, r.external_id, r.integration_id, ia.code, ia.name, r.integration_run_id,
 r.integration_filename, r.resolved, r.status, r.created_at, r.updated_at, r.created_by_id, r.created_by_login,
 r.updated_by_id, r.updated_by_login
 FROM integration_history_records r LEFT JOIN integrations ia ON ia.id = r.integration_id`

// records is the integration-history-records resource for the shared
// handlers.
var records = &entity[recordRow]{
	res:    recordResource,
	plural: recordPlural,
	sel:    recordSelect,
	scan:   scanRecord,
	render: (*recordRow).render,
	id:     func(x *recordRow) int64 { return x.ID },
	children: func(ctx context.Context, d dialect, q querier, xs []*recordRow, each func(*recordRow) bool) (int, error) {
		return streamChildren(ctx, d, q, xs, func(x *recordRow) int64 { return x.ID },
			`SELECT record_id, id, response_code, response_message, created_at, updated_at FROM record_responses WHERE record_id`,
			func(sc scanner) (rid int64, rs responseRow, err error) {
				err = sc.Scan(&rid, &rs.ID, &rs.Code, &rs.Message, &rs.CreatedAt, &rs.UpdatedAt)
				return rid, rs, err
			},
			func(x *recordRow, rs responseRow) { x.Responses = append(x.Responses, rs) }, each)
	},
}

func scanRecord(sc scanner) (*recordRow, error) {
	var x recordRow
	var resolved int64
	err := sc.Scan(&x.ID, &x.ContactAlertType, &x.CreationMethod, &x.DocumentID, &x.DocumentRevision,
		&x.DocumentStatus, &x.DocumentType, &x.ExternalID, &x.IntegrationID, &x.IntegrationCode, &x.IntegrationName,
		&x.IntegrationRunID, &x.IntegrationFilename, &resolved, &x.Status, &x.CreatedAt, &x.UpdatedAt,
		&x.CreatedByID, &x.CreatedByLogin, &x.UpdatedByID, &x.UpdatedByLogin)
	x.Resolved = resolved != 0
	return &x, err
}

// userObj is a record's created-by / updated-by with the elements of
// Coupa's user object in these associations. The caller is an API key or
// an OAuth client, which has a login and nothing else we could know:
// email, names and employee number are nil rather than made up.
func userObj(id sqlInt, login sqlString) any {
	if !id.Valid && !login.Valid {
		return nullString
	}
	return object{
		{"id", i64(id)},
		{"login", str(login)},
		{"email", nullString},
		{"firstname", nullString},
		{"lastname", nullString},
		{"employee-number", nullString},
	}
}

// render is a record as Coupa prints it. integration-run is input only
// (the element table says so); its id is printed as integration-run-id.
func (x *recordRow) render() object {
	var integ any = nullString
	if x.IntegrationID.Valid {
		integ = object{{"id", x.IntegrationID.Int64}, {"code", str(x.IntegrationCode)}, {"name", str(x.IntegrationName)}}
	}
	resps := array{Item: "response", Elems: make([]object, len(x.Responses))}
	for i, rs := range x.Responses {
		resps.Elems[i] = object{
			{"id", rs.ID},
			{"created-at", unixUTC(rs.CreatedAt)},
			{"updated-at", unixUTC(rs.UpdatedAt)},
			{"response-code", str(rs.Code)},
			{"response-message", str(rs.Message)},
		}
	}
	return object{
		{"id", x.ID},
		{"created-at", unixUTC(x.CreatedAt)},
		{"updated-at", unixUTC(x.UpdatedAt)},
		{"contact-alert-type", str(x.ContactAlertType)},
		{"creation-method", str(x.CreationMethod)},
		{"document-id", i64(x.DocumentID)},
		{"document-revision", i64(x.DocumentRevision)},
		{"document-status", str(x.DocumentStatus)},
		{"document-type", str(x.DocumentType)},
		{"external-id", str(x.ExternalID)},
		{"integration-filename", str(x.IntegrationFilename)},
		{"integration-run-id", i64(x.IntegrationRunID)},
		{"resolved", x.Resolved},
		{"status", str(x.Status)},
		{"integration", integ},
		{"responses", resps},
		{"created-by", userObj(x.CreatedByID, x.CreatedByLogin)},
		{"updated-by", userObj(x.UpdatedByID, x.UpdatedByLogin)},
	}
}

// recordStrings are the writable string(255) elements and their columns.
var recordStrings = []struct{ el, col string }{
	{"contact-alert-type", "contact_alert_type"},
	{"creation-method", "creation_method"},
	{"document-status", "document_status"},
	{"document-type", "document_type"},
	{"external-id", "external_id"},
	{"integration-filename", "integration_filename"},
	{"status", "status"},
}

var recordInts = []struct{ el, col string }{
	{"document-id", "document_id"},
	{"document-revision", "document_revision"},
	{"integration-run-id", "integration_run_id"},
}

// recordInput is a decoded, type-checked create or update body.
type recordInput struct {
	strs      map[string]sqlString // element → value, only those present
	ints      map[string]sqlInt
	integ     ref
	hasInteg  bool
	responses []responseIn
}

type responseIn struct{ code, message sqlString }

// bindRecord type-checks a body. create=true also applies the required
// rules of record.Validate; updates check only what they change.
func bindRecord(m map[string]any, strict, create bool) (*recordInput, validationError) {
	b := &binder{m: m}
	in := &recordInput{strs: map[string]sqlString{}, ints: map[string]sqlInt{}}
	for _, f := range recordStrings {
		if f.el == "integration-filename" && strict {
			continue // (strict) Coupa lists it as output only
		}
		if v, ok := b.str(f.el, record.MaxString); ok {
			in.strs[f.el] = v
		}
	}
	for _, f := range recordInts {
		if v, ok := b.int(f.el); ok {
			in.ints[f.el] = v
		}
	}
	in.integ, in.hasInteg = b.ref("integration")
	if rf, ok := b.ref("integration-run"); ok && !b.failed("integration-run") {
		if rf.code.Valid && !rf.id.Valid {
			b.fail(record.FieldError{Element: "integration-run", Message: "Integration run must be given by id"})
		} else if _, dup := in.ints["integration-run-id"]; !dup {
			in.ints["integration-run-id"] = rf.id
		}
	}
	if items, ok := b.list("responses", "response"); ok {
		for _, it := range items {
			sb := &binder{m: it}
			code, hasCode := sb.str("response-code", record.MaxString)
			msg, hasMsg := sb.str("response-message", 0)
			if !hasCode && !hasMsg {
				sb.fail(record.FieldError{Element: "responses", Message: "Responses items need a response-code or a response-message"})
			}
			b.errs = append(b.errs, sb.errs...)
			in.responses = append(in.responses, responseIn{code, msg})
		}
	}
	// The record package owns the rules; feed it what we bound.
	var rec record.Record
	rec.ContactAlertType = in.strs["contact-alert-type"].String
	rec.DocumentType = in.strs["document-type"].String
	if v := in.ints["document-id"]; v.Valid {
		rec.DocumentID = &v.Int64
	}
	var rules []record.FieldError
	if create {
		rules = record.Validate(&rec)
	} else {
		for _, el := range []string{"contact-alert-type", "document-type"} {
			if v, ok := in.strs[el]; ok && strings.TrimSpace(v.String) == "" {
				rules = append(rules, record.Blank(el))
			}
		}
		if v, ok := in.ints["document-id"]; ok && !v.Valid {
			rules = append(rules, record.Blank("document-id"))
		}
		if v, ok := in.strs["document-type"]; ok && strings.TrimSpace(v.String) != "" && !record.IsDocumentType(v.String) {
			rules = append(rules, record.FieldError{Element: "document-type", Message: fmt.Sprintf("Document type %q is not a valid document type", v.String)})
		}
	}
	for _, e := range rules {
		if !b.failed(e.Element) {
			b.fail(e)
		}
	}
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	return in, nil
}

// resolveIntegration finds the referenced integration inside tx.
func (s *Server) resolveIntegration(ctx context.Context, tx *wtx, rf ref) (id int64, code, name sqlString, err error) {
	d := s.st.d
	var row *sql.Row
	what := ""
	if rf.id.Valid {
		row = tx.QueryRowContext(ctx, d.q(`SELECT id, code, name FROM integrations WHERE id = ?`), rf.id.Int64)
		what = fmt.Sprintf("id %d", rf.id.Int64)
	} else {
		row = tx.QueryRowContext(ctx, d.q(`SELECT id, code, name FROM integrations WHERE code = ?`), rf.code.String)
		what = fmt.Sprintf("code %q", rf.code.String)
	}
	if err = row.Scan(&id, &code, &name); errors.Is(err, sql.ErrNoRows) {
		return 0, code, name, validationError{{Element: "integration", Message: "Integration with " + what + " does not exist"}}
	}
	if err == nil && rf.id.Valid && rf.code.Valid && rf.code.String != code.String {
		return 0, code, name, validationError{{Element: "integration", Message: fmt.Sprintf("Integration id %d does not have code %q", rf.id.Int64, rf.code.String)}}
	}
	return id, code, name, err
}

func (s *Server) checkRun(ctx context.Context, tx *wtx, id sqlInt) error {
	if !id.Valid {
		return nil
	}
	var one int
	err := tx.QueryRowContext(ctx, s.st.d.q(`SELECT 1 FROM integration_runs WHERE id = ?`), id.Int64).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return validationError{{Element: "integration-run", Message: fmt.Sprintf("Integration run with id %d does not exist", id.Int64)}}
	}
	return err
}

func (s *Server) recordAction(w http.ResponseWriter, r *http.Request) {
	a, ok := record.ParseAction(r.PathValue("action"))
	if !ok || a == record.Create {
		writeError(w, r, http.StatusNotFound, recordRoot, "No route matches POST "+r.URL.Path)
		return
	}
	s.recordCreate(a)(w, r)
}

// recordCreate handles the five POST actions: store the record, then the
// action's side effects, all in one transaction.
func (s *Server) recordCreate(a record.Action) http.HandlerFunc {
	return records.serve(s, creating, func(r *http.Request, _ int64, body map[string]any) (*recordRow, error) {
		in, verr := bindRecord(body, s.cfg.Strict, true)
		if verr != nil {
			return nil, verr
		}
		now := s.now().Unix()
		x := &recordRow{
			ContactAlertType: in.strs["contact-alert-type"], CreationMethod: in.strs["creation-method"],
			DocumentStatus: in.strs["document-status"], DocumentType: in.strs["document-type"],
			ExternalID: in.strs["external-id"], IntegrationFilename: in.strs["integration-filename"],
			Status: in.strs["status"], DocumentID: in.ints["document-id"], DocumentRevision: in.ints["document-revision"],
			IntegrationRunID: in.ints["integration-run-id"], CreatedAt: now, UpdatedAt: now,
		}
		x.CreatedByID, x.CreatedByLogin = principalFrom(r.Context()).by()
		x.UpdatedByID, x.UpdatedByLogin = x.CreatedByID, x.CreatedByLogin
		ctx := r.Context()
		return x, s.st.tx(ctx, func(tx *wtx) error {
			return s.insertRecord(ctx, tx, a, x, in)
		})
	})
}

func (s *Server) insertRecord(ctx context.Context, tx *wtx, a record.Action, x *recordRow, in *recordInput) error {
	d := s.st.d
	if in.hasInteg && !in.integ.null {
		id, code, name, err := s.resolveIntegration(ctx, tx, in.integ)
		if err != nil {
			return err
		}
		x.IntegrationID, x.IntegrationCode, x.IntegrationName = sqlInt{Int64: id, Valid: true}, code, name
	}
	if err := s.checkRun(ctx, tx, x.IntegrationRunID); err != nil {
		return err
	}
	// Records of one document get ids in commit order, so that "earlier"
	// (lower id) for acknowledge means committed before, across instances.
	if err := d.lockDocument(ctx, tx, x.DocumentType.String, x.DocumentID.Int64); err != nil {
		return err
	}
	var err error
	x.ID, err = tx.insert(ctx, `INSERT INTO integration_history_records
 (contact_alert_type, creation_method, document_id, document_revision, document_status, document_type,
  external_id, integration_id, integration_run_id, integration_filename, resolved, status,
  created_at, updated_at, created_by_id, created_by_login, updated_by_id, updated_by_login)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)`,
		// The driver values themselves (what Value would return): a
		// boxed sql.Null* costs an allocation and its Value another.
		argStr(x.ContactAlertType), argStr(x.CreationMethod), argInt(x.DocumentID), argInt(x.DocumentRevision),
		argStr(x.DocumentStatus), argStr(x.DocumentType), argStr(x.ExternalID), argInt(x.IntegrationID),
		argInt(x.IntegrationRunID), argStr(x.IntegrationFilename), argStr(x.Status),
		x.CreatedAt, x.UpdatedAt, argInt(x.CreatedByID), argStr(x.CreatedByLogin), argInt(x.UpdatedByID), argStr(x.UpdatedByLogin))
	if err != nil {
		return err
	}
	if err := s.appendResponses(ctx, tx, x, in.responses, true); err != nil {
		return err
	}
	if a.MarksExported() {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO exported_documents (document_type, document_id, exported, last_exported_at)
 VALUES (?, ?, 1, ?) ON CONFLICT (document_type, document_id) DO UPDATE SET exported = 1, last_exported_at = excluded.last_exported_at`),
			x.DocumentType, x.DocumentID, x.CreatedAt); err != nil {
			return err
		}
	}
	if a.RaisesAlert() {
		if err := s.raiseAlert(ctx, tx, x); err != nil {
			return err
		}
	}
	if a == record.Acknowledge {
		// (our choice) The ERP acknowledged the document: earlier open
		// records of it are resolved; the acknowledgement itself stays open.
		if _, err := tx.ExecContext(ctx, d.q(`UPDATE integration_history_records SET resolved = 1, updated_at = ?, updated_by_id = ?, updated_by_login = ?
 WHERE document_type = ? AND document_id = ? AND resolved = 0 AND id < ?`),
			x.CreatedAt, x.CreatedByID, x.CreatedByLogin, x.DocumentType, x.DocumentID, x.ID); err != nil {
			return err
		}
	}
	return nil
}

// Bounds of one record's responses (our choice). Updates append
// responses, so without them one small record could grow without end and
// every index page holding it with it; 400 beyond.
const (
	MaxResponsesPerRecord     = 1000
	MaxResponseBytesPerRecord = 1 << 20 // response-message text, in bytes
)

// checkResponseCap refuses to grow record id's responses past the caps;
// isNew skips counting what a record being created cannot have yet.
func (s *Server) checkResponseCap(ctx context.Context, tx *wtx, id int64, isNew bool, rs []responseIn) error {
	if len(rs) == 0 {
		return nil
	}
	var n, size int64
	if !isNew {
		if err := tx.QueryRowContext(ctx, s.st.d.q(`SELECT COUNT(*), COALESCE(SUM(OCTET_LENGTH(response_message)), 0) FROM record_responses WHERE record_id = ?`), id).Scan(&n, &size); err != nil {
			return err
		}
	}
	var add int64
	for _, r := range rs {
		add += int64(len(r.message.String))
	}
	switch {
	case n+int64(len(rs)) > MaxResponsesPerRecord:
		return validationError{{Element: "responses", Message: fmt.Sprintf("Responses are limited to %d per record (this record has %d; %d more were given)", MaxResponsesPerRecord, n, len(rs))}}
	case size+add > MaxResponseBytesPerRecord:
		return validationError{{Element: "responses", Message: fmt.Sprintf("Responses are limited to %d bytes of response-message text per record (this record has %d; %d more were given)", MaxResponseBytesPerRecord, size, add)}}
	}
	return nil
}

func (s *Server) appendResponses(ctx context.Context, tx *wtx, x *recordRow, rs []responseIn, isNew bool) error {
	if err := s.checkResponseCap(ctx, tx, x.ID, isNew, rs); err != nil {
		return err
	}
	for _, rs := range rs {
		id, err := tx.insert(ctx, `INSERT INTO record_responses (record_id, response_code, response_message, created_at, updated_at)
 VALUES (?, ?, ?, ?, ?)`, x.ID, rs.code, rs.message, x.UpdatedAt, x.UpdatedAt)
		if err != nil {
			return err
		}
		x.Responses = append(x.Responses, responseRow{ID: id, Code: rs.code, Message: rs.message, CreatedAt: x.UpdatedAt, UpdatedAt: x.UpdatedAt})
	}
	return nil
}

// recordUpdate is PUT/PATCH: a partial update; responses are appended.
func (s *Server) recordUpdate() http.HandlerFunc {
	return records.serve(s, byIDWithBody, func(r *http.Request, id int64, body map[string]any) (*recordRow, error) {
		in, verr := bindRecord(body, s.cfg.Strict, false)
		if verr != nil {
			return nil, verr
		}
		now := s.now().Unix()
		uid, login := principalFrom(r.Context()).by()
		ctx := r.Context()
		return records.write(ctx, s, func(tx *wtx) (int64, error) {
			sets := []string{"updated_at = ?", "updated_by_id = ?", "updated_by_login = ?"}
			args := []any{now, uid, login}
			for _, f := range recordStrings {
				if v, ok := in.strs[f.el]; ok {
					sets = append(sets, f.col+" = ?")
					args = append(args, v)
				}
			}
			for _, f := range recordInts {
				if v, ok := in.ints[f.el]; ok {
					if f.el == "integration-run-id" {
						if err := s.checkRun(ctx, tx, v); err != nil {
							return 0, err
						}
					}
					sets = append(sets, f.col+" = ?")
					args = append(args, v)
				}
			}
			if in.hasInteg {
				var iid sqlInt
				if !in.integ.null {
					integID, _, _, err := s.resolveIntegration(ctx, tx, in.integ)
					if err != nil {
						return 0, err
					}
					iid = sqlInt{Int64: integID, Valid: true}
				}
				sets = append(sets, "integration_id = ?")
				args = append(args, iid)
			}
			if err := updateByID(ctx, s.st.d, tx, "integration_history_records", strings.Join(sets, ", "), args, id); err != nil {
				return 0, err
			}
			return id, s.appendResponses(ctx, tx, &recordRow{ID: id, UpdatedAt: now}, in.responses, false)
		})
	})
}

// recordResolve is PUT /:id/resolve and /:id/unresolve, the only way to
// change resolved. A body, if any, is ignored.
func (s *Server) recordResolve(resolved bool) http.HandlerFunc {
	v := 0
	if resolved {
		v = 1
	}
	return records.serve(s, byID, func(r *http.Request, id int64, _ map[string]any) (*recordRow, error) {
		uid, login := principalFrom(r.Context()).by()
		ctx := r.Context()
		return records.write(ctx, s, func(tx *wtx) (int64, error) {
			return id, updateByID(ctx, s.st.d, tx, "integration_history_records", "resolved = ?, updated_at = ?, updated_by_id = ?, updated_by_login = ?",
				[]any{v, s.now().Unix(), uid, login}, id)
		})
	})
}
