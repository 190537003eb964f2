// Package unwrap is the stage between a source's store and the CSV parser:
// it turns a stored drop file into the plain CSV stream inside it, and
// checks that the file arrived whole.
//
// Layers are recognised by their content, never only by the file's name:
//
//   - OpenPGP (RFC 4880/9580), armored or binary, encrypted and/or signed:
//     decrypted with the source's private keys; with Config.Verify, a file
//     whose signature does not verify against those public keys, or that
//     is not signed at all, fails at its end.
//   - gzip (magic 1f 8b), possibly multi-member.
//   - zip (magic "PK\x03\x04"): not a stream; Open reports Content.Archive
//     and the caller spools it with OpenArchive to read its entries.
//
// Everything stays one stream in constant memory. Because a signature or
// an integrity check (MDC, AEAD) is only known to be good at the end of the
// message, every failure of a layer is returned by Read, at the latest at
// io.EOF; the caller must read a file to its end once (the importer's first
// pass does) before acting on any row of it.
//
// Completeness: a Manifest (the content of a NAME.done control file:
// "rows=N sha256=HEX") and a Trailer layout (a last row such as
// "TRAILER,1234") give what the file should hold; Content checks the
// SHA-256 itself at EOF, and CheckRows compares the data rows the caller
// counted.
//
// Every error this package returns for a file's content wraps ErrFile, so
// a caller tells a bad file (to be rejected with a report) from a store
// that failed to deliver it. Messages never contain key material or
// passphrases.
package unwrap

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// Errors, all wrapping ErrFile; test with errors.Is.
var (
	// ErrFile: the file's content is at fault (not the store).
	ErrFile = errors.New("unwrap: bad file")

	ErrNoKey      = fileErr("file is OpenPGP-encrypted but the source has no decrypt key")
	ErrDecrypt    = fileErr("OpenPGP message cannot be decrypted")
	ErrCorrupt    = fileErr("OpenPGP message is corrupt or was tampered with")
	ErrSignature  = fileErr("OpenPGP signature does not verify")
	ErrUnsigned   = fileErr("file is not signed by a key of the source's verify key file")
	ErrGzip       = fileErr("gzip stream is corrupt")
	ErrBomb       = fileErr("refused as a decompression bomb")
	ErrArchive    = fileErr("zip archive cannot be read")
	ErrIncomplete = fileErr("file is incomplete")
)

type fileError struct{ msg string }

func fileErr(msg string) error            { return &fileError{msg} }
func (e *fileError) Error() string        { return e.msg }
func (e *fileError) Is(target error) bool { return target == ErrFile }

// IsFileError reports whether err is about the file's content.
func IsFileError(err error) bool { return errors.Is(err, ErrFile) }

// Defaults of Limits' zero values.
const (
	DefaultMaxRatio   = 200
	DefaultMaxSize    = 16 << 30 // 16 GiB
	DefaultMaxEntries = 1000
	// ratioFloor: below this many decompressed bytes the ratio is not
	// checked, so a tiny, very regular file is not refused.
	ratioFloor = 1 << 20
)

// Limits bound decompression (gzip streams and zip entries alike).
type Limits struct {
	// MaxRatio bounds decompressed/compressed bytes (200).
	MaxRatio float64
	// MaxSize bounds the decompressed bytes of one stream or entry (16 GiB).
	MaxSize int64
	// MaxEntries bounds the entries of one zip archive (1000).
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// Config says how one source's files are unwrapped. The zero value
// unwraps gzip and zip and refuses encrypted files.
type Config struct {
	// Decrypt holds the private keys (already unlocked, see
	// LoadPrivateKeys) that may decrypt the source's files.
	Decrypt openpgp.EntityList
	// Verify, when set, requires every file to be an OpenPGP message
	// signed by one of these public keys.
	Verify openpgp.EntityList
	Limits Limits
	// Trailer, when set, requires the file's last line to be a trailer row
	// of this layout; it is not passed on to the parser.
	Trailer *Trailer
	// Manifest, when set, is what the file's control file announced.
	Manifest *Manifest
}

// Content is the plain content of a file: read it as the CSV. It is not
// safe for concurrent use.
type Content struct {
	r       io.Reader
	closers []io.Closer
	// Layers names what was removed, outermost first: "pgp", "gzip".
	Layers []string
	// Archive: the content is a zip archive (see OpenArchive), not CSV.
	Archive bool

	// raw, plain: SHA-256 of the stored bytes and of the CSV, computed
	// only when a manifest gives a SHA-256 to check.
	raw, plain hash.Hash
	trailer    *trailerReader
	manifest   *Manifest
	eof        bool
	err        error
	signer     string
}

// Open peels the layers off r. Errors of the outermost layers (a key that
// does not fit, a corrupt header) come at once; the rest from Read.
func Open(r io.Reader, cfg Config) (*Content, error) {
	c := &Content{manifest: cfg.Manifest}
	if m := cfg.Manifest; m != nil && m.SHA256 != "" {
		c.raw, c.plain = sha256.New(), sha256.New()
		r = io.TeeReader(r, c.raw)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var cur io.Reader = br
	head, _ := br.Peek(64)
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN PGP")):
		pr, err := openPGP(br, true, cfg)
		if err != nil {
			return nil, err
		}
		cur = pr
		c.Layers = append(c.Layers, "pgp")
	case looksPGP(head):
		pr, err := openPGP(br, false, cfg)
		if err != nil {
			return nil, err
		}
		cur = pr
		c.Layers = append(c.Layers, "pgp")
	case len(cfg.Verify) > 0:
		return nil, fmt.Errorf("%w: it is not an OpenPGP message", ErrUnsigned)
	}
	// Past decryption: compression, recognised by magic bytes. The
	// decompressor reads a bufio.Reader (a ByteReader, so it adds no
	// buffer of its own); the bytes it pulled in are counted below it.
	cr := &countReader{r: cur}
	inner := bufio.NewReaderSize(cr, 64<<10)
	cur = inner
	head, _ = inner.Peek(4)
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		zr, err := gzip.NewReader(inner)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrGzip, err)
		}
		c.closers = append(c.closers, zr)
		cur = &limitReader{r: gzipErrs{zr}, in: &cr.n, lim: cfg.Limits.withDefaults(), what: "gzip stream"}
		c.Layers = append(c.Layers, "gzip")
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		c.Archive = true
	}
	if len(c.Layers) > 0 && !c.Archive {
		ra := newReadAhead(cur)
		c.closers = append(c.closers, ra)
		cur = ra
	}
	if c.plain != nil {
		cur = io.TeeReader(cur, c.plain)
	}
	if cfg.Trailer != nil && !c.Archive {
		c.trailer = &trailerReader{r: cur, layout: cfg.Trailer}
		cur = c.trailer
	}
	c.r = cur
	return c, nil
}

// Read reads the plain content; the checks that need the whole file
// (signature, integrity, trailer, manifest SHA-256) fail at its end.
func (c *Content) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.eof {
		return 0, io.EOF
	}
	n, err := c.r.Read(p)
	if err == io.EOF && !c.eof {
		c.eof = true
		if cerr := c.atEOF(); cerr != nil {
			c.err = cerr
			return n, cerr
		}
	} else if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (c *Content) atEOF() error {
	m := c.manifest
	if m == nil || m.SHA256 == "" {
		return nil
	}
	raw, plain := hex.EncodeToString(c.raw.Sum(nil)), hex.EncodeToString(c.plain.Sum(nil))
	if m.SHA256 != raw && m.SHA256 != plain {
		return fmt.Errorf("%w: %s expects SHA-256 %s, found %s", ErrIncomplete, m.From, m.SHA256, plain)
	}
	return nil
}

// Manifest is what the file's control file announced (Config.Manifest),
// nil when none was given.
func (c *Content) Manifest() *Manifest { return c.manifest }

// CheckRows compares the number of data rows the caller parsed (trailer
// excluded; for an archive, those of all its CSV entries) with what the
// manifest and the trailer expect. Call it after Read returned io.EOF.
func (c *Content) CheckRows(rows int64) error {
	if m := c.manifest; m != nil && m.Rows >= 0 && m.Rows != rows {
		where := ""
		if c.Archive {
			where = " in the archive's CSV entries"
		}
		return fmt.Errorf("%w: %s expects %d data rows%s, found %d", ErrIncomplete, m.From, m.Rows, where, rows)
	}
	if t := c.trailer; t != nil && t.found && t.rows >= 0 && t.rows != rows {
		return fmt.Errorf("%w: trailer row %q expects %d data rows, found %d", ErrIncomplete, t.line, t.rows, rows)
	}
	return nil
}

// Close releases the layers (not the underlying reader) and waits for the
// goroutine that reads ahead through them; close a network stream under
// them first, so that a read blocked on it returns.
func (c *Content) Close() error {
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i].Close())
	}
	return errors.Join(errs...)
}

// countReader counts the compressed bytes a decompressor consumed.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// limitReader refuses decompressed output beyond the size or ratio limit.
type limitReader struct {
	r    io.Reader
	in   *int64 // compressed bytes consumed so far
	out  int64
	lim  Limits
	what string
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.out += int64(n)
	if l.out > l.lim.MaxSize {
		return n, fmt.Errorf("%w: %s decompresses to more than %d bytes (limit max_size)", ErrBomb, l.what, l.lim.MaxSize)
	}
	if in := *l.in; l.out > ratioFloor && in > 0 && float64(l.out) > l.lim.MaxRatio*float64(in) {
		return n, fmt.Errorf("%w: %s expands more than %g times (%d bytes from %d; limit max_ratio)", ErrBomb, l.what, l.lim.MaxRatio, l.out, in)
	}
	return n, err
}

// gzipErrs marks gzip's own errors as the file's.
type gzipErrs struct{ r io.Reader }

func (g gzipErrs) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF && !IsFileError(err) {
		if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			return n, fmt.Errorf("%w: %v", ErrGzip, err)
		}
		var ce flate.CorruptInputError
		if errors.As(err, &ce) {
			return n, fmt.Errorf("%w: %v", ErrGzip, err)
		}
	}
	return n, err
}
