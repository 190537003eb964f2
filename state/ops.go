package state

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ops is the ledger's operator side, kept apart from Ledger so the row
// protocol's contract stays as it is: each source's health as the last
// pass left it, operational events (missed deliveries, outages) with the
// notifications sent for them, and the read queries of serve's dashboard.
// Because it lives in the ledger, every replica on a shared PostgreSQL
// ledger sees (and shows) the same picture, and an event is notified once
// whichever replica saw it.
//
// Get one with OpsOf.
type Ops interface {
	// PutHealth stores a source's health after a pass.
	PutHealth(ctx context.Context, h Health) error
	// Health lists every source's last stored health, by source.
	Health(ctx context.Context) ([]Health, error)

	// OpenEvent records e unless an event with its ID exists; it reports
	// whether e is new. IDs are chosen so that the same occurrence seen
	// twice (by one replica or two) gets the same ID.
	OpenEvent(ctx context.Context, e Event) (bool, error)
	// CloseEvent marks the open event id ended at at; it reports whether
	// it was open.
	CloseEvent(ctx context.Context, id string, at time.Time) (bool, error)
	// Events lists events newest first ("" = every source), at most limit.
	Events(ctx context.Context, source string, openOnly bool, limit int) ([]Event, error)

	// ClaimNotification takes the right to send event id to channel. It
	// is false when it was already sent, or when another sender claimed
	// it less than stale ago (a sender that died gives it up after that).
	ClaimNotification(ctx context.Context, id, channel string, stale time.Duration) (bool, error)
	// NotificationSent records the delivery, so it is never sent again.
	NotificationSent(ctx context.Context, id, channel string) error
	// SentNotifications is the subset of ids already sent to channel, so
	// a sweep can queue again what a stop, a full queue or a give-up
	// left unsent.
	SentNotifications(ctx context.Context, channel string, ids []string) ([]string, error)

	// RecentFiles lists a source's files ("" = all) most recently
	// updated first, at most limit.
	RecentFiles(ctx context.Context, source string, limit int) ([]File, error)
	// FileOutcomes lists a file's stored row outcomes, invalid and failed
	// rows first, then by row, at most limit.
	FileOutcomes(ctx context.Context, source, filename string, limit int) ([]Outcome, error)
	// Hourly counts row outcomes written since since, by hour, result and
	// HTTP status.
	Hourly(ctx context.Context, since time.Time) ([]HourCount, error)
	// FirstArrival is the source's file first seen earliest at or after
	// from and before to (a zero to: no end); ok is false when there is
	// none. One indexed lookup, however long the history.
	FirstArrival(ctx context.Context, source string, from, to time.Time) (f File, ok bool, err error)
}

// Health is a source's state after its last pass.
type Health struct {
	Source         string
	Replica        string // who ran the pass
	LastPass       time.Time
	LastOK         time.Time // last pass without error
	StoreReachable bool
	APIReachable   bool
	Error          string // the last pass's error, "" when it succeeded
	Failures       int    // failed passes in a row
}

// Event kinds.
const (
	EventDeliveryMissed = "delivery_missed"
	EventSourceDown     = "source_down"
	EventAPIDown        = "api_down"
	EventFileFailed     = "file_failed"
)

// Event is one operational occurrence.
type Event struct {
	ID       string
	Kind     string
	Source   string
	File     string
	Detail   string
	OpenedAt time.Time
	ClosedAt time.Time // zero while open
}

// HourCount is one cell of the dashboard's charts.
type HourCount struct {
	Hour       time.Time
	Result     Result
	HTTPStatus int
	N          int64
}

// OpsOf returns the operator side of a ledger opened by this package,
// creating its tables when missing (not on a read-only SQLite ledger,
// whose queries then see no data rather than fail).
func OpsOf(ctx context.Context, l Ledger) (Ops, error) {
	var o *opsSQL
	switch x := l.(type) {
	case *SQLite:
		o = &opsSQL{l: &x.ledger, now: x.now}
	case *Postgres:
		o = &opsSQL{l: &x.ledger, now: time.Now}
	case pgNames: // what Open returns for postgres://
		o = &opsSQL{l: &x.ledger, now: time.Now}
	default:
		return nil, fmt.Errorf("state: %T has no operator tables", l)
	}
	if s, ok := l.(*SQLite); ok && s.lock == nil {
		// Read-only (status beside a running worker): create nothing; a
		// ledger serve never ran on has no operator tables, which reads
		// as no events.
		o.readOnly = true
		return o, nil
	}
	if err := o.ensure(ctx); err != nil {
		return nil, err
	}
	if _, ok := l.(pgNames); ok {
		return pgNamesOps{o}, nil
	}
	return o, nil
}

// opsSQL runs its statements through the ledger's own helpers (stmt,
// exec, all), so the dialect's tokens and placeholders are expanded one way.
type opsSQL struct {
	l        *ledger
	now      func() time.Time
	readOnly bool // a read-only SQLite ledger, whose operator tables may not exist
}

// absent: the query failed only because a read-only ledger has no
// operator tables yet.
func (o *opsSQL) absent(err error) bool {
	return o.readOnly && err != nil && strings.Contains(err.Error(), "no such table")
}

// opsSchema is created with IF NOT EXISTS rather than as a numbered
// migration: the tables are additive and no row protocol depends on them.
var opsSchema = []string{
	`CREATE TABLE IF NOT EXISTS {t}source_health (
		source TEXT PRIMARY KEY, replica TEXT NOT NULL DEFAULT '',
		last_pass BIGINT NOT NULL DEFAULT 0, last_ok BIGINT NOT NULL DEFAULT 0,
		store_ok INTEGER NOT NULL DEFAULT 0, api_ok INTEGER NOT NULL DEFAULT 0,
		error TEXT NOT NULL DEFAULT '', failures INTEGER NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS {t}events (
		id TEXT PRIMARY KEY, kind TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
		file TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '',
		opened_at BIGINT NOT NULL, closed_at BIGINT NOT NULL DEFAULT 0)`,
	`CREATE INDEX IF NOT EXISTS {t}events_by_time ON {t}events (opened_at)`,
	`CREATE TABLE IF NOT EXISTS {t}notifications (
		event_id TEXT NOT NULL, channel TEXT NOT NULL,
		claimed_at BIGINT NOT NULL DEFAULT 0, sent_at BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (event_id, channel))`,
	// The charts' counts read this index only (it holds every column
	// Hourly needs), so a page costs the window's rows, never a lookup
	// per row; it replaces the plain index on updated_at.
	`CREATE INDEX IF NOT EXISTS {t}row_outcomes_by_hour ON {t}row_outcomes (updated_at, result, http_status)`,
	`DROP INDEX IF EXISTS {t}row_outcomes_by_time`,
	// A source's arrivals (expected deliveries) are read earliest first
	// from this, so a tick does not read the whole history; its recent
	// files come from the ledger's files_by_time (migration 4).
	`CREATE INDEX IF NOT EXISTS {t}files_by_arrival ON {t}files (source, first_seen, name)`,
}

// ensure creates the tables in one transaction. Replicas starting
// together: CREATE … IF NOT EXISTS races in PostgreSQL's catalog, so it
// takes the migration lock.
func (o *opsSQL) ensure(ctx context.Context) error {
	return o.l.db.tx(ctx, func(c conn) error {
		if err := o.l.d.lockMigrations(ctx, c); err != nil {
			return fmt.Errorf("state: operator tables: %w", err)
		}
		for _, q := range opsSchema {
			if _, err := o.l.exec(ctx, c, q); err != nil {
				return fmt.Errorf("state: operator tables: %w", err)
			}
		}
		return nil
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (o *opsSQL) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return o.l.exec(ctx, o.l.db, q, args...)
}

func (o *opsSQL) PutHealth(ctx context.Context, h Health) error {
	_, err := o.exec(ctx, `INSERT INTO {t}source_health (source, replica, last_pass, last_ok, store_ok, api_ok, error, failures)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (source) DO UPDATE SET replica = excluded.replica, last_pass = excluded.last_pass,
			last_ok = excluded.last_ok, store_ok = excluded.store_ok, api_ok = excluded.api_ok,
			error = excluded.error, failures = excluded.failures`,
		h.Source, h.Replica, ns(h.LastPass), ns(h.LastOK), b2i(h.StoreReachable), b2i(h.APIReachable), h.Error, h.Failures)
	if err != nil {
		return fmt.Errorf("state: health of %s: %w", h.Source, err)
	}
	return nil
}

func (o *opsSQL) Health(ctx context.Context) ([]Health, error) {
	out, err := all(ctx, o.l, o.l.db, func(r scanner) (Health, error) {
		var h Health
		var lp, lo int64
		var st, api int
		err := r.Scan(&h.Source, &h.Replica, &lp, &lo, &st, &api, &h.Error, &h.Failures)
		h.LastPass, h.LastOK, h.StoreReachable, h.APIReachable = fromNS(lp), fromNS(lo), st != 0, api != 0
		return h, err
	}, `SELECT source, replica, last_pass, last_ok, store_ok, api_ok, error, failures FROM {t}source_health ORDER BY source`)
	if o.absent(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: health: %w", err)
	}
	return out, nil
}

func (o *opsSQL) OpenEvent(ctx context.Context, e Event) (bool, error) {
	if e.OpenedAt.IsZero() {
		e.OpenedAt = o.now()
	}
	n, err := o.exec(ctx, `INSERT INTO {t}events (id, kind, source, file, detail, opened_at, closed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		e.ID, e.Kind, e.Source, e.File, e.Detail, ns(e.OpenedAt), ns(e.ClosedAt))
	if err != nil {
		return false, fmt.Errorf("state: event %s: %w", e.ID, err)
	}
	return n == 1, nil
}

func (o *opsSQL) CloseEvent(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := o.exec(ctx, `UPDATE {t}events SET closed_at = ? WHERE id = ? AND closed_at = 0`, ns(at), id)
	if err != nil {
		return false, fmt.Errorf("state: close event %s: %w", id, err)
	}
	return n == 1, nil
}

func (o *opsSQL) Events(ctx context.Context, source string, openOnly bool, limit int) ([]Event, error) {
	q := `SELECT id, kind, source, file, detail, opened_at, closed_at FROM {t}events WHERE (? = '' OR source = ?)`
	if openOnly {
		q += ` AND closed_at = 0`
	}
	q += ` ORDER BY opened_at DESC, id LIMIT ?`
	out, err := all(ctx, o.l, o.l.db, func(r scanner) (Event, error) {
		var e Event
		var op, cl int64
		err := r.Scan(&e.ID, &e.Kind, &e.Source, &e.File, &e.Detail, &op, &cl)
		e.OpenedAt, e.ClosedAt = fromNS(op), fromNS(cl)
		return e, err
	}, q, source, source, limit)
	if o.absent(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: events: %w", err)
	}
	return out, nil
}

func (o *opsSQL) ClaimNotification(ctx context.Context, id, channel string, stale time.Duration) (bool, error) {
	now := o.now()
	n, err := o.exec(ctx, `INSERT INTO {t}notifications (event_id, channel, claimed_at, sent_at) VALUES (?, ?, ?, 0)
		ON CONFLICT (event_id, channel) DO UPDATE SET claimed_at = excluded.claimed_at
		WHERE {t}notifications.sent_at = 0 AND {t}notifications.claimed_at < ?`,
		id, channel, ns(now), ns(now.Add(-stale)))
	if err != nil {
		return false, fmt.Errorf("state: notification %s to %s: %w", id, channel, err)
	}
	return n == 1, nil
}

func (o *opsSQL) NotificationSent(ctx context.Context, id, channel string) error {
	_, err := o.exec(ctx, `UPDATE {t}notifications SET sent_at = ? WHERE event_id = ? AND channel = ?`, ns(o.now()), id, channel)
	if err != nil {
		return fmt.Errorf("state: notification %s to %s: %w", id, channel, err)
	}
	return nil
}

func (o *opsSQL) SentNotifications(ctx context.Context, channel string, ids []string) ([]string, error) {
	var sent []string
	for len(ids) > 0 {
		n := o.l.d.chunk(len(ids))
		in, args := o.l.d.keyList("event_id", ids[:n])
		ids = ids[n:]
		got, err := all(ctx, o.l, o.l.db, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		}, `SELECT event_id FROM {t}notifications WHERE channel = ? AND sent_at <> 0 AND `+in, append([]any{channel}, args...)...)
		if o.absent(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("state: notifications sent to %s: %w", channel, err)
		}
		sent = append(sent, got...)
	}
	return sent, nil
}

func (o *opsSQL) RecentFiles(ctx context.Context, source string, limit int) ([]File, error) {
	out, _, err := o.l.filePage(ctx, FileQuery{Source: source, Limit: limit})
	return out, err
}

func (o *opsSQL) FileOutcomes(ctx context.Context, source, filename string, limit int) ([]Outcome, error) {
	out, err := all(ctx, o.l, o.l.db, func(r scanner) (Outcome, error) {
		x, err := scanOutcome(r)
		x.Source, x.Filename = source, filename
		return x, err
	}, `SELECT `+outcomeCols+` FROM {t}row_outcomes WHERE source = ? AND filename = ?
		ORDER BY CASE result WHEN 'invalid' THEN 0 WHEN 'failed' THEN 0 ELSE 1 END, row LIMIT ?`, source, filename, limit)
	if err != nil {
		return nil, fmt.Errorf("state: outcomes of %s/%s: %w", source, filename, err)
	}
	return out, nil
}

const nsPerHour = int64(time.Hour)

func (o *opsSQL) Hourly(ctx context.Context, since time.Time) ([]HourCount, error) {
	out, err := all(ctx, o.l, o.l.db, func(r scanner) (HourCount, error) {
		var c HourCount
		var h int64
		var res string
		err := r.Scan(&h, &res, &c.HTTPStatus, &c.N)
		c.Hour, c.Result = time.Unix(0, h*nsPerHour), Result(res)
		return c, err
	}, `SELECT updated_at / `+strconv.FormatInt(nsPerHour, 10)+` AS h, result, http_status, COUNT(*)
		FROM {t}row_outcomes WHERE updated_at >= ? GROUP BY h, result, http_status ORDER BY h`, ns(since))
	if err != nil {
		return nil, fmt.Errorf("state: hourly counts: %w", err)
	}
	return out, nil
}
