package debugger

import (
	"bytes"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// TestEraseAndExpire: Erase removes a person's events from the ring and ExpireBefore the
// events received before the cutoff; the others stay, and a removed event cannot be opened.
func TestEraseAndExpire(t *testing.T) {
	d := New(Options{Events: 10})
	defer d.Close()
	gone := entry("g1")
	gone.Visitor, gone.Event = "x", []byte(`{"type":"track","event":"E","userId":"x","messageId":"g1"}`)
	old := entry("o1")
	old.Received = time.Now().Add(-2 * time.Hour)
	d.Ingested([]queue.Entry{gone, entry("k1"), old}, queue.AppendResult{Queued: 3}, nil)
	settle(t, d)
	if n := d.Erase(func(e queue.Entry) bool { return bytes.Contains(e.Event, []byte(`"userId":"x"`)) }); n != 1 {
		t.Fatalf("Erase removed %d events, want 1", n)
	}
	if n := d.ExpireBefore(time.Now().Add(-time.Hour)); n != 1 {
		t.Fatalf("ExpireBefore removed %d events, want 1", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := d.records()
	if len(rs) != 1 || rs[0].MessageID != "k1" {
		t.Fatalf("the ring holds %d events after erasing and expiring, want only k1", len(rs))
	}
	if d.byKey[eventKey{"web", "g1"}] != nil || d.find(1) != nil {
		t.Error("the erased event can still be found")
	}
}
