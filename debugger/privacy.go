package debugger

import (
	"time"

	"github.com/woorelay/woorelay/queue"
)

// Erase removes from the ring every event match selects, given the event as ingest stored it
// (source, messageId, visitor, time received and raw event), and returns how many it removed.
// A browser that already shows one keeps it until reloaded.
func (d *Debugger) Erase(match func(queue.Entry) bool) int {
	return d.drop(func(r *record) bool {
		return match(queue.Entry{Source: r.Source, MessageID: r.MessageID, Visitor: r.Visitor, Received: r.Received, Event: r.event})
	})
}

// ExpireBefore removes from the ring every event received before cutoff and returns how
// many: the relay calls it so that the ring keeps nothing older than its retention.
func (d *Debugger) ExpireBefore(cutoff time.Time) int {
	return d.drop(func(r *record) bool { return r.Received.Before(cutoff) })
}

// drop empties the ring's slots whose record sel selects, and forgets them.
func (d *Debugger) drop(sel func(*record) bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for i, r := range d.ring {
		if r == nil || !sel(r) {
			continue
		}
		d.forget(r)
		d.ring[i] = nil
		n++
	}
	return n
}

// forget stops following a record leaving the ring: its requests and its key (d.mu held).
func (d *Debugger) forget(r *record) {
	d.forgetURLs(r)
	if k := (eventKey{r.Source, r.MessageID}); d.byKey[k] == r {
		delete(d.byKey, k)
		d.fmu.Lock()
		delete(d.following, k)
		d.fmu.Unlock()
	}
}
