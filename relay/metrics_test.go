package relay

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/disk"
)

// gauge returns the value of the unlabelled gauge name gathered from reg (ok false if absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestQueueGauges: woorelay_queue_oldest_event_age_seconds is the age of the oldest queued
// event (0 when none waits) and woorelay_queue_dead_letters counts the dead letters waiting.
func TestQueueGauges(t *testing.T) {
	q, err := disk.Open(t.TempDir(), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	c := newCountersCollector(q)
	received := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return received.Add(90 * time.Second) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	if v, ok := gauge(t, reg, "woorelay_queue_oldest_event_age_seconds"); !ok || v != 0 {
		t.Errorf("empty queue: oldest age %v (present %v), want 0", v, ok)
	}
	entry := func(id string, o queue.Outcome) queue.Entry {
		return queue.Entry{Source: "web", MessageID: id, Visitor: id, Received: received, Outcome: o, Event: []byte(`{}`),
			Requests: []queue.Request{{Method: "GET", URL: "https://example.com/"}}, Reason: "no_identity: none"}
	}
	if _, err := q.Append(context.Background(), []queue.Entry{entry("a", queue.Deliver), entry("b", queue.Rejected)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := gauge(t, reg, "woorelay_queue_oldest_event_age_seconds"); v != 90 {
		t.Errorf("oldest age %v, want 90 (the event was received 90 s ago)", v)
	}
	if v, _ := gauge(t, reg, "woorelay_queue_dead_letters"); v != 1 {
		t.Errorf("dead letters %v, want 1", v)
	}
}
