package filestore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
)

func TestImplementationHelpers(t *testing.T) {
	if _, err := filestore.CleanFileName("x write", ""); !errors.Is(err, filestore.ErrBadName) {
		t.Errorf("CleanFileName(root) = %v", err)
	}
	if n, err := filestore.CleanFileName("x write", "a/./b.csv"); n != "a/b.csv" || err != nil {
		t.Errorf("CleanFileName = %q, %v", n, err)
	}
	for _, pair := range [][2]string{{"", "b"}, {"a", "."}, {"../a", "b"}, {"a", "/b"}} {
		if _, _, err := filestore.CleanMoveNames("x move", pair[0], pair[1]); !errors.Is(err, filestore.ErrBadName) {
			t.Errorf("CleanMoveNames(%q, %q) = %v", pair[0], pair[1], err)
		}
	}
	if from, to, err := filestore.CleanMoveNames("x move", "in/a", "done/a"); from != "in/a" || to != "done/a" || err != nil {
		t.Errorf("CleanMoveNames = %q, %q, %v", from, to, err)
	}
	log := zap.NewNop()
	if filestore.Listed(log, "x", "in", filestore.TempName()) || filestore.Listed(log, "x", "in", "..") || !filestore.Listed(log, "x", "in", "a.csv") {
		t.Error("Listed misjudges")
	}
	fis := []filestore.FileInfo{{Name: "b"}, {Name: "a"}}
	if filestore.SortByName(fis); fis[0].Name != "a" {
		t.Errorf("SortByName: %v", fis)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := filestore.ContextReader(ctx, strings.NewReader("abc"))
	if n, err := r.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	cancel()
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %v", err)
	}
}
