// Package debugger is woorelay's event debugger: a web page, served on the admin listener at
// /debugger/, that shows events becoming Woopra requests as they happen, why each field became
// what it is, the dead letters with their replay, a mapping playground and the relay's health.
//
// The relay hands every event to a Debugger through its Tap methods (Ingested, Mapped,
// Attempted). They copy what they keep into a bounded channel and return; when the channel is
// full the note is dropped and counted, so the debugger never slows ingest or delivery. One
// goroutine folds the notes into a ring of the latest events (Options.Events) and hands each
// change to the browsers watching the stream, each through its own bounded buffer: a slow or
// stalled browser loses events from its view, never the relay.
//
// Routes (Mount puts them behind the admin API's access rule):
//
//	GET  /debugger/                 the page (HTML, CSS and JavaScript embedded in the binary)
//	GET  /debugger/api/stream       server-sent events: "event" (one event, whole, as it changes), "dropped"
//	GET  /debugger/api/events       the ring, oldest first
//	GET  /debugger/api/events/:id   one event with its raw JSON and the explain trace
//	POST /debugger/api/explain      {"source","event","received"}: the trace of any event (a dead letter's)
//	POST /debugger/api/playground   {"event","preset","preset_name","mappings","settings"}: compile, run, lint
//	GET  /debugger/api/health       the reconciling counters and per-second series of the last minutes
//	GET  /debugger/api/presets      the built-in presets' names
//
// The page reads and replays dead letters through the admin API (/admin/dlq), on the same
// listener.
package debugger

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
)

// DefaultEvents is how many events the ring keeps when Options.Events is 0.
const DefaultEvents = 1000

// Options configures a Debugger.
type Options struct {
	// Events is how many of the latest events the ring keeps (0: DefaultEvents).
	Events int
	// Program returns the running program of a source, to explain its events; nil or a nil
	// result means the source is not configured.
	Program func(source string) *mapping.Program
	// Counters returns the queue's running totals, sampled every second for the health view.
	Counters func() queue.Counters
	// NoteBuffer bounds the notes waiting to be folded into the ring (default 8192); past it
	// notes are dropped and counted.
	NoteBuffer int
	// ViewerBuffer bounds the changes waiting to be written to one browser (default 512); past
	// it that browser's changes are dropped and it is told how many.
	ViewerBuffer int
	// HealthWindow is how many seconds of health series are kept (default 300).
	HealthWindow int
}

// Debugger keeps the latest events and serves the debugger page. Create it with New; it
// implements the relay's Tap.
type Debugger struct {
	o       Options
	notes   chan note
	dropped atomic.Int64 // notes dropped because the channel was full
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex // guards everything below; held briefly by the folder and the handlers
	ring    []*record  // circular, len o.Events
	next    uint64     // id of the next record
	byKey   map[string]*record
	byURL   map[string][]*record // requests not yet answered Done, by URL
	viewers map[*viewer]struct{}
	health  healthSeries
}

// New returns a running Debugger; Close stops it.
func New(o Options) *Debugger {
	if o.Events <= 0 {
		o.Events = DefaultEvents
	}
	if o.NoteBuffer <= 0 {
		o.NoteBuffer = 8192
	}
	if o.ViewerBuffer <= 0 {
		o.ViewerBuffer = 512
	}
	if o.HealthWindow <= 0 {
		o.HealthWindow = 300
	}
	d := &Debugger{
		o: o, notes: make(chan note, o.NoteBuffer), stop: make(chan struct{}), done: make(chan struct{}),
		ring: make([]*record, o.Events), next: 1, byKey: map[string]*record{}, byURL: map[string][]*record{},
		viewers: map[*viewer]struct{}{}, health: newHealthSeries(o.HealthWindow),
	}
	go d.run()
	return d
}

// Close stops the folding goroutine and ends every stream.
func (d *Debugger) Close() {
	d.once.Do(func() { close(d.stop); <-d.done })
}

// Dropped is how many notes were dropped because the debugger could not keep up.
func (d *Debugger) Dropped() int64 { return d.dropped.Load() }

type noteKind uint8

const (
	noteIngested noteKind = iota
	noteMapped
	noteAttempted
)

// note is what a Tap call hands to the folding goroutine: copies only.
type note struct {
	kind     noteKind
	at       time.Time
	entries  []queue.Entry // ingested: copies
	err      string        // ingested: why Append refused them; mapped: why it is a dead letter
	entry    queue.Entry   // mapped: a copy
	reqs     []queue.Request
	filtered string
	url      string // attempted
	attempt  attempt
	class    destination.Class
}

func (d *Debugger) send(n note) {
	select {
	case d.notes <- n:
	default:
		d.dropped.Add(1)
	}
}

// copyEntry copies what an entry holds that its owner may reuse.
func copyEntry(e queue.Entry) queue.Entry {
	e.Source, e.MessageID, e.Visitor, e.Reason = strings.Clone(e.Source), strings.Clone(e.MessageID), strings.Clone(e.Visitor), strings.Clone(e.Reason)
	e.Event = append([]byte(nil), e.Event...)
	e.Requests = nil
	return e
}

// Ingested implements the relay's Tap.
func (d *Debugger) Ingested(entries []queue.Entry, _ queue.AppendResult, err error) {
	n := note{kind: noteIngested, at: time.Now(), entries: make([]queue.Entry, len(entries))}
	for i, e := range entries {
		n.entries[i] = copyEntry(e)
	}
	if err != nil {
		n.err = err.Error()
	}
	d.send(n)
}

// Mapped implements the relay's Tap.
func (d *Debugger) Mapped(e queue.Entry, reqs []queue.Request, filtered string, err error) {
	// Delivery does not reuse what it maps (see relay.Tap): the note keeps it without copies.
	e.Requests = nil
	n := note{kind: noteMapped, at: time.Now(), entry: e, filtered: filtered}
	if len(reqs) > 0 {
		n.reqs = make([]queue.Request, len(reqs))
		for i, r := range reqs {
			n.reqs[i] = queue.Request{Method: r.Method, URL: r.URL}
		}
	}
	if err != nil {
		n.err = err.Error()
	}
	d.send(n)
}

// Attempted implements the relay's Tap.
func (d *Debugger) Attempted(r queue.Request, a destination.Attempt) {
	n := note{kind: noteAttempted, at: time.Now(), url: r.URL, class: a.Class, attempt: attempt{
		Status: a.Status, LatencyMS: float64(a.Duration.Microseconds()) / 1000, Class: a.Class.String(), Body: a.Body,
	}}
	n.attempt.At = n.at
	if a.RetryAfter > 0 {
		n.attempt.RetryAfter = a.RetryAfter.String()
	}
	if a.Err != nil {
		n.attempt.Error = a.Err.Error()
	}
	d.send(n)
}

// run folds notes into the ring and samples the health series every second.
func (d *Debugger) run() {
	defer close(d.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			d.mu.Lock()
			for v := range d.viewers {
				v.close()
			}
			d.mu.Unlock()
			return
		case n := <-d.notes:
			d.fold(n)
		case now := <-tick.C:
			var c queue.Counters
			if d.o.Counters != nil {
				c = d.o.Counters()
			}
			d.mu.Lock()
			d.health.sample(now, c, d.dropped.Load())
			d.mu.Unlock()
		}
	}
}

// Outcomes of an event in the debugger's view.
const (
	Queued       = "queued"        // stored, not mapped yet
	Refused      = "refused"       // the queue refused the request (full, closed): the SDK was told to retry
	Rejected     = "rejected"      // a dead letter: rejected at the edge or by the mapping, with the code
	Filtered     = "filtered"      // dropped on purpose by the mapping, with the reason
	Sending      = "sending"       // mapped, its requests on their way
	Retrying     = "retrying"      // an attempt failed and will be retried
	Delivered    = "delivered"     // every request answered 2xx
	DeadLettered = "dead_lettered" // Woopra refused it for good, or the retry window ran out
)

func (d *Debugger) fold(n note) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch n.kind {
	case noteIngested:
		for _, e := range n.entries {
			if r := d.byKey[key(e.Source, e.MessageID)]; r != nil && n.err == "" {
				r.Duplicates++ // the queue drops it as a duplicate: same source and messageId
				r.Updated = n.at
				d.publish(r)
				continue
			}
			r := d.add(e, n.at)
			switch {
			case n.err != "":
				r.Outcome, r.Reason = Refused, n.err
			case e.Outcome == queue.Rejected:
				r.Outcome = Rejected
				r.Code, r.Reason = splitReason(e.Reason)
			default:
				r.Outcome = Queued
			}
			d.health.in(n.at)
			d.publish(r)
		}
	case noteMapped:
		r := d.byKey[key(n.entry.Source, n.entry.MessageID)]
		if r == nil {
			r = d.add(n.entry, n.at) // a replayed dead letter, or an event stored before the start
		} else if len(r.Requests) > 0 || r.Outcome == Rejected || r.Outcome == DeadLettered {
			r.Replays++
		}
		d.forgetURLs(r)
		r.Requests, r.Code, r.Reason, r.Updated = nil, "", "", n.at
		switch {
		case n.err != "":
			r.Outcome = Rejected
			r.Code, r.Reason = splitReason(n.err)
		case n.filtered != "":
			r.Outcome = Filtered
			r.Code, r.Reason = splitReason(n.filtered)
		default:
			r.Outcome = Sending
			for _, q := range n.reqs {
				r.Requests = append(r.Requests, newRequest(q))
				d.byURL[q.URL] = append(d.byURL[q.URL], r)
			}
		}
		d.publish(r)
	case noteAttempted:
		d.health.attempt(n.at, n.attempt)
		rs := d.byURL[n.url]
		if len(rs) == 0 {
			return
		}
		r := rs[0]
		for i := range r.Requests {
			q := &r.Requests[i]
			if q.URL != n.url || q.Done {
				continue
			}
			q.Attempts = append(q.Attempts, n.attempt)
			switch n.class {
			case destination.Done:
				q.Done = true
				d.dropURL(n.url, r)
				r.Outcome = Delivered
				for _, o := range r.Requests {
					if !o.Done {
						r.Outcome = Sending
					}
				}
				if r.Outcome == Delivered {
					d.health.out(n.at)
				}
			case destination.Retry:
				r.Outcome = Retrying
			default:
				r.Outcome, r.Reason = DeadLettered, n.attempt.reason()
				d.forgetURLs(r)
			}
			break
		}
		r.Updated = n.at
		d.publish(r)
	}
}

// add puts a new record for e in the ring, evicting the oldest.
func (d *Debugger) add(e queue.Entry, at time.Time) *record {
	slot := int(d.next % uint64(len(d.ring)))
	if old := d.ring[slot]; old != nil {
		d.forgetURLs(old)
		if d.byKey[key(old.Source, old.MessageID)] == old {
			delete(d.byKey, key(old.Source, old.MessageID))
		}
	}
	r := &record{
		ID: d.next, Source: e.Source, MessageID: e.MessageID, Visitor: e.Visitor,
		Received: e.Received, Updated: at, event: e.Event,
	}
	if r.Received.IsZero() {
		r.Received = at
	}
	d.next++
	d.ring[slot] = r
	d.byKey[key(e.Source, e.MessageID)] = r
	return r
}

func (d *Debugger) forgetURLs(r *record) {
	for _, q := range r.Requests {
		d.dropURL(q.URL, r)
	}
}

func (d *Debugger) dropURL(url string, r *record) {
	rs := d.byURL[url]
	for i, x := range rs {
		if x == r {
			rs = append(rs[:i:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(d.byURL, url)
	} else {
		d.byURL[url] = rs
	}
}

// records returns the ring's records, oldest first.
func (d *Debugger) records() []*record {
	out := make([]*record, 0, len(d.ring))
	for i := range len(d.ring) {
		if r := d.ring[(int(d.next%uint64(len(d.ring)))+i)%len(d.ring)]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (d *Debugger) find(id uint64) *record {
	if id == 0 || id >= d.next || d.next-id > uint64(len(d.ring)) {
		return nil
	}
	return d.ring[int(id%uint64(len(d.ring)))]
}

func key(source, messageID string) string { return source + "\x00" + messageID }

// splitReason cuts "code: message" into its code and message.
func splitReason(s string) (code, msg string) {
	if c, m, ok := strings.Cut(s, ": "); ok && !strings.Contains(c, " ") {
		return c, m
	}
	return "", s
}
