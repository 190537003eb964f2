package apiserver

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"time"

	"github.com/ihr-tools/ihr/record"
)

// Integration runs: created pending, then moved by PUT /:id/run, success,
// fail, pause and pending, as Coupa's Integration Runs API does.

const (
	runRoot   = "integration-run"
	runPlural = "integration-runs"
)

var runResource = &resource{
	name: runRoot,
	cols: map[string]column{
		"id":            {"x.id", kInt},
		"status":        {"x.status", kString},
		"total-records": {"x.total_records", kInt},
		"start-time":    {"x.start_time", kTime},
		"end-time":      {"x.end_time", kTime},
		"created-at":    {"x.created_at", kTime},
		"updated-at":    {"x.updated_at", kTime},
	},
	assocs: map[string]assoc{
		"integration": {
			cond: "x.integration_id IN (SELECT ia.id FROM integrations ia WHERE %s)",
			cols: map[string]column{"id": {"ia.id", kInt}, "code": {"ia.code", kString}, "name": {"ia.name", kString}},
		},
	},
}

// runTransitions maps the PUT /:id/<transition> actions to statuses.
var runTransitions = map[string]string{
	"run":     "running",
	"success": "successful",
	"fail":    "failed",
	"pause":   "paused",
	"pending": "pending",
}

type runRow struct {
	ID                   int64
	IntegrationID        int64
	Code, Name           sqlString
	Status               string
	TotalRecords         sqlInt
	StartTime, EndTime   sqlInt
	CreatedAt, UpdatedAt int64
}

const runSelect = `SELECT x.id, x.integration_id, ia.code, ia.name, x.status, x.total_records, x.start_time, x.end_time, x.created_at, x.updated_at
 FROM integration_runs x JOIN integrations ia ON ia.id = x.integration_id`

func scanRun(sc interface{ Scan(...any) error }) (*runRow, error) {
	var x runRow
	err := sc.Scan(&x.ID, &x.IntegrationID, &x.Code, &x.Name, &x.Status, &x.TotalRecords, &x.StartTime, &x.EndTime, &x.CreatedAt, &x.UpdatedAt)
	return &x, err
}

func (x *runRow) render() object {
	return object{
		{"id", x.ID},
		{"created-at", time.Unix(x.CreatedAt, 0).UTC()},
		{"updated-at", time.Unix(x.UpdatedAt, 0).UTC()},
		{"status", x.Status},
		{"total-records", i64(x.TotalRecords)},
		{"start-time", tim(x.StartTime)},
		{"end-time", tim(x.EndTime)},
		{"integration", object{{"id", x.IntegrationID}, {"code", str(x.Code)}, {"name", str(x.Name)}}},
	}
}

func (s *Server) loadRun(ctx context.Context, q querier, id int64) (*runRow, error) {
	x, err := scanRun(q.QueryRowContext(ctx, s.st.d.q(runSelect+` WHERE x.id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	return x, err
}

func (s *Server) runCreate(w http.ResponseWriter, r *http.Request) {
	out, err := parseOutput(r.URL.Query())
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	m, ok := s.readBody(w, r, runRoot)
	if !ok {
		return
	}
	b := &binder{m: m}
	rf, has := b.ref("integration")
	total, _ := b.int("total-records")
	if (!has || rf.null) && !b.failed("integration") {
		b.fail(record.Blank("integration"))
	}
	if len(b.errs) > 0 {
		s.fail(w, r, runRoot, b.errs)
		return
	}
	ctx := r.Context()
	now := s.now().Unix()
	var x *runRow
	err = s.st.tx(ctx, func(tx *wtx) error {
		iid, _, _, err := s.resolveIntegration(ctx, tx, rf)
		if err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRowContext(ctx, s.st.d.q(`INSERT INTO integration_runs (integration_id, status, total_records, created_at, updated_at) VALUES (?, 'pending', ?, ?, ?) RETURNING id`),
			iid, total, now, now).Scan(&id); err != nil {
			return err
		}
		x, err = s.loadRun(ctx, tx, id)
		return err
	})
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	respond(w, r, http.StatusCreated, runRoot, x.render(), out)
}

// runUpdate is PUT/PATCH /:id: total-records only.
func (s *Server) runUpdate(w http.ResponseWriter, r *http.Request) {
	s.runChange(w, r, "")
}

func (s *Server) runTransition(w http.ResponseWriter, r *http.Request) {
	status, ok := runTransitions[r.PathValue("transition")]
	if !ok {
		writeError(w, r, http.StatusNotFound, runRoot, "No route matches PUT "+r.URL.Path)
		return
	}
	s.runChange(w, r, status)
}

func (s *Server) runChange(w http.ResponseWriter, r *http.Request, status string) {
	out, err := parseOutput(r.URL.Query())
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	m, ok := s.readBody(w, r, runRoot)
	if !ok {
		return
	}
	b := &binder{m: m}
	total, hasTotal := b.int("total-records")
	if !hasTotal {
		// PUT /:id/run?total_records=N is how Coupa's guides send it.
		if v := r.URL.Query().Get("total_records"); v != "" {
			qb := &binder{m: map[string]any{"total-records": v}}
			total, hasTotal = qb.int("total-records")
			b.errs = append(b.errs, qb.errs...)
		}
	}
	if len(b.errs) > 0 {
		s.fail(w, r, runRoot, b.errs)
		return
	}
	ctx := r.Context()
	now := s.now().Unix()
	var x *runRow
	err = s.st.tx(ctx, func(tx *wtx) error {
		sets := "updated_at = ?"
		args := []any{now}
		if hasTotal {
			sets += ", total_records = ?"
			args = append(args, total)
		}
		switch status {
		case "":
		case "running":
			sets += ", status = ?, start_time = ?, end_time = NULL"
			args = append(args, status, now)
		case "successful", "failed":
			sets += ", status = ?, end_time = ?"
			args = append(args, status, now)
		default:
			sets += ", status = ?"
			args = append(args, status)
		}
		res, err := tx.ExecContext(ctx, s.st.d.q(`UPDATE integration_runs SET `+sets+` WHERE id = ?`), append(args, id)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNotFound
		}
		x, err = s.loadRun(ctx, tx, id)
		return err
	})
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	respond(w, r, http.StatusOK, runRoot, x.render(), out)
}

func (s *Server) runShow(w http.ResponseWriter, r *http.Request) {
	out, err := parseOutput(r.URL.Query())
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	x, err := s.loadRun(r.Context(), s.st.r, id)
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	respond(w, r, http.StatusOK, runRoot, x.render(), out)
}

func (s *Server) runIndex(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(runResource, s.st.d, r.URL.Query())
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	text, args := q.sql(runSelect, "x.id")
	rows, err := s.st.r.QueryContext(r.Context(), s.st.d.q(text), args...)
	if err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	defer rows.Close()
	var objs []object
	for rows.Next() {
		x, err := scanRun(rows)
		if err != nil {
			s.fail(w, r, runRoot, err)
			return
		}
		objs = append(objs, x.render())
	}
	if err := rows.Err(); err != nil {
		s.fail(w, r, runRoot, err)
		return
	}
	respondList(w, r, runPlural, runRoot, objs, q.out)
}
