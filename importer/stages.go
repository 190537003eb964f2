package importer

import "time"

// Stage is one step of a file's way through a pass, as Config.StageTimer
// reports it. The steps of one file follow each other on the pass's
// goroutine, except within dispatch, where parse+map, plan, post and
// commit overlap for a file of more than one window.
type Stage string

const (
	// StageDiscover: listing the inbox and deciding what is ready (once
	// per pass, not per file).
	StageDiscover Stage = "discover"
	// StageReconcile: finishing moves a crash interrupted (once per pass).
	StageReconcile Stage = "reconcile"
	// StageClaim: claiming the file in the ledger.
	StageClaim Stage = "claim"
	// StageScan: the first read (hash and row count), the duplicate
	// check, and storing the run's start in the ledger.
	StageScan Stage = "scan"
	// StageDispatch: the whole of dispatch, which is parse+map, plan,
	// commit and the API calls (the rest of its time).
	StageDispatch Stage = "dispatch"
	// StageParse: parsing and mapping the rows for dispatch.
	StageParse Stage = "parse+map"
	// StagePlan: the ledger lookups of a window and its dispatch mark.
	StagePlan Stage = "plan"
	// StageCommit: committing rows' outcomes to the ledger.
	StageCommit Stage = "commit"
	// StageReport: writing the report (spooling it from the file and the
	// ledger, choosing its name, uploading it).
	StageReport Stage = "report"
	// StageArchive: recording the file's end and moving it to archive/ or
	// failed/.
	StageArchive Stage = "archive"
	// StageRelease: giving the file's claim back.
	StageRelease Stage = "release"
)

// clock starts timing a stage: the zero time, and no clock read, when no
// one listens.
func (im *Importer) clock() time.Time {
	if im.cfg.StageTimer == nil {
		return time.Time{}
	}
	return time.Now()
}

// lap reports the time since start (from clock) as spent in stage s.
func (im *Importer) lap(s Stage, start time.Time) {
	if im.cfg.StageTimer != nil {
		im.cfg.StageTimer(s, time.Since(start))
	}
}
