package workercli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/certpool"
	"github.com/ihr-tools/ihr/ratebudget"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
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
	// sources are the pipeline's view of each source (keys read and
	// unlocked), built on the first pass rather than on every poll.
	sources map[string]importer.Source
	// accounts shares SFTP connections (and max_connections) among the
	// sources of one account.
	accounts sftpstore.Accounts
}

// newAPIClient builds the API client from the configuration. It makes no
// request.
func newAPIClient(cfg *config.Config, log *zap.Logger, obs apiclient.Observer) (*apiclient.Client, error) {
	return newAPIClientWith(cfg, log, obs, nil)
}

// newAPIClientWith is newAPIClient with a rate budget shared beyond this
// process (nil: the client's own).
func newAPIClientWith(cfg *config.Config, log *zap.Logger, obs apiclient.Observer, lim apiclient.Limiter) (*apiclient.Client, error) {
	ac := cfg.API.ClientConfig()
	ac.Observer = obs
	// The ledger keeps only the record id of a create.
	ac.CreateFields = []string{"id"}
	if lim != nil {
		ac.Limiter = lim
	}
	// Said on every start, so an insecure override is never forgotten.
	for _, w := range cfg.Warnings() {
		log.Warn("insecure configuration: "+w, zap.String("hint", "use https:// or ftps://"))
	}
	if cfg.API.CAFile != "" {
		pool, err := certpool.Load(cfg.API.CAFile)
		if err != nil {
			return nil, exitErr(ExitUsage, fmt.Errorf("api.ca_file: %w", err))
		}
		ac.RootCAs = pool
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
		return nil, exitErr(ExitUnreachable, fmt.Errorf("state %s: %w", storeurl.Redact(cfg.State), err))
	}
	var obs importer.Observer = m
	if progress != nil {
		obs = multiObserver{m, progress}
	}
	imp := importer.New(importer.Config{Concurrency: cfg.API.Concurrency, Lease: cfg.Lease}, setupAwareAPI{importer.ClientAPI(api), cfg.API.URL}, led, log, obs)
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
	st, err := openSharedStore(ctx, s, w.log, &w.accounts)
	if err != nil {
		return nil, err
	}
	if w.stores == nil {
		w.stores = map[string]filestore.Store{}
	}
	w.stores[s.Name] = st
	return st, nil
}

// source is importerSource for a configured source on its store, built
// once: serve passes every poll, and reading and unlocking the source's
// OpenPGP keys (a passphrase's S2K) each time is work for nothing, since
// the configuration naming them is read once too. A failure is not kept,
// so a fixed key file is picked up by the next pass.
func (w *worker) source(s *config.Source, store filestore.Store) (importer.Source, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if src, ok := w.sources[s.Name]; ok {
		return src, nil
	}
	src, err := importerSource(w.cfg, s, store)
	if err != nil {
		return src, err
	}
	if w.sources == nil {
		w.sources = map[string]importer.Source{}
	}
	w.sources[s.Name] = src
	return src, nil
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

// importerSource describes a configured source to the pipeline, on an
// opened store. It fails (a usage error, exit 2) when the source's
// OpenPGP keys cannot be loaded or unlocked.
func importerSource(cfg *config.Config, s *config.Source, store filestore.Store) (importer.Source, error) {
	keys, err := s.LoadKeys()
	if err != nil {
		return importer.Source{}, usageErr("source %s: %v", s.Name, err)
	}
	uw := unwrap.Config{Decrypt: keys.Decrypt, Verify: keys.Verify, Limits: s.Limits()}
	requireManifest := false
	if c := s.Completeness; c != nil {
		requireManifest = c.Manifest == config.ManifestRequired
		if c.Trailer != "" {
			if uw.Trailer, err = unwrap.ParseTrailer(c.Trailer); err != nil {
				return importer.Source{}, usageErr("source %s: %v", s.Name, err)
			}
		}
	}
	return importer.Source{
		Unwrap:           uw,
		RequireManifest:  requireManifest,
		EncryptReportsTo: keys.ReportsTo,
		Name:             s.Name,
		Store:            store,
		Folders: importer.Folders{
			Inbox: s.Folders.Inbox, Archive: s.Folders.Archive, Failed: s.Folders.Failed, Reports: s.Folders.Reports,
		},
		Include:               s.Include,
		Encoding:              s.Encoding,
		Mapping:               s.Mapping,
		Integration:           s.Integration,
		StableFor:             s.StableFor,
		ResolvePrevious:       s.ResolvePrevious,
		AllowDuplicateContent: s.AllowDuplicateContent,
		SplitRows:             int64(s.SplitRows),
		KeepFormulas:          !cfg.Report.EscapeFormulas,
	}, nil
}

// storeLocation is where a name inside a source's store is, for humans:
// a local path for file:// sources, else the URL (without password).
func storeLocation(s *config.Source, name string) string {
	if dir, ok := storeurl.LocalPath(s.URL); ok {
		return filepath.Join(filepath.FromSlash(dir), filepath.FromSlash(name))
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return name
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
	case errors.As(err, new(*missingIntegrationError)):
		return ExitUsage
	case setupStoreError(err):
		// A host key that does not match, a refused login: no rerun
		// fixes them, the configuration (or the server) must change.
		return ExitUsage
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

// preflight checks a source before its pass touches any file: the root
// folder exists and the integration is on the API (preflight.go).
func (w *worker) preflight(ctx context.Context, s *config.Source, store filestore.Store) error {
	if err := checkRoot(ctx, s, store); err != nil {
		return err
	}
	return checkIntegration(ctx, w.api, w.cfg, s)
}
