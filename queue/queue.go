// Package queue defines the durable store between ingest and delivery: what ingest appends
// (Entry), what delivery reads back (Item), the dead-letter store, and the counters that
// reconcile (received = delivered + dead-lettered + filtered + queued).
//
// The embedded default implementation lives in queue/disk (an on-disk log on pebble);
// queue/jetstream keeps the same promises on a NATS JetStream cluster shared by several
// relays. Both implement the same Queue interface, so neither the HTTP server nor the delivery
// workers change when the backend does; queue/queuetest is the behavioural suite both pass.
//
// # Order
//
// Order is promised per ordering key (Entry.Visitor): two items of one visitor are scanned in
// the order they were appended. Across visitors Seq only says when an item became visible to
// this process: a distributed log split in partitions cannot promise more, and delivery needs
// no more. A queue shared by several processes gives each item to one of them at a time; it
// implements Owner so that delivery stops at once when an item moves to another process.
package queue

import (
	"context"
	"errors"
	"time"
)

// Outcome says what is to become of an entry: ingest appends Deliver (to be mapped and sent)
// or Rejected (refused at the edge); delivery's mapping decides the rest.
type Outcome uint8

const (
	// Deliver means the event is to be sent: its requests, or the mapping that makes them.
	Deliver Outcome = iota
	// Filtered means the event was dropped on purpose (a filter, consent, a skip rule); it is
	// counted and not kept.
	Filtered
	// Rejected means the event cannot be sent as it is (no userId nor anonymousId, no visitor
	// id, a contract breach); it goes to the dead-letter store with its reason, so it can be
	// replayed after a fix.
	Rejected
)

// String names the outcome as metrics and the CLI print it.
func (o Outcome) String() string {
	switch o {
	case Deliver:
		return "deliver"
	case Filtered:
		return "filtered"
	case Rejected:
		return "rejected"
	}
	return "unknown"
}

// Header is one HTTP header of a request to the destination.
type Header struct {
	Name  string
	Value string
}

// Request is one HTTP request to the destination, fully built by the mapping.
type Request struct {
	Method  string // GET
	URL     string // absolute URL with the encoded query
	Headers []Header
}

// Entry is one event accepted at ingest. Ingest stores it unmapped (Requests empty); delivery
// maps it with its source's current program.
type Entry struct {
	Source    string    // name of the source (write key's owner) the event came from
	MessageID string    // the event's messageId; the dedup key together with Source
	Visitor   string    // ordering key: events with the same Visitor are delivered in order
	Received  time.Time // when ingest received the event
	Event     []byte    // the normalised event JSON; delivery maps it, dead letters keep it
	Outcome   Outcome
	Reason    string    // for Filtered and Rejected: "code: message"
	Requests  []Request // the requests to send, in order; empty until delivery maps the event
}

// Item is a stored entry waiting for delivery, as delivery reads it back.
type Item struct {
	Seq          uint64 // position in this process's view of the queue; increasing in append order per visitor, and in the order items became visible to Scan
	Entry        Entry
	Attempts     int       // delivery attempts made so far (persisted by Retrying)
	FirstAttempt time.Time // zero until the first attempt failed
	NextRequest  int       // index of the first request in Entry.Requests not yet delivered
}

// Failure describes why delivery gave up on an item; it is kept with the dead letter.
type Failure struct {
	Reason   string // human readable: "woopra answered 403 Forbidden", "retry window of 4h0m0s exhausted"
	Request  string // the request that failed, as sent (method and URL)
	Status   int    // HTTP status of the last response, 0 for a transport error
	Response string // the last response body (truncated) or the transport error text
	Attempts int
}

// DeadLetter is an event that will not be delivered without a fix, with why.
type DeadLetter struct {
	ID      uint64 // dead-letter id, stable until the letter is replayed
	At      time.Time
	Entry   Entry
	Failure Failure
}

// AppendResult counts what one Append did with its entries.
type AppendResult struct {
	Queued     int // stored for delivery
	Filtered   int // counted and dropped on purpose
	Rejected   int // stored as dead letters
	Duplicates int // already seen (same Source and MessageID within the dedup window); dropped
}

// Counters are the queue's running totals, persisted with the data they count, so they
// reconcile exactly after a crash: Received = Delivered + DeadLettered + Filtered + Queued.
// Duplicates are counted apart and are not part of Received.
type Counters struct {
	Received     int64
	Delivered    int64
	DeadLettered int64
	Filtered     int64
	Queued       int64
	Duplicates   int64
	Replayed     int64 // dead letters moved back to the queue (already counted in Queued)
}

// Reconciles reports whether the totals add up.
func (c Counters) Reconciles() bool {
	return c.Received == c.Delivered+c.DeadLettered+c.Filtered+c.Queued
}

// Errors Append returns; ingest turns each into 503 with Retry-After.
var (
	// ErrFull means the store has no room: its disk budget is used up, or the disk it is on is
	// full. Nothing of the call was stored; the error that wraps it says which, and the store
	// accepts entries again by itself once delivery has made room.
	ErrFull = errors.New("queue: full; retry later")
	// ErrClosed means the queue is shutting down; nothing of the call was stored.
	ErrClosed = errors.New("queue: closed")
	// ErrUnavailable means a shared store did not acknowledge every entry in time (a leader
	// election, a lost server); what it did store is found a duplicate when the client retries.
	ErrUnavailable = errors.New("queue: the store did not acknowledge; retry later")
)

// Health is implemented by a queue that can say whether Append accepts entries now, so that
// readiness checks tell the truth while it refuses them.
type Health interface {
	// Refusing returns why Append refuses entries now (an error wrapping ErrFull while the
	// disk or the disk budget is full), or nil while it accepts them.
	Refusing() error
}

// ReasonCorruptRecord starts the Entry.Reason of a dead letter that holds a queue record that
// could not be decoded (its raw bytes as Event) instead of an event: there is no event to
// replay in it.
const ReasonCorruptRecord = "corrupt_record"

// Queue is the durable store between ingest and delivery.
//
// Append is called concurrently by ingest; it returns only once every entry is durable (synced
// to disk, or committed to a replicated log), so a 200 to the client means the events survive a
// crash. The delivery side (Scan, ScanVisitor, Done, Retrying, Dead) is used by one dispatcher.
type Queue interface {
	// Append stores the entries durably and atomically: all or none.
	Append(ctx context.Context, entries []Entry) (AppendResult, error)

	// Scan returns up to limit pending items with Seq > after, in Seq order. An item never
	// becomes visible after one with a higher Seq was returned.
	Scan(after uint64, limit int) ([]Item, error)
	// ScanVisitor returns up to limit pending items of one visitor with Seq > after, in order.
	ScanVisitor(visitor string, after uint64, limit int) ([]Item, error)
	// Appended is signalled (without blocking, coalesced) after every Append that queued items.
	Appended() <-chan struct{}

	// Done records that the item was delivered and removes it.
	Done(seq uint64) error
	// Filter records that the item was dropped on purpose when delivery mapped it (a filter,
	// consent) and removes it.
	Filter(seq uint64, reason string) error
	// Progress records that the item's first n requests were delivered (items with several
	// requests resume there after a restart instead of sending those again).
	Progress(seq uint64, n int) error
	// Retrying records a failed attempt that will be retried.
	Retrying(seq uint64, attempts int, firstAttempt time.Time) error
	// Dead moves the item to the dead-letter store with the failure.
	Dead(seq uint64, f Failure) error

	// DeadLetters lists up to limit dead letters with ID > after, oldest first.
	DeadLetters(after uint64, limit int) ([]DeadLetter, error)
	// DeadLetter returns one dead letter.
	DeadLetter(id uint64) (DeadLetter, bool, error)
	// Replay moves dead letters back to the queue (at its end), each entry passed through remap
	// when it is not nil (woorelay clears the stored requests, so delivery maps the event again
	// with the current configuration); remap may return an error to leave a letter where it is.
	// It returns how many letters were replayed.
	Replay(ids []uint64, remap func(Entry) (Entry, error)) (int, error)

	// Counters returns the running totals.
	Counters() Counters
	// Close flushes and closes the store; later Appends fail with ErrClosed.
	Close() error
}

// Ownership is a shared queue's answer to whether delivery may attempt an item now.
type Ownership uint8

const (
	// Owned means the item is this process's to deliver: attempt it.
	Owned Ownership = iota
	// Paused means the item is still this process's, but no attempt may start now (its claim
	// on the item's partition is overdue for renewal, so another process might be about to
	// take it over): keep it, with the visitor's later items, and ask again shortly.
	Paused
	// Moved means another process delivers the item now, and those after it of the same
	// visitor: drop them from memory without recording anything. They are not lost: the new
	// owner reads them, with their attempts and progress, from the shared store; and if the
	// partition comes back to this process, its items come back with new Seqs.
	Moved
)

// String names the answer as logs print it.
func (o Ownership) String() string {
	switch o {
	case Owned:
		return "owned"
	case Paused:
		return "paused"
	case Moved:
		return "moved"
	}
	return "unknown"
}

// Owner is implemented by a queue whose items can move to another process (a queue shared by
// several relays, each delivering the partitions it holds). Delivery asks before every
// attempt. Scan and ScanVisitor return a Paused item like an Owned one (so that a scan's
// cursor never passes an item it did not return), and never a Moved one.
type Owner interface {
	// Owns says whether the item with this Seq may be attempted now.
	Owns(seq uint64) Ownership
}

// OldestReporter is implemented by a queue that can say when its oldest pending item was
// received, the one figure that tells a relay is falling behind. It is read at every scrape of
// /metrics, so it must be cheap: a read or two, no scan of the backlog.
type OldestReporter interface {
	// OldestReceived returns when the oldest pending item was received (ok false when
	// nothing is pending).
	OldestReceived() (t time.Time, ok bool, err error)
}

// ReasonErased and ReasonExpired are the reasons an item or dead letter leaves the store
// without being delivered at an operator's request (Privacy.Erase) or at the end of the
// dead letters' retention (Privacy.ExpireDeadLetters); both are counted Filtered.
const (
	ReasonErased  = "erased"
	ReasonExpired = "expired"
)

// Erased counts what one Erase removed.
type Erased struct {
	Items       int `json:"items"`        // pending items
	DeadLetters int `json:"dead_letters"` // dead letters
}

// Privacy is implemented by a queue that keeps the relay's suppression list in its store
// (shared by every relay of a shared store) and can erase a person's events. Everything it
// removes is counted Filtered (an item: Queued−1; a letter: DeadLettered−1), so the counters
// keep reconciling.
type Privacy interface {
	// AddSuppressions stores the keys (a selector's stored form) durably; adding a key
	// already there does nothing.
	AddSuppressions(keys []string) error
	// RemoveSuppressions removes the keys and says how many were there.
	RemoveSuppressions(keys []string) (int, error)
	// Suppressions lists the stored keys, sorted.
	Suppressions() ([]string, error)
	// Erase removes every pending item and dead letter whose entry match selects, and every
	// copy of their events the store keeps on disk, and says how many it removed of each.
	Erase(match func(queue Entry) bool) (Erased, error)
	// ExpireDeadLetters removes the dead letters that went dead before cutoff and says how
	// many.
	ExpireDeadLetters(cutoff time.Time) (int, error)
}
