// Package certpool reads the PEM files users name as ca_file (the API's,
// an FTPS server's, an SMTP server's) into a certificate pool, with the
// same checks and wording everywhere.
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load returns a pool holding the certificates of the PEM file at path. A
// file without any certificate is an error: trusting nothing would only
// fail later, at the handshake, with a less helpful message.
func Load(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
