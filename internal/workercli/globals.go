package workercli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/importer"
)

// globals are the flags every command shares and what they produce.
type globals struct {
	st Streams

	configPath string
	jsonOut    bool
	logLevel   string
	logFormat  string

	// Overrides of configuration keys.
	state       string
	apiURL      string
	concurrency int
	rateLimit   float64
	burst       int
}

func (g *globals) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&g.configPath, "config", "c", os.Getenv("IHR_WORKER_CONFIG"), "configuration file (YAML or JSON); default $IHR_WORKER_CONFIG")
	fs.BoolVar(&g.jsonOut, "json", false, "write a machine-readable JSON summary to stdout")
	fs.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&g.logFormat, "log-format", "auto", "log format: auto (console on a terminal, else JSON; always JSON in serve), json, console")
	fs.StringVar(&g.state, "state", "", "override state: the ledger (sqlite:PATH or postgres://…)")
	fs.StringVar(&g.apiURL, "api-url", "", "override api.url")
	fs.IntVar(&g.concurrency, "concurrency", 0, "override api.concurrency (requests in flight)")
	fs.Float64Var(&g.rateLimit, "rate-limit", 0, "override api.rate_limit (requests per second, all sources; also sets the burst unless --burst is given)")
	fs.IntVar(&g.burst, "burst", 0, "override api.burst")
}

// loadConfig reads the configuration and applies the command-line
// overrides; every failure is a usage error (exit 2) naming the key.
func (g *globals) loadConfig(fs *pflag.FlagSet) (*config.Config, error) {
	return g.loadConfigWith(fs, config.Options{})
}

// loadConfigWith is loadConfig with decoding options (validate: NoAPI).
func (g *globals) loadConfigWith(fs *pflag.FlagSet, opt config.Options) (*config.Config, error) {
	if g.configPath == "" {
		return nil, usageErr("no configuration: pass --config FILE (or set IHR_WORKER_CONFIG)")
	}
	cfg, err := config.LoadWith(g.configPath, opt)
	if err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			return nil, exitErr(ExitUsage, fmt.Errorf("invalid configuration:\n%w", err))
		}
		return nil, exitErr(ExitUsage, fmt.Errorf("configuration: %w", err))
	}
	changed := false
	if flagChanged(fs, "state") {
		cfg.State, changed = g.state, true
	}
	if flagChanged(fs, "api-url") {
		cfg.API.URL, changed = g.apiURL, true
	}
	if flagChanged(fs, "concurrency") {
		cfg.API.Concurrency, changed = g.concurrency, true
	}
	if flagChanged(fs, "rate-limit") {
		// A burst tuned for another rate makes no sense; follow the new one.
		cfg.API.RateLimit, cfg.API.Burst, changed = g.rateLimit, apiclient.DefaultBurst(g.rateLimit), true
	}
	if flagChanged(fs, "burst") {
		cfg.API.Burst, changed = g.burst, true
	}
	if changed && !opt.NoAPI {
		if err := cfg.Validate(); err != nil {
			return nil, exitErr(ExitUsage, fmt.Errorf("invalid configuration (after command-line overrides):\n%w", err))
		}
	}
	return cfg, nil
}

// source looks up the source a --source flag names; an unknown name is a
// usage error.
func (g *globals) source(cfg *config.Config, name string) (*config.Source, error) {
	s, ok := cfg.Source(name)
	if !ok {
		return nil, usageErr("--source: no source named %q in %s", name, g.configPath)
	}
	return s, nil
}

// loadSource is the start of a command about one source (validate,
// reprocess): --source is required, then the configuration and the source.
func (g *globals) loadSource(cmd *cobra.Command, name string) (*config.Config, *config.Source, error) {
	if err := requireFlags(cmd, "source"); err != nil {
		return nil, nil, err
	}
	cfg, err := g.loadConfig(cmd.Flags())
	if err != nil {
		return nil, nil, err
	}
	s, err := g.source(cfg, name)
	return cfg, s, err
}

// runWorker builds the logger and worker of a command that runs once (run,
// reprocess), with a progress bar on a terminal unless noProgress. done
// closes the worker and flushes the logger.
func (g *globals) runWorker(ctx context.Context, cfg *config.Config, noProgress bool) (w *worker, done func(), err error) {
	log, err := g.newLogger(false)
	if err != nil {
		return nil, nil, err
	}
	var prog importer.Observer
	if !noProgress && isTerminal(g.st.Err) {
		prog = newProgress(g.st.Err)
	}
	if w, err = newWorker(ctx, cfg, log, newMetrics(), prog); err != nil {
		_ = log.Sync()
		return nil, nil, err
	}
	return w, func() { w.Close(); _ = log.Sync() }, nil
}

// isTerminal reports whether w is an interactive terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checkLogFlags validates --log-level and --log-format.
func (g *globals) checkLogFlags() error {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return usageErr("--log-level: %q is not one of debug, info, warn, error", g.logLevel)
	}
	switch g.logFormat {
	case "auto", "json", "console":
		return nil
	}
	return usageErr("--log-format: %q is not one of auto, json, console", g.logFormat)
}

// newLogger builds the logger: JSON for serve and for non-interactive
// runs (systemd, cron, Kubernetes collect it), a readable console encoder on
// a terminal. It writes to stderr.
func (g *globals) newLogger(serve bool) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageErr("--log-level: %q is not one of debug, info, warn, error", g.logLevel)
	}
	format := g.logFormat
	switch format {
	case "auto":
		format = "json"
		if !serve && isTerminal(g.st.Err) {
			format = "console"
		}
	case "json", "console":
	default:
		return nil, usageErr("--log-format: %q is not one of auto, json, console", g.logFormat)
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
		if isTerminal(g.st.Err) {
			ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(g.st.Err), lvl)
	return zap.New(core), nil
}

// printJSON writes v to stdout as one indented JSON document.
func (g *globals) printJSON(v any) error {
	e := json.NewEncoder(g.st.Out)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// say writes human output to stderr.
func (g *globals) say(format string, args ...any) {
	fmt.Fprintf(g.st.Err, format, args...)
}
