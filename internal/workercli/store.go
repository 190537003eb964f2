package workercli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/ftpstore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/s3store"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/importer"
)

// openStore builds the store a source's URL and settings describe. Remote
// stores connect lazily, so an error here is about the settings (a key
// file that does not parse, a missing known_hosts): a usage error, exit 2.
// A local folder that is not there is a source that cannot be reached
// (an unmounted share): importer.ErrSourceUnavailable, exit 3. The store is
// wrapped to retry transient failures.
func openStore(ctx context.Context, s *config.Source, log *zap.Logger) (filestore.Store, error) {
	log = log.Named("store").With(zap.String("source", s.Name))
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, usageErr("source %s: url: %v", s.Name, err)
	}
	var st filestore.Store
	switch strings.ToLower(u.Scheme) {
	case "file":
		l, err := local.New(u.Path, log)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", importer.ErrSourceUnavailable, s.Name, err)
		}
		st = l
	case "sftp":
		st, err = sftpstore.New(sftpstore.Config{
			Addr: hostPort(u, "22"), User: u.User.Username(), Password: s.Password.Reveal(),
			KeyFile: s.KeyFile, KnownHosts: s.KnownHosts, InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
			Root: remoteRoot(u.Path),
		}, log)
	case "ftp", "ftps":
		st, err = ftpstore.New(ftpstore.Config{
			Addr: hostPort(u, "21"), User: u.User.Username(), Password: s.Password.Reveal(),
			TLS: strings.EqualFold(u.Scheme, "ftps"), CAFile: s.CAFile, InsecureSkipVerify: s.InsecureSkipVerify,
			Root: remoteRoot(u.Path),
		}, log)
	case "s3":
		st, err = s3store.New(ctx, s3store.Config{
			Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"),
			Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle,
			AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey.Reveal(),
		}, log)
	default:
		return nil, usageErr("source %s: url: unsupported scheme %q", s.Name, u.Scheme)
	}
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			return nil, err
		}
		return nil, usageErr("source %s (%s): %v", s.Name, s.RedactedURL(), err)
	}
	return filestore.WithRetry(st, filestore.DefaultRetryPolicy(), log), nil
}

func hostPort(u *url.URL, defPort string) string {
	port := u.Port()
	if port == "" {
		port = defPort
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// remoteRoot maps a URL path to a server folder: "/x" is absolute, "/~/x"
// (as curl spells it) is x in the login folder, "" or "/" … is the login
// folder itself only when empty.
func remoteRoot(p string) string {
	if rest, ok := strings.CutPrefix(p, "/~"); ok {
		return strings.TrimPrefix(rest, "/")
	}
	return p
}
