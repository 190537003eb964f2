// Command ihr-api serves the Integration History Records API.
//
//	ihr-api [--addr 127.0.0.1:8080] [--db sqlite:PATH | postgres://…]
//	        [--api-key-file FILE] [--oauth-clients-file FILE]
//	        [--tls-cert FILE --tls-key FILE]
//	        [--rate-limit N --burst M] [--strict] [--integrations-file F]
//	ihr-api integrations add --db … --code CODE --name NAME [--direction …]
//	ihr-api integrations add --db … --file F
//	ihr-api integrations list --db … [--json]
//	ihr-api --version
//
// Every flag has an environment variable: IHR_API_ADDR, IHR_API_DB,
// IHR_API_KEYS (comma-separated), IHR_API_OAUTH_CLIENTS (comma-separated
// ID:SECRET), IHR_API_RATE_LIMIT, IHR_API_BURST, IHR_API_STRICT,
// IHR_API_INTEGRATIONS_FILE, and those of the security flags
// (security.go). Flags win. Secrets belong in files or the environment:
// --api-key and --oauth-client show in every process listing.
//
// With no credentials configured (our choice) the server does not run
// open: it generates a random API key, prints it once on stderr with a
// loud warning, and accepts only that key.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/internal/buildinfo"
	"github.com/ihr-tools/ihr/internal/gcdefault"
)

func main() {
	gcdefault.Apply()
	if err := newCommand(os.Stderr).Execute(); err != nil {
		os.Exit(2)
	}
}

type options struct {
	addr      string
	db        string
	apiKeys   []string
	clients   []string
	rateLimit float64
	burst     int
	strict    bool
	debug     bool
	seedFile  string
	sec       securityOptions
}

func envList(name string) []string {
	var out []string
	for _, p := range strings.Split(os.Getenv(name), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// envInt sets *dst from the environment variable name when it is set.
func envInt(name string, dst *int) error {
	v := os.Getenv(name)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%s=%q: not an integer", name, v)
	}
	*dst = n
	return nil
}

// fromEnv fills defaults from the environment; flags then override them.
func fromEnv() (options, error) {
	o := options{
		addr:     envOr("IHR_API_ADDR", "127.0.0.1:8080"),
		db:       envOr("IHR_API_DB", "sqlite:ihr-api.db"),
		apiKeys:  envList("IHR_API_KEYS"),
		clients:  envList("IHR_API_OAUTH_CLIENTS"),
		seedFile: os.Getenv("IHR_API_INTEGRATIONS_FILE"),
	}
	var err error
	if o.sec, err = securityFromEnv(); err != nil {
		return o, err
	}
	if v := os.Getenv("IHR_API_RATE_LIMIT"); v != "" {
		if o.rateLimit, err = strconv.ParseFloat(v, 64); err != nil {
			return o, fmt.Errorf("IHR_API_RATE_LIMIT=%q: not a number", v)
		}
	}
	if err := envInt("IHR_API_BURST", &o.burst); err != nil {
		return o, err
	}
	if v := os.Getenv("IHR_API_STRICT"); v != "" {
		if o.strict, err = strconv.ParseBool(v); err != nil {
			return o, fmt.Errorf("IHR_API_STRICT=%q: not a boolean", v)
		}
	}
	return o, nil
}

func newCommand(stderr io.Writer) *cobra.Command {
	env, envErr := fromEnv()
	o := env
	cmd := &cobra.Command{
		Use:           "ihr-api",
		Short:         "Serve the Coupa Integration History Records API",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		Version:       buildinfo.Read().String(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return envErr
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o, stderr)
		},
	}
	cmd.SetErr(stderr)
	// --version: the same line as `ihr-worker version`.
	cmd.SetVersionTemplate("ihr-api {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", env.addr, "listen address (IHR_API_ADDR)")
	f.StringVar(&o.db, "db", env.db, "sqlite:PATH or postgres://… (IHR_API_DB)")
	f.StringArrayVar(&o.apiKeys, "api-key", env.apiKeys, "accepted X-COUPA-API-KEY, repeatable (IHR_API_KEYS, comma-separated); shows in ps: prefer --api-key-file")
	f.StringArrayVar(&o.clients, "oauth-client", env.clients, "OAuth client ID:SECRET, repeatable (IHR_API_OAUTH_CLIENTS); shows in ps: prefer --oauth-clients-file")
	f.Float64Var(&o.rateLimit, "rate-limit", env.rateLimit, "requests per second per credential, 0 = off (IHR_API_RATE_LIMIT); Coupa: 25")
	f.IntVar(&o.burst, "burst", env.burst, "rate-limit burst (IHR_API_BURST); Coupa: 20")
	f.BoolVar(&o.strict, "strict", env.strict, "ignore integration_filename on input, as Coupa's element page says (IHR_API_STRICT)")
	f.BoolVar(&o.debug, "debug", false, "log every request")
	o.sec.addFlags(f, env.sec)
	f.StringVar(&o.seedFile, "integrations-file", env.seedFile, "create the integrations this YAML/JSON file lists at start, unless their code exists (IHR_API_INTEGRATIONS_FILE)")
	cmd.AddCommand(newIntegrationsCommand(stderr, env.db))
	return cmd
}

func run(ctx context.Context, o options, stderr io.Writer) error {
	// JSON logs on stderr with the same ISO 8601 timestamps as
	// ihr-worker's, so both read alike in one log collector.
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	lvl := zapcore.InfoLevel
	if o.debug {
		lvl = zapcore.DebugLevel
	}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(stderr), lvl), zap.AddCaller())
	defer log.Sync()

	fileKeys, fileClients, err := o.sec.readSecrets(log)
	if err != nil {
		return err
	}
	o.apiKeys = append(o.apiKeys, fileKeys...)
	o.clients = append(o.clients, fileClients...)
	clients := map[string]string{}
	for _, c := range o.clients {
		id, secret, ok := strings.Cut(c, ":")
		if !ok || id == "" || secret == "" {
			return fmt.Errorf("--oauth-client %q: want ID:SECRET", redact(c))
		}
		clients[id] = secret
	}
	keys := o.apiKeys
	if len(keys) == 0 && len(clients) == 0 {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		k := hex.EncodeToString(b)
		keys = []string{k}
		// Printed on stderr, not logged: logs are shipped, the terminal is not.
		fmt.Fprintf(stderr, "\n"+
			"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"+
			"!! ihr-api: NO CREDENTIALS CONFIGURED (--api-key-file / --oauth-clients-file).\n"+
			"!! Accepting only this generated key for this run:\n"+
			"!!     X-COUPA-API-KEY: %s\n"+
			"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n", k)
		log.Warn("no credentials configured; a generated API key was printed on stderr")
	}

	srv, err := apiserver.New(ctx, apiserver.Config{
		DB: o.db, APIKeys: keys, OAuthClients: clients,
		RateLimit: o.rateLimit, Burst: o.burst, Strict: o.strict, Logger: log,
		AuthFailures: o.sec.authFailures,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	if o.seedFile != "" {
		if err := seed(ctx, srv, o.seedFile, log); err != nil {
			return err
		}
	}

	ln, err := o.sec.listen(o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	log.Info("ihr-api listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", o.sec.tlsCert != ""), zap.String("db", srv.Dialect()),
		zap.Int("api_keys", len(keys)), zap.Int("oauth_clients", len(clients)),
		zap.Float64("rate_limit", o.rateLimit), zap.Bool("strict", o.strict))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown incomplete", zap.Error(err))
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// redact keeps the client id of an ID:SECRET for error messages.
func redact(s string) string {
	if id, _, ok := strings.Cut(s, ":"); ok {
		return id + ":***"
	}
	return "***"
}
