package workercli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/scheduler"
)

// DefaultMetricsAddr is where serve answers /healthz and /metrics: loopback,
// since /metrics tells anyone who can reach it about the sources and their
// files, and a port no common Prometheus component uses (9090 is
// Prometheus's own).
const DefaultMetricsAddr = "127.0.0.1:9847"

func newServeCommand(g *globals) *cobra.Command {
	var metricsAddr string
	var only []string
	cmd := &cobra.Command{
		Use:   "serve --config FILE [--metrics-addr 127.0.0.1:9847]",
		Short: "Run continuously: each source on its schedule and/or poll interval; serve the dashboard, /healthz, /readyz and /metrics",
		Long: `serve runs each source on its cron schedule (5 fields, the server's time zone or
CRON_TZ=Zone; a leading 6th seconds field is accepted as an extension) and/or its
poll interval (a poll source is also looked at once on start). A source's pass
never overlaps the previous one: a firing while it still runs is skipped, logged
and counted (ihr_worker_passes_skipped_total).

On SIGTERM or SIGINT it stops scheduling, lets running passes finish and record
the rows in flight (files left mid-way resume on the next pass), and exits 0.

Logs are JSON on stderr. /healthz answers 200 while serving (503 while stopping):
the liveness probe. /readyz answers 503 while the last pass of any source failed
(the source or the API unreachable, a configuration error), naming each, and 200
once they pass again: the readiness probe. /metrics is Prometheus (ihr_worker_*).
/ is a read-only dashboard (protected by dashboard.token or
dashboard.username/password when set).

They listen on loopback (127.0.0.1:9847) unless --metrics-addr says otherwise;
every interface only when said explicitly, e.g. --metrics-addr 0.0.0.0:9847 (in a
container, for Prometheus and the probes to reach it).

Each pass's health and events (a rejected file, a source down for down_after
passes, an expected file that did not arrive) are kept in the ledger and sent
to the notify channels; retention (retain) runs after each pass.`,
		Example: `  ihr-worker serve --config /etc/ihr/worker.yaml
  ihr-worker serve --config /etc/ihr/worker.yaml --metrics-addr 0.0.0.0:9847`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			sources, err := serveSources(cfg, only)
			if err != nil {
				return err
			}
			log, err := g.newLogger(true)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			return g.serve(cmd.Context(), cfg, sources, metricsAddr, log)
		},
	}
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", DefaultMetricsAddr, "listen address for the dashboard, /healthz, /readyz and /metrics; 0.0.0.0:PORT for every interface (\"\" to disable)")
	cmd.Flags().StringSliceVar(&only, "source", nil, "serve only these sources (repeatable)")
	return cmd
}

// serveSources picks the sources to schedule; each needs a schedule or a
// poll interval, else serve would never run it.
func serveSources(cfg *config.Config, only []string) ([]*config.Source, error) {
	var out []*config.Source
	for _, name := range only {
		if _, ok := cfg.Source(name); !ok {
			return nil, usageErr("--source: no source named %q", name)
		}
	}
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		if len(only) > 0 && !contains(only, s.Name) {
			continue
		}
		if s.Schedule == "" && s.Poll == 0 {
			return nil, usageErr("invalid configuration: sources[%d] (%s): serve needs a schedule or a poll interval", i, s.Name)
		}
		out = append(out, s)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func (g *globals) serve(ctx context.Context, cfg *config.Config, sources []*config.Source, addr string, log *zap.Logger) error {
	m := newMetrics()
	for _, s := range sources {
		m.initSource(s.Name)
	}
	var ln net.Listener
	if addr != "" {
		var err error
		// Listen before anything else, so a taken port fails fast.
		if ln, err = net.Listen("tcp", addr); err != nil {
			return exitErr(ExitUsage, fmt.Errorf("--metrics-addr: %w", err))
		}
	}
	w, err := newWorker(ctx, cfg, log, m, nil)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	defer w.Close()

	// Store settings are checked now, so a bad key file stops serve at
	// once (exit 2) instead of failing every pass; an unreachable store is
	// only logged, since it may come back before the first pass.
	for _, s := range sources {
		if _, err := w.store(ctx, s); err != nil {
			if classify(err) == ExitUsage {
				return err
			}
			log.Warn("source unavailable at start", zap.String("source", s.Name), zap.Error(err))
		}
	}

	op, err := newOperator(ctx, w, cfg, sources, m.reg, log)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	opCtx, stopOp := context.WithCancel(context.WithoutCancel(ctx))
	opDone := make(chan struct{})
	go func() { defer close(opDone); op.run(opCtx) }()
	// The notifier and the watcher outlive the passes, so the last
	// pass's events are queued before they stop.
	defer func() { stopOp(); <-opDone }()

	ready := &readiness{}
	sch := scheduler.New(log, m)
	for _, s := range sources {
		job := scheduler.Job{Name: s.Name, Poll: s.Poll, Expected: s.OverdueAfter}
		if s.Schedule != "" {
			if job.Schedule, err = scheduler.ParseSchedule(s.Schedule); err != nil {
				return usageErr("invalid configuration: source %s: schedule: %v", s.Name, err)
			}
		}
		job.Run = func(ctx context.Context, why scheduler.Trigger) error {
			sr := w.pass(ctx, s)
			w.logPass(sr, why)
			if ctx.Err() == nil {
				ready.passDone(s.Name, sr.err)
			}
			op.afterPass(ctx, s, sr)
			return sr.err
		}
		if err := sch.Add(job); err != nil {
			return exitErr(ExitUsage, err)
		}
	}

	var stopping atomic.Bool
	var srv *http.Server
	srvDone := make(chan error, 1)
	if ln != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) {
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if stopping.Load() {
				rw.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(rw, "stopping")
				return
			}
			fmt.Fprintln(rw, "ok")
		})
		mux.Handle("/readyz", ready)
		dash, err := op.dashboardHandler(cfg, sch.Running)
		if err != nil {
			ln.Close()
			return err
		}
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
		mux.Handle("/", dash)
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { srvDone <- srv.Serve(ln) }()
		log.Info("serving the dashboard, /healthz, /readyz and /metrics", zap.String("addr", ln.Addr().String()))
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			log.Warn("the dashboard, /healthz and /metrics listen on every interface, as --metrics-addr asks", zap.String("addr", addr))
		}
	}
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = s.Name
	}
	log.Info("serve started", zap.Strings("sources", names))

	runErr := sch.Run(ctx)
	stopping.Store(true)
	log.Info("serve stopping: passes finished")
	if srv != nil {
		shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = srv.Shutdown(shCtx)
		cancel()
		if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server", zap.Error(err))
		}
	}
	if runErr != nil {
		return exitErr(ExitUsage, runErr)
	}
	log.Info("serve stopped")
	return nil
}

// logPass writes a pass's outcome as one structured log line, and one per
// file that did not end archived.
func (w *worker) logPass(sr *sourceRun, why scheduler.Trigger) {
	sum := sr.Summary
	fields := []zap.Field{
		zap.String("source", sr.Name), zap.String("trigger", string(why)),
		zap.Int("files", len(sum.Files)), zap.Int("archived", sum.Archived), zap.Int("failed", sum.Rejected),
		zap.Int("skipped", sum.Skipped), zap.Int("pending", sum.Pending),
		zap.Int64("rows_created", sum.Rows.Created), zap.Int64("rows_already_recorded", sum.Rows.AlreadyRecorded),
		zap.Int64("rows_invalid", sum.Rows.Invalid), zap.Int64("rows_failed", sum.Rows.Failed),
		zap.Float64("seconds", sr.Duration),
	}
	for _, f := range sum.Files {
		if fileResult(f.Status) == "archived" {
			continue
		}
		ff := []zap.Field{zap.String("source", sr.Name), zap.String("file", importer.SafeName(f.Name)), zap.String("result", fileResult(f.Status)),
			zap.Int64("rows_invalid", f.Counts.Invalid), zap.Int64("rows_failed", f.Counts.Failed), zap.String("report", importer.SafeName(f.Report))}
		if f.Reason != "" {
			ff = append(ff, zap.String("reason", f.Reason))
		}
		if f.Err != nil {
			ff = append(ff, zap.Error(f.Err))
		}
		w.log.Warn("file not archived", ff...)
	}
	switch {
	case sr.err != nil:
		w.log.Error("pass incomplete", append(fields, zap.Error(sr.err))...)
	case len(sum.Files) == 0:
		// An empty inbox every poll is the normal case, not news.
		w.log.Debug("pass summary", fields...)
	default:
		w.log.Info("pass summary", fields...)
	}
}
