package binharness

import (
	"testing"

	"github.com/ihr-tools/ihr/internal/testservers"
)

// TLSFiles are PEM files of a fresh certificate authority and a server
// certificate it signed for 127.0.0.1, ::1 and localhost.
type TLSFiles = testservers.TLSFiles

// NewTLSFiles writes a CA and a server certificate into a temporary
// folder; testservers makes them, as it does for vsftpd.
func NewTLSFiles(t testing.TB) TLSFiles {
	t.Helper()
	return testservers.NewTLSFiles(t)
}
