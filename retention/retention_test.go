package retention_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/retention"
)

// layout writes a source's four folders under root, each with an old and
// a new file; old ones are aged by mtime.
func layout(t *testing.T, root string, now time.Time) {
	ages := map[string]time.Duration{
		"inbox/old.csv":              400 * 24 * time.Hour,
		"failed/old.csv":             400 * 24 * time.Hour,
		"archive/old.csv":            91 * 24 * time.Hour,
		"archive/new.csv":            89 * 24 * time.Hour,
		"reports/old.response.csv":   181 * 24 * time.Hour,
		"reports/mid.response.csv":   100 * 24 * time.Hour, // past archive's age, not reports'
		"reports/fresh.response.csv": time.Hour,
	}
	for name, age := range ages {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
}

func remaining(t *testing.T, root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			r, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(r))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func sweepBoth(t *testing.T, st filestore.Store, root string) {
	ctx := context.Background()
	now := time.Now()
	layout(t, root, now)
	log := zaptest.NewLogger(t)
	a, err := retention.Sweep(ctx, st, "archive", 90*24*time.Hour, now, log)
	if err != nil {
		t.Fatal(err)
	}
	r, err := retention.Sweep(ctx, st, "reports", 180*24*time.Hour, now, log)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, []string{"archive/old.csv"}) || !slices.Equal(r, []string{"reports/old.response.csv"}) {
		t.Fatalf("deleted %v and %v", a, r)
	}
	want := []string{"archive/new.csv", "failed/old.csv", "inbox/old.csv", "reports/fresh.response.csv", "reports/mid.response.csv"}
	if got := remaining(t, root); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	// Off (0) deletes nothing; a missing folder is not an error.
	if d, err := retention.Sweep(ctx, st, "archive", 0, now.Add(1000*24*time.Hour), log); err != nil || d != nil {
		t.Fatalf("retain 0: %v %v", d, err)
	}
	if _, err := retention.Sweep(ctx, st, "nope", time.Hour, now, log); err != nil {
		t.Fatalf("missing folder: %v", err)
	}
}

// TestSweepLocal: only files past their age go, only from the folder
// named; inbox/ and failed/ keep even older files.
func TestSweepLocal(t *testing.T) {
	root := t.TempDir()
	st, err := local.New(root, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sweepBoth(t, filestore.WithRetry(st, filestore.DefaultRetryPolicy(), zaptest.NewLogger(t)), root)
}

// TestSweepSFTP: the same against OpenSSH's sftp server.
func TestSweepSFTP(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	st, err := sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
		KnownHosts: srv.KnownHostsFile, Root: srv.Root, Timeout: 10 * time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sweepBoth(t, filestore.WithRetry(st, filestore.DefaultRetryPolicy(), zaptest.NewLogger(t)), srv.Root)
}
