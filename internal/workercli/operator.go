package workercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/dashboard"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/notify"
	"github.com/ihr-tools/ihr/retention"
	"github.com/ihr-tools/ihr/scheduler"
	"github.com/ihr-tools/ihr/sla"
	"github.com/ihr-tools/ihr/state"
)

// operator is serve's operator side. After each pass it records the
// source's health in the ledger, raises and clears events (a rejected
// file, a source or the API down for down_after passes), notifies, and
// applies retention; a goroutine of its own watches expected deliveries.
// Nothing here can fail a pass: its errors are logged.
type operator struct {
	w        *worker
	ops      state.Ops
	notifier *notify.Notifier
	om       *opsMetrics
	log      *zap.Logger
	replica  string
	sources  []*config.Source
	expects  map[string]sla.Expect
	// retained: each source's retention per folder (archive, reports),
	// which remembers between passes when something can be due.
	retained map[string][]retainedFolder
	baseURL  string
	now      func() time.Time
	started  time.Time

	mu sync.Mutex // serialises record per process (events per source)
}

// opsMetrics are the operator side's metrics, on the worker's registry.
type opsMetrics struct {
	sourceUp       *prometheus.GaugeVec
	missed         *prometheus.GaugeVec
	missedTotal    *prometheus.CounterVec
	notifications  *prometheus.CounterVec
	retentionFiles *prometheus.CounterVec
}

func newOpsMetrics(reg *prometheus.Registry) *opsMetrics {
	om := &opsMetrics{
		sourceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ihr_worker_source_up",
			Help: "1 when the source's last pass reached its store and the API, else 0.",
		}, []string{"source"}),
		missed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ihr_worker_delivery_missed",
			Help: "1 while an expected file (expect) has not arrived and has not arrived late since.",
		}, []string{"source"}),
		missedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_deliveries_missed_total",
			Help: "Expected-delivery windows that closed without a file, seen by this process.",
		}, []string{"source"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_notifications_total",
			Help: "Notification attempts by channel and result (sent, retry, failed, dropped, duplicate).",
		}, []string{"channel", "result"}),
		retentionFiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_retention_deleted_total",
			Help: "Files deleted by retention, by source and folder (archive, reports).",
		}, []string{"source", "folder"}),
	}
	reg.MustRegister(om.sourceUp, om.missed, om.missedTotal, om.notifications, om.retentionFiles)
	return om
}

func newOperator(ctx context.Context, w *worker, cfg *config.Config, sources []*config.Source, reg *prometheus.Registry, log *zap.Logger) (*operator, error) {
	ops, err := state.OpsOf(ctx, w.ledger)
	if err != nil {
		return nil, exitErr(ExitUnreachable, err)
	}
	host, _ := os.Hostname()
	o := &operator{w: w, ops: ops, om: newOpsMetrics(reg), log: log.Named("operator"), sources: sources,
		replica: host + ":" + strconv.Itoa(os.Getpid()), expects: map[string]sla.Expect{}, retained: map[string][]retainedFolder{},
		baseURL: strings.TrimSuffix(cfg.Dashboard.URL, "/"), now: time.Now, started: time.Now()}
	for _, s := range sources {
		o.om.sourceUp.WithLabelValues(s.Name)
		if r := s.Retain; r != nil {
			o.retained[s.Name] = []retainedFolder{
				{"archive", &retention.Folder{Dir: s.Folders.Archive, MaxAge: r.Archive}},
				{"reports", &retention.Folder{Dir: s.Folders.Reports, MaxAge: r.Reports}},
			}
		}
		if s.Expect != nil {
			sched, err := scheduler.ParseSchedule(s.Expect.Schedule)
			if err != nil {
				return nil, usageErr("invalid configuration: source %s: expect.schedule: %v", s.Name, err)
			}
			o.expects[s.Name] = sla.Expect{Schedule: sched, Within: s.Expect.Within}
			o.om.missed.WithLabelValues(s.Name)
		}
	}
	var routes []notify.Route
	for _, n := range cfg.Notify {
		var ch notify.Channel
		switch {
		case n.Webhook != "":
			ch = &notify.Webhook{URL: n.Webhook.Reveal()}
		case n.Slack != "":
			ch = &notify.Slack{URL: n.Slack.Reveal()}
		case n.Email != nil:
			e := n.Email
			ch = &notify.Email{Addr: e.SMTP, From: e.From, To: e.To, Username: e.Username, Password: e.Password.Reveal(), StartTLS: e.StartTLS, CAFile: e.CAFile}
		}
		routes = append(routes, notify.Route{Channel: ch, Events: n.Events})
	}
	if len(routes) > 0 {
		o.notifier = notify.New(routes, ops, log, notify.Options{
			Observe: func(ch, res string) { o.om.notifications.WithLabelValues(ch, res).Inc() },
			Pending: o.pending,
		})
	}
	return o, nil
}

// run owns the notifier's and the expectation watcher's goroutines until
// ctx ends.
func (o *operator) run(ctx context.Context) {
	var wg sync.WaitGroup
	if o.notifier != nil {
		wg.Go(func() { o.notifier.Run(ctx) })
	}
	if len(o.expects) > 0 {
		wg.Go(func() { o.watch(ctx) })
	}
	wg.Wait()
}

func (o *operator) link(source, file string) string {
	if o.baseURL == "" {
		return ""
	}
	if file == "" {
		return o.baseURL + "/#source-" + source
	}
	return o.baseURL + "/file?source=" + url.QueryEscape(source) + "&name=" + url.QueryEscape(file)
}

func (o *operator) notify(e notify.Event) {
	o.notifier.Notify(e) // a nil notifier ignores it
}

// opened is the notification that ledger event e happened.
func (o *operator) opened(e state.Event) notify.Event {
	return notify.Event{ID: e.ID, Kind: noticeKind(e.Kind), Source: e.Source, File: e.File, Reason: e.Detail,
		At: e.OpenedAt, URL: o.link(e.Source, e.File)}
}

// recovered is the notification that ledger event e ended at at.
func (o *operator) recovered(e state.Event, reason string, at time.Time) notify.Event {
	return notify.Event{ID: "recovered/" + e.ID, Kind: notify.Recovered, Recovers: noticeKind(e.Kind), Source: e.Source,
		File: e.File, Reason: reason, At: at, URL: o.link(e.Source, e.File)}
}

// noticeKind is the notify[].events kind of a ledger event kind.
func noticeKind(kind string) string {
	switch kind {
	case state.EventSourceDown, state.EventAPIDown:
		return notify.SourceDown
	case state.EventFileFailed:
		return notify.FileFailed
	case state.EventDeliveryMissed:
		return notify.DeliveryMissed
	}
	return kind
}

// pendingWindow is how far back the notifier's sweep looks for events a
// channel was never sent (a stop, a full queue, a receiver down longer
// than the retries).
const pendingWindow = 24 * time.Hour

// pending lists the notifications of the ledger's events opened or ended
// within pendingWindow, for the notifier's sweep. A recovery's reason is
// not stored, so a swept one says when the problem ended.
func (o *operator) pending(ctx context.Context) ([]notify.Event, error) {
	es, err := o.ops.Events(ctx, "", false, 1000)
	if err != nil {
		return nil, err
	}
	since := o.now().Add(-pendingWindow)
	var out []notify.Event
	for _, e := range es {
		if e.OpenedAt.After(since) {
			out = append(out, o.opened(e))
		}
		if !e.ClosedAt.IsZero() && e.ClosedAt.After(since) {
			out = append(out, o.recovered(e, "ended "+e.ClosedAt.UTC().Format(time.RFC3339), e.ClosedAt))
		}
	}
	return out, nil
}

// afterPass is called with each finished pass (not one cut short by stop).
func (o *operator) afterPass(ctx context.Context, s *config.Source, sr *sourceRun) {
	if ctx.Err() != nil {
		return
	}
	// Ledger writes here must not outlive a stuck database.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o.record(ctx, s, sr)
	// Retention lists and deletes in the store: outside the lock, so a
	// slow store holds up no other source's pass.
	if s.Retain != nil {
		o.retain(ctx, s, sr)
	}
}

// record stores the pass's health and raises and clears its events.
func (o *operator) record(ctx context.Context, s *config.Source, sr *sourceRun) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	prev := o.health(ctx, s.Name)
	h := state.Health{Source: s.Name, Replica: o.replica, LastPass: now, LastOK: prev.LastOK, StoreReachable: true, APIReachable: true}
	if sr.err == nil {
		h.LastOK = now
	} else {
		h.Error, h.Failures = sr.err.Error(), prev.Failures+1
		switch {
		case errors.Is(sr.err, importer.ErrAPIUnavailable):
			h.APIReachable = false
		default:
			// Listing, opening or moving in the store failed, or the
			// store would not even open.
			h.StoreReachable = false
		}
	}
	if err := o.ops.PutHealth(ctx, h); err != nil {
		o.log.Warn("health not recorded", zap.String("source", s.Name), zap.Error(err))
	}
	up := 0.0
	if sr.err == nil {
		up = 1
	}
	o.om.sourceUp.WithLabelValues(s.Name).Set(up)

	o.downEvents(ctx, s, h)
	o.fileEvents(ctx, s, sr)
}

func (o *operator) health(ctx context.Context, source string) state.Health {
	hs, err := o.ops.Health(ctx)
	if err != nil {
		o.log.Warn("health not read", zap.Error(err))
	}
	for _, h := range hs {
		if h.Source == source {
			return h
		}
	}
	return state.Health{}
}

// downEvents opens a source_down/api_down event after down_after failed
// passes in a row, and closes it (recovered) after a good pass. The
// event's ID is the source and its last success, so every replica that
// sees the same outage names it the same.
func (o *operator) downEvents(ctx context.Context, s *config.Source, h state.Health) {
	if h.Failures >= s.DownAfter {
		kind, what := state.EventSourceDown, "store unreachable"
		if !h.APIReachable {
			kind, what = state.EventAPIDown, "API unreachable"
		}
		since := "never-ok"
		if !h.LastOK.IsZero() {
			since = h.LastOK.UTC().Format(time.RFC3339Nano)
		}
		id := fmt.Sprintf("%s/%s/%s", kind, s.Name, since)
		detail := fmt.Sprintf("%s for %d passes: %s", what, h.Failures, h.Error)
		ev := state.Event{ID: id, Kind: kind, Source: s.Name, Detail: detail, OpenedAt: h.LastPass}
		if isNew, err := o.ops.OpenEvent(ctx, ev); err != nil {
			o.log.Warn("event not recorded", zap.String("event", id), zap.Error(err))
		} else if isNew {
			o.log.Error("source down", zap.String("source", s.Name), zap.String("detail", detail))
			o.notify(o.opened(ev))
		}
		return
	}
	if h.Failures > 0 {
		return
	}
	o.closeEvents(ctx, s.Name, func(e state.Event) bool { return e.Kind == state.EventSourceDown || e.Kind == state.EventAPIDown },
		"passes succeed again")
}

// closeEvents closes the source's open events that match, notifying a
// recovery for each this process closed.
func (o *operator) closeEvents(ctx context.Context, source string, match func(state.Event) bool, reason string) {
	open, err := o.ops.Events(ctx, source, true, 100)
	if err != nil {
		o.log.Warn("events not read", zap.Error(err))
		return
	}
	now := o.now()
	for _, e := range open {
		if !match(e) {
			continue
		}
		closed, err := o.ops.CloseEvent(ctx, e.ID, now)
		if err != nil {
			o.log.Warn("event not closed", zap.String("event", e.ID), zap.Error(err))
			continue
		}
		if closed {
			o.log.Info("recovered", zap.String("source", source), zap.String("event", e.ID), zap.String("reason", reason))
			o.notify(o.recovered(e, reason, now))
		}
	}
}

// fileEvents raises file_failed for each file this pass moved to failed/,
// and clears it when the same file name is later archived (a corrected
// re-drop, or reprocess).
func (o *operator) fileEvents(ctx context.Context, s *config.Source, sr *sourceRun) {
	for _, f := range sr.Summary.Files {
		switch f.Status {
		case state.Failed:
			run := int64(0)
			if lf, err := o.w.ledger.File(ctx, state.FileID{Source: s.Name, Name: f.Name}); err == nil {
				run = lf.Run
			}
			reason := f.Reason
			if reason == "" {
				reason = fmt.Sprintf("%d invalid and %d failed rows of %d", f.Counts.Invalid, f.Counts.Failed, f.Rows)
			}
			id := fmt.Sprintf("%s/%s/%s/%d", state.EventFileFailed, s.Name, f.Name, run)
			ev := state.Event{ID: id, Kind: state.EventFileFailed, Source: s.Name, File: f.Name, Detail: reason}
			isNew, err := o.ops.OpenEvent(ctx, ev)
			if err != nil {
				o.log.Warn("event not recorded", zap.String("event", id), zap.Error(err))
				continue
			}
			if isNew {
				n := o.opened(ev)
				n.Report = f.Report
				o.notify(n)
			}
		case state.Done:
			name := f.Name
			o.closeEvents(ctx, s.Name, func(e state.Event) bool { return e.Kind == state.EventFileFailed && e.File == name },
				"file "+name+" was processed and archived")
		}
	}
}

// retainedFolder is one folder's retention, with the metric's label.
type retainedFolder struct {
	label string
	*retention.Folder
}

// retain applies the source's retention to archive/ and reports/ only. It
// tells each folder what the pass put in it, so a file that is due as
// soon as it is archived (its modification time is that old) is found at
// the folder's next listing, not a day later.
func (o *operator) retain(ctx context.Context, s *config.Source, sr *sourceRun) {
	folders := o.retained[s.Name]
	if len(folders) != 2 {
		return
	}
	archive, reports := folders[0], folders[1]
	for _, f := range sr.Summary.Files {
		if f.Report != "" {
			reports.Added(o.now())
		}
		if f.MovedTo != "" && path.Dir(f.MovedTo) == path.Clean(archive.Dir) {
			// The store keeps a moved file's modification time (or, as
			// S3's copy does, makes it later): the ledger's is the
			// earliest it can have.
			mtime := time.Time{}
			if lf, err := o.w.ledger.File(ctx, state.FileID{Source: s.Name, Name: f.Name}); err == nil {
				mtime = lf.ModTime
			}
			archive.Added(mtime)
		}
	}
	st, err := o.w.store(ctx, s)
	if err != nil {
		return
	}
	log := o.log.With(zap.String("source", s.Name))
	for _, f := range folders {
		deleted, _, err := f.Sweep(ctx, st, o.now(), log)
		o.om.retentionFiles.WithLabelValues(s.Name, f.label).Add(float64(len(deleted)))
		if err != nil {
			log.Warn("retention incomplete", zap.String("folder", f.Dir), zap.Error(err))
		}
	}
}

// watch checks expected deliveries on a short tick: a fraction of the
// shortest window, between 200 ms and 30 s.
func (o *operator) watch(ctx context.Context) {
	tick := 30 * time.Second
	for _, e := range o.expects {
		tick = min(tick, e.Within/4)
	}
	tick = max(tick, 200*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		for _, s := range o.sources {
			if e, ok := o.expects[s.Name]; ok {
				o.checkExpect(ctx, s, e)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkExpect raises delivery_missed for the last closed window without a
// file, and clears every open one once a file has arrived after its
// window opened (late, or in a later window). Each question is one
// indexed lookup (Ops.FirstArrival), so a tick costs the same whatever
// the source's history.
func (o *operator) checkExpect(ctx context.Context, s *config.Source, e sla.Expect) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := o.now()
	if w, ok := e.Last(now); ok {
		missed, err := o.missed(ctx, s.Name, w)
		if err != nil {
			o.log.Warn("expected delivery not checked", zap.String("source", s.Name), zap.Error(err))
			return
		}
		if missed {
			id := fmt.Sprintf("%s/%s/%s", state.EventDeliveryMissed, s.Name, w.Due.UTC().Format(time.RFC3339Nano))
			detail := fmt.Sprintf("no file arrived between %s and %s", w.From.UTC().Format(time.RFC3339), w.To.UTC().Format(time.RFC3339))
			ev := state.Event{ID: id, Kind: state.EventDeliveryMissed, Source: s.Name, Detail: detail, OpenedAt: w.To}
			isNew, err := o.ops.OpenEvent(ctx, ev)
			if err != nil {
				o.log.Warn("event not recorded", zap.String("event", id), zap.Error(err))
			} else if isNew {
				o.om.missedTotal.WithLabelValues(s.Name).Inc()
				o.log.Error("delivery missed", zap.String("source", s.Name), zap.String("detail", detail))
				o.notify(o.opened(ev))
			}
		}
	}
	open, err := o.ops.Events(ctx, s.Name, true, 100)
	if err != nil {
		return
	}
	still := 0.0
	for _, ev := range open {
		if ev.Kind != state.EventDeliveryMissed {
			continue
		}
		// A file first seen after the window opened (it closed at
		// OpenedAt) ends it: it arrived late, or a later window was met.
		late, ok, err := o.ops.FirstArrival(ctx, s.Name, ev.OpenedAt.Add(-e.Within), time.Time{})
		if err != nil {
			o.log.Warn("expected delivery not checked", zap.String("source", s.Name), zap.Error(err))
			still = 1
			continue
		}
		if !ok {
			still = 1
			continue
		}
		o.closeEvents(ctx, s.Name, func(x state.Event) bool { return x.ID == ev.ID },
			fmt.Sprintf("file %s arrived %s", late.Name, late.FirstSeen.UTC().Format(time.RFC3339)))
	}
	o.om.missed.WithLabelValues(s.Name).Set(still)
}

// missed reports whether window w closed without a file. Windows that
// closed before the worker knew the source (its first file, or this
// serve's start) are not judged: a fresh install must not report last
// night as missed.
func (o *operator) missed(ctx context.Context, source string, w sla.Window) (bool, error) {
	if !w.To.After(o.started) {
		first, ok, err := o.ops.FirstArrival(ctx, source, time.Time{}, time.Time{})
		if err != nil || !ok || !w.To.After(first.FirstSeen) {
			return false, err
		}
	}
	_, met, err := o.ops.FirstArrival(ctx, source, w.From, w.To)
	return !met, err
}

// dashboardHandler builds the dashboard for the served sources; running
// lists the scheduler's passes in flight.
func (o *operator) dashboardHandler(cfg *config.Config, running func() []scheduler.Pass) (http.Handler, error) {
	var ds []dashboard.Source
	for _, s := range o.sources {
		d := dashboard.Source{Name: s.Name, URL: s.RedactedURL(), Schedule: s.Schedule, Poll: s.Poll}
		if s.Expect != nil {
			d.Expect = s.Expect.Schedule + " within " + shortDuration(s.Expect.Within)
		}
		if r := s.Retain; r != nil {
			var parts []string
			if r.Archive > 0 {
				parts = append(parts, "archive "+days(r.Archive))
			}
			if r.Reports > 0 {
				parts = append(parts, "reports "+days(r.Reports))
			}
			d.Retain = strings.Join(parts, ", ")
		}
		ds = append(ds, d)
	}
	auth := dashboard.Auth{Token: cfg.Dashboard.Token.Reveal(), Username: cfg.Dashboard.Username, Password: cfg.Dashboard.Password.Reveal()}
	h, err := dashboard.New(dashboard.Config{
		Sources: ds, Ops: o.ops, Ledger: o.w.ledger, Auth: auth, Log: o.log.Named("dashboard"),
		Passes: func() []dashboard.Pass {
			var ps []dashboard.Pass
			for _, p := range running() {
				ps = append(ps, dashboard.Pass{Source: p.Job, Since: p.Since, Expected: p.Expected})
			}
			return ps
		},
		OpenReport: func(ctx context.Context, source, name string) (io.ReadCloser, error) {
			s, ok := o.source(source)
			if !ok {
				return nil, errors.New("unknown source")
			}
			// Reports live in the reports folder; the ledger's path is
			// trusted only there.
			if path.Dir(name) != path.Clean(s.Folders.Reports) {
				return nil, fmt.Errorf("report %q is outside %s/", name, s.Folders.Reports)
			}
			st, err := o.w.store(ctx, s)
			if err != nil {
				return nil, err
			}
			return st.Open(ctx, name, 0)
		},
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (o *operator) source(name string) (*config.Source, bool) {
	for _, s := range o.sources {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// shortDuration drops a Duration's zero tails: 2h, not 2h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}
