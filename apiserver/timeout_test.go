package apiserver_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// TestRequestTimeout: a create that waits on a database another process
// holds locked ends at RequestTimeout with a 503 a client retries, not
// when the lock is let go; once it is, creates work again.
func TestRequestTimeout(t *testing.T) {
	create := `{"document-type": "User", "document-id": 1, "contact-alert-type": "Functional", "external-id": "T-1"}`
	check := func(t *testing.T, c *client, lock *sql.Tx) {
		start := time.Now()
		r := c.do("POST", ihr, create)
		took := time.Since(start)
		if r.Code != 503 || !strings.Contains(r.String(), "ran out of time") || r.Header.Get("Retry-After") == "" {
			t.Fatalf("create on a locked database: %d %s", r.Code, r.Body)
		}
		if took > 5*time.Second {
			t.Errorf("the 503 took %v, want about the 300 ms RequestTimeout", took)
		}
		if err := lock.Rollback(); err != nil {
			t.Fatal(err)
		}
		c.obj(201, "POST", ihr, create)
		if got := c.list("GET", ihr+"?external-id=T-1"); len(got) != 1 {
			t.Fatalf("after the lock: %d records for T-1, want 1", len(got))
		}
	}
	timeout := apitest.WithConfig(func(c *apiserver.Config) { c.RequestTimeout = 300 * time.Millisecond })
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ihr-api.db")
		c := newClient(t, apitest.Start(t, apitest.WithConfig(func(c *apiserver.Config) { c.DB = "sqlite:" + path }), timeout))
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		lock, err := db.BeginTx(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		// A write takes SQLite's one write lock and holds it to the end.
		if _, err := lock.Exec(`DELETE FROM integration_history_records WHERE id < 0`); err != nil {
			t.Fatal(err)
		}
		check(t, c, lock)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testservers.StartPostgres(t).NewDatabase(t)
		c := newClient(t, apitest.Start(t, apitest.WithPostgres(dsn), timeout))
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		lock, err := db.BeginTx(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.Exec(`LOCK TABLE integration_history_records IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		check(t, c, lock)
	})
}
