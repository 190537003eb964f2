package importer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// Errors RunSource and Reprocess wrap so the CLI can pick its exit code.
var (
	// ErrSourceUnavailable: the source's store failed (listing, reading,
	// writing the report or moving). Exit code 3.
	ErrSourceUnavailable = errors.New("importer: source unavailable")
	// ErrAPIUnavailable: the API could not be reached, refused our
	// credentials, or kept failing; the file was left to resume. Exit code 3.
	ErrAPIUnavailable = errors.New("importer: API unavailable")
	// ErrNotFound: Reprocess found no such file in inbox, archive or failed.
	ErrNotFound = errors.New("importer: file not found")
)

// Config tunes the pipeline; zero values take the defaults shown.
type Config struct {
	// Owner identifies this worker in ledger claims (default
	// host:pid:random).
	Owner string
	// Concurrency bounds API calls in flight per file (api.concurrency;
	// apiclient.DefaultConcurrency).
	Concurrency int
	// Lease is how long a claim lives without a heartbeat (2m).
	Lease time.Duration
	// Window is the number of rows per dispatch window: one ledger lookup
	// and one dispatch-mark write per window (256).
	Window int
	// BatchSize and FlushInterval bound how many outcomes wait before one
	// ledger commit (256 rows, 200ms).
	BatchSize     int
	FlushInterval time.Duration
	// CallTimeout bounds one row's API work, including lookups and
	// retries (2m).
	CallTimeout time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// StageTimer, when set, is told how long each stage of a pass took
	// (see Stage), from the pass's goroutines; it must be safe for that
	// and fast. Benchmarks use it to show where a file's time goes; nil
	// costs nothing.
	StageTimer func(Stage, time.Duration)
}

func (c *Config) defaults() {
	if c.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Owner = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.Concurrency <= 0 {
		c.Concurrency = apiclient.DefaultConcurrency
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Minute
	}
	if c.Window <= 0 {
		c.Window = 256
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 2 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Folders are a source's folders, relative to its store root.
type Folders struct {
	Inbox, Archive, Failed, Reports string
}

func (f Folders) withDefaults() Folders {
	if f.Inbox == "" {
		f.Inbox = "inbox"
	}
	if f.Archive == "" {
		f.Archive = "archive"
	}
	if f.Failed == "" {
		f.Failed = "failed"
	}
	if f.Reports == "" {
		f.Reports = "reports"
	}
	return f
}

// Source is one configured drop location.
type Source struct {
	Name    string
	Store   filestore.Store
	Folders Folders
	// Include is a path.Match glob on base names ("*.csv" when empty).
	Include string
	// Encoding is parse's encoding name: auto, utf-8 or shift_jis.
	Encoding    string
	Mapping     mapping.Config
	Integration string
	// StableFor: a file without a marker is taken only once its size and
	// mtime stayed the same for this long (0: at once).
	StableFor time.Duration
	// ResolvePrevious: before a success row is posted, resolve the
	// document's earlier unresolved records.
	ResolvePrevious bool
	// AllowDuplicateContent processes a file even if the same content was
	// already seen under another name.
	AllowDuplicateContent bool
	// SplitRows (split_rows): a file with more data rows than this is
	// split into ranges of SplitRows rows that several workers sharing
	// the ledger process in parallel (0: never split). Not with
	// ResolvePrevious, whose per-document order ranges would break, nor
	// for a file with a repeated external-id, whose first row must win.
	SplitRows int64

	// Unwrap says how files are decrypted, decompressed and checked on
	// their way to the parser (see package unwrap); its Manifest is left
	// nil here: it is read per file from NAME.done.
	Unwrap unwrap.Config
	// RequireManifest: a file is taken only once its control file
	// NAME.done exists, and that file must give rows= or sha256=.
	RequireManifest bool
	// EncryptReportsTo: reports are encrypted to these public keys and
	// written with ".pgp" appended to their name.
	EncryptReportsTo openpgp.EntityList
	// KeepFormulas writes report cells verbatim even when a spreadsheet
	// would run them as formulas (report.escape_formulas: false); by
	// default such cells get a leading ' (see package exporter).
	KeepFormulas bool

	// listed: the base names of the control files (markers) the pass's
	// listing of the inbox saw, set by RunSource for its files; nil when
	// no listing was made (Reprocess), and then they are looked for.
	listed map[string]bool
}

func (s Source) include() string {
	if s.Include == "" {
		return "*.csv"
	}
	return s.Include
}

// Observer receives progress for metrics and progress bars. Calls come
// from several goroutines; implementations must be safe for that and fast.
type Observer interface {
	// FileStarted: a run over the file begins; rows is its data row count.
	FileStarted(source, name string, rows int64)
	// RowDone: one row got its result in this run (rows a resumed run finds
	// already done are not reported again, but count in Progress).
	RowDone(source, name string, result state.Result)
	// Progress: done of total rows have their result.
	Progress(source, name string, done, total int64)
	// FileDone: the file's run ended (also when interrupted).
	FileDone(source, name string, res FileResult)
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) FileStarted(string, string, int64)     {}
func (NopObserver) RowDone(string, string, state.Result)  {}
func (NopObserver) Progress(string, string, int64, int64) {}
func (NopObserver) FileDone(string, string, FileResult)   {}

// FileResult is what became of one file.
type FileResult struct {
	Source string `json:"source"`
	Name   string `json:"name"`
	// Status: state.Done (archived), state.Failed, state.Skipped, or
	// state.Processing when the run was interrupted (Err says why) and
	// state.Claimed when another worker holds it (or, for a split file,
	// holds or finishes its remaining ranges).
	Status  state.Status `json:"status"`
	Rows    int64        `json:"rows"`
	Counts  state.Counts `json:"counts"`
	Reason  string       `json:"reason,omitempty"` // why the whole file was rejected or skipped
	Report  string       `json:"report,omitempty"`
	MovedTo string       `json:"moved_to,omitempty"`
	Err     error        `json:"-"`
	Error   string       `json:"error,omitempty"` // Err's text, for --json

	// gone: the file left the inbox between listing and claiming (another
	// worker archived it, or someone took it away): nothing to do, and
	// not worth a line in the summary.
	gone bool
	// split: the run was split into ranges and the file's claim is to be
	// given back (see workSplit); not a result yet.
	split bool
}

// Summary sums up a pass.
type Summary struct {
	Files    []FileResult `json:"files"`
	Archived int          `json:"archived"`
	Rejected int          `json:"rejected"` // moved to failed/ (rows or whole file rejected)
	Skipped  int          `json:"skipped"`  // duplicate content
	Pending  int          `json:"pending"`  // interrupted: next pass
	// Elsewhere counts files another live worker holds (state.Claimed):
	// that worker processes and reports them, so they are neither this
	// pass's failure nor its pending work. A worker that died holding one
	// loses it after its lease, and a later pass resumes it.
	Elsewhere int          `json:"elsewhere"`
	Rows      state.Counts `json:"rows"`
}

func (s *Summary) add(r FileResult) {
	if r.Err != nil {
		r.Error = r.Err.Error()
	}
	s.Files = append(s.Files, r)
	switch r.Status {
	case state.Done:
		s.Archived++
	case state.Failed:
		s.Rejected++
	case state.Skipped:
		s.Skipped++
	case state.Claimed:
		s.Elsewhere++
	default:
		s.Pending++
	}
	s.Rows.Plus(r.Counts)
}

// Clean reports whether every file was archived with every row recorded.
func (s Summary) Clean() bool { return s.Rejected == 0 && s.Skipped == 0 && s.Pending == 0 }

// Importer runs the pipeline. It is safe for concurrent use on different
// sources.
type Importer struct {
	cfg    Config
	api    API
	ledger state.Ledger
	log    *zap.Logger
	obs    Observer
}

// New returns an Importer. log and obs may be nil.
func New(cfg Config, api API, ledger state.Ledger, log *zap.Logger, obs Observer) *Importer {
	cfg.defaults()
	if log == nil {
		log = zap.NewNop()
	}
	if obs == nil {
		obs = NopObserver{}
	}
	return &Importer{cfg: cfg, api: api, ledger: ledger, log: log, obs: obs}
}

// RunSource makes one pass over a source: it first finishes moves a crash
// interrupted, then processes every ready file of the inbox in name order.
// A file's own problems end up in its report and in the Summary; the error
// is non-nil only when the pass could not do its job: the store or the API
// unreachable (ErrSourceUnavailable, ErrAPIUnavailable) or ctx cancelled.
func (im *Importer) RunSource(ctx context.Context, src Source) (Summary, error) {
	var sum Summary
	src.Folders = src.Folders.withDefaults()
	log := im.log.With(zap.String("source", src.Name))
	if err := im.ensureFolders(ctx, src); err != nil {
		return sum, err
	}
	t := im.clock()
	if err := im.reconcile(ctx, src); err != nil {
		return sum, err
	}
	im.lap(StageReconcile, t)
	t = im.clock()
	ready, markers, err := im.discover(ctx, src)
	if err != nil {
		return sum, err
	}
	src.listed = markers
	im.lap(StageDiscover, t)
	log.Debug("discovered", zap.Int("ready", len(ready)))
	var errs []error
	for _, fi := range ready {
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		res := im.processFile(ctx, src, fi.Name, path.Join(src.Folders.Inbox, fi.Name))
		if res.gone && res.Err == nil {
			log.Debug("file left the inbox before it was claimed; nothing to do", zap.String("file", SafeName(fi.Name)))
			continue
		}
		sum.add(res)
		switch {
		case ctx.Err() != nil:
			return sum, ctx.Err()
		case errors.Is(res.Err, ErrAPIUnavailable):
			// The next files would fail the same way.
			return sum, res.Err
		case res.Err != nil:
			errs = append(errs, res.Err)
		}
	}
	im.sweepMarkers(ctx, src, sum)
	return sum, errors.Join(errs...)
}

// Reprocess processes one file again, wherever it is: name is the file's
// original name (looked up in the ledger, then in inbox/, failed/ and
// archive/) or a path relative to the store root. Rows already recorded are
// reported already-recorded and not posted; the file ends in archive/ or
// failed/ as usual.
func (im *Importer) Reprocess(ctx context.Context, src Source, name string) (FileResult, error) {
	src.Folders = src.Folders.withDefaults()
	if err := im.ensureFolders(ctx, src); err != nil {
		return FileResult{Source: src.Name, Name: name}, err
	}
	if err := im.reconcile(ctx, src); err != nil {
		return FileResult{Source: src.Name, Name: name}, err
	}
	orig, loc, err := im.locate(ctx, src, name)
	if err != nil {
		return FileResult{Source: src.Name, Name: name, Err: err}, err
	}
	res := im.processFile(ctx, src, orig, loc)
	if res.gone && res.Err == nil {
		res.Err = fmt.Errorf("importer: reprocess %s: moved away meanwhile: %w", loc, ErrNotFound)
	}
	return res, res.Err
}

// locate finds where a file to reprocess is, and its original name.
func (im *Importer) locate(ctx context.Context, src Source, name string) (orig, loc string, err error) {
	clean, err := filestore.CleanName(name)
	if err != nil || clean == "" {
		return "", "", fmt.Errorf("importer: reprocess %q: %w", name, ErrNotFound)
	}
	exists := func(p string) bool {
		_, err := src.Store.Stat(ctx, p)
		return err == nil
	}
	if strings.Contains(clean, "/") {
		// A path: find the ledger entry whose file is there.
		files, err := im.ledger.Files(ctx, src.Name)
		if err != nil {
			return "", "", err
		}
		for _, f := range files {
			if f.Location == clean && exists(clean) {
				return f.Name, clean, nil
			}
		}
		if exists(clean) {
			return path.Base(clean), clean, nil
		}
		return "", "", fmt.Errorf("importer: reprocess %s: %w", clean, ErrNotFound)
	}
	if f, err := im.ledger.File(ctx, state.FileID{Source: src.Name, Name: clean}); err == nil && f.Location != "" && exists(f.Location) {
		return clean, f.Location, nil
	}
	for _, dir := range []string{src.Folders.Inbox, src.Folders.Failed, src.Folders.Archive} {
		if p := path.Join(dir, clean); exists(p) {
			return clean, p, nil
		}
	}
	return "", "", fmt.Errorf("importer: reprocess %s: %w", clean, ErrNotFound)
}

func (im *Importer) ensureFolders(ctx context.Context, src Source) error {
	for _, d := range []string{src.Folders.Inbox, src.Folders.Archive, src.Folders.Failed, src.Folders.Reports} {
		if err := src.Store.MkdirAll(ctx, d); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrSourceUnavailable, src.Name, err)
		}
	}
	return nil
}
