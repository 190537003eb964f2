// Package sftpstore is the file store for a folder on an SFTP server.
//
// Security: the server's host key is checked against a known_hosts file
// (Config.KnownHosts, default ~/.ssh/known_hosts) and an unknown or changed
// key refuses the connection. Only Config.InsecureIgnoreHostKey turns the
// check off, and every connection made that way logs a warning.
//
// Write uploads under a hidden temporary name in the target folder and
// renames it over the final name with posix-rename@openssh.com, which
// replaces atomically. Move uses the plain SFTP rename, which OpenSSH
// refuses when the target exists (its sftp-server links and unlinks, so
// the check and the rename are one step); as a second line of defence for
// servers that would overwrite, Move also checks the target first.
//
// Connections come from a small pool (filestore/internal/connpool) that
// re-dials after a connection drops; every network read and write has the
// Config.Timeout as an inactivity limit.
package sftpstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/internal/connpool"
)

// Config says where and how to connect.
type Config struct {
	Addr string // host:port
	User string
	// Password authenticates by password, or, with KeyFile, decrypts a
	// passphrase-protected key.
	Password string
	// KeyFile is a private key (OpenSSH or PEM format) for public-key
	// authentication. With both KeyFile and Password set, the key is
	// tried first.
	KeyFile string
	// KnownHosts is the known_hosts file the server's key must be in.
	// Empty means ~/.ssh/known_hosts.
	KnownHosts string
	// InsecureIgnoreHostKey accepts any host key, so anyone on the network
	// path can impersonate the server and read the files and the password.
	// For tests only.
	InsecureIgnoreHostKey bool
	// Root is the store's folder on the server: absolute, or relative to
	// the login folder. Empty means the login folder.
	Root string
	// Timeout bounds connecting and every network read or write (default
	// 30 s).
	Timeout time.Duration
	// MaxConns is the number of connections open at once (default 4).
	// With Accounts, it is the whole account's budget.
	MaxConns int
	// Accounts, when set, makes stores of the same Addr and User share
	// their connections and MaxConns (see Accounts).
	Accounts *Accounts
	// DialContext opens the TCP connection (default net.Dialer). Tests use
	// it to inject faults; a proxy could use it too.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Store is a folder on an SFTP server. It is safe for concurrent use.
type Store struct {
	cfg  Config
	ssh  *ssh.ClientConfig
	pool *connpool.Pool[*conn]
	log  *zap.Logger

	// closeOnce: a store sharing an account's pool holds one share of
	// it, so a second Close must not give that share back again.
	closeOnce sync.Once
	closeErr  error
}

var _ filestore.Store = (*Store)(nil)

type conn struct {
	nc   *connpool.Conn
	ssh  *ssh.Client
	sftp *sftp.Client
}

// New checks cfg and reads the key and known_hosts files; it does not
// connect (the first operation does), so a server that is down at start-up
// is an error of that operation, which the retry decorator can ride out.
// log may be nil.
func New(cfg Config, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = filestore.DefaultTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4
	}
	if cfg.Addr == "" || cfg.User == "" {
		return nil, errors.New("sftp store: address and user are required")
	}
	cc := &ssh.ClientConfig{User: cfg.User, Timeout: cfg.Timeout}
	if cfg.KeyFile != "" {
		signer, err := loadKey(cfg.KeyFile, cfg.Password)
		if err != nil {
			return nil, err
		}
		cc.Auth = append(cc.Auth, ssh.PublicKeys(signer))
	}
	if cfg.Password != "" {
		cc.Auth = append(cc.Auth, ssh.Password(cfg.Password))
	}
	if len(cc.Auth) == 0 {
		return nil, errors.New("sftp store: need a key file or a password")
	}
	if cfg.InsecureIgnoreHostKey {
		cc.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			log.Warn("sftp: host key NOT verified (InsecureIgnoreHostKey is set)",
				zap.String("host", hostname), zap.String("key", ssh.FingerprintSHA256(key)))
			return nil
		}
	} else {
		file := cfg.KnownHosts
		if file == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("sftp store: no known_hosts file given and no home folder: %w", err)
			}
			file = filepath.Join(home, ".ssh", "known_hosts")
		}
		cb, err := knownhosts.New(file)
		if err != nil {
			return nil, fmt.Errorf("sftp store: known_hosts: %w", err)
		}
		cc.HostKeyCallback = cb
		// Ask the server for the key types known_hosts has, or it may show
		// one we have no record of and fail the check needlessly.
		cc.HostKeyAlgorithms = knownAlgorithms(cb, cfg.Addr)
	}
	s := &Store{cfg: cfg, ssh: cc, log: log}
	newPool := func() *connpool.Pool[*conn] {
		return connpool.New(connpool.Options[*conn]{
			Max:        cfg.MaxConns,
			Dial:       s.dial,
			Close:      func(c *conn) { c.sftp.Close(); c.ssh.Close() },
			Abort:      func(c *conn) { c.nc.Abort() },
			Probe:      func(ctx context.Context, c *conn) error { _, err := c.sftp.Getwd(); return err },
			ProbeAfter: 10 * time.Second,
			Broken:     broken,
		})
	}
	if cfg.Accounts == nil {
		s.pool = newPool()
		return s, nil
	}
	// Connections are independent of Root (paths are resolved per
	// store), so one pool serves every store of the account.
	pool, err := cfg.Accounts.join(cfg, newPool)
	if err != nil {
		return nil, err
	}
	s.pool = pool
	return s, nil
}

func loadKey(file, passphrase string) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sftp store: key file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) && passphrase != "" {
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(passphrase))
	}
	if err != nil {
		// The parser's message names no key material; keep only it.
		return nil, fmt.Errorf("sftp store: key file %s: %w", file, err)
	}
	return signer, nil
}

// knownAlgorithms returns the host key algorithms that known_hosts holds
// keys of for addr, or nil (library default) if it holds none.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	// The callback reports the keys it knows for a host when shown a key
	// it does not: show it a throwaway one.
	probe, err := ssh.ParsePublicKey(probeKey)
	if err != nil {
		return nil
	}
	// No DNS lookup here (New does no network I/O): an IP literal is used
	// as the remote address, a host name is matched by name alone.
	tcp := &net.TCPAddr{}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			p, _ := strconv.Atoi(port)
			tcp = &net.TCPAddr{IP: ip, Port: p}
		}
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, tcp, probe); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	slices.Sort(algos)
	return slices.Compact(algos)
}

// probeKey is a fixed ed25519 public key nobody holds the private half of
// (all-zero point encoding is rejected, so this is a random one).
var probeKey = []byte{
	0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9',
	0, 0, 0, 32,
	0x3b, 0x6a, 0x27, 0xbc, 0xce, 0xb6, 0xa4, 0x2d, 0x62, 0xa3, 0xa8, 0xd0, 0x2a, 0x6f, 0x0d, 0x73,
	0x65, 0x32, 0x15, 0x77, 0x1d, 0xe2, 0x43, 0xa6, 0x3a, 0xc0, 0x48, 0xa1, 0x8b, 0x59, 0xda, 0x29,
}

func (s *Store) dial(ctx context.Context) (*conn, error) {
	nc, err := connpool.Dial(ctx, s.cfg.DialContext, s.cfg.Addr, s.cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w", s.cfg.Addr, err)
	}
	stop := context.AfterFunc(ctx, nc.Abort)
	defer stop()
	sc, chans, reqs, err := ssh.NewClientConn(nc, s.cfg.Addr, s.ssh)
	if err != nil {
		nc.Close()
		err = fmt.Errorf("sftp %s: %w", s.cfg.Addr, err)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		if errors.As(err, &ke) || errors.As(err, &re) || strings.Contains(err.Error(), "unable to authenticate") {
			return nil, filestore.Permanent(err)
		}
		return nil, err
	}
	client := ssh.NewClient(sc, chans, reqs)
	sc2, err := sftp.NewClient(client,
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("sftp %s: start subsystem: %w", s.cfg.Addr, err)
	}
	return &conn{nc: nc, ssh: client, sftp: sc2}, nil
}

// broken tells a lost connection from a refused request: the server's
// status replies (no such file, permission denied, failure) leave the
// connection usable.
func broken(err error) bool {
	var se *sftp.StatusError
	switch {
	case errors.As(err, &se),
		errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission),
		errors.Is(err, filestore.ErrExist), errors.Is(err, filestore.ErrBadName):
		return false
	}
	return true
}

func (s *Store) abs(clean string) string {
	root := s.cfg.Root
	if root == "" {
		root = "."
	}
	return path.Join(root, clean)
}

func (s *Store) pathErr(ctx context.Context, op, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	// Drop the os.PathError layer pkg/sftp sometimes adds: it repeats the
	// full server path, and our PathError names the file already.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &filestore.PathError{Op: "sftp " + op, Name: name, Err: err}
}

func (s *Store) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	d, err := filestore.CleanName(dir)
	if err != nil {
		return nil, err
	}
	var out []filestore.FileInfo
	err = s.pool.Do(ctx, func(c *conn) error {
		entries, err := c.sftp.ReadDirContext(ctx, s.abs(d))
		if err != nil {
			// Listing a file rather than a folder: report it as no folder.
			if st, serr := c.sftp.Stat(s.abs(d)); serr == nil && !st.IsDir() {
				return fmt.Errorf("not a folder: %w", filestore.ErrNotExist)
			}
			return err
		}
		out = make([]filestore.FileInfo, 0, len(entries))
		for _, e := range entries {
			name := e.Name()
			// Symbolic links are left out like other non-regular entries.
			if !e.Mode().IsRegular() || !filestore.Listed(s.log, "sftp", dir, name) {
				continue
			}
			out = append(out, filestore.FileInfo{Name: name, Size: e.Size(), ModTime: e.ModTime()})
		}
		return nil
	})
	if err != nil {
		return nil, s.pathErr(ctx, "list", dir, err)
	}
	filestore.SortByName(out)
	return out, nil
}

func (s *Store) Stat(ctx context.Context, name string) (filestore.FileInfo, error) {
	n, err := filestore.CleanName(name)
	if err != nil {
		return filestore.FileInfo{}, err
	}
	var fi filestore.FileInfo
	err = s.pool.Do(ctx, func(c *conn) error {
		st, err := c.sftp.Stat(s.abs(n))
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("not a regular file: %w", filestore.ErrNotExist)
		}
		fi = filestore.FileInfo{Name: path.Base(n), Size: st.Size(), ModTime: st.ModTime()}
		return nil
	})
	if err != nil {
		return filestore.FileInfo{}, s.pathErr(ctx, "stat", name, err)
	}
	return fi, nil
}

func (s *Store) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	n, err := filestore.CleanName(name)
	if err != nil {
		return nil, err
	}
	l, err := s.pool.Get(ctx)
	if err != nil {
		return nil, s.pathErr(ctx, "open", name, err)
	}
	f, err := l.C.sftp.Open(s.abs(n))
	buf := readChunk
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && st.Size()-offset < readChunk {
			// A small file is read with a buffer its size: one 1 MiB
			// read would ask for 32 packets, all but one answered EOF,
			// and cost ten times the round trip of one packet.
			buf = max(4096, int(st.Size()-offset)+1)
		}
		if err == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("not a regular file: %w", filestore.ErrNotExist)
		}
		if err == nil && offset != 0 {
			_, err = f.Seek(offset, io.SeekStart)
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		l.Release(err)
		return nil, s.pathErr(ctx, "open", name, err)
	}
	return &reader{s: s, ctx: ctx, name: name, l: l, f: f, br: bufio.NewReaderSize(f, buf)}, nil
}

// reader streams a remote file and gives its connection back on Close.
type reader struct {
	s    *Store
	ctx  context.Context
	name string
	l    *connpool.Lease[*conn]
	f    *sftp.File
	br   *bufio.Reader
	err  error
}

// readChunk is the size of one Read on the sftp file (through a buffer of
// that size): pkg/sftp splits a large read into concurrent requests, which
// keeps the link busy instead of waiting a round trip per 32 KiB packet.
const readChunk = 1 << 20

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.br.Read(p)
	if err != nil && err != io.EOF {
		r.err = r.s.pathErr(r.ctx, "read", r.name, err)
		return n, r.err
	}
	return n, err
}

func (r *reader) Close() error {
	if r.l == nil {
		return nil
	}
	err := r.f.Close()
	r.l.Release(errors.Join(r.err, err))
	r.l = nil
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return err
}

func (s *Store) Write(ctx context.Context, name string, body io.Reader) error {
	n, err := filestore.CleanFileName("sftp write", name)
	if err != nil {
		return err
	}
	final := s.abs(n)
	tmp := path.Join(path.Dir(final), filestore.TempName())
	l, err := s.pool.Get(ctx)
	if err != nil {
		return s.pathErr(ctx, "write", name, err)
	}
	c := l.C
	err = func() error {
		f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		_, err = f.ReadFromWithConcurrency(body, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if _, ok := c.sftp.HasExtension("posix-rename@openssh.com"); ok {
			return c.sftp.PosixRename(tmp, final)
		}
		// Without the extension, plain rename refuses to replace: remove the
		// old file first. Readers may see no file for a moment, never a
		// partial one.
		if err := c.sftp.Rename(tmp, final); err == nil {
			return nil
		}
		if err := c.sftp.Remove(final); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return c.sftp.Rename(tmp, final)
	}()
	l.Release(err)
	if err != nil {
		s.removeTemp(tmp)
		return s.pathErr(ctx, "write", name, err)
	}
	return nil
}

// removeTemp deletes an abandoned upload, on a fresh connection if the
// failure took the old one down. It is best effort: List hides temp names,
// and a leftover never shadows a real file.
func (s *Store) removeTemp(tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	err := s.pool.Do(ctx, func(c *conn) error { return c.sftp.Remove(tmp) })
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("sftp: could not remove an abandoned upload", zap.String("path", tmp), zap.Error(err))
	}
}

func (s *Store) Move(ctx context.Context, src, dst string) error {
	from, to, err := filestore.CleanMoveNames("sftp move", src, dst)
	if err != nil {
		return err
	}
	err = s.pool.Do(ctx, func(c *conn) error {
		if _, err := c.sftp.Lstat(s.abs(from)); err != nil {
			return err
		}
		if _, err := c.sftp.Lstat(s.abs(to)); err == nil {
			return fmt.Errorf("destination %s: %w", dst, filestore.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		err := c.sftp.Rename(s.abs(from), s.abs(to))
		if err == nil {
			return nil
		}
		// The status reply does not say why; look.
		if _, serr := c.sftp.Lstat(s.abs(to)); serr == nil {
			return fmt.Errorf("destination %s: %w", dst, filestore.ErrExist)
		}
		return err
	})
	if err != nil {
		return s.pathErr(ctx, "move", src, err)
	}
	return nil
}

func (s *Store) MkdirAll(ctx context.Context, dir string) error {
	d, err := filestore.CleanName(dir)
	if err != nil {
		return err
	}
	if d == "" {
		return nil
	}
	err = s.pool.Do(ctx, func(c *conn) error { return c.sftp.MkdirAll(s.abs(d)) })
	if err != nil {
		return s.pathErr(ctx, "mkdir", dir, err)
	}
	return nil
}

// Close closes idle connections; streams still open keep theirs until
// they are closed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.cfg.Accounts != nil {
			s.closeErr = s.cfg.Accounts.leave(s.cfg)
			return
		}
		s.closeErr = s.pool.Close()
	})
	return s.closeErr
}
