// Package sla decides whether an expected file arrived: a source that
// declares expect: {schedule: "0 2 * * 1-5", within: 2h} must see a file
// in each window that opens when the schedule fires and closes within
// later. A window that closed without a file is a missed delivery.
//
// Arrival is when the worker first saw the file (the ledger's first-seen
// time). A file seen a little before the firing (up to within earlier,
// and never before the previous window closed) counts too: an ERP that
// drops at 01:58 for a 02:00 window has delivered, even if a poll found
// the file at 01:59.
package sla

import (
	"time"

	"github.com/robfig/cron/v3"
)

// Expect is a parsed expect block.
type Expect struct {
	Schedule cron.Schedule
	Within   time.Duration
}

// Window is one expected delivery.
type Window struct {
	Due time.Time // the schedule's firing: the window opens
	// From, To: a file first seen in [From, To) is this window's delivery
	// (serve asks the ledger for one: state.Ops.FirstArrival).
	From, To time.Time
}

// maxLookBack bounds the search for the last firing: a schedule that fired
// over a year ago has no window worth reporting.
const maxLookBack = 400 * 24 * time.Hour

// Last returns the latest window that has closed by now (To <= now).
func (e Expect) Last(now time.Time) (Window, bool) {
	due, ok := e.lastFiring(now.Add(-e.Within))
	if !ok {
		return Window{}, false
	}
	from := due.Add(-e.Within)
	if prev, ok := e.lastFiring(due.Add(-time.Nanosecond)); ok && prev.Add(e.Within).After(from) {
		from = prev.Add(e.Within)
	}
	return Window{Due: due, From: from, To: due.Add(e.Within)}, true
}

// lastFiring finds the latest firing at or before t, widening the look-back
// fourfold at a time so a frequent schedule costs few iterations.
func (e Expect) lastFiring(t time.Time) (time.Time, bool) {
	for back := time.Minute; back <= 4*maxLookBack; back *= 4 {
		var last time.Time
		for x := e.Schedule.Next(t.Add(-back)); !x.IsZero() && !x.After(t); x = e.Schedule.Next(x) {
			last = x
		}
		if !last.IsZero() {
			return last, true
		}
	}
	return time.Time{}, false
}
