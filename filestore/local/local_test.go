package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/storetest"
)

func newStore(t *testing.T) filestore.Store {
	s, err := local.New(t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

// A symbolic link planted in a drop folder must neither be listed nor lead
// outside the folder.
func TestSymlinkNotFollowed(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link.csv")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	s, err := local.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	fis, err := s.List(ctx, "")
	if err != nil || len(fis) != 0 {
		t.Errorf("List = %v, %v; want nothing", fis, err)
	}
	if _, err := s.Open(ctx, "link.csv", 0); err == nil {
		t.Error("Open through a link leaving the root succeeded")
	}
	if _, err := s.Stat(ctx, "out/secret"); err == nil {
		t.Error("Stat through a folder link leaving the root succeeded")
	}
}

func TestMissingRoot(t *testing.T) {
	_, err := local.New(filepath.Join(t.TempDir(), "nope"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New on a missing folder: %v", err)
	}
}

func BenchmarkDownload(b *testing.B) {
	s, err := local.New(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkDownload(b, s)
}
