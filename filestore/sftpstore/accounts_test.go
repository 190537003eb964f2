package sftpstore_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// TestAccountSharesConnectionBudget: two stores (two sources) on one
// account with a budget of 2 connections: while the first holds two
// streams open, the second cannot get a connection; when one closes, it
// can. A third store of the account with other credentials is refused.
func TestAccountSharesConnectionBudget(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(srv.Root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(srv.Root, d, "f.csv"), []byte(strings.Repeat("x", 1<<20)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var acc sftpstore.Accounts
	open := func(root string) *sftpstore.Store {
		cfg := keyConfig(srv, filepath.Join(srv.Root, root))
		cfg.MaxConns, cfg.Accounts = 2, &acc
		s, err := sftpstore.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open("a"), open("b")
	ctx := context.Background()
	var held []io.ReadCloser
	for range 2 {
		rc, err := a.Open(ctx, "f.csv", 0)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, rc)
	}
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	_, err := b.Open(short, "f.csv", 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("source b got a third connection of a 2-connection account: %v", err)
	}
	held[0].Close()
	rc, err := b.Open(ctx, "f.csv", 0)
	if err != nil {
		t.Fatalf("source b after a connection came free: %v", err)
	}
	n, _ := io.Copy(io.Discard, rc)
	rc.Close()
	held[1].Close()
	if n != 1<<20 {
		t.Fatalf("read %d bytes", n)
	}

	other := keyConfig(srv, srv.Root)
	other.MaxConns, other.Accounts, other.Password = 2, &acc, "different"
	if _, err := sftpstore.New(other, nil); err == nil || !strings.Contains(err.Error(), "different credentials") {
		t.Fatalf("a source of the same account with other credentials: %v", err)
	}
	// Closing one store twice gives its share back once: b still works.
	a.Close()
	a.Close()
	if _, err := b.Stat(ctx, "f.csv"); err != nil {
		t.Fatalf("b after a was closed twice: %v", err)
	}
	// Closing both releases the account; a new store opens afresh.
	b.Close()
	c := open("a")
	defer c.Close()
	if _, err := c.Stat(ctx, "f.csv"); err != nil {
		t.Fatal(err)
	}
}
