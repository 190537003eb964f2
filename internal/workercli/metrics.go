package workercli

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/scheduler"
	"github.com/ihr-tools/ihr/state"
)

// metrics are the worker's Prometheus metrics, on a registry of their own
// (no global state), all named ihr_worker_…. They implement the observer
// interfaces of apiclient, scheduler and importer, so those packages stay
// free of Prometheus.
type metrics struct {
	reg *prometheus.Registry

	files        *prometheus.CounterVec
	rows         *prometheus.CounterVec
	apiRequests  *prometheus.CounterVec
	apiRetries   *prometheus.CounterVec
	apiThrottled prometheus.Counter
	apiLatency   *prometheus.HistogramVec
	apiWait      prometheus.Histogram
	passes       *prometheus.CounterVec
	passSkipped  *prometheus.CounterVec
	passDuration *prometheus.HistogramVec
	lastSuccess  *prometheus.GaugeVec
	running      *prometheus.GaugeVec
	overdue      *prometheus.GaugeVec
	overdueTotal *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_files_total",
			Help: "Files finished, by source and result (archived, failed, skipped).",
		}, []string{"source", "result"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_rows_total",
			Help: "Data rows finished, by source and result (created, already-recorded, invalid, failed).",
		}, []string{"source", "result"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_api_requests_total",
			Help: "HTTP attempts to the API, by action and status code (\"error\": no answer).",
		}, []string{"action", "status"}),
		apiRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_api_retries_total",
			Help: "API attempts that ended transiently and were retried, by action.",
		}, []string{"action"}),
		apiThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ihr_worker_api_throttled_total",
			Help: "API answers with status 429 (rate limited by the server).",
		}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ihr_worker_api_request_duration_seconds",
			Help:    "Duration of one API attempt, without the client's own rate-limit wait.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"action"}),
		apiWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ihr_worker_api_rate_wait_seconds",
			Help:    "Time an API attempt waited for the configured rate budget.",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_passes_total",
			Help: "Passes over a source's inbox, by source and result (ok, error).",
		}, []string{"source", "result"}),
		passSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_passes_skipped_total",
			Help: "Scheduled passes skipped because the source's previous pass was still running.",
		}, []string{"source"}),
		passDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ihr_worker_pass_duration_seconds",
			Help:    "Duration of a pass over a source's inbox.",
			Buckets: prometheus.ExponentialBuckets(0.1, 3, 10), // 0.1 s … ~33 min
		}, []string{"source"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ihr_worker_last_success_timestamp_seconds",
			Help: "Unix time of the source's last pass that ended without error.",
		}, []string{"source"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ihr_worker_pass_running",
			Help: "1 while a pass over the source is running.",
		}, []string{"source"}),
		overdue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ihr_worker_pass_overdue",
			Help: "1 while a pass over the source has run past its overdue_after and goes on.",
		}, []string{"source"}),
		overdueTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ihr_worker_passes_overdue_total",
			Help: "Passes over the source that ran past its overdue_after.",
		}, []string{"source"}),
	}
	m.reg.MustRegister(m.files, m.rows, m.apiRequests, m.apiRetries, m.apiThrottled, m.apiLatency,
		m.apiWait, m.passes, m.passSkipped, m.passDuration, m.lastSuccess, m.running,
		m.overdue, m.overdueTotal,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// initSource makes a source's series exist from the start (at zero), so
// dashboards and alerts see it before its first pass.
func (m *metrics) initSource(name string) {
	for _, r := range []string{"archived", "failed", "skipped"} {
		m.files.WithLabelValues(name, r)
	}
	for _, r := range state.Results {
		m.rows.WithLabelValues(name, string(r))
	}
	m.passes.WithLabelValues(name, "ok")
	m.passes.WithLabelValues(name, "error")
	m.passSkipped.WithLabelValues(name)
	m.running.WithLabelValues(name)
	m.overdue.WithLabelValues(name)
	m.overdueTotal.WithLabelValues(name)
}

// RequestDone implements apiclient.Observer.
func (m *metrics) RequestDone(ri apiclient.RequestInfo) {
	status := "error"
	if ri.Status > 0 {
		status = strconv.Itoa(ri.Status)
	}
	m.apiRequests.WithLabelValues(ri.Action, status).Inc()
	if ri.Retry {
		m.apiRetries.WithLabelValues(ri.Action).Inc()
	}
	if ri.Throttled || ri.Status == 429 {
		m.apiThrottled.Inc()
	}
	m.apiLatency.WithLabelValues(ri.Action).Observe(ri.Duration.Seconds())
	m.apiWait.Observe(ri.Waited.Seconds())
}

// PassStarted implements scheduler.Observer.
func (m *metrics) PassStarted(job string, _ scheduler.Trigger) {
	m.running.WithLabelValues(job).Set(1)
}

// PassFinished implements scheduler.Observer.
func (m *metrics) PassFinished(job string, _ scheduler.Trigger, err error, took time.Duration) {
	m.running.WithLabelValues(job).Set(0)
	m.overdue.WithLabelValues(job).Set(0)
	m.passDuration.WithLabelValues(job).Observe(took.Seconds())
	if err != nil {
		m.passes.WithLabelValues(job, "error").Inc()
		return
	}
	m.passes.WithLabelValues(job, "ok").Inc()
	m.lastSuccess.WithLabelValues(job).SetToCurrentTime()
}

// PassSkipped implements scheduler.Observer.
func (m *metrics) PassSkipped(job string, _ scheduler.Trigger) {
	m.passSkipped.WithLabelValues(job).Inc()
}

var (
	_ apiclient.Observer = (*metrics)(nil)
	_ scheduler.Observer = (*metrics)(nil)
)

// FileStarted implements importer.Observer.
func (m *metrics) FileStarted(string, string, int64) {}

// RowDone implements importer.Observer.
func (m *metrics) RowDone(source, _ string, r state.Result) {
	m.rows.WithLabelValues(source, string(r)).Inc()
}

// Progress implements importer.Observer.
func (m *metrics) Progress(string, string, int64, int64) {}

// FileDone implements importer.Observer.
func (m *metrics) FileDone(source, _ string, res importer.FileResult) {
	m.files.WithLabelValues(source, fileResult(res.Status)).Inc()
}

// fileResult names a file's end for metrics and summaries.
func fileResult(s state.Status) string {
	switch s {
	case state.Done:
		return "archived"
	case state.Failed:
		return "failed"
	case state.Skipped:
		return "skipped"
	case state.Claimed:
		return "elsewhere" // another live worker holds it
	}
	return "pending"
}

// multiObserver fans importer events out.
type multiObserver []importer.Observer

func (o multiObserver) FileStarted(s, n string, rows int64) {
	for _, x := range o {
		x.FileStarted(s, n, rows)
	}
}
func (o multiObserver) RowDone(s, n string, r state.Result) {
	for _, x := range o {
		x.RowDone(s, n, r)
	}
}
func (o multiObserver) Progress(s, n string, done, total int64) {
	for _, x := range o {
		x.Progress(s, n, done, total)
	}
}
func (o multiObserver) FileDone(s, n string, res importer.FileResult) {
	for _, x := range o {
		x.FileDone(s, n, res)
	}
}

var _ importer.Observer = (*metrics)(nil)

// PassOverdue implements scheduler.Observer.
func (m *metrics) PassOverdue(job string, _ scheduler.Trigger, _ time.Duration) {
	m.overdue.WithLabelValues(job).Set(1)
	m.overdueTotal.WithLabelValues(job).Inc()
}
