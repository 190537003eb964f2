// Package ftpstore is the file store for a folder on an FTP server, plain
// or with explicit TLS (AUTH TLS, "ftps://"), in passive mode.
//
// Security: with TLS, the server certificate is verified against the
// system roots, or against Config.CAFile when given (it then replaces the
// system roots). Only Config.InsecureSkipVerify turns verification off.
// Data connections are encrypted too (PROT P) and can resume the control
// connection's TLS session, which servers such as vsftpd may demand.
//
// An FTP connection carries one command at a time, so the store keeps a
// small pool of them (filestore/internal/connpool), re-dialled when one
// drops. Every network read and write has Config.Timeout as an inactivity
// limit.
//
// Write uploads under a hidden temporary name and renames it over the
// target (RNFR/RNTO, which POSIX servers implement with rename(2), so
// readers see the old or the new file). Move checks that the target does
// not exist before renaming: FTP has no rename that refuses to replace, so
// a file created at the target in the instant between the two commands
// would be replaced. Downloads are checked against the size the server
// reports (SIZE): an FTP data stream that ends early looks like a normal
// end, and only the byte count tells them apart.
//
// Modification times come from the LIST output in List (minute precision
// on most servers) and from MDTM in Stat (second precision).
package ftpstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/internal/connpool"
	"github.com/ihr-tools/ihr/internal/certpool"
)

// Config says where and how to connect.
type Config struct {
	Addr     string // host:port
	User     string
	Password string
	// TLS upgrades the connection with AUTH TLS (explicit FTPS) before
	// logging in, and encrypts data connections.
	TLS bool
	// CAFile is a PEM bundle to verify the server certificate with,
	// instead of the system roots.
	CAFile string
	// InsecureSkipVerify accepts any certificate, so anyone on the network
	// path can read the files and the password. For tests only.
	InsecureSkipVerify bool
	// Root is the store's folder on the server: absolute, or relative to
	// the login folder. Empty means the login folder.
	Root string
	// Timeout bounds connecting and every network read or write (default
	// 30 s).
	Timeout time.Duration
	// MaxConns is the number of connections open at once (default 4).
	MaxConns int
	// DialContext opens TCP connections, control and data (default
	// net.Dialer). Tests use it to inject faults.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Store is a folder on an FTP server. It is safe for concurrent use.
type Store struct {
	cfg  Config
	tls  *tls.Config
	pool *connpool.Pool[*conn]
	log  *zap.Logger
}

var _ filestore.Store = (*Store)(nil)

type conn struct {
	sc   *ftp.ServerConn
	root string // absolute root folder, resolved at login
	ctrl atomic.Pointer[connpool.Conn]
	data atomic.Pointer[connpool.Conn] // the latest data connection
}

func (c *conn) abort() {
	if nc := c.ctrl.Load(); nc != nil {
		nc.Abort()
	}
	if nc := c.data.Load(); nc != nil {
		nc.Abort()
	}
}

// New checks cfg and reads the CA file; it does not connect (the first
// operation does). log may be nil.
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
		return nil, errors.New("ftp store: address and user are required")
	}
	s := &Store{cfg: cfg, log: log}
	if cfg.TLS {
		host, _, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("ftp store: address %q: %w", cfg.Addr, err)
		}
		s.tls = &tls.Config{
			ServerName:         host,
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: cfg.InsecureSkipVerify,
			ClientSessionCache: tls.NewLRUClientSessionCache(cfg.MaxConns * 2),
		}
		if cfg.CAFile != "" {
			pool, err := certpool.Load(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ftp store: CA file: %w", err)
			}
			s.tls.RootCAs = pool
		}
		if cfg.InsecureSkipVerify {
			log.Warn("ftps: server certificate NOT verified (InsecureSkipVerify is set)", zap.String("addr", cfg.Addr))
		}
	} else if cfg.CAFile != "" || cfg.InsecureSkipVerify {
		return nil, errors.New("ftp store: CA file or InsecureSkipVerify given without TLS (use ftps://)")
	}
	s.pool = connpool.New(connpool.Options[*conn]{
		Max:        cfg.MaxConns,
		Dial:       s.dial,
		Close:      func(c *conn) { c.abort(); _ = c.sc.Quit() },
		Abort:      func(c *conn) { c.abort() },
		Probe:      func(ctx context.Context, c *conn) error { return c.sc.NoOp() },
		ProbeAfter: 10 * time.Second,
		Broken:     broken,
	})
	return s, nil
}

func (s *Store) dial(ctx context.Context) (*conn, error) {
	c := &conn{}
	first := true
	dialFunc := func(network, addr string) (net.Conn, error) {
		if first {
			// The control connection: plain; the library upgrades it after
			// AUTH TLS.
			first = false
			nc, err := connpool.Dial(ctx, s.cfg.DialContext, addr, s.cfg.Timeout)
			if err != nil {
				return nil, err
			}
			c.ctrl.Store(nc)
			return nc, nil
		}
		// A data connection. The library does not wrap it in TLS when it
		// is given a dial function, so do it here.
		nc, err := connpool.Dial(context.Background(), s.cfg.DialContext, addr, s.cfg.Timeout)
		if err != nil {
			return nil, err
		}
		c.data.Store(nc)
		if s.tls != nil {
			return &tlsData{Conn: tls.Client(nc, s.tls), raw: nc}, nil
		}
		return nc, nil
	}
	opts := []ftp.DialOption{ftp.DialWithDialFunc(dialFunc)}
	if s.tls != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(s.tls))
	}
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	sc, err := ftp.Dial(s.cfg.Addr, opts...)
	if err != nil {
		return nil, classify(fmt.Errorf("ftp %s: %w", s.cfg.Addr, err))
	}
	c.sc = sc
	if err := sc.Login(s.cfg.User, s.cfg.Password); err != nil {
		c.abort()
		_ = sc.Quit()
		return nil, classify(fmt.Errorf("ftp %s: login as %s: %w", s.cfg.Addr, s.cfg.User, err))
	}
	c.root = s.cfg.Root
	if !path.IsAbs(c.root) {
		// Resolve once: List changes the working folder, every other
		// command uses absolute paths.
		wd, err := sc.CurrentDir()
		if err != nil {
			c.abort()
			_ = sc.Quit()
			return nil, fmt.Errorf("ftp %s: current folder: %w", s.cfg.Addr, err)
		}
		c.root = path.Join(wd, c.root)
	}
	return c, nil
}

// classify marks the connection errors that retrying cannot fix: a
// certificate that does not verify (the TLS handshake runs during login)
// and a refused login.
func classify(err error) error {
	var ve *tls.CertificateVerificationError
	var te *textproto.Error
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ve), errors.As(err, &ue), errors.As(err, &he),
		errors.As(err, &te) && te.Code == ftp.StatusNotLoggedIn:
		return filestore.Permanent(err)
	}
	return err
}

// tlsData is a TLS data connection that closes politely. With TLS 1.3 the
// server sends session tickets after the handshake, which an upload never
// reads; closing a socket with unread data makes the kernel reset it, and
// the server then fails the upload ("426 Failure reading network stream").
// So Close sends close_notify, reads until the server's side closes (for a
// short while at most), and only then closes.
type tlsData struct {
	*tls.Conn
	raw *connpool.Conn
}

// drainTime bounds the wait for the server's close.
const drainTime = 5 * time.Second

func (d *tlsData) Close() error {
	if err := d.Conn.CloseWrite(); err == nil {
		d.raw.SetIdle(drainTime)
		_, _ = io.CopyN(io.Discard, d.Conn, 1<<20)
	}
	return d.Conn.Close()
}

// broken tells a lost or confused connection from a refused command: a
// server reply (550 no such file) leaves the connection usable.
func broken(err error) bool {
	var te *textproto.Error
	switch {
	case errors.As(err, &te),
		errors.Is(err, filestore.ErrNotExist), errors.Is(err, filestore.ErrExist):
		return false
	}
	return true
}

// notFound wraps an FTP 550 reply ("file unavailable") as ErrNotExist.
func notFound(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code == ftp.StatusFileUnavailable {
		return fmt.Errorf("%w (%w)", filestore.ErrNotExist, err)
	}
	return err
}

func (s *Store) pathErr(ctx context.Context, op, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	return &filestore.PathError{Op: "ftp " + op, Name: name, Err: err}
}

func (c *conn) abs(clean string) string { return path.Join(c.root, clean) }

// isDir reports whether p is a folder, by entering it.
func (c *conn) isDir(p string) (bool, error) {
	err := c.sc.ChangeDir(p)
	if err == nil {
		return true, nil
	}
	var te *textproto.Error
	if errors.As(err, &te) && te.Code == ftp.StatusFileUnavailable {
		return false, nil
	}
	return false, err
}

// fileSize returns the size of a regular file; 550 (missing, or a folder)
// becomes ErrNotExist.
func (c *conn) fileSize(p string) (int64, error) {
	n, err := c.sc.FileSize(p)
	return n, notFound(err)
}

func (s *Store) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	d, err := filestore.CleanName(dir)
	if err != nil {
		return nil, err
	}
	var out []filestore.FileInfo
	err = s.pool.Do(ctx, func(c *conn) error {
		// LIST of a missing folder is an empty listing on some servers
		// (vsftpd): enter it first to tell the two apart.
		if ok, err := c.isDir(c.abs(d)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("no such folder: %w", filestore.ErrNotExist)
		}
		entries, err := c.sc.List("")
		if err != nil {
			return err
		}
		out = make([]filestore.FileInfo, 0, len(entries))
		for _, e := range entries {
			if e.Type != ftp.EntryTypeFile || !filestore.Listed(s.log, "ftp", dir, e.Name) {
				continue
			}
			out = append(out, filestore.FileInfo{Name: e.Name, Size: int64(e.Size), ModTime: e.Time})
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
	if n == "" {
		return filestore.FileInfo{}, s.pathErr(ctx, "stat", name, fmt.Errorf("the root is not a file: %w", filestore.ErrNotExist))
	}
	var fi filestore.FileInfo
	err = s.pool.Do(ctx, func(c *conn) error {
		size, err := c.fileSize(c.abs(n))
		if err != nil {
			return err
		}
		fi = filestore.FileInfo{Name: path.Base(n), Size: size}
		if c.sc.IsGetTimeSupported() {
			t, err := c.sc.GetTime(c.abs(n))
			if err != nil {
				return notFound(err)
			}
			fi.ModTime = t
			return nil
		}
		// No MDTM: take the time from the parent's listing.
		if _, err := c.isDir(path.Dir(c.abs(n))); err != nil {
			return err
		}
		entries, err := c.sc.List("")
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Name == fi.Name {
				fi.ModTime = e.Time
			}
		}
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
	c := l.C
	size, err := c.fileSize(c.abs(n))
	if err == nil && (offset < 0 || offset > size) {
		err = fmt.Errorf("offset %d outside the file's %d bytes", offset, size)
	}
	if err != nil {
		l.Release(err)
		return nil, s.pathErr(ctx, "open", name, err)
	}
	r := &reader{s: s, ctx: ctx, name: name, l: l, left: size - offset}
	if r.left == 0 {
		return r, nil // nothing to transfer; spare the server a RETR
	}
	resp, err := c.sc.RetrFrom(c.abs(n), uint64(offset))
	if err != nil {
		l.Release(err)
		return nil, s.pathErr(ctx, "open", name, notFound(err))
	}
	r.resp = resp
	return r, nil
}

// reader streams a RETR and checks its length against SIZE.
type reader struct {
	s    *Store
	ctx  context.Context
	name string
	l    *connpool.Lease[*conn]
	resp *ftp.Response
	left int64 // bytes still due
	done bool  // the transfer completed and the server confirmed it
	err  error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left == 0 {
		return 0, r.finish()
	}
	if int64(len(p)) > r.left {
		// Never read past the announced size: more bytes would mean the
		// file changed under us, which the next read detects.
		p = p[:r.left+1]
	}
	n, err := r.resp.Read(p)
	r.left -= int64(n)
	switch {
	case r.left < 0:
		r.err = r.s.pathErr(r.ctx, "read", r.name, errors.New("file grew while being read"))
		return n - int(-r.left), r.err
	case err == io.EOF && r.left > 0:
		r.err = r.s.pathErr(r.ctx, "read", r.name,
			fmt.Errorf("data connection closed %d bytes early: %w", r.left, io.ErrUnexpectedEOF))
		return n, r.err
	case err == io.EOF:
		return n, r.finish()
	case err != nil:
		r.err = r.s.pathErr(r.ctx, "read", r.name, err)
		return n, r.err
	}
	return n, nil
}

// finish closes the data connection and reads the server's verdict (226);
// a transfer the server reports as failed is an error even if the byte
// count matched.
func (r *reader) finish() error {
	if r.done {
		return io.EOF
	}
	r.done = true
	if r.resp != nil {
		// Drain the EOF so the server sees a clean close.
		if err := r.resp.Close(); err != nil {
			r.err = r.s.pathErr(r.ctx, "read", r.name, err)
			return r.err
		}
	}
	return io.EOF
}

func (r *reader) Close() error {
	if r.l == nil {
		return nil
	}
	if r.resp != nil && (!r.done || r.err != nil) {
		// Stopped mid-transfer (or failed): the control connection has a
		// reply in flight that nobody will read. Do not reuse it.
		r.l.C.abort()
		_ = r.resp.Close() // fails fast now; closes the data socket
		r.l.Discard()
	} else {
		r.l.Release(nil)
	}
	r.l = nil
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return nil
}

func (s *Store) Write(ctx context.Context, name string, body io.Reader) error {
	n, err := filestore.CleanFileName("ftp write", name)
	if err != nil {
		return err
	}
	l, err := s.pool.Get(ctx)
	if err != nil {
		return s.pathErr(ctx, "write", name, err)
	}
	c := l.C
	final := c.abs(n)
	tmp := path.Join(path.Dir(final), filestore.TempName())
	err = c.sc.Stor(tmp, body)
	if err == nil {
		err = c.sc.Rename(tmp, final)
	}
	l.Release(err)
	if err != nil {
		s.removeTemp(tmp)
		return s.pathErr(ctx, "write", name, err)
	}
	return nil
}

// removeTemp deletes an abandoned upload, on a fresh connection if the
// failure took the old one down. Best effort: List hides temp names.
func (s *Store) removeTemp(tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	err := s.pool.Do(ctx, func(c *conn) error { return notFound(c.sc.Delete(tmp)) })
	if err != nil && !errors.Is(err, filestore.ErrNotExist) {
		s.log.Warn("ftp: could not remove an abandoned upload", zap.String("path", tmp), zap.Error(err))
	}
}

func (s *Store) Move(ctx context.Context, src, dst string) error {
	from, to, err := filestore.CleanMoveNames("ftp move", src, dst)
	if err != nil {
		return err
	}
	err = s.pool.Do(ctx, func(c *conn) error {
		if _, err := c.fileSize(c.abs(from)); err != nil {
			return err
		}
		if _, err := c.fileSize(c.abs(to)); err == nil {
			return fmt.Errorf("destination %s: %w", dst, filestore.ErrExist)
		} else if !errors.Is(err, filestore.ErrNotExist) {
			return err
		}
		if dir, err := c.isDir(c.abs(to)); err != nil {
			return err
		} else if dir {
			return fmt.Errorf("destination %s is a folder: %w", dst, filestore.ErrExist)
		}
		return notFound(c.sc.Rename(c.abs(from), c.abs(to)))
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
	err = s.pool.Do(ctx, func(c *conn) error {
		p := c.root
		for _, part := range strings.Split(d, "/") {
			p = path.Join(p, part)
			if ok, err := c.isDir(p); err != nil {
				return err
			} else if ok {
				continue
			}
			if err := c.sc.MakeDir(p); err != nil {
				// Someone else may have made it meanwhile.
				if ok, _ := c.isDir(p); ok {
					continue
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.pathErr(ctx, "mkdir", dir, err)
	}
	return nil
}

// Close closes idle connections; streams still open keep theirs until
// they are closed.
func (s *Store) Close() error { return s.pool.Close() }
