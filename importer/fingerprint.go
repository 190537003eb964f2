package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/ihr-tools/ihr/mapping"
	"github.com/ihr-tools/ihr/state"
)

// fingerprint is a row's content as the ledger compares it: a hash of the
// action and of every element the row would post (the record's JSON, in
// its fixed field order). Two rows with the same key are the same row only
// if their fingerprints agree, so a file dropped again under the same name
// with other content is posted, not taken for the earlier drop.
func fingerprint(m mapping.Mapped) string {
	b, err := json.Marshal(m.Record)
	if err != nil {
		// A mapped record always marshals; should it not, no two rows
		// would share this fingerprint, so the row is posted.
		b = []byte(err.Error() + strconv.Itoa(m.Row))
	}
	h := sha256.New()
	h.Write([]byte(m.Action))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// sameContent reports whether a stored outcome was for a row with this item's
// content: the same fingerprint, or, for an outcome stored before the
// ledger kept fingerprints, the same elements it did keep.
func sameContent(o state.Outcome, it item) bool {
	if o.Fingerprint != "" {
		return o.Fingerprint == it.content()
	}
	return o.LegacyMatch(it.m.Record.ExternalID, it.m.Record.DocumentType, documentID(it.m), string(it.m.Action))
}

func documentID(m mapping.Mapped) string {
	if m.Record.DocumentID == nil {
		return ""
	}
	return strconv.FormatInt(*m.Record.DocumentID, 10)
}
