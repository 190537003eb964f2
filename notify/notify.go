// Package notify tells operators about what needs them: a file rejected,
// a source or the API down for several passes, a file that never arrived,
// and the recovery from each. It sends by generic webhook (JSON), by a
// Slack-compatible incoming webhook and by email over SMTP.
//
// Sending never holds up a run: Notify only queues (a bounded queue per
// channel, dropping with a log line when full), and one goroutine per
// channel, owned by Run, delivers and retries. Each event is sent to each
// channel at most once: the sender claims (event, channel) in the ledger
// before sending and marks it sent after, so a restart or a second replica
// does not repeat it. What a stop, a full queue or a receiver down for
// longer than Options.GiveUp left unsent is not lost: Run sweeps the
// ledger's recent events (Options.Pending) at start and every
// Options.Resweep and queues again each one a channel has not been sent.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Kinds of events, as configured in notify[].events.
const (
	FileFailed     = "file_failed"
	SourceDown     = "source_down"
	DeliveryMissed = "delivery_missed"
	Recovered      = "recovered"
)

// Schema names the webhook payload's version.
const Schema = "ihr-worker.notification/v1"

// Event is one notification. ID identifies the occurrence: the same ID is
// never sent twice to a channel.
type Event struct {
	Schema string `json:"schema"`
	ID     string `json:"id"`
	Kind   string `json:"event"`
	Source string `json:"source"`
	File   string `json:"file,omitempty"`
	Reason string `json:"reason"`
	Report string `json:"report,omitempty"`
	// Recovers is, for a recovered event, the kind of problem that ended.
	Recovers string    `json:"recovers,omitempty"`
	At       time.Time `json:"at"`
	// URL links to the dashboard page about the event, when known.
	URL string `json:"url,omitempty"`
}

// Text is the event in one human sentence (Slack, email subject).
func (e Event) Text() string {
	var what string
	switch e.Kind {
	case FileFailed:
		what = fmt.Sprintf("file %s was rejected: %s", e.File, e.Reason)
	case SourceDown:
		what = "is down: " + e.Reason
	case DeliveryMissed:
		what = "missed delivery: " + e.Reason
	case Recovered:
		what = fmt.Sprintf("recovered (%s): %s", e.Recovers, e.Reason)
	default:
		what = e.Kind + ": " + e.Reason
	}
	return fmt.Sprintf("ihr-worker: source %s %s", e.Source, what)
}

// Channel delivers events somewhere.
type Channel interface {
	// ID names the channel stably across restarts (its dedup key).
	ID() string
	// Send makes one delivery attempt; ctx bounds it.
	Send(ctx context.Context, e Event) error
}

// Ledger keeps which events went out (state.Ops satisfies it).
type Ledger interface {
	ClaimNotification(ctx context.Context, id, channel string, stale time.Duration) (bool, error)
	NotificationSent(ctx context.Context, id, channel string) error
	// SentNotifications is the subset of ids already sent to channel.
	SentNotifications(ctx context.Context, channel string, ids []string) ([]string, error)
}

// Route is a channel and the event kinds it gets (empty: all).
type Route struct {
	Channel Channel
	Events  []string
}

// Options tune a Notifier; zero values take the defaults.
type Options struct {
	Queue      int           // events waiting per channel (default 256)
	FirstRetry time.Duration // first wait after a failed attempt (default 1 s)
	MaxRetry   time.Duration // longest wait between attempts (default 1 min)
	GiveUp     time.Duration // stop retrying an event after this long (default 10 min; see Stale)
	Timeout    time.Duration // one attempt (default 10 s)
	// Stale: a claim older than this, never marked sent, may be taken
	// over (its sender died). Default 15 min.
	Stale time.Duration
	// Drain bounds the sending of queued events after Run's context ends
	// (default 5 s).
	Drain time.Duration
	// Pending lists the recent events that ought to have gone out (the
	// ledger's); nil: no sweep. Run calls it at start and every Resweep
	// (default Stale) and queues again what a channel was not sent, so an
	// event left unsent by a stop, a full queue or a give-up goes out
	// once the channel is back. A claim younger than Stale is left to its
	// sender.
	Pending func(ctx context.Context) ([]Event, error)
	Resweep time.Duration
	// Observe is told every attempt's outcome: "sent", "retry",
	// "failed" (gave up), "dropped" (queue full), "duplicate".
	Observe func(channel, result string)
}

// Notifier fans events out to its channels.
type Notifier struct {
	log    *zap.Logger
	led    Ledger
	o      Options
	routes []route
}

type route struct {
	Route
	q chan Event
	// queued holds the IDs waiting in q or being delivered, so a sweep
	// does not fill the queue with copies of what is already on its way.
	mu     *sync.Mutex
	queued map[string]bool
}

// New builds a notifier; call Run to start delivering.
func New(routes []Route, led Ledger, log *zap.Logger, o Options) *Notifier {
	if log == nil {
		log = zap.NewNop()
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	if o.FirstRetry <= 0 {
		o.FirstRetry = time.Second
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = time.Minute
	}
	if o.GiveUp <= 0 {
		o.GiveUp = 10 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Stale <= 0 {
		o.Stale = 15 * time.Minute
	}
	// A sender still retrying must never look dead: another replica would
	// take its claim over and send the event a second time. So retries end
	// (last attempt included) before the claim turns stale; the sweep
	// queues the event again later, so giving up loses nothing.
	// (One attempt's Timeout more is kept as margin for the ledger calls.)
	if o.GiveUp+2*o.Timeout > o.Stale && o.Stale > 2*o.Timeout {
		o.GiveUp = o.Stale - 2*o.Timeout
	}
	if o.Resweep <= 0 {
		o.Resweep = o.Stale
	}
	if o.Drain <= 0 {
		o.Drain = 5 * time.Second
	}
	if o.Observe == nil {
		o.Observe = func(string, string) {}
	}
	n := &Notifier{log: log.Named("notify"), led: led, o: o}
	for _, r := range routes {
		n.routes = append(n.routes, route{Route: r, q: make(chan Event, o.Queue), mu: new(sync.Mutex), queued: map[string]bool{}})
	}
	return n
}

// Notify queues e for every channel that wants its kind. It never blocks.
// A nil Notifier ignores events.
func (n *Notifier) Notify(e Event) {
	if n == nil {
		return
	}
	e.Schema = Schema
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	for _, r := range n.routes {
		if r.wants(e) {
			n.enqueue(r, e)
		}
	}
}

func (r route) wants(e Event) bool {
	return len(r.Events) == 0 || slices.Contains(r.Events, e.Kind)
}

// enqueue puts e on r's queue unless it is already there or being
// delivered; a full queue drops it (the next sweep brings it back).
func (n *Notifier) enqueue(r route, e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queued[e.ID] {
		return
	}
	select {
	case r.q <- e:
		r.queued[e.ID] = true
	default:
		n.o.Observe(r.Channel.ID(), "dropped")
		n.log.Error("notification dropped for now: queue full (is the channel down?); the next sweep queues it again",
			zap.String("channel", r.Channel.ID()), zap.String("event", e.ID))
	}
}

// delivered forgets e once its delivery ended, sent or not.
func (r route) delivered(e Event) {
	r.mu.Lock()
	delete(r.queued, e.ID)
	r.mu.Unlock()
}

// Run delivers until ctx ends, then spends up to Options.Drain sending
// what is still queued (the last pass's events), and returns once every
// channel's goroutine and the sweep have stopped. Events left after that
// are dropped and logged: they were never claimed, so nothing is marked
// sent that was not, and the next start's sweep queues them again.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range n.routes {
		wg.Go(func() { n.loop(ctx, r) })
	}
	if n.o.Pending != nil {
		wg.Go(func() { n.sweepEvery(ctx) })
	}
	wg.Wait()
}

func (n *Notifier) sweepEvery(ctx context.Context) {
	t := time.NewTicker(n.o.Resweep)
	defer t.Stop()
	for {
		n.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep queues again each pending event a channel wants and was not sent.
func (n *Notifier) sweep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.o.Timeout)
	defer cancel()
	events, err := n.o.Pending(ctx)
	if err != nil {
		n.log.Warn("notifications not swept: pending events not read", zap.Error(err))
		return
	}
	for _, r := range n.routes {
		var want []Event
		var ids []string
		for _, e := range events {
			if r.wants(e) {
				want = append(want, e)
				ids = append(ids, e.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		sent, err := n.led.SentNotifications(ctx, r.Channel.ID(), ids)
		if err != nil {
			n.log.Warn("notifications not swept", zap.String("channel", r.Channel.ID()), zap.Error(err))
			continue
		}
		done := make(map[string]bool, len(sent))
		for _, id := range sent {
			done[id] = true
		}
		for _, e := range want {
			if !done[e.ID] {
				e.Schema = Schema
				n.enqueue(r, e)
			}
		}
	}
}

func (n *Notifier) loop(ctx context.Context, r route) {
	for {
		select {
		case <-ctx.Done():
			n.drain(ctx, r)
			return
		case e := <-r.q:
			n.finish(r, e, n.deliver(ctx, r.Channel, e))
		}
	}
}

// finish ends e's delivery on r before it is observed, so that whoever
// sees the outcome (metrics, tests) finds e neither queued nor in flight.
func (n *Notifier) finish(r route, e Event, outcome string) {
	r.delivered(e)
	n.o.Observe(r.Channel.ID(), outcome)
}

// drain sends what is queued on r within Options.Drain after a stop.
func (n *Notifier) drain(stopped context.Context, r route) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(stopped), n.o.Drain)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case e := <-r.q:
			n.finish(r, e, n.deliver(ctx, r.Channel, e))
		default:
			return
		}
	}
	if k := len(r.q); k > 0 {
		n.log.Warn("notifications not sent: stopping", zap.String("channel", r.Channel.ID()), zap.Int("queued", k))
	}
}

// deliver claims, sends with retries, and marks e sent on ch. It returns
// the outcome to observe: "sent", "duplicate" or "failed".
func (n *Notifier) deliver(ctx context.Context, ch Channel, e Event) string {
	log := n.log.With(zap.String("channel", ch.ID()), zap.String("event", e.ID))
	start := time.Now()
	wait := n.o.FirstRetry
	claimed := false
	for attempt := 1; ; attempt++ {
		err := func() error {
			actx, cancel := context.WithTimeout(ctx, n.o.Timeout)
			defer cancel()
			if !claimed {
				ok, err := n.led.ClaimNotification(actx, e.ID, ch.ID(), n.o.Stale)
				if err != nil {
					return fmt.Errorf("ledger: %w", err)
				}
				if !ok {
					return errDuplicate
				}
				claimed = true
			}
			return ch.Send(actx, e)
		}()
		if err == errDuplicate {
			log.Debug("notification already sent (or being sent)")
			return "duplicate"
		}
		if err == nil {
			log.Info("notification sent", zap.String("kind", e.Kind), zap.String("source", e.Source), zap.Int("attempt", attempt))
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.o.Timeout)
			defer cancel()
			if err := n.led.NotificationSent(mctx, e.ID, ch.ID()); err != nil {
				log.Error("notification sent but not recorded as sent; it may be sent again", zap.Error(err))
			}
			return "sent"
		}
		if time.Since(start)+wait > n.o.GiveUp || ctx.Err() != nil {
			log.Error("notification not sent", zap.Int("attempts", attempt), zap.Error(err))
			return "failed"
		}
		n.o.Observe(ch.ID(), "retry")
		log.Warn("notification attempt failed; retrying", zap.Int("attempt", attempt), zap.Duration("in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Error("notification not sent: stopping", zap.Error(err))
			return "failed"
		case <-t.C:
		}
		wait = min(2*wait, n.o.MaxRetry)
	}
}

var errDuplicate = errors.New("already sent")

// channelID is kind:short-hash, so a secret URL never shows in the ledger
// or logs.
func channelID(kind, target string) string {
	h := sha256.Sum256([]byte(target))
	return kind + ":" + hex.EncodeToString(h[:6])
}
