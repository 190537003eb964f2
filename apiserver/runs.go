package apiserver

import (
	"net/http"

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
		"integration": integrationAssoc("x.integration_id"),
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

// runs is the integration-runs resource for the shared handlers.
var runs = &entity[runRow]{
	res:    runResource,
	plural: runPlural,
	sel:    runSelect,
	scan:   scanRun,
	render: (*runRow).render,
}

func scanRun(sc scanner) (*runRow, error) {
	var x runRow
	err := sc.Scan(&x.ID, &x.IntegrationID, &x.Code, &x.Name, &x.Status, &x.TotalRecords, &x.StartTime, &x.EndTime, &x.CreatedAt, &x.UpdatedAt)
	return &x, err
}

func (x *runRow) render() object {
	return object{
		{"id", x.ID},
		{"created-at", unixUTC(x.CreatedAt)},
		{"updated-at", unixUTC(x.UpdatedAt)},
		{"status", x.Status},
		{"total-records", i64(x.TotalRecords)},
		{"start-time", tim(x.StartTime)},
		{"end-time", tim(x.EndTime)},
		{"integration", object{{"id", x.IntegrationID}, {"code", str(x.Code)}, {"name", str(x.Name)}}},
	}
}

func (s *Server) runCreate() http.HandlerFunc {
	return runs.serve(s, creating, func(r *http.Request, _ int64, body map[string]any) (*runRow, error) {
		b := &binder{m: body}
		rf, has := b.ref("integration")
		total, _ := b.int("total-records")
		if (!has || rf.null) && !b.failed("integration") {
			b.fail(record.Blank("integration"))
		}
		if len(b.errs) > 0 {
			return nil, b.errs
		}
		ctx := r.Context()
		now := s.now().Unix()
		return runs.write(ctx, s, func(tx *wtx) (int64, error) {
			iid, _, _, err := s.resolveIntegration(ctx, tx, rf)
			if err != nil {
				return 0, err
			}
			var id int64
			err = tx.QueryRowContext(ctx, s.st.d.q(`INSERT INTO integration_runs (integration_id, status, total_records, created_at, updated_at) VALUES (?, 'pending', ?, ?, ?) RETURNING id`),
				iid, total, now, now).Scan(&id)
			return id, err
		})
	})
}

func (s *Server) runTransition(w http.ResponseWriter, r *http.Request) {
	status, ok := runTransitions[r.PathValue("transition")]
	if !ok {
		writeError(w, r, http.StatusNotFound, runRoot, "No route matches PUT "+r.URL.Path)
		return
	}
	s.runChange(status)(w, r)
}

// runChange is PUT /:id/<transition> to status, and with status "" PUT/PATCH /:id,
// which changes total-records only.
func (s *Server) runChange(status string) http.HandlerFunc {
	return runs.serve(s, byIDWithBody, func(r *http.Request, id int64, body map[string]any) (*runRow, error) {
		b := &binder{m: body}
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
			return nil, b.errs
		}
		ctx := r.Context()
		now := s.now().Unix()
		return runs.write(ctx, s, func(tx *wtx) (int64, error) {
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
			return id, updateByID(ctx, s.st.d, tx, "integration_runs", sets, args, id)
		})
	})
}
