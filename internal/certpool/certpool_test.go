package certpool_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/certpool"
)

func TestLoad(t *testing.T) {
	files := binharness.NewTLSFiles(t)
	if _, err := certpool.Load(files.CA); err != nil {
		t.Fatalf("a CA file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certpool.Load(empty); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("a file without certificates: %v", err)
	}
	if _, err := certpool.Load(filepath.Join(t.TempDir(), "missing.pem")); !os.IsNotExist(err) {
		t.Fatalf("a missing file: %v", err)
	}
}
