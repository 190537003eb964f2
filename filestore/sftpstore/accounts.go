package sftpstore

import (
	"fmt"
	"sync"

	"github.com/ihr-tools/ihr/filestore/internal/connpool"
)

// Accounts lets stores that log in to the same server as the same user
// share one pool of connections, so together they stay within the
// account's connection limit (Coupa's SFTP allows 5 per account) however
// many sources use it. Set Config.Accounts to the same *Accounts for
// every store that should share; the zero value is ready to use.
type Accounts struct {
	mu sync.Mutex
	m  map[string]*account
}

type account struct {
	pool  *connpool.Pool[*conn]
	refs  int
	creds string // what the shared connections log in with
	max   int
	first string // the root of the store that opened the account, for messages
}

func accountKey(cfg Config) string { return cfg.Addr + "\x00" + cfg.User }

// credentials identifies how a store logs in; stores sharing connections
// must agree on it, or one would use the other's login.
func credentials(cfg Config) string {
	return fmt.Sprintf("%q %q %q %v %p", cfg.Password, cfg.KeyFile, cfg.KnownHosts, cfg.InsecureIgnoreHostKey, cfg.DialContext)
}

// join returns the account's shared pool, creating it with newPool for
// the first store.
func (a *Accounts) join(cfg Config, newPool func() *connpool.Pool[*conn]) (*connpool.Pool[*conn], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := accountKey(cfg)
	if acc, ok := a.m[key]; ok {
		if acc.creds != credentials(cfg) {
			return nil, fmt.Errorf("sftp store: %s@%s is already in use by another source with different credentials (root %q); sources sharing an account must log in the same way",
				cfg.User, cfg.Addr, acc.first)
		}
		if acc.max != cfg.MaxConns {
			return nil, fmt.Errorf("sftp store: %s@%s: max connections %d differs from %d set by another source of the same account",
				cfg.User, cfg.Addr, cfg.MaxConns, acc.max)
		}
		acc.refs++
		return acc.pool, nil
	}
	if a.m == nil {
		a.m = map[string]*account{}
	}
	acc := &account{pool: newPool(), refs: 1, creds: credentials(cfg), max: cfg.MaxConns, first: cfg.Root}
	a.m[key] = acc
	return acc.pool, nil
}

// leave drops one store's hold; the last one closes the pool.
func (a *Accounts) leave(cfg Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := accountKey(cfg)
	acc, ok := a.m[key]
	if !ok {
		return nil
	}
	if acc.refs--; acc.refs > 0 {
		return nil
	}
	delete(a.m, key)
	return acc.pool.Close()
}
