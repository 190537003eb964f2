package workercli

import (
	"context"
	"fmt"
	"net/url"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/importer"
)

// openStore connects to a source's store. A failure wraps
// importer.ErrSourceUnavailable (exit 3): the configuration was valid, the
// place it names could not be reached.
func openStore(ctx context.Context, s *config.Source, log *zap.Logger) (filestore.Store, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", importer.ErrSourceUnavailable, s.Name, err)
	}
	var st filestore.Store
	switch u.Scheme {
	case "file":
		st, err = local.New(u.Path, log.Named("store"))
	default:
		err = fmt.Errorf("%s:// stores are not available in this build", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s (%s): %v", importer.ErrSourceUnavailable, s.Name, s.RedactedURL(), err)
	}
	return filestore.WithRetry(st, filestore.DefaultRetryPolicy(), log.Named("store")), nil
}
