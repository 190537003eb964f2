package importer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file last changed longer than stable_for ago is taken at once: with
// stable_for at an hour, a run that waited would never end inside the
// test's deadline. A file changed just now still waits.
func TestOldFileSkipsStableWait(t *testing.T) {
	e := newEnv(t)
	e.src.StableFor = time.Hour
	content, _ := csvRows("O", 1, 3)
	e.drop("old.csv", content)
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(e.root, "inbox", "old.csv"), past, past); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := e.importer().RunSource(ctx, e.src)
	if err != nil || sum.Archived != 1 {
		t.Fatalf("old file not taken at once: %+v %v", sum, err)
	}

	e.drop("new.csv", content)
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := e.importer().RunSource(ctx, e.src); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a file changed just now was not left to settle: %v", err)
	}
	if !e.exists("inbox/new.csv") {
		t.Fatal("new.csv left the inbox before it was stable")
	}
}
