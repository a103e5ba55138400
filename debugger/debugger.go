// Package debugger is woorelay's event debugger: a web page, served on the admin listener at
// /debugger/, that shows events becoming Woopra requests as they happen, why each field became
// what it is, the dead letters with their replay, a mapping playground and the relay's health.
//
// The relay hands every event to a Debugger through its Tap methods (Ingested, Mapped,
// Attempted). The debugger follows up to Options.Follow new events a second (default 500,
// more than a person can read, and every event of a source being wired up); past that, an
// event is counted as skipped and costs its tap calls one map lookup each, so a relay under
// production load does not pay for watching each of its events. For an event it follows, a
// tap call copies what it keeps into a bounded channel and returns; when the channel is full
// the note is dropped and counted, so the debugger never slows ingest or delivery. One
// goroutine folds the notes into a ring of the latest followed events (Options.Events) and
// hands each change to the browsers watching the stream, each through its own bounded
// buffer: a slow or stalled browser loses events from its view, never the relay. The buffers
// are bounded in changes and in bytes, per browser and for all of them (Options.ViewerBytes,
// StreamBytes, MaxViewers); a browser that connects is sent a page of the latest events
// (Options.StreamPage), not the whole ring, and a write that waits 10 s ends its stream, which
// frees all it held. The API answers only the debugger's own page: a request another site's
// page makes (Sec-Fetch-Site, or an Origin unlike Host) is refused. The health view counts
// every attempt, followed or not.
//
// Routes (Mount puts them behind the admin API's access rule):
//
//	GET  /debugger/                 the page (HTML, CSS and JavaScript embedded in the binary)
//	GET  /debugger/api/stream       server-sent events: a page of the latest events, "ready", then "event" (one event, whole, as it changes), "dropped"
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

// DefaultFollow is how many new events a second the debugger follows when Options.Follow is 0.
const DefaultFollow = 500

// The bounds of the stream, when their Options are 0.
const (
	DefaultViewerBytes = 1 << 20
	DefaultStreamBytes = 16 << 20
	DefaultMaxViewers  = 32
	DefaultStreamPage  = 200
)

// Options configures a Debugger.
type Options struct {
	// Events is how many of the latest events the ring keeps (0: DefaultEvents).
	Events int
	// Follow is how many new events a second the debugger follows through ingest, mapping
	// and delivery (0: DefaultFollow; negative: every event); the others are counted as
	// skipped.
	Follow int
	// Program returns the running program of a source, to explain its events; nil or a nil
	// result means the source is not configured.
	Program func(source string) *mapping.Program
	// Counters returns the queue's running totals, sampled every second for the health view.
	Counters func() queue.Counters
	// Delivery returns the dispatcher's state (its concurrency limit, requests in flight and
	// round-trip baseline), sampled every second for the health view; nil: not shown.
	Delivery func() destination.Stats
	// NoteBuffer bounds the notes waiting to be folded into the ring (default 8192); past it
	// notes are dropped and counted.
	NoteBuffer int
	// ViewerBuffer bounds the changes waiting to be written to one browser (default 512); past
	// it that browser's changes are dropped and it is told how many.
	ViewerBuffer int
	// ViewerBytes bounds the bytes waiting to be written to one browser, its first page
	// included (default DefaultViewerBytes); past it, as past ViewerBuffer, its changes are
	// dropped.
	ViewerBytes int
	// StreamBytes bounds the bytes waiting for all the browsers together (default
	// DefaultStreamBytes); past it every browser's changes are dropped until the writes catch
	// up.
	StreamBytes int
	// MaxViewers is how many browsers may watch the stream at once (default
	// DefaultMaxViewers); one more is answered 503 too_many_viewers with Retry-After.
	MaxViewers int
	// StreamPage is how many of the latest events a browser is sent when it connects
	// (default DefaultStreamPage), fewer when they do not fit in ViewerBytes; the rest of the
	// ring stays readable through GET /debugger/api/events.
	StreamPage int
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

	skipped atomic.Int64  // events not followed: past Options.Follow in their second
	queued  atomic.Int64  // bytes waiting to be written to all the browsers (Options.StreamBytes)
	listing chan struct{} // a slot per GET /debugger/api/events answer in the making (listSlots)

	// The follow filter, which the taps consult: fmu guards it and is held only for map
	// operations, by the taps and the folder.
	fmu        sync.Mutex
	following  map[eventKey]struct{} // followed events: those with a record, or a note on its way
	awaiting   map[string]int        // requests of followed events not yet answered Done, by URL: how many
	budgetSec  int64                 // the second budgetUsed counts
	budgetUsed int

	hmu    sync.Mutex // guards health
	health healthSeries

	mu      sync.Mutex // guards everything below; held briefly by the folder and the handlers
	ring    []*record  // circular, len o.Events
	next    uint64     // id of the next record
	seq     uint64     // the latest record.Seq given
	byKey   map[eventKey]*record
	byURL   map[string][]*record // requests not yet answered Done, by URL
	viewers map[*viewer]struct{}
}

// eventKey identifies an event as the queue's dedup does: source and messageId.
type eventKey struct{ source, messageID string }

// New returns a running Debugger; Close stops it.
func New(o Options) *Debugger {
	if o.Events <= 0 {
		o.Events = DefaultEvents
	}
	if o.Follow == 0 {
		o.Follow = DefaultFollow
	}
	if o.NoteBuffer <= 0 {
		o.NoteBuffer = 8192
	}
	if o.ViewerBuffer <= 0 {
		o.ViewerBuffer = 512
	}
	if o.ViewerBytes <= 0 {
		o.ViewerBytes = DefaultViewerBytes
	}
	if o.StreamBytes <= 0 {
		o.StreamBytes = DefaultStreamBytes
	}
	if o.MaxViewers <= 0 {
		o.MaxViewers = DefaultMaxViewers
	}
	if o.StreamPage <= 0 {
		o.StreamPage = DefaultStreamPage
	}
	if o.HealthWindow <= 0 {
		o.HealthWindow = 300
	}
	d := &Debugger{
		o: o, notes: make(chan note, o.NoteBuffer), stop: make(chan struct{}), done: make(chan struct{}),
		ring: make([]*record, o.Events), next: 1, byKey: map[eventKey]*record{}, byURL: map[string][]*record{},
		following: map[eventKey]struct{}{}, awaiting: map[string]int{},
		viewers: map[*viewer]struct{}{}, health: newHealthSeries(o.HealthWindow),
		listing: make(chan struct{}, listSlots),
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

// Skipped is how many events the debugger did not follow, past Options.Follow in their second.
func (d *Debugger) Skipped() int64 { return d.skipped.Load() }

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

// send hands n to the folder; false when it was dropped.
func (d *Debugger) send(n note) bool {
	select {
	case d.notes <- n:
		return true
	default:
		d.dropped.Add(1)
		return false
	}
}

// followLocked reports whether the event k is followed, and starts following it when this
// second's budget allows (added is then true; the caller stores the key, with strings of its
// own). The caller holds fmu.
func (d *Debugger) followLocked(k eventKey, now time.Time) (followed, added bool) {
	if _, ok := d.following[k]; ok {
		return true, false
	}
	if d.o.Follow > 0 {
		if sec := now.Unix(); sec != d.budgetSec {
			d.budgetSec, d.budgetUsed = sec, 0
		}
		if d.budgetUsed >= d.o.Follow {
			d.skipped.Add(1)
			return false, false
		}
		d.budgetUsed++
	}
	return true, true
}

// unfollow undoes what a tap call added to the filter when its note was dropped.
func (d *Debugger) unfollow(keys []eventKey, urls []queue.Request) {
	d.fmu.Lock()
	defer d.fmu.Unlock()
	for _, k := range keys {
		delete(d.following, k)
	}
	for _, r := range urls {
		d.releaseURLLocked(r.URL)
	}
}

// releaseURLLocked counts one request of url as no longer awaited; the caller holds fmu.
func (d *Debugger) releaseURLLocked(url string) {
	if n := d.awaiting[url]; n > 1 {
		d.awaiting[url] = n - 1
	} else {
		delete(d.awaiting, url)
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
	n := note{kind: noteIngested, at: time.Now()}
	var added []eventKey
	d.fmu.Lock()
	for _, e := range entries {
		followed, add := d.followLocked(eventKey{e.Source, e.MessageID}, n.at)
		if !followed {
			continue
		}
		c := copyEntry(e) // ingest reuses its buffers: the note and the filter keep copies
		if add {
			k := eventKey{c.Source, c.MessageID}
			d.following[k] = struct{}{}
			added = append(added, k)
		}
		n.entries = append(n.entries, c)
	}
	d.fmu.Unlock()
	if len(n.entries) == 0 {
		return
	}
	if err != nil {
		n.err = err.Error()
	}
	if !d.send(n) {
		d.unfollow(added, nil)
	}
}

// Mapped implements the relay's Tap.
func (d *Debugger) Mapped(e queue.Entry, reqs []queue.Request, filtered string, err error) {
	// Delivery does not reuse what it maps (see relay.Tap): the note and the filter keep it
	// without copies.
	e.Requests = nil
	n := note{kind: noteMapped, at: time.Now(), entry: e, filtered: filtered}
	k := eventKey{e.Source, e.MessageID}
	d.fmu.Lock()
	followed, added := d.followLocked(k, n.at)
	if followed {
		if added {
			d.following[k] = struct{}{}
		}
		for _, r := range reqs {
			d.awaiting[r.URL]++
		}
	}
	d.fmu.Unlock()
	if !followed {
		return
	}
	if len(reqs) > 0 {
		n.reqs = make([]queue.Request, len(reqs))
		for i, r := range reqs {
			n.reqs[i] = queue.Request{Method: r.Method, URL: r.URL, Headers: r.Headers}
		}
	}
	if err != nil {
		n.err = err.Error()
	}
	if !d.send(n) {
		var keys []eventKey
		if added {
			keys = []eventKey{k}
		}
		d.unfollow(keys, reqs)
	}
}

// Attempted implements the relay's Tap.
func (d *Debugger) Attempted(r queue.Request, a destination.Attempt) {
	at := time.Now()
	latency := float64(a.Duration.Microseconds()) / 1000
	d.hmu.Lock()
	d.health.attempt(at, a.Status, latency)
	d.hmu.Unlock()
	d.fmu.Lock()
	followed := d.awaiting[r.URL] > 0
	d.fmu.Unlock()
	if !followed {
		return
	}
	n := note{kind: noteAttempted, at: at, url: r.URL, class: a.Class, attempt: attempt{
		Status: a.Status, LatencyMS: latency, Class: a.Class.String(), Body: a.Body,
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
			var ds destination.Stats
			if d.o.Delivery != nil {
				ds = d.o.Delivery()
			}
			d.hmu.Lock()
			d.health.sample(now, c, ds, d.dropped.Load(), d.skipped.Load())
			d.hmu.Unlock()
		}
	}
}

// Outcomes of an event in the debugger's view.
const (
	Queued       = "queued"        // stored, not mapped yet
	Refused      = "refused"       // the queue refused the request (full, closed): the SDK was told to retry
	Filtered     = "filtered"      // dropped on purpose by the mapping, with the reason
	Sending      = "sending"       // mapped, its requests on their way
	Retrying     = "retrying"      // an attempt failed and will be retried
	Delivered    = "delivered"     // every request answered 2xx
	DeadLettered = "dead_lettered" // a dead letter, made at the record's Stage, with the code and reason
)

// Stages at which an event becomes a dead letter (record.Stage).
const (
	StageEdge     = "edge"     // rejected at ingest (no identity, a future timestamp, ...)
	StageMapping  = "mapping"  // rejected when mapped for delivery
	StageDelivery = "delivery" // Woopra refused it for good, or the retry window ran out
)

func (d *Debugger) fold(n note) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch n.kind {
	case noteIngested:
		for _, e := range n.entries {
			if r := d.byKey[eventKey{e.Source, e.MessageID}]; r != nil && n.err == "" {
				r.Duplicates++ // the queue drops it as a duplicate: same source and messageId
				r.Updated, r.DuplicateAt = n.at, n.at
				d.publish(r)
				continue
			}
			r := d.add(e, n.at)
			switch {
			case n.err != "":
				r.Outcome, r.Reason = Refused, n.err
			case e.Outcome == queue.Rejected:
				r.Outcome, r.Stage = DeadLettered, StageEdge
				r.Code, r.Reason = splitReason(e.Reason)
			default:
				r.Outcome = Queued
			}
			d.hmu.Lock()
			d.health.in(n.at)
			d.hmu.Unlock()
			d.publish(r)
		}
	case noteMapped:
		r := d.byKey[eventKey{n.entry.Source, n.entry.MessageID}]
		if r == nil {
			r = d.add(n.entry, n.at) // a replayed dead letter, or an event stored before the start
		} else if len(r.Requests) > 0 || r.Outcome == DeadLettered {
			// Replayed: it moves to the top of the list and keeps what its earlier
			// deliveries did.
			r.Replays++
			d.seq++
			r.Seq = d.seq
			r.Earlier = append(r.Earlier, r.Requests...)
			if len(r.Earlier) > maxEarlier {
				r.Earlier = r.Earlier[len(r.Earlier)-maxEarlier:]
			}
		}
		d.forgetURLs(r)
		r.Requests, r.Code, r.Reason, r.Stage, r.Updated = nil, "", "", "", n.at
		switch {
		case n.err != "":
			r.Outcome, r.Stage = DeadLettered, StageMapping
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
			case destination.Retry:
				r.Outcome = Retrying
			default:
				r.Outcome, r.Stage, r.Reason = DeadLettered, StageDelivery, n.attempt.reason()
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
		d.forget(old)
	}
	d.seq++
	r := &record{
		ID: d.next, Seq: d.seq, Source: e.Source, MessageID: e.MessageID, key: e.Visitor,
		Received: e.Received, Updated: at, event: e.Event,
	}
	if r.Received.IsZero() {
		r.Received = at
	}
	d.next++
	d.ring[slot] = r
	d.byKey[eventKey{e.Source, e.MessageID}] = r
	return r
}

func (d *Debugger) forgetURLs(r *record) {
	for _, q := range r.Requests {
		d.dropURL(q.URL, r)
	}
}

// dropURL stops waiting for the answer to r's request url, in the ring and in the filter.
func (d *Debugger) dropURL(url string, r *record) {
	rs := d.byURL[url]
	for i, x := range rs {
		if x == r {
			rs = append(rs[:i:i], rs[i+1:]...)
			d.fmu.Lock()
			d.releaseURLLocked(url)
			d.fmu.Unlock()
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

// splitReason cuts "code: message" into its code and message.
func splitReason(s string) (code, msg string) {
	if c, m, ok := strings.Cut(s, ": "); ok && !strings.Contains(c, " ") {
		return c, m
	}
	return "", s
}
