package mapping

import (
	"fmt"
	"hash/maphash"
	"math"

	"github.com/ihr-tools/ihr/record"
)

// DefaultDupBytes is the memory budget of a DupTracker made with 0.
const DefaultDupBytes = 32 << 20

// DupTracker finds external-ids repeated within one file, so that the
// second occurrence is reported invalid instead of being posted (the API
// would otherwise make it a second record, or the ledger would mistake it
// for an already-recorded row).
//
// Cost, decided on purpose: it keeps a 64-bit hash and the first row
// number of each distinct external-id in an open-addressing table, 12 bytes
// a slot, at most 3/4 full: 16–32 bytes per id, about 1.5 million ids in
// the default 32 MiB (growth briefly holds the old table too: 1.5×). Once
// the budget is reached it stops adding ids (Full reports it) but still
// finds repeats of the ids it holds; a caller that must check every row of
// a bigger file uses its ledger for the rest (the ledger's unique key on
// (integration-filename, external-id) catches them on disk, in flat
// memory). Two different ids collide on their 64-bit hash with probability
// about n²/2⁶⁵ (3·10⁻⁶ for 10 million ids), and the seed is random per
// tracker so a collision cannot repeat run after run.
//
// A DupTracker serves one file and is not safe for concurrent use.
type DupTracker struct {
	seed     maphash.Seed
	hashes   []uint64
	rows     []uint32 // 0 marks an empty slot (rows are 1-based)
	n        int
	maxSlots int
	full     bool
}

// NewDupTracker returns a tracker that uses at most maxBytes for its table
// (DefaultDupBytes when maxBytes <= 0).
func NewDupTracker(maxBytes int) *DupTracker {
	if maxBytes <= 0 {
		maxBytes = DefaultDupBytes
	}
	maxSlots := 1024
	for maxSlots*2*12 <= maxBytes {
		maxSlots *= 2
	}
	return &DupTracker{seed: maphash.MakeSeed(), maxSlots: maxSlots}
}

// Full reports whether the budget was reached: ids first seen after that
// are not tracked.
func (t *DupTracker) Full() bool { return t.full }

// Len is the number of distinct external-ids tracked.
func (t *DupTracker) Len() int { return t.n }

// Check records the row's external-id and returns an error naming the
// first row that carried the same id, or nil. Rows without an external-id
// are keyed by their row number and never repeat.
func (t *DupTracker) Check(m Mapped) *record.FieldError {
	id := m.Record.ExternalID
	if id == "" {
		return nil
	}
	row := uint32(min(m.Row, math.MaxUint32))
	if row == 0 {
		row = 1
	}
	h := maphash.String(t.seed, id)
	if first, ok := t.lookup(h); ok {
		return &record.FieldError{Element: "external-id",
			Message: fmt.Sprintf("duplicate external-id %s (first at row %d)", clip(id), first)}
	}
	if (t.n+1)*4 > len(t.rows)*3 && !t.grow() {
		t.full = true
		return nil
	}
	t.insert(h, row)
	t.n++
	return nil
}

func (t *DupTracker) lookup(h uint64) (uint32, bool) {
	if len(t.rows) == 0 {
		return 0, false
	}
	mask := uint64(len(t.rows) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch {
		case t.rows[i] == 0:
			return 0, false
		case t.hashes[i] == h:
			return t.rows[i], true
		}
	}
}

func (t *DupTracker) insert(h uint64, row uint32) {
	mask := uint64(len(t.rows) - 1)
	i := h & mask
	for t.rows[i] != 0 {
		i = (i + 1) & mask
	}
	t.hashes[i], t.rows[i] = h, row
}

// grow doubles the table; false when that would pass the budget.
func (t *DupTracker) grow() bool {
	size := 1024
	if len(t.rows) > 0 {
		size = len(t.rows) * 2
	}
	if size > t.maxSlots {
		return false
	}
	oldH, oldR := t.hashes, t.rows
	t.hashes, t.rows = make([]uint64, size), make([]uint32, size)
	for i, r := range oldR {
		if r != 0 {
			t.insert(oldH[i], r)
		}
	}
	return true
}
