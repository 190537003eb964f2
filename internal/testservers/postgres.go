package testservers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running throw-away PostgreSQL cluster on loopback, trust
// authentication, superuser "postgres". Use NewDatabase for a database.
type Postgres struct {
	Host    string // "127.0.0.1"
	Port    int
	LogFile string

	dir     string // owned by the server user; holds data/, the socket and the log
	p       *proc
	shared  bool // cluster outlives the test (see Main)
	version int  // server_version_num, e.g. 150004
}

// PostgreSQL start-up on the 2-core CI machine: initdb ~0.7 s plus server
// start ~0.3 s, so about 1.1 s per StartPostgres; NewDatabase ~60 ms. Packages that start many
// clusters can call Main from TestMain to share one cluster per test binary
// (every NewDatabase is still a fresh database).
var pgShared struct {
	mu      sync.Mutex
	enabled bool      // set by Main for the life of m.Run
	pg      *Postgres // started on first use
}

// Main runs the tests of a package like m.Run and exits with its code.
// Called from TestMain, it makes StartPostgres share one cluster for the
// whole test binary instead of one per call, and stops that cluster (and
// removes its files) after the tests. This is the package's one piece of
// process-wide state: a server whose lifetime is the test binary's.
//
//	func TestMain(m *testing.M) { testservers.Main(m) }
func Main(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	defer sharePostgres()()
	return m.Run()
}

// sharePostgres makes StartPostgres share one cluster until the returned
// function stops that cluster and ends the sharing.
func sharePostgres() (stop func()) {
	pgShared.mu.Lock()
	pgShared.enabled = true
	pgShared.mu.Unlock()
	return func() {
		pgShared.mu.Lock()
		defer pgShared.mu.Unlock()
		pgShared.enabled = false
		if pgShared.pg != nil {
			pgShared.pg.stop()
			pgShared.pg = nil
		}
	}
}

// pgBinDir finds the directory with initdb and postgres: the newest
// /usr/lib/postgresql/N/bin (Debian keeps them off PATH), else PATH.
func pgBinDir() string {
	if names, err := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); err == nil && len(names) > 0 {
		byVersion := map[string]string{}
		var versions []string
		for _, n := range names {
			v := filepath.Base(filepath.Dir(filepath.Dir(n)))
			byVersion[v] = filepath.Dir(n)
			versions = append(versions, v)
		}
		return byVersion[sortedVersions(versions)[0]]
	}
	if p := findBinary("initdb"); p != "" {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p)
		}
	}
	return ""
}

// StartPostgres starts a PostgreSQL cluster (initdb in a temp dir, fsync
// off) on a free loopback port, or returns the shared one when the package
// uses Main. As root the server runs as the "postgres" user, because initdb
// refuses root.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bindir := pgBinDir()
	if bindir == "" {
		Missing(t, "PostgreSQL server not found (initdb/postgres); install with: apt-get install postgresql")
	}
	pgShared.mu.Lock()
	defer pgShared.mu.Unlock()
	if pgShared.enabled {
		if pgShared.pg == nil || pgShared.pg.p.exited() {
			pg, err := startCluster(bindir)
			if err != nil {
				t.Fatalf("testservers: %v", err)
			}
			pg.shared = true
			pgShared.pg = pg
		}
		return pgShared.pg
	}
	pg, err := startCluster(bindir)
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	t.Cleanup(pg.stop)
	return pg
}

// startCluster runs initdb and starts the server. Errors carry the logs.
func startCluster(bindir string) (*Postgres, error) {
	var cred *syscall.Credential
	uid, gid := os.Geteuid(), os.Getegid()
	if isRoot() {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("postgres runs as user \"postgres\" when the tests run as root, but: %v (apt-get install postgresql creates it)", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false, Groups: []uint32{}}
	}
	// Not t.TempDir: its parents are 0700 root, which the postgres user
	// cannot enter.
	dir, err := os.MkdirTemp("", "ihr-pg-*")
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	pg := &Postgres{Host: "127.0.0.1", dir: dir, LogFile: filepath.Join(dir, "postgres.log")}
	env := []string{"PATH=" + bindir + ":/usr/bin:/bin", "LC_ALL=C", "HOME=" + dir, "TZ=UTC"}

	initLog := filepath.Join(dir, "initdb.log")
	lf, err := os.Create(initLog)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bindir, "initdb"), "-D", filepath.Join(dir, "data"),
		"-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.Dir = env, lf, lf, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	lf.Close()
	if err != nil {
		log := tailFile(initLog, 8<<10)
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n--- initdb log ---\n%s", err, log)
	}

	srv := &server{name: "postgres", bin: filepath.Join(bindir, "postgres"), logFile: pg.LogFile,
		env: env, cred: cred, stopSig: syscall.SIGINT, // SIGINT: fast shutdown
		args: func(port int) ([]string, error) {
			return []string{
				"-D", filepath.Join(dir, "data"), "-p", strconv.Itoa(port), "-k", dir,
				"-c", "listen_addresses=127.0.0.1",
				// Durability is worthless for a throw-away cluster; speed is not.
				"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
				"-c", "max_connections=150",
			}, nil
		},
		ready: func(port int) func(ctx context.Context) error {
			pg.Port = port
			return func(ctx context.Context) error {
				c, err := pgx.Connect(ctx, pg.DSN("postgres"))
				if err != nil {
					return err
				}
				defer c.Close(context.Background())
				return c.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&pg.version)
			}
		},
	}
	if pg.p, _, err = srv.start(0); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return pg, nil
}

// stop stops the server and removes its files.
func (p *Postgres) stop() {
	p.p.stop()
	_ = os.RemoveAll(p.dir)
}

// DSN returns the connection string for database db on this cluster.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), db)
}

// NewDatabase creates a fresh, empty database and returns its DSN
// (postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable). On a shared
// cluster the database is dropped when the test ends.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "ihr_" + randomHex(6)
	stmt := "CREATE DATABASE " + name
	if p.version >= 150000 {
		// Copying template files is twice as fast as WAL-logging them
		// (60 vs 135 ms) for the tiny template of a fresh cluster.
		stmt += " STRATEGY FILE_COPY"
	}
	if err := p.exec(context.Background(), stmt); err != nil {
		t.Fatalf("testservers: create database: %v\n--- postgres log ---\n%s", err, p.p.log())
	}
	if p.shared {
		t.Cleanup(func() {
			// FORCE ends connections a test leaked; the name is ours.
			_ = p.exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		})
	}
	return p.DSN(name)
}

// exec runs one statement in the maintenance database.
func (p *Postgres) exec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}
