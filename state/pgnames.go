package state

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// PostgreSQL text must be valid UTF-8; file names need not be (a Unix file
// system or an SFTP server takes any bytes). pgNames lets such a file
// through the PostgreSQL ledger instead of failing every pass on it: names
// and paths that are not valid UTF-8 are stored escaped (storedName) and
// given back as they were, so each keeps its own entry; free text that may
// quote a name (a skip reason, a row's message) is stored with invalid
// bytes replaced. Valid names are stored as they are, so the encoding
// needs no migration.
type pgNames struct{ *Postgres }

// storedNamePrefix starts an escaped name. No stored name or path starts
// with "/" otherwise (names are base names, paths are relative), so an
// escaped name never equals a name stored as it is.
const storedNamePrefix = "/~"

// storedName is s as stored: itself when valid UTF-8, else the prefix and
// s with '%' and every byte from 0x80 written %XX.
func storedName(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(storedNamePrefix)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c >= 0x80 {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// loadedName reverses storedName.
func loadedName(s string) string {
	if !strings.HasPrefix(s, storedNamePrefix) {
		return s
	}
	s = s[len(storedNamePrefix):]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func validText(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func storedFile(f File) File {
	f.Name, f.Location, f.Destination = storedName(f.Name), storedName(f.Location), storedName(f.Destination)
	f.ArchivedTo, f.ReportPath, f.SkipReason = storedName(f.ArchivedTo), storedName(f.ReportPath), validText(f.SkipReason)
	return f
}

func loadedFile(f File) File {
	f.Name, f.Location, f.Destination = loadedName(f.Name), loadedName(f.Location), loadedName(f.Destination)
	f.ArchivedTo, f.ReportPath = loadedName(f.ArchivedTo), loadedName(f.ReportPath)
	return f
}

func loadedFiles(fs []File, err error) ([]File, error) {
	for i := range fs {
		fs[i] = loadedFile(fs[i])
	}
	return fs, err
}

func loadedRanges(rs []Range, err error) ([]Range, error) {
	for i := range rs {
		rs[i].Name = loadedName(rs[i].Name)
	}
	return rs, err
}

func storedOutcomes(outs []Outcome) []Outcome {
	out := make([]Outcome, len(outs))
	for i, o := range outs {
		o.Message = validText(o.Message)
		out[i] = o
	}
	return out
}

func storedID(id FileID) FileID { id.Name = storedName(id.Name); return id }

func storedClaim(c Claim) Claim { c.File = storedID(c.File); return c }

func (p pgNames) Claim(ctx context.Context, id FileID, owner string, lease time.Duration) (File, error) {
	f, err := p.Postgres.Claim(ctx, storedID(id), owner, lease)
	return loadedFile(f), err
}

func (p pgNames) Heartbeat(ctx context.Context, c Claim, lease time.Duration) error {
	return p.Postgres.Heartbeat(ctx, storedClaim(c), lease)
}

func (p pgNames) Release(ctx context.Context, c Claim, done bool) error {
	return p.Postgres.Release(ctx, storedClaim(c), done)
}

func (p pgNames) File(ctx context.Context, id FileID) (File, error) {
	f, err := p.Postgres.File(ctx, storedID(id))
	return loadedFile(f), err
}

func (p pgNames) Files(ctx context.Context, source string) ([]File, error) {
	return loadedFiles(p.Postgres.Files(ctx, source))
}

func (p pgNames) FilesByHash(ctx context.Context, source, sha string) ([]File, error) {
	return loadedFiles(p.Postgres.FilesByHash(ctx, source, sha))
}

func (p pgNames) PutFile(ctx context.Context, owner string, f File) error {
	return p.Postgres.PutFile(ctx, owner, storedFile(f))
}

func (p pgNames) PutFileAndRelease(ctx context.Context, owner string, f File) error {
	return p.Postgres.PutFileAndRelease(ctx, owner, storedFile(f))
}

func (p pgNames) SetMark(ctx context.Context, c Claim, mark int64) error {
	return p.Postgres.SetMark(ctx, storedClaim(c), mark)
}

func (p pgNames) RecordOutcomes(ctx context.Context, c Claim, outs []Outcome) error {
	return p.Postgres.RecordOutcomes(ctx, storedClaim(c), storedOutcomes(outs))
}

func (p pgNames) Outcomes(ctx context.Context, id FileID, keys []string) (map[string]Outcome, error) {
	m, err := p.Postgres.Outcomes(ctx, storedID(id), keys)
	for k, o := range m {
		o.Filename = id.Name
		m[k] = o
	}
	return m, err
}

func (p pgNames) Recorded(ctx context.Context, id FileID, keys, fingerprints []string) (map[string]int64, error) {
	return p.Postgres.Recorded(ctx, storedID(id), keys, fingerprints)
}

func (p pgNames) RowCounts(ctx context.Context, id FileID, run int64) (Counts, error) {
	return p.Postgres.RowCounts(ctx, storedID(id), run)
}

func (p pgNames) SplitFile(ctx context.Context, id FileID, owner string, size int64) ([]Range, error) {
	return loadedRanges(p.Postgres.SplitFile(ctx, storedID(id), owner, size))
}

func (p pgNames) Ranges(ctx context.Context, id FileID) ([]Range, error) {
	return loadedRanges(p.Postgres.Ranges(ctx, storedID(id)))
}

func (p pgNames) ClaimRange(ctx context.Context, id FileID, run int64, owner string, lease time.Duration) (Range, error) {
	g, err := p.Postgres.ClaimRange(ctx, storedID(id), run, owner, lease)
	g.Name = loadedName(g.Name)
	return g, err
}

var _ Ledger = pgNames{}

// pgNamesOps is the operator side of a pgNames ledger: event IDs (which
// hold file names), event files and a file's outcomes are looked up by
// their stored names, and free text is stored valid, as the ledger's own
// writes are. Without it a rejected file with such a name could neither
// raise its event nor be notified.
type pgNamesOps struct{ *opsSQL }

func (o pgNamesOps) PutHealth(ctx context.Context, h Health) error {
	h.Error = validText(h.Error)
	return o.opsSQL.PutHealth(ctx, h)
}

func (o pgNamesOps) OpenEvent(ctx context.Context, e Event) (bool, error) {
	e.ID, e.File, e.Detail = storedName(e.ID), storedName(e.File), validText(e.Detail)
	return o.opsSQL.OpenEvent(ctx, e)
}

func (o pgNamesOps) CloseEvent(ctx context.Context, id string, at time.Time) (bool, error) {
	return o.opsSQL.CloseEvent(ctx, storedName(id), at)
}

func (o pgNamesOps) Events(ctx context.Context, source string, openOnly bool, limit int) ([]Event, error) {
	es, err := o.opsSQL.Events(ctx, source, openOnly, limit)
	for i := range es {
		es[i].ID, es[i].File = loadedName(es[i].ID), loadedName(es[i].File)
	}
	return es, err
}

func (o pgNamesOps) ClaimNotification(ctx context.Context, id, channel string, stale time.Duration) (bool, error) {
	return o.opsSQL.ClaimNotification(ctx, storedName(id), channel, stale)
}

func (o pgNamesOps) NotificationSent(ctx context.Context, id, channel string) error {
	return o.opsSQL.NotificationSent(ctx, storedName(id), channel)
}

func (o pgNamesOps) SentNotifications(ctx context.Context, channel string, ids []string) ([]string, error) {
	stored := make([]string, len(ids))
	for i, id := range ids {
		stored[i] = storedName(id)
	}
	sent, err := o.opsSQL.SentNotifications(ctx, channel, stored)
	for i := range sent {
		sent[i] = loadedName(sent[i])
	}
	return sent, err
}

func (o pgNamesOps) RecentFiles(ctx context.Context, source string, limit int) ([]File, error) {
	return loadedFiles(o.opsSQL.RecentFiles(ctx, source, limit))
}

func (o pgNamesOps) FileOutcomes(ctx context.Context, source, filename string, limit int) ([]Outcome, error) {
	outs, err := o.opsSQL.FileOutcomes(ctx, source, storedName(filename), limit)
	for i := range outs {
		outs[i].Filename = filename
	}
	return outs, err
}

var _ Ops = pgNamesOps{}
