package workercli

import (
	"context"
	"fmt"
	"strings"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore/storeurl"
	"github.com/ihr-tools/ihr/ratebudget"
)

// sharedBudget returns the API rate budget that every replica on the same
// PostgreSQL state shares (package ratebudget), or nil when the state is
// SQLite (one process: the client's own token bucket is the whole budget)
// or the rate is unlimited. api.rate_limit then means requests per second
// for all replicas using the same credential together, as Coupa counts
// them.
func sharedBudget(ctx context.Context, cfg *config.Config) (*ratebudget.Limiter, error) {
	if cfg.API.RateLimit <= 0 || !(strings.HasPrefix(cfg.State, "postgres://") || strings.HasPrefix(cfg.State, "postgresql://")) {
		return nil, nil
	}
	// The credential is hashed before it is stored.
	cred := cfg.API.URL + "\x00key\x00" + cfg.API.APIKey.Reveal()
	if o := cfg.API.OAuth; o != nil {
		cred = cfg.API.URL + "\x00oauth\x00" + o.ClientID
	}
	l, err := ratebudget.Open(ctx, cfg.State, ratebudget.Config{
		Credential: cred,
		Rate:       cfg.API.RateLimit,
		// One token of the burst in reserve, as apiclient.NewLimiter
		// keeps: network jitter must not earn a 429.
		Burst: max(cfg.API.Burst-1, 1),
	})
	if err != nil {
		return nil, exitErr(ExitUnreachable, fmt.Errorf("shared rate budget on %s: %w", storeurl.Redact(cfg.State), err))
	}
	return l, nil
}
