package workercli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/record"
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
		return missingRoot(s)
	case setupStoreError(err):
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return usageErr("source %s: the server's host key does not match %s: if the server's key really changed, update that file (ssh-keyscan); otherwise something is in the middle. No file was touched (%v)",
				s.Name, s.KnownHosts, err)
		}
		return usageErr("source %s: %v", s.Name, err)
	case filestore.IsPermanent(err):
		// A missing bucket, refused credentials, no permission: the
		// store said no in a way no retry changes.
		return usageErr("source %s: %v (no rerun fixes this: check the source's url and credentials)", s.Name, err)
	}
	return fmt.Errorf("%w: %s: %w", importer.ErrSourceUnavailable, s.Name, err)
}

// missingRoot is the configuration error of a source whose root folder
// does not exist, wherever that is found (opening a local store, or
// listing a remote one).
func missingRoot(s *config.Source) error {
	return usageErr("source %s: the folder %s does not exist: check the source's url (the worker creates only %s/, %s/, %s/ and %s/, inside an existing folder)",
		s.Name, storeLocation(s, ""), s.Folders.Inbox, s.Folders.Archive, s.Folders.Failed, s.Folders.Reports)
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
		// Neither a redirect we will not follow nor a certificate we do
		// not trust changes on a rerun.
		if errors.As(err, &ae) && ae.Status >= 300 && ae.Status < 400 {
			return usageErr("source %s: %v: set api.url (or api.oauth.token_url) to the final URL; no file was touched", s.Name, err)
		}
		if apiclient.IsCertificateError(err) {
			return usageErr("source %s: the API at %s has a certificate this worker does not trust: %v: set api.ca_file to the CA that signed it; no file was touched",
				s.Name, cfg.API.URL, err)
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

// A row may name its own integration (an integration column). One that
// does not exist is the same setup error as the source's: the API answers
// each such row 400 "Integration with code … does not exist", and the
// pipeline would record those rows failed and move the whole file to
// failed/. setupAwareAPI turns that answer into an error the pipeline
// treats as "stop the file, resume later", so the file stays in the inbox
// and the run exits 2 naming the code; once the integration is created,
// the next run resumes the file without posting a row twice.
type setupAwareAPI struct {
	importer.API
	url string
}

var unknownIntegrationMsg = regexp.MustCompile(`(?i)^integration with code .* does not exist$`)

func (a setupAwareAPI) Create(ctx context.Context, action record.Action, r *record.Record) (*record.Record, error) {
	rec, err := a.API.Create(ctx, action, r)
	var ae *apiclient.Error
	if err != nil && errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
		for _, m := range ae.Messages {
			if unknownIntegrationMsg.MatchString(strings.TrimSpace(m)) {
				code := ""
				if r != nil && r.Integration != nil {
					code = r.Integration.Code
				}
				return rec, &missingIntegrationError{code: code, url: a.url, err: err}
			}
		}
	}
	return rec, err
}

// missingIntegrationError: the API does not know an integration a row
// names. No row is at fault; the setup is (exit 2). err is the API's
// answer, for logs.
type missingIntegrationError struct {
	code, url string
	err       error
}

func (e *missingIntegrationError) Error() string {
	return fmt.Sprintf("integration %q does not exist on %s; the file stays in the inbox. Create it (in Coupa under Setup > Integrations, "+
		"or `ihr-api integrations add --code %s --name …`), then run again: the file resumes where it stopped", e.code, e.url, e.code)
}

// No Unwrap: the pipeline must not see the API's 400 underneath, or it
// would record the row failed.
