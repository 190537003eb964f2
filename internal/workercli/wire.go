package workercli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/ratebudget"
	"github.com/ihr-tools/ihr/state"
)

// worker is everything a pass needs, built once per command.
type worker struct {
	cfg     *config.Config
	log     *zap.Logger
	metrics *metrics
	api     *apiclient.Client
	ledger  state.Ledger
	imp     *importer.Importer
	budget  *ratebudget.Limiter // shared by replicas on PostgreSQL; nil otherwise

	mu     sync.Mutex
	stores map[string]filestore.Store // by source name, opened on first use
}

// newAPIClient builds the API client from the configuration. It makes no
// request.
func newAPIClient(cfg *config.Config, log *zap.Logger, obs apiclient.Observer) (*apiclient.Client, error) {
	return newAPIClientWith(cfg, log, obs, nil)
}

// newAPIClientWith is newAPIClient with a rate budget shared beyond this
// process (nil: the client's own).
func newAPIClientWith(cfg *config.Config, log *zap.Logger, obs apiclient.Observer, lim apiclient.Limiter) (*apiclient.Client, error) {
	ac := apiclient.Config{
		BaseURL:    cfg.API.URL,
		APIKey:     cfg.API.APIKey.Reveal(),
		RateLimit:  cfg.API.RateLimit,
		Burst:      cfg.API.Burst,
		Timeout:    cfg.API.Timeout,
		MaxRetries: cfg.API.MaxRetries,
		Observer:   obs,
		// The ledger keeps only the record id of a create.
		CreateFields: []string{"id"},
	}
	if lim != nil {
		ac.Limiter = lim
	}
	// Said on every start, so an insecure override is never forgotten.
	for _, w := range cfg.Warnings() {
		log.Warn("insecure configuration: "+w, zap.String("hint", "use https:// or ftps://"))
	}
	if cfg.API.CAFile != "" {
		pem, err := os.ReadFile(cfg.API.CAFile)
		if err != nil {
			return nil, exitErr(ExitUsage, fmt.Errorf("api.ca_file: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, exitErr(ExitUsage, fmt.Errorf("api.ca_file: %s holds no PEM certificate", cfg.API.CAFile))
		}
		ac.RootCAs = pool
	}
	if cfg.API.MaxRetries == 0 {
		ac.MaxRetries = -1 // config: 0 is none; apiclient: 0 is its default
	}
	if cfg.API.RateLimit == 0 {
		ac.RateLimit = -1 // config: 0 is unlimited; apiclient: 0 is its default
	}
	if o := cfg.API.OAuth; o != nil {
		ac.OAuth = &apiclient.OAuthConfig{
			TokenURL:     o.TokenURL,
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret.Reveal(),
			Scopes:       o.Scopes,
		}
	}
	c, err := apiclient.New(ac, log.Named("api"))
	if err != nil {
		return nil, exitErr(ExitUsage, err)
	}
	return c, nil
}

// newWorker opens the ledger (for writing) and builds the API client and
// the pipeline.
func newWorker(ctx context.Context, cfg *config.Config, log *zap.Logger, m *metrics, progress importer.Observer) (*worker, error) {
	for i := range cfg.Sources {
		if err := checkMapping(&cfg.Sources[i], i); err != nil {
			return nil, err
		}
	}
	budget, err := sharedBudget(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var lim apiclient.Limiter
	if budget != nil {
		lim = budget
	}
	api, err := newAPIClientWith(cfg, log, m, lim)
	if err != nil {
		if budget != nil {
			budget.Close()
		}
		return nil, err
	}
	led, err := openLedger(ctx, cfg.State, false)
	if err != nil {
		if budget != nil {
			budget.Close()
		}
		if errors.Is(err, state.ErrLocked) {
			return nil, exitErr(ExitUnreachable, fmt.Errorf("state %s is in use by another ihr-worker (serve?); run this command there, or stop it first", cfg.State))
		}
		return nil, exitErr(ExitUnreachable, fmt.Errorf("state %s: %w", config.RedactURL(cfg.State), err))
	}
	var obs importer.Observer = m
	if progress != nil {
		obs = multiObserver{m, progress}
	}
	imp := importer.New(importer.Config{Concurrency: cfg.API.Concurrency, Lease: cfg.Lease}, importer.ClientAPI(api), led, log, obs)
	return &worker{cfg: cfg, log: log, metrics: m, api: api, ledger: led, imp: imp, budget: budget}, nil
}

// store returns the source's store, opening it on first use. Stores pool
// and re-establish their connections, so one per source serves every pass.
func (w *worker) store(ctx context.Context, s *config.Source) (filestore.Store, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st, ok := w.stores[s.Name]; ok {
		return st, nil
	}
	st, err := openStore(ctx, s, w.log)
	if err != nil {
		return nil, err
	}
	if w.stores == nil {
		w.stores = map[string]filestore.Store{}
	}
	w.stores[s.Name] = st
	return st, nil
}

// Close closes the stores and the ledger.
func (w *worker) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, st := range w.stores {
		errs = append(errs, st.Close())
	}
	w.stores = nil
	errs = append(errs, w.ledger.Close())
	if w.budget != nil {
		w.budget.Close()
	}
	return errors.Join(errs...)
}

// checkMapping lets the mapping package judge the source's mapping block as
// the pipeline will use it, so a mistake is a configuration error (exit 2)
// before any file is touched.
func checkMapping(s *config.Source, i int) error {
	err := mapping.ValidateConfig(mappingConfig(s))
	if err == nil {
		return nil
	}
	key := fmt.Sprintf("sources[%d].mapping", i)
	var me *mapping.ConfigError
	if errors.As(err, &me) {
		return usageErr("invalid configuration: %s.%s: %s", fmt.Sprintf("sources[%d]", i), me.Key, me.Msg)
	}
	return usageErr("invalid configuration: %s: %v", key, err)
}

func mappingConfig(s *config.Source) mapping.Config {
	return mapping.Config{Columns: s.Mapping.Columns, Defaults: s.Mapping.Defaults, Actions: s.Mapping.Actions}
}

// importerSource describes a configured source to the pipeline, on an
// opened store.
func importerSource(s *config.Source, store filestore.Store) importer.Source {
	return importer.Source{
		Name:  s.Name,
		Store: store,
		Folders: importer.Folders{
			Inbox: s.Folders.Inbox, Archive: s.Folders.Archive, Failed: s.Folders.Failed, Reports: s.Folders.Reports,
		},
		Include:               s.Include,
		Encoding:              s.Encoding,
		Mapping:               mappingConfig(s),
		Integration:           s.Integration,
		StableFor:             s.StableFor,
		ResolvePrevious:       s.ResolvePrevious,
		AllowDuplicateContent: s.AllowDuplicateContent,
		SplitRows:             int64(s.SplitRows),
	}
}

// storeLocation is where a name inside a source's store is, for humans:
// a local path for file:// sources, else the URL (without password).
func storeLocation(s *config.Source, name string) string {
	u, err := url.Parse(s.URL)
	if err != nil {
		return name
	}
	if u.Scheme == "file" {
		return filepath.Join(filepath.FromSlash(u.Path), filepath.FromSlash(name))
	}
	u.User = nil
	u.Path = joinURLPath(u.Path, name)
	return u.String()
}

func joinURLPath(base, name string) string {
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + "/" + name
}

// classify turns a pass's error into an exit code.
func classify(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, importer.ErrSourceUnavailable), errors.Is(err, importer.ErrAPIUnavailable):
		return ExitUnreachable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Interrupted: files left mid-way resume on the next run, which
		// the scheduler should start soon, as for an unreachable source.
		return ExitUnreachable
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitUnreachable
}
