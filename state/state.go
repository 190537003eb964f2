// Package state is the worker's durable ledger: which files it has seen and
// processed, and the outcome of every row it has sent to the API. It is what
// lets the worker promise exactly one record per row across crashes,
// restarts, re-drops and reprocessing (see package importer for the
// protocol that uses it).
//
// Ledger is the contract, and a FileID names the file every call is about.
// One implementation (ledger.go) serves both databases: OpenSQLite on an
// embedded SQLite database (WAL, synchronous=FULL), OpenPostgres on a
// PostgreSQL database several replicas share. The SQL is written once;
// dialect.go holds what differs between the two, and both pass the same
// conformance suite (state/statetest).
//
// Claims. A worker must hold a file's claim (Claim, kept alive by Heartbeat,
// given back by Release) to change the file or record its rows. A Claim
// value names what a worker holds (file or range, and owner), and every
// fenced write takes it: the write fails with ErrLeaseLost when the claim
// has expired or belongs to someone else. With SQLite only one process may
// open the ledger for writing (an OS file lock enforces it), so claims left
// by a crashed process are cleared when the next one opens the database;
// with PostgreSQL they simply expire after their lease.
//
// Ranges. A large file's run may be split into ranges of rows (SplitFile,
// under the file's claim); each range is then claimed on its own
// (ClaimRange) and heartbeated, marked, recorded under and released with
// the same methods as a file, through the range's Claim, so several
// workers share one file without holding its claim. Outcomes are stored
// under the file either way.
//
// Durability. Every method returns only once its transaction is durable.
// Row outcomes are written in batches (RecordOutcomes) so one commit covers
// many rows; the importer's dispatch high-water mark (SetMark) is what
// keeps correctness independent of how recent the last batch is.
package state

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors callers test with errors.Is.
var (
	// ErrNotFound: no such file in the ledger.
	ErrNotFound = errors.New("state: not found")
	// ErrClaimed: another owner holds a live claim on the file.
	ErrClaimed = errors.New("state: file is claimed by another worker")
	// ErrLeaseLost: the caller's claim expired or was never held.
	ErrLeaseLost = errors.New("state: claim lease lost")
	// ErrLocked: another process has the SQLite ledger open for writing.
	ErrLocked = errors.New("state: ledger is in use by another process")
)

// Status is a file's place in its life cycle.
type Status string

const (
	Seen       Status = "seen"       // listed, not yet taken
	Claimed    Status = "claimed"    // a worker holds it, no run started yet
	Processing Status = "processing" // a run started and has not finished: resumable
	Done       Status = "done"       // every row created or already recorded; file archived
	Failed     Status = "failed"     // rows or the whole file rejected; file in failed/
	Skipped    Status = "skipped"    // not processed (SkipReason says why); file in failed/
)

// Result is a row's outcome, as the response report spells it. These are
// the only definitions of the words; the report writer (exporter), the
// importer and the metrics use them from here.
type Result string

const (
	Created         Result = "created"
	AlreadyRecorded Result = "already-recorded"
	Invalid         Result = "invalid"
	FailedRow       Result = "failed"
	// Valid is a dry run's (validate) word for a row that would be posted.
	// It is never stored and never in a response report.
	Valid Result = "valid"
)

// Results are the outcomes a row can have, in report order.
var Results = []Result{Created, AlreadyRecorded, Invalid, FailedRow}

// Recorded reports whether the result means a record exists on the server.
func (r Result) Recorded() bool { return r == Created || r == AlreadyRecorded }

// Counts are a file's rows by result.
type Counts struct {
	Created         int64 `json:"created"`
	AlreadyRecorded int64 `json:"already_recorded"`
	Invalid         int64 `json:"invalid"`
	Failed          int64 `json:"failed"`
}

// Add counts one row with result r.
func (c *Counts) Add(r Result) {
	switch r {
	case Created:
		c.Created++
	case AlreadyRecorded:
		c.AlreadyRecorded++
	case Invalid:
		c.Invalid++
	case FailedRow:
		c.Failed++
	}
}

// Plus adds o's counts to c.
func (c *Counts) Plus(o Counts) {
	c.Created += o.Created
	c.AlreadyRecorded += o.AlreadyRecorded
	c.Invalid += o.Invalid
	c.Failed += o.Failed
}

// Total is the number of rows counted.
func (c Counts) Total() int64 { return c.Created + c.AlreadyRecorded + c.Invalid + c.Failed }

// File is what the ledger knows about one file of one source. Name is the
// file's original base name in the inbox; it stays its identity (and the
// records' integration_filename) wherever the file is moved.
type File struct {
	Source string
	Name   string

	Size    int64
	ModTime time.Time
	SHA256  string // hex of the content hashed when the current run started

	Status     Status
	SkipReason string

	// Run numbers the runs over this file; row outcomes carry the run that
	// wrote them, so a resumed run tells its own outcomes from older ones.
	Run int64
	// Rows is the number of data rows of the current content.
	Rows   int64
	Counts Counts
	// DispatchMark: rows numbered at or below it may have been sent to the
	// API during the current run (see package importer). MarkAll means
	// every row may have been.
	DispatchMark int64

	Location    string // where the file is now, relative to the store root
	Destination string // planned Move target, set before moving (crash reconciliation)
	ArchivedTo  string // where the last run left it (archive/… or failed/…)
	ReportPath  string

	Owner      string
	LeaseUntil time.Time

	FirstSeen  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	UpdatedAt  time.Time
}

// MarkAll as a DispatchMark says every row may already have been sent.
const MarkAll int64 = 1<<62 - 1

// Outcome is the last known outcome of one row, keyed by (Source,
// Filename, Key).
type Outcome struct {
	Source   string
	Filename string // integration_filename: the file's original name
	Key      string // external-id, or RowKey(row) when it is empty

	Row          int64 // 1-based data row in the run that wrote it
	Run          int64
	ExternalID   string
	DocumentType string
	DocumentID   string
	Action       string
	// Fingerprint is the hash of what the row posted (action and every
	// element, see package importer): a row is already recorded only when
	// its key and its fingerprint both match. Empty for outcomes written
	// before fingerprints existed (ledger schema 2); see LegacyMatch.
	Fingerprint string
	Result      Result
	RecordID    int64
	HTTPStatus  int
	Message     string
	UpdatedAt   time.Time
}

// LegacyMatch reports whether an outcome stored without a fingerprint
// (before the ledger kept them) was for a row with this external-id,
// document type, document id and action: the elements such outcomes did
// keep. It lets a ledger upgraded in place still recognise its old rows.
func (o Outcome) LegacyMatch(externalID, documentType, documentID, action string) bool {
	return o.Fingerprint == "" && o.ExternalID == externalID && o.DocumentType == documentType &&
		o.DocumentID == documentID && o.Action == action
}

// RowKey is the key of a row without external-id.
func RowKey(row int64) string { return rowKeyPrefix + strconv.FormatInt(row, 10) }

const rowKeyPrefix = "#row "

// Key returns the ledger key for a row: its external-id, else RowKey(row).
func Key(externalID string, row int64) string {
	if strings.TrimSpace(externalID) == "" {
		return RowKey(row)
	}
	return externalID
}

// Range is one slice of a split file: a run over a large file can be
// divided into ranges of consecutive data rows that several workers
// process in parallel, each under its own claim (lease and heartbeat,
// like a file's) and with its own dispatch mark. The file's claim is then
// needed only to split it and to finish it (report and move), which
// whoever completes the last range does. Ranges belong to one run of the
// file; splitting a new run replaces them.
type Range struct {
	Source string
	Name   string
	Run    int64
	Index  int   // 0-based, in row order
	First  int64 // first data row of the range, 1-based
	Last   int64 // last data row, inclusive
	Done   bool  // every row of the range has its outcome in the run
	// DispatchMark: rows of the range numbered at or below it may have
	// been sent (as File.DispatchMark, per range).
	DispatchMark int64

	Owner      string
	LeaseUntil time.Time
	UpdatedAt  time.Time
}

// FileID names one file of one source: the key of everything the ledger
// keeps about it. Name is the file's original base name in the inbox.
type FileID struct {
	Source string
	Name   string
}

// String is "source/name", as errors spell a file.
func (id FileID) String() string { return id.Source + "/" + id.Name }

// ID is the file's identity.
func (f File) ID() FileID { return FileID{Source: f.Source, Name: f.Name} }

// RangeID names one range of a file's split.
type RangeID struct {
	File  FileID
	Index int
}

// ID is the range's identity.
func (g Range) ID() RangeID {
	return RangeID{File: FileID{Source: g.Source, Name: g.Name}, Index: g.Index}
}

// Claim names a claim a worker writes under: its owner, and either a whole
// file (the claim Ledger.Claim takes) or one range of the file's split (the
// claim Ledger.ClaimRange takes). Make one with FileID.HeldBy or
// RangeID.HeldBy. The zero Range means the whole file, so a claim built
// without naming a range can never fence against a range by accident.
type Claim struct {
	File  FileID
	Owner string
	// split is the range's index plus one; 0 for the file's own claim.
	split int
}

// HeldBy is the file's own claim as owner holds it.
func (id FileID) HeldBy(owner string) Claim { return Claim{File: id, Owner: owner} }

// HeldBy is owner's claim on the range.
func (r RangeID) HeldBy(owner string) Claim {
	return Claim{File: r.File, Owner: owner, split: r.Index + 1}
}

// Range reports which range c is on; ok is false for a whole file's claim.
func (c Claim) Range() (index int, ok bool) { return c.split - 1, c.split > 0 }

// String is how errors spell the claim: "range 3 of source/name" or
// "source/name".
func (c Claim) String() string {
	if i, ok := c.Range(); ok {
		return "range " + strconv.Itoa(i) + " of " + c.File.String()
	}
	return c.File.String()
}

// Ledger is the durable state store. Implementations are safe for
// concurrent use.
//
// Fencing. A worker takes a claim (Claim for a file, ClaimRange for a
// range of a split file) for a lease, keeps it with Heartbeat and gives
// it back with Release. Every write that changes a claimed file or range
// or records its rows (Heartbeat, SetMark, RecordOutcomes, Release with
// done, PutFile, SplitFile) is fenced: it is made only if the writer
// still holds that claim (same owner, lease not passed) when it commits,
// and otherwise changes nothing and fails with ErrLeaseLost. So a worker
// that stalled past its lease cannot overwrite the one that took over.
type Ledger interface {
	// Claim takes the file for owner for lease, creating its entry (status
	// Seen→Claimed) if new. It succeeds when the file is unclaimed, its
	// lease has expired, or owner already holds it; otherwise it fails
	// with ErrClaimed. It returns the file as stored after the claim;
	// id.HeldBy(owner) then names the claim for the fenced writes.
	Claim(ctx context.Context, id FileID, owner string, lease time.Duration) (File, error)
	// ClaimRange takes for owner one range of the file's split of run
	// that is not done and is unclaimed, expired, or already owner's
	// (owner's own first, then the lowest index). Two owners never get
	// the same range. ErrNotFound when there is none to take. The
	// range's ID().HeldBy(owner) names the claim.
	ClaimRange(ctx context.Context, id FileID, run int64, owner string, lease time.Duration) (Range, error)
	// Heartbeat extends claim c to lease from now; ErrLeaseLost if c is
	// no longer held.
	Heartbeat(ctx context.Context, c Claim, lease time.Duration) error
	// Release gives claim c back. Without done it is not fenced:
	// releasing a claim not held is a no-op. done is for a range's claim
	// only: it also marks the range done (every row has its outcome), and
	// fails with ErrLeaseLost unless c still holds the range.
	Release(ctx context.Context, c Claim, done bool) error
	// SetMark durably records the dispatch high-water mark of what c
	// holds (File.DispatchMark for a file, Range.DispatchMark for a
	// range); fenced by c.
	SetMark(ctx context.Context, c Claim, mark int64) error
	// RecordOutcomes upserts a batch of row outcomes of c.File in one
	// transaction, fenced by c (the file's claim, or the claim of the
	// range the rows belong to); outcomes are stored under the file
	// either way. A recorded outcome replaced by one with another
	// fingerprint is kept for Recorded.
	RecordOutcomes(ctx context.Context, c Claim, outs []Outcome) error

	// PutFile stores every mutable field of f (all but Source, Name,
	// Owner, LeaseUntil and FirstSeen), fenced by owner's claim on the
	// file.
	PutFile(ctx context.Context, owner string, f File) error
	// PutFileAndRelease is PutFile, then Release of owner's claim on the
	// file, in one transaction: for a file's last write of a run.
	PutFileAndRelease(ctx context.Context, owner string, f File) error
	// SplitFile divides the file's current run (File.Run, File.Rows) into
	// ranges of at most size rows, each starting with the file's dispatch
	// mark, and returns them. If that run is already split it returns the
	// existing ranges unchanged (size is then ignored); ranges of an
	// earlier run are replaced. Fenced by owner's claim on the file.
	SplitFile(ctx context.Context, id FileID, owner string, size int64) ([]Range, error)

	// File returns one file or ErrNotFound.
	File(ctx context.Context, id FileID) (File, error)
	// Files lists a source's files ("" = all sources) by source and name.
	Files(ctx context.Context, source string) ([]File, error)
	// FilesByHash lists a source's files whose SHA256 is sha.
	FilesByHash(ctx context.Context, source, sha string) ([]File, error)
	// Ranges lists the file's ranges by index (those of the last split,
	// whatever run it was; nil if never split).
	Ranges(ctx context.Context, id FileID) ([]Range, error)

	// Outcomes returns the stored outcomes among keys, by key: the last
	// outcome of each.
	Outcomes(ctx context.Context, id FileID, keys []string) (map[string]Outcome, error)
	// Recorded looks up rows by content: for each i it reports whether a
	// record was ever made for keys[i] with fingerprints[i], whichever
	// outcome came last, and returns those found as key → record id. (A
	// row whose content came back after another drop changed it is the
	// same row, already recorded.)
	Recorded(ctx context.Context, id FileID, keys, fingerprints []string) (map[string]int64, error)
	// RowCounts counts a file's stored outcomes by result, only those
	// written by run (run 0: all runs).
	RowCounts(ctx context.Context, id FileID, run int64) (Counts, error)

	Close() error
}
