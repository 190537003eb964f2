// Package importer is the worker's pipeline: for every ready file of a
// source it goes discover → claim → hash → parse → map/validate → post →
// record → report → archive, and it guarantees exactly one record per data
// row across crashes, restarts, re-drops and reprocessing.
//
// # The path of a file
//
//  1. Discover: list inbox/, keep names matching the source's include glob
//     that are stable: a NAME.done / NAME.ok marker exists, or size and
//     mtime did not change across Source.StableFor.
//  2. Claim the file in the ledger (state.Ledger) and keep the claim alive
//     with heartbeats; a file claimed by another worker is left alone.
//  3. First pass: SHA-256 of the content and the number of data rows. A file
//     that cannot be read as CSV at all (empty, binary, no header, bad
//     encoding, a required column missing, no data rows) gets a report
//     with one line saying why and goes to failed/. The same content under
//     another name is recognised by its hash and skipped, with the reason
//     in its report, unless Source.AllowDuplicateContent. A quoted field
//     that is never closed swallowed the rest of the file, so the rows
//     after it cannot be told apart: such a file is rejected whole too, in
//     this one pass, whatever its size, and nothing of it is posted.
//  4. Second pass: parse, map and validate each row; post the valid ones
//     with at most Config.Concurrency calls in flight; record each outcome.
//  5. Third pass: spool the report from the file and the ledger (one line
//     per data row, in input order) to a temporary file, so a resumed run
//     still produces a complete report and a failed upload can be retried.
//     For a file dispatched whole this pass runs beside the second, a
//     window behind it: a window is read from the ledger once its rows'
//     outcomes are committed (reportGate), and the spool is discarded if
//     dispatch stops. A file of at most 1 MiB is fetched from the store once, in the first
//     pass, and the other two read it from memory (onceReads): for many
//     small files the cost is round trips, not bytes. Its control files
//     are read once too, and only those the pass's listing showed.
//  6. Choose the destination: archive/ (every row created or already
//     recorded) or failed/ (anything else), under a name that is free there
//     and whose report name, reports/STEM.response.csv, is free too (else
//     both get the same timestamp suffix; names past 255 bytes are
//     shortened with a hash). Store the report's name, upload it (a resumed
//     or reprocessed run of the same drop rewrites its own report; another
//     drop never does), note the destination, move the file and mark it
//     done. A file replaced in the inbox meanwhile is not moved: it is a
//     new drop.
//
// # Exactly once
//
// Rows are keyed by (source, integration_filename, external-id), or by
// "#row N" when external-id is empty, and carry a fingerprint: a hash of
// the action and every element the row posts. The ledger keeps the last
// outcome of every key with the run that wrote it and its fingerprint, and
// every fingerprint a key was ever recorded with (state.Ledger.Recorded).
// A row is already recorded only when its key was recorded with its
// fingerprint; a row whose content changed is posted, so a file that
// comes back every night under the same name is posted in full. Each run over a file has a number;
// a run interrupted before its end (status processing, same content) is
// resumed under the same number, anything else starts a new one.
//
//   - Dispatch high-water mark. Rows are read in windows of
//     Config.Window rows. Before any row of a window is sent, the window's
//     last row number is stored durably as the file's dispatch mark. So
//     every row that may ever have reached the API is at or below the mark,
//     whatever happened afterwards. A file of one window stores its mark
//     (its last row) with the start of its run, in the same commit.
//   - Outcomes are written in batches (one transaction per batch, group
//     commit). Losing the newest batch in a crash is harmless: on resume, a
//     row at or below the mark without an outcome is first looked up
//     (API FindExisting) and created only if absent; a row above the mark
//     was never sent and is posted directly; a row whose outcome this run
//     already recorded is not touched at all (no API call), which is the
//     checkpoint: a crash at row 48,001 of 100,000 resumes there without
//     asking the API about rows 1–48,000.
//   - A new run (a corrected file dropped under the same name, or
//     Reprocess) finds the rows recorded by earlier runs with the same
//     content in the ledger and reports them already-recorded without
//     posting; only new or changed rows and rows whose earlier attempt
//     failed are posted. If the earlier run was interrupted and the content
//     changed, every unrecorded row is looked up first (state.MarkAll),
//     since the old run may have sent any of them.
//   - Every lookup (after MarkAll, below the mark, or after a lost answer)
//     matches the record's content, not only its key: a record of an
//     earlier drop under the same name with other content never passes for
//     this row.
//   - A key seen twice in one file: the first row wins, later ones are
//     invalid ("duplicate external-id"). The check is against the ledger and
//     the outcomes not yet committed, so it holds across resumes in flat
//     memory.
//   - Moving: before Move, the ledger stores the final status and the planned
//     destination; after it, the new location. A crash in between is
//     reconciled at the start of the next pass: the file is at the planned
//     destination (then the move happened) or still where it was (then it
//     is moved now). Nothing is ever deleted or overwritten.
//
// # Splitting a large file among workers
//
// With Source.SplitRows (split_rows) set, a run over a file of more data
// rows than that is split into ranges of SplitRows consecutive rows
// (state.Ledger.SplitFile), so that several workers sharing a PostgreSQL
// ledger process one file in parallel. The ledger is the only coordinator:
//
//   - The worker holding the file's claim does the first pass as usual,
//     stores the run, splits it, and gives the file's claim back. From then
//     on every worker that lists the file (including that one) takes ranges
//     with ClaimRange, each under its own lease and heartbeat, without the
//     file's claim.
//   - A range is dispatched exactly like a whole file, restricted to its
//     rows (the parser still streams the file from the start and skips the
//     rows before the range): its own dispatch mark, outcomes recorded
//     under the range's claim, checkpoint from the outcomes of the run.
//   - A worker that dies loses its range after the lease; the next worker
//     to claim it resumes from the range's mark (rows at or below it are
//     looked up before being created).
//   - Whoever finds every range done takes the file's claim, writes the one
//     report from the ledger and moves the file. Of several that finish at
//     once, the one that gets the claim does it; the others see the file
//     claimed or finished (FileResult status state.Claimed, counted in
//     Summary.Elsewhere).
//   - Ranges run in any order, so a file whose external-ids repeat (found
//     by the first pass) is not split (its first row must win), nor is one
//     of a ResolvePrevious source (a document's rows must reach the API in
//     file order). A run that was split stays split until it finishes,
//     whatever the configuration says meanwhile. With SQLite (one process)
//     the ranges are simply processed one after another.
//
// # Encrypted, compressed and checked files
//
// Every read of a file goes through package unwrap (openContent): OpenPGP
// decryption and signature check, gzip, the NAME.done manifest and the
// source's trailer row. Their verdicts come at the end of the file, so the
// first pass, which reads the file whole before any row is posted, is
// where a file that does not decrypt, verify or match is rejected as a
// whole. The content hash is that of the decrypted CSV. A zip archive is
// spooled and each CSV entry runs as a file of its own (runArchive), read
// through a store that shows the archive as a folder (entryStore); the
// archive moves once every entry is done.
//
// # Reading the code
//
// The files follow the path above: discover.go (step 1), claim.go (step
// 2, and the start of a run: new or resumed), scan.go (step 3),
// dispatch.go, read.go, plan.go, post.go and collect.go (step 4),
// report.go (step 5), archive.go (step 6 and reconciling interrupted
// moves). split.go and unwrap.go are the side
// paths of the two sections above; validate.go is the dry run.
//
// Step 4, dispatch, runs in stages, each a type or method whose comment
// states the invariants it keeps:
//
//   - read (windowReader): the span's rows in file order, a window at a
//     time; a row that does not parse or map is counted invalid, never sent.
//   - plan (dispatchRun.plan, settledBy): one ledger read per window
//     decides each row: done earlier in this run (the checkpoint), a
//     duplicate key, already recorded, or to be sent, looked up first or
//     not. settledBy is the one table; the report reads it too. Then the
//     dispatch mark is raised over the rows to send (raiseMark).
//   - route (lanes): with resolve_previous a document's rows share a lane,
//     so they reach the API in file order.
//   - post (startPosters, post): Config.Concurrency goroutines; a row
//     either gets an outcome or stops the run, unrecorded and under the
//     mark.
//   - collect (collector): outcomes committed in batches; a committed key
//     leaves the in-flight set (inflight) that plan checks duplicates
//     against. plan snapshots that set before its ledger read, so no lock
//     is held across a database call. In the first run of a file name the
//     ledger has nothing of the file but what the run commits, so the set
//     keeps a hash of each committed key (up to a bound), and plan reads
//     the ledger only for a window with one of them.
//
// SIGTERM (ctx cancelled) stops reading new rows; calls in flight finish
// and are recorded, the claim is released and the file stays where it is,
// to be resumed by the next pass.
package importer
