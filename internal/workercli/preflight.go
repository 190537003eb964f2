package workercli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/importer"
)

// Pre-flight: what no retry and no file can fix is checked before any file
// is touched, so a setup mistake exits 2 with the files still in the inbox
// instead of sending a whole inbox to failed/ one row error at a time.

// checkRoot fails with a configuration error (exit 2) when the source's
// root folder does not exist. The pipeline then creates only the four
// folders, under a root that is there: a typo in a source path must not
// silently grow a new, empty folder tree that exits 0 with "0 file(s)".
func checkRoot(ctx context.Context, s *config.Source, store filestore.Store) error {
	_, err := store.List(ctx, "")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, filestore.ErrNotExist):
		return usageErr("source %s: the folder %s does not exist: check the source's url (the worker creates only %s/, %s/, %s/ and %s/, inside an existing folder)",
			s.Name, storeLocation(s, ""), s.Folders.Inbox, s.Folders.Archive, s.Folders.Failed, s.Folders.Reports)
	case setupStoreError(err):
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return usageErr("source %s: the server's host key does not match %s: if the server's key really changed, update that file (ssh-keyscan); otherwise something is in the middle. No file was touched (%v)",
				s.Name, s.KnownHosts, err)
		}
		return usageErr("source %s: %v", s.Name, err)
	}
	return fmt.Errorf("%w: %s: %w", importer.ErrSourceUnavailable, s.Name, err)
}

// checkIntegration fails with a configuration error (exit 2) when the
// source's integration code is not on the API, or the API refuses the
// credentials; with ErrAPIUnavailable (exit 3) when the API cannot be
// asked. A source without an integration (its rows name theirs) passes.
func checkIntegration(ctx context.Context, api *apiclient.Client, cfg *config.Config, s *config.Source) error {
	code := s.Integration
	if code == "" {
		return nil
	}
	list, err := api.Integrations(ctx, apiclient.NewQuery().Eq("code", code))
	if err != nil {
		var ae *apiclient.Error
		if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
			return usageErr("source %s: the API at %s refused the credentials (%d %s) while looking up integration %q: check api.api_key or api.oauth (reading integrations needs the core.integration.read scope)",
				s.Name, cfg.API.URL, ae.Status, http.StatusText(ae.Status), code)
		}
		return fmt.Errorf("%w: looking up integration %q: %w", importer.ErrAPIUnavailable, code, err)
	}
	for _, in := range list {
		if in.Code == code {
			return nil
		}
	}
	return usageErr("source %s: integration %q does not exist on %s; no file was touched. Create it first: in Coupa under Setup > Integrations, "+
		"or on ihr-api with `ihr-api integrations add --code %s --name %q` (or seed it with --integrations-file), then run again",
		s.Name, code, cfg.API.URL, code, code)
}

// setupStoreError reports a store error that no rerun fixes: the server's
// host key does not match known_hosts, or the login is refused.
func setupStoreError(err error) bool {
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	if errors.As(err, &ke) || errors.As(err, &re) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "530 Login incorrect")
}
