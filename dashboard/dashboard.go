// Package dashboard is serve's read-only web page for operators: per
// source, its health, the files in progress, recent and failed files with
// their reports, each file's rows, and charts of the last 24 hours. It
// reads only the ledger (state.Ops), so every replica on a shared ledger
// shows the same page, and the reports through a function the caller
// gives.
//
// Pages are rendered on the server (html/template, assets embedded); the
// charts are inline SVG, so the page needs no JavaScript at all.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/state"
)

//go:embed assets
var assets embed.FS

// Source describes a configured source for the page.
type Source struct {
	Name     string
	URL      string // without password
	Schedule string
	Poll     time.Duration
	Expect   string // "0 2 * * 1-5 within 2h", or ""
	Retain   string // "archive 90d, reports 180d", or ""
}

// Auth protects the dashboard; the zero value leaves it open.
type Auth struct {
	Token              string // Authorization: Bearer TOKEN (or as a basic-auth password)
	Username, Password string // HTTP basic auth
}

// Config is what the dashboard reads.
type Config struct {
	Sources []Source
	Ops     state.Ops
	Ledger  state.Ledger
	// OpenReport streams a report named by the ledger (File.ReportPath)
	// from the source's store.
	OpenReport func(ctx context.Context, source, name string) (io.ReadCloser, error)
	Auth       Auth
	Now        func() time.Time // default time.Now
	Log        *zap.Logger
	// Recent is how many recent files a source shows (default 20).
	Recent int
	// Passes lists the passes this process has in flight (serve's
	// scheduler); nil shows none. Other replicas' passes are theirs to show.
	Passes func() []Pass
}

// Pass is a pass over a source in flight.
type Pass struct {
	Source   string
	Since    time.Time
	Expected time.Duration // 0: no bound, never overdue
}

// passView is a Pass as the page shows it.
type passView struct {
	Pass
	Running time.Duration
	Overdue bool
}

type handler struct {
	c    Config
	tmpl *template.Template
	mux  *http.ServeMux
	bads *firstBads
}

// New returns the dashboard's handler, to be mounted at "/".
func New(c Config) (http.Handler, error) {
	if c.Ops == nil || c.Ledger == nil {
		return nil, errors.New("dashboard: Ops and Ledger are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Recent <= 0 {
		c.Recent = 20
	}
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, err
	}
	// Room for every failed file the pages list, several times over.
	h := &handler{c: c, tmpl: t, mux: http.NewServeMux(), bads: newFirstBads(max(256, 4*c.Recent*len(c.Sources)))}
	static, _ := fs.Sub(assets, "assets")
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /file", h.file)
	h.mux.HandleFunc("GET /report", h.report)
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="ihr-worker", charset="UTF-8"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

func eq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (h *handler) authorized(r *http.Request) bool {
	a := h.c.Auth
	switch {
	case a.Token != "":
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			return eq(bearer, a.Token)
		}
		_, p, ok := r.BasicAuth()
		return ok && eq(p, a.Token)
	case a.Username != "":
		u, p, ok := r.BasicAuth()
		// Both compared, always, so timing tells nothing about which failed.
		okU, okP := eq(u, a.Username), eq(p, a.Password)
		return ok && okU && okP
	}
	return true
}

func (h *handler) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := h.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		h.c.Log.Error("dashboard: render", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

func (h *handler) fail(w http.ResponseWriter, what string, err error) {
	h.c.Log.Warn("dashboard: "+what, zap.Error(err))
	http.Error(w, what+": the ledger could not be read (see the worker's log)", http.StatusServiceUnavailable)
}

func (h *handler) source(name string) (Source, bool) {
	for _, s := range h.c.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}

// report streams a file's report: inline as text, or as a download.
func (h *handler) report(w http.ResponseWriter, r *http.Request) {
	src, name := r.URL.Query().Get("source"), r.URL.Query().Get("name")
	if _, ok := h.source(src); !ok || h.c.OpenReport == nil {
		http.NotFound(w, r)
		return
	}
	f, err := h.c.Ledger.File(r.Context(), state.FileID{Source: src, Name: name})
	if errors.Is(err, state.ErrNotFound) || (err == nil && f.ReportPath == "") {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		h.fail(w, "report", err)
		return
	}
	// Only the path the ledger recorded is ever opened: the query names a
	// file, never a path.
	rc, err := h.c.OpenReport(r.Context(), src, f.ReportPath)
	if err != nil {
		h.c.Log.Warn("dashboard: open report", zap.String("source", src), zap.String("report", f.ReportPath), zap.Error(err))
		http.Error(w, "the report could not be read from the store", http.StatusBadGateway)
		return
	}
	defer rc.Close()
	base := path.Base(f.ReportPath)
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", base))
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	_, _ = io.Copy(w, rc)
}

// file shows one file's rows, invalid and failed first.
func (h *handler) file(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	src, name := r.URL.Query().Get("source"), r.URL.Query().Get("name")
	if _, ok := h.source(src); !ok {
		http.NotFound(w, r)
		return
	}
	f, err := h.c.Ledger.File(ctx, state.FileID{Source: src, Name: name})
	if errors.Is(err, state.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		h.fail(w, "file", err)
		return
	}
	const limit = 1000
	// A finished file's report holds every row; a file in progress has
	// only the ledger's outcomes so far.
	outs, more, err := h.reportRows(ctx, f, limit, false)
	fromReport := err == nil
	if !fromReport {
		if outs, err = h.c.Ops.FileOutcomes(ctx, src, name, limit+1); err != nil {
			h.fail(w, "file", err)
			return
		}
		if more = len(outs) > limit; more {
			outs = outs[:limit]
		}
	}
	h.render(w, "file.html", map[string]any{"Source": src, "File": h.fileView(ctx, ctx, f), "Rows": outs, "More": more,
		"Limit": limit, "FromReport": fromReport, "Now": h.c.Now()})
}

// fileView is a file as the page shows it.
type fileView struct {
	state.File
	Result string // archived, failed, skipped, in progress, …
	Done   int64  // rows with an outcome in the current run
	Reason string
}

// fileView reads the ledger under ctx, and the reports it quotes from
// under reportCtx (the overview gives all its reports one short budget,
// so a slow or unreachable store cannot stall the page).
func (h *handler) fileView(ctx, reportCtx context.Context, f state.File) fileView {
	v := fileView{File: f, Done: f.Counts.Total(), Reason: f.SkipReason}
	switch f.Status {
	case state.Done:
		v.Result = "archived"
	case state.Failed:
		v.Result = "failed"
	case state.Skipped:
		v.Result = "skipped"
	case state.Processing, state.Claimed:
		v.Result = "in progress"
		if c, err := h.c.Ledger.RowCounts(ctx, f.ID(), f.Run); err == nil {
			v.Done = c.Total()
			v.Counts = c
		}
	default:
		v.Result = string(f.Status)
	}
	if f.Status == state.Failed && v.Reason == "" {
		v.Reason = fmt.Sprintf("%d invalid, %d failed of %d rows", f.Counts.Invalid, f.Counts.Failed, f.Rows)
		if o, ok := h.firstBad(reportCtx, f); ok {
			v.Reason += fmt.Sprintf("; first: row %d %s: %s", o.Row, o.Result, o.Message)
		}
	}
	return v
}

type sourceView struct {
	Source
	Pass       *passView // nil: no pass running here
	Health     *state.Health
	Events     []state.Event
	InProgress []fileView
	Recent     []fileView
	Failed     []fileView
	Totals     state.Counts
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := h.c.Now()
	health, err := h.c.Ops.Health(ctx)
	if err != nil {
		h.fail(w, "overview", err)
		return
	}
	byName := map[string]state.Health{}
	for _, x := range health {
		byName[x.Source] = x
	}
	reportCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	passes := map[string]Pass{}
	if h.c.Passes != nil {
		for _, p := range h.c.Passes() {
			passes[p.Source] = p
		}
	}
	var views []sourceView
	for _, s := range h.c.Sources {
		v := sourceView{Source: s}
		if p, ok := passes[s.Name]; ok {
			running := now.Sub(p.Since)
			v.Pass = &passView{Pass: p, Running: running, Overdue: p.Expected > 0 && running > p.Expected}
		}
		if x, ok := byName[s.Name]; ok {
			v.Health = &x
		}
		if v.Events, err = h.c.Ops.Events(ctx, s.Name, true, 20); err != nil {
			h.fail(w, "overview", err)
			return
		}
		files, err := h.c.Ops.RecentFiles(ctx, s.Name, 200)
		if err != nil {
			h.fail(w, "overview", err)
			return
		}
		for _, f := range files {
			switch f.Status {
			case state.Processing, state.Claimed:
				v.InProgress = append(v.InProgress, h.fileView(ctx, reportCtx, f))
				continue
			case state.Seen:
				continue
			}
			recent := len(v.Recent) < h.c.Recent
			failed := (f.Status == state.Failed || f.Status == state.Skipped) && len(v.Failed) < h.c.Recent
			if !recent && !failed {
				continue
			}
			// One view for both lists: a failed file's view may open its
			// report (once per run of the file, see firstBads).
			fv := h.fileView(ctx, reportCtx, f)
			if recent {
				v.Recent = append(v.Recent, fv)
			}
			if failed {
				v.Failed = append(v.Failed, fv)
			}
		}
		views = append(views, v)
	}
	since := now.Add(-24 * time.Hour).Truncate(time.Hour)
	hourly, err := h.c.Ops.Hourly(ctx, since)
	if err != nil {
		h.fail(w, "overview", err)
		return
	}
	rowsChart, apiChart, totals := charts(hourly, since, now)
	h.render(w, "index.html", map[string]any{
		"Sources": views, "Now": now, "RowsChart": rowsChart, "APIChart": apiChart, "Totals24h": totals,
	})
}

var funcs = template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t).Round(time.Second)
		switch {
		case d < 0:
			return "just now"
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	// dur: 1h12m, 3m5s, 1h.
	"dur": func(d time.Duration) string {
		s := d.Round(time.Second).String()
		if t, ok := strings.CutSuffix(s, "m0s"); ok {
			s = t + "m"
		}
		if t, ok := strings.CutSuffix(s, "h0m"); ok {
			s = t + "h"
		}
		return s
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"pct": func(done, total int64) int64 {
		if total <= 0 {
			return 0
		}
		return done * 100 / total
	},
	"eventText": func(e state.Event) string {
		switch e.Kind {
		case state.EventDeliveryMissed:
			return "Missed delivery"
		case state.EventSourceDown:
			return "Source unreachable"
		case state.EventAPIDown:
			return "API unreachable"
		case state.EventFileFailed:
			return "File rejected: " + e.File
		}
		return e.Kind
	},
}
