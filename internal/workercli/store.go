package workercli

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/filestore/storeurl"
)

// openStore builds the store a source's URL and settings describe, wrapped
// to retry transient failures. Remote stores connect lazily, so an error
// here is about the settings (a key file that does not parse, a missing
// known_hosts): a usage error, exit 2. So is a local folder that is not
// there: the source root must exist (a typo in a path must not look like an
// empty inbox).
func openStore(ctx context.Context, s *config.Source, log *zap.Logger) (filestore.Store, error) {
	return openSharedStore(ctx, s, log, nil)
}

// openSharedStore is openStore where SFTP sources of one account (host and
// user) share accounts' connections and max_connections budget.
func openSharedStore(ctx context.Context, s *config.Source, log *zap.Logger, accounts *sftpstore.Accounts) (filestore.Store, error) {
	log = log.Named("store").With(zap.String("source", s.Name))
	settings := s.StoreSettings()
	settings.MaxConns, settings.Accounts = s.MaxConnections, accounts
	st, err := storeurl.Open(ctx, s.URL, settings, log)
	if err != nil {
		if _, local := storeurl.LocalPath(s.URL); local && errors.Is(err, filestore.ErrNotExist) {
			return nil, missingRoot(s)
		}
		return nil, usageErr("source %s: %v", s.Name, err)
	}
	return filestore.WithRetry(st, filestore.DefaultRetryPolicy(), log), nil
}
