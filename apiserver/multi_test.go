package apiserver_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// Two instances on one PostgreSQL database: tokens issued by one work on
// the other, and concurrent writes through both all land exactly once.
func TestPostgresTwoInstances(t *testing.T) {
	dsn := testservers.StartPostgres(t).NewDatabase(t)
	a := newClient(t, apitest.Start(t, apitest.WithPostgres(dsn)))
	// Same OAuth client on the second instance, so the token is meaningful there.
	b := newClient(t, apitest.Start(t, apitest.WithPostgres(dsn), apitest.WithConfig(func(c *apiserver.Config) {
		c.OAuthClients = map[string]string{a.ts.OAuthID: a.ts.OAuthSecret}
	})))
	_, m := a.token("")
	b.auth = bearer(m["access_token"].(string))
	b.must(200, "GET", ihr, "")

	a.must(201, "POST", "/api/integrations", `{"code":"M","name":"M"}`)
	var wg sync.WaitGroup
	var created atomic.Int64
	for i := range 40 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.do("POST", ihr+"/acknowledge", rec("document-id", 1, "integration", map[string]any{"code": "M"}))
			if r.Code == http.StatusCreated {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 40 || a.count() != 40 {
		t.Fatalf("created %d, stored %d, want 40", created.Load(), a.count())
	}
	// Every acknowledgement but the last resolved its predecessors.
	if open := a.ids("resolved=false"); len(open) != 1 {
		t.Fatalf("unresolved after 40 acknowledgements: %v", open)
	}
}

func TestTokenExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newClient(t, apitest.Start(t, apitest.WithConfig(func(cfg *apiserver.Config) { cfg.Now = clock })))
	_, m := c.token("core.integration.read")
	c.auth = bearer(m["access_token"].(string))
	c.must(200, "GET", ihr, "")
	mu.Lock()
	now = now.Add(86398 * time.Second)
	mu.Unlock()
	c.must(200, "GET", ihr, "")
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	c.must(401, "GET", ihr, "")
}
