package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiserver"
)

// securityOptions are the flags that keep secrets out of argv and bound
// what one client can take: TLS, credential files, connection caps and
// failed-authentication limiting.
type securityOptions struct {
	tlsCert, tlsKey  string
	apiKeyFile       string
	oauthClientsFile string
	maxConns         int
	maxConnsPerAddr  int
	authFailures     int
}

func securityFromEnv() (securityOptions, error) {
	o := securityOptions{
		tlsCert:          os.Getenv("IHR_API_TLS_CERT"),
		tlsKey:           os.Getenv("IHR_API_TLS_KEY"),
		apiKeyFile:       os.Getenv("IHR_API_KEY_FILE"),
		oauthClientsFile: os.Getenv("IHR_API_OAUTH_CLIENTS_FILE"),
		maxConns:         apiserver.DefaultMaxConns,
		maxConnsPerAddr:  apiserver.DefaultMaxConnsPerAddr,
		authFailures:     apiserver.DefaultAuthFailures,
	}
	for _, e := range []struct {
		name string
		dst  *int
	}{{"IHR_API_MAX_CONNS", &o.maxConns}, {"IHR_API_MAX_CONNS_PER_ADDR", &o.maxConnsPerAddr}, {"IHR_API_AUTH_FAILURES", &o.authFailures}} {
		if err := envInt(e.name, e.dst); err != nil {
			return o, err
		}
	}
	return o, nil
}

func (o *securityOptions) addFlags(f *pflag.FlagSet, env securityOptions) {
	f.StringVar(&o.tlsCert, "tls-cert", env.tlsCert, "serve HTTPS with this PEM certificate (chain) (IHR_API_TLS_CERT); needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", env.tlsKey, "PEM private key of --tls-cert (IHR_API_TLS_KEY)")
	f.StringVar(&o.apiKeyFile, "api-key-file", env.apiKeyFile, "file of accepted API keys, one a line (IHR_API_KEY_FILE)")
	f.StringVar(&o.oauthClientsFile, "oauth-clients-file", env.oauthClientsFile, "file of OAuth clients, ID:SECRET one a line (IHR_API_OAUTH_CLIENTS_FILE)")
	f.IntVar(&o.maxConns, "max-conns", env.maxConns, "open connections at most, 0 = unbounded (IHR_API_MAX_CONNS)")
	f.IntVar(&o.maxConnsPerAddr, "max-conns-per-addr", env.maxConnsPerAddr, "open connections per client address at most, 0 = unbounded (IHR_API_MAX_CONNS_PER_ADDR)")
	f.IntVar(&o.authFailures, "auth-failures", env.authFailures, "failed authentications per client address before 429 (refilled per minute), -1 = off (IHR_API_AUTH_FAILURES)")
}

// readSecrets reads the credential files: API keys one a line, OAuth
// clients ID:SECRET one a line; blank lines and lines starting with #
// are skipped.
func (o *securityOptions) readSecrets(log *zap.Logger) (keys, clients []string, err error) {
	if keys, err = readLines(o.apiKeyFile, "--api-key-file", log); err != nil {
		return nil, nil, err
	}
	if clients, err = readLines(o.oauthClientsFile, "--oauth-clients-file", log); err != nil {
		return nil, nil, err
	}
	for i, c := range clients {
		if id, secret, ok := strings.Cut(c, ":"); !ok || id == "" || secret == "" {
			return nil, nil, fmt.Errorf("--oauth-clients-file %s: entry %d (%s): want ID:SECRET", o.oauthClientsFile, i+1, redact(c))
		}
	}
	return keys, clients, nil
}

func readLines(path, flag string, log *zap.Logger) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("a secrets file is readable by other users; chmod 600 it", zap.String("flag", flag), zap.String("file", path))
	}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s %s: no entries", flag, path)
	}
	return out, nil
}

// listen opens addr with the connection caps and, with a certificate,
// TLS on top of them (the caps count TCP connections, before any
// handshake work).
func (o *securityOptions) listen(addr string) (net.Listener, error) {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	var tcfg *tls.Config
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tcfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ln = apiserver.LimitListener(ln, o.maxConns, o.maxConnsPerAddr)
	if tcfg != nil {
		ln = tls.NewListener(ln, tcfg)
	}
	return ln, nil
}
