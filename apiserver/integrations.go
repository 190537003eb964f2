package apiserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ihr-tools/ihr/record"
)

// Integrations are the minimal neighbour records point at. Contacts are
// (our choice) an array on the integration: {name, email,
// contact-alert-type}; giving contacts on update replaces the list.

const (
	integrationRoot   = "integration"
	integrationPlural = "integrations"
)

var integrationResource = &resource{
	name: integrationRoot,
	cols: map[string]column{
		"id":               {"i.id", kInt},
		"code":             {"i.code", kString},
		"name":             {"i.name", kString},
		"business-object":  {"i.business_object", kString},
		"direction":        {"i.direction", kString},
		"end-system":       {"i.end_system", kString},
		"end-system-type":  {"i.end_system_type", kString},
		"integration-type": {"i.integration_type", kString},
		"created-at":       {"i.created_at", kTime},
		"updated-at":       {"i.updated_at", kTime},
	},
	assocs: map[string]assoc{
		"contacts": {
			cond: "EXISTS (SELECT 1 FROM integration_contacts ca WHERE ca.integration_id = i.id AND %s)",
			cols: map[string]column{"id": {"ca.id", kInt}, "name": {"ca.name", kString}, "email": {"ca.email", kString}, "contact-alert-type": {"ca.contact_alert_type", kString}},
		},
	},
}

var integrationStrings = []struct{ el, col string }{
	{"code", "code"},
	{"name", "name"},
	{"business-object", "business_object"},
	{"direction", "direction"},
	{"end-system", "end_system"},
	{"end-system-type", "end_system_type"},
	{"integration-type", "integration_type"},
}

type integrationRow struct {
	ID                   int64
	Strs                 [7]sqlString // in integrationStrings order
	CreatedAt, UpdatedAt int64
	Contacts             []contactRow
}

type contactRow struct {
	ID                     int64
	Name, Email, AlertType sqlString
}

func (x *integrationRow) render() object {
	o := object{{"id", x.ID}, {"created-at", time.Unix(x.CreatedAt, 0).UTC()}, {"updated-at", time.Unix(x.UpdatedAt, 0).UTC()}}
	for i, f := range integrationStrings {
		o = append(o, field{f.el, str(x.Strs[i])})
	}
	cs := array{Item: "contact", Elems: make([]object, len(x.Contacts))}
	for i, c := range x.Contacts {
		cs.Elems[i] = object{{"id", c.ID}, {"name", str(c.Name)}, {"email", str(c.Email)}, {"contact-alert-type", str(c.AlertType)}}
	}
	return append(o, field{"contacts", cs})
}

type integrationInput struct {
	strs        map[string]sqlString
	contacts    []contactRow
	hasContacts bool
}

func bindIntegration(m map[string]any, create bool) (*integrationInput, validationError) {
	b := &binder{m: m}
	in := &integrationInput{strs: map[string]sqlString{}}
	for _, f := range integrationStrings {
		if v, ok := b.str(f.el, record.MaxString); ok {
			in.strs[f.el] = v
		}
	}
	for _, el := range []string{"code", "name"} {
		v, ok := in.strs[el]
		if (create || ok) && !b.failed(el) && strings.TrimSpace(v.String) == "" {
			b.fail(record.Blank(el))
		}
	}
	if v, ok := in.strs["direction"]; ok && v.Valid && v.String != "to_coupa" && v.String != "from_coupa" && !b.failed("direction") {
		b.fail(record.FieldError{Element: "direction", Message: fmt.Sprintf("Direction %q is not to_coupa or from_coupa", v.String)})
	}
	if items, ok := b.list("contacts", "contact"); ok {
		in.hasContacts = true
		for _, it := range items {
			sb := &binder{m: it}
			var c contactRow
			c.Name, _ = sb.str("name", record.MaxString)
			c.Email, _ = sb.str("email", record.MaxString)
			c.AlertType, _ = sb.str("contact-alert-type", record.MaxString)
			if !sb.failed("contact-alert-type") {
				switch c.AlertType.String {
				case "Technical", "Functional", "Both":
				default:
					sb.fail(record.FieldError{Element: "contact-alert-type", Message: fmt.Sprintf("Contact alert type %q of a contact is not Technical, Functional or Both", c.AlertType.String)})
				}
			}
			b.errs = append(b.errs, sb.errs...)
			in.contacts = append(in.contacts, c)
		}
	}
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	return in, nil
}

const integrationSelect = `SELECT i.id, i.code, i.name, i.business_object, i.direction, i.end_system, i.end_system_type, i.integration_type, i.created_at, i.updated_at FROM integrations i`

func scanIntegration(sc interface{ Scan(...any) error }) (*integrationRow, error) {
	var x integrationRow
	err := sc.Scan(&x.ID, &x.Strs[0], &x.Strs[1], &x.Strs[2], &x.Strs[3], &x.Strs[4], &x.Strs[5], &x.Strs[6], &x.CreatedAt, &x.UpdatedAt)
	return &x, err
}

func (s *Server) loadContacts(ctx context.Context, q querier, xs []*integrationRow) error {
	if len(xs) == 0 {
		return nil
	}
	byID := map[int64]*integrationRow{}
	args := make([]any, len(xs))
	for i, x := range xs {
		byID[x.ID] = x
		args[i] = x.ID
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(xs)), ",")
	rows, err := q.QueryContext(ctx, s.st.d.q(`SELECT id, integration_id, name, email, contact_alert_type FROM integration_contacts WHERE integration_id IN (`+ph+`) ORDER BY id`), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c contactRow
		var iid int64
		if err := rows.Scan(&c.ID, &iid, &c.Name, &c.Email, &c.AlertType); err != nil {
			return err
		}
		if x := byID[iid]; x != nil {
			x.Contacts = append(x.Contacts, c)
		}
	}
	return rows.Err()
}

func (s *Server) loadIntegration(ctx context.Context, q querier, id int64) (*integrationRow, error) {
	x, err := scanIntegration(q.QueryRowContext(ctx, s.st.d.q(integrationSelect+` WHERE i.id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	return x, s.loadContacts(ctx, q, []*integrationRow{x})
}

// checkUnique reports "has already been taken" for code and name, the
// way Rails' uniqueness validation words it.
func (s *Server) checkUnique(ctx context.Context, tx *wtx, in *integrationInput, self int64) error {
	var errs validationError
	for _, el := range []string{"code", "name"} {
		v, ok := in.strs[el]
		if !ok {
			continue
		}
		var other int64
		err := tx.QueryRowContext(ctx, s.st.d.q(`SELECT id FROM integrations WHERE `+el+` = ? AND id <> ?`), v.String, self).Scan(&other)
		if err == nil {
			errs = append(errs, record.FieldError{Element: el, Message: record.Humanize(el) + " has already been taken"})
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func (s *Server) replaceContacts(ctx context.Context, tx *wtx, id, now int64, cs []contactRow) error {
	d := s.st.d
	if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM integration_contacts WHERE integration_id = ?`), id); err != nil {
		return err
	}
	for _, c := range cs {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO integration_contacts (integration_id, name, email, contact_alert_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`),
			id, c.Name, c.Email, c.AlertType, now, now); err != nil {
			return err
		}
	}
	return nil
}

// uniqueErr turns a lost race on the unique indexes into the same 400 the
// pre-check gives.
func (s *Server) uniqueErr(err error) error {
	if s.st.d.isUnique(err) {
		return validationError{{Element: "code", Message: "Code or name has already been taken"}}
	}
	return err
}

func (s *Server) integrationCreate(w http.ResponseWriter, r *http.Request) {
	out, err := parseOutput(r.URL.Query())
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	m, ok := s.readBody(w, r, integrationRoot)
	if !ok {
		return
	}
	in, verr := bindIntegration(m, true)
	if verr != nil {
		s.fail(w, r, integrationRoot, verr)
		return
	}
	ctx := r.Context()
	now := s.now().Unix()
	var x *integrationRow
	err = s.st.tx(ctx, func(tx *wtx) error {
		if err := s.checkUnique(ctx, tx, in, 0); err != nil {
			return err
		}
		args := []any{}
		for _, f := range integrationStrings {
			args = append(args, in.strs[f.el])
		}
		var id int64
		if err := tx.QueryRowContext(ctx, s.st.d.q(`INSERT INTO integrations (code, name, business_object, direction, end_system, end_system_type, integration_type, created_at, updated_at)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), append(args, now, now)...).Scan(&id); err != nil {
			return s.uniqueErr(err)
		}
		if err := s.replaceContacts(ctx, tx, id, now, in.contacts); err != nil {
			return err
		}
		var err error
		x, err = s.loadIntegration(ctx, tx, id)
		return err
	})
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	respond(w, r, http.StatusCreated, integrationRoot, x.render(), out)
}

func (s *Server) integrationUpdate(w http.ResponseWriter, r *http.Request) {
	out, err := parseOutput(r.URL.Query())
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	m, ok := s.readBody(w, r, integrationRoot)
	if !ok {
		return
	}
	in, verr := bindIntegration(m, false)
	if verr != nil {
		s.fail(w, r, integrationRoot, verr)
		return
	}
	ctx := r.Context()
	now := s.now().Unix()
	var x *integrationRow
	err = s.st.tx(ctx, func(tx *wtx) error {
		if err := s.checkUnique(ctx, tx, in, id); err != nil {
			return err
		}
		sets := []string{"updated_at = ?"}
		args := []any{now}
		for _, f := range integrationStrings {
			if v, ok := in.strs[f.el]; ok {
				sets = append(sets, f.col+" = ?")
				args = append(args, v)
			}
		}
		res, err := tx.ExecContext(ctx, s.st.d.q(`UPDATE integrations SET `+strings.Join(sets, ", ")+` WHERE id = ?`), append(args, id)...)
		if err != nil {
			return s.uniqueErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNotFound
		}
		if in.hasContacts {
			if err := s.replaceContacts(ctx, tx, id, now, in.contacts); err != nil {
				return err
			}
		}
		x, err = s.loadIntegration(ctx, tx, id)
		return err
	})
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	respond(w, r, http.StatusOK, integrationRoot, x.render(), out)
}

func (s *Server) integrationShow(w http.ResponseWriter, r *http.Request) {
	out, err := parseOutput(r.URL.Query())
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	x, err := s.loadIntegration(r.Context(), s.st.r, id)
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	respond(w, r, http.StatusOK, integrationRoot, x.render(), out)
}

func (s *Server) integrationIndex(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(integrationResource, s.st.d, r.URL.Query())
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	text, args := q.sql(integrationSelect, "i.id")
	ctx := r.Context()
	rows, err := s.st.r.QueryContext(ctx, s.st.d.q(text), args...)
	if err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	var xs []*integrationRow
	for rows.Next() {
		x, err := scanIntegration(rows)
		if err != nil {
			rows.Close()
			s.fail(w, r, integrationRoot, err)
			return
		}
		xs = append(xs, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	if err := s.loadContacts(ctx, s.st.r, xs); err != nil {
		s.fail(w, r, integrationRoot, err)
		return
	}
	objs := make([]object, len(xs))
	for i, x := range xs {
		objs[i] = x.render()
	}
	respondList(w, r, integrationPlural, integrationRoot, objs, q.out)
}
