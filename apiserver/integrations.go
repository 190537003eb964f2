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

// integrationAssoc lets an index filter on the integration that col
// (records' and runs' integration_id) points at.
func integrationAssoc(col string) assoc {
	return assoc{
		cond: col + " IN (SELECT ia.id FROM integrations ia WHERE %s)",
		cols: map[string]column{"id": {"ia.id", kInt}, "code": {"ia.code", kString}, "name": {"ia.name", kString}},
	}
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
	o := object{{"id", x.ID}, {"created-at", unixUTC(x.CreatedAt)}, {"updated-at", unixUTC(x.UpdatedAt)}}
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

// integrations is the integrations resource for the shared handlers.
var integrations = &entity[integrationRow]{
	res:    integrationResource,
	plural: integrationPlural,
	sel:    integrationSelect,
	scan:   scanIntegration,
	render: (*integrationRow).render,
	children: func(ctx context.Context, d dialect, q querier, xs []*integrationRow, each func(*integrationRow) bool) (int, error) {
		return streamChildren(ctx, d, q, xs, func(x *integrationRow) int64 { return x.ID },
			`SELECT integration_id, id, name, email, contact_alert_type FROM integration_contacts WHERE integration_id`,
			func(sc scanner) (iid int64, c contactRow, err error) {
				err = sc.Scan(&iid, &c.ID, &c.Name, &c.Email, &c.AlertType)
				return iid, c, err
			},
			func(x *integrationRow, c contactRow) { x.Contacts = append(x.Contacts, c) }, each)
	},
}

func scanIntegration(sc scanner) (*integrationRow, error) {
	var x integrationRow
	err := sc.Scan(&x.ID, &x.Strs[0], &x.Strs[1], &x.Strs[2], &x.Strs[3], &x.Strs[4], &x.Strs[5], &x.Strs[6], &x.CreatedAt, &x.UpdatedAt)
	return &x, err
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

func (s *Server) integrationCreate() http.HandlerFunc {
	return integrations.serve(s, creating, func(r *http.Request, _ int64, body map[string]any) (*integrationRow, error) {
		in, verr := bindIntegration(body, true)
		if verr != nil {
			return nil, verr
		}
		ctx := r.Context()
		now := s.now().Unix()
		return integrations.write(ctx, s, func(tx *wtx) (int64, error) {
			if err := s.checkUnique(ctx, tx, in, 0); err != nil {
				return 0, err
			}
			args := []any{}
			for _, f := range integrationStrings {
				args = append(args, in.strs[f.el])
			}
			var id int64
			if err := tx.QueryRowContext(ctx, s.st.d.q(`INSERT INTO integrations (code, name, business_object, direction, end_system, end_system_type, integration_type, created_at, updated_at)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), append(args, now, now)...).Scan(&id); err != nil {
				return 0, s.uniqueErr(err)
			}
			return id, s.replaceContacts(ctx, tx, id, now, in.contacts)
		})
	})
}

func (s *Server) integrationUpdate() http.HandlerFunc {
	return integrations.serve(s, byIDWithBody, func(r *http.Request, id int64, body map[string]any) (*integrationRow, error) {
		in, verr := bindIntegration(body, false)
		if verr != nil {
			return nil, verr
		}
		ctx := r.Context()
		now := s.now().Unix()
		return integrations.write(ctx, s, func(tx *wtx) (int64, error) {
			if err := s.checkUnique(ctx, tx, in, id); err != nil {
				return 0, err
			}
			sets := []string{"updated_at = ?"}
			args := []any{now}
			for _, f := range integrationStrings {
				if v, ok := in.strs[f.el]; ok {
					sets = append(sets, f.col+" = ?")
					args = append(args, v)
				}
			}
			if err := updateByID(ctx, s.st.d, tx, "integrations", strings.Join(sets, ", "), args, id); err != nil {
				return 0, s.uniqueErr(err)
			}
			if in.hasContacts {
				return id, s.replaceContacts(ctx, tx, id, now, in.contacts)
			}
			return id, nil
		})
	})
}
