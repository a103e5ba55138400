package jetstream

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
	"github.com/woorelay/woorelay/queue/queuetest"
)

// recorder is a destination.Sender that answers 2xx after a short delay and records what
// was sent, by whom, in order; failing makes visitor v's sends fail until cleared.
type recorder struct {
	mu      sync.Mutex
	sent    []sent
	failing map[string]bool
}

type sent struct{ relay, url string }

type relaySender struct {
	r    *recorder
	name string
}

func (s relaySender) Send(ctx context.Context, req queue.Request) destination.Attempt {
	time.Sleep(10 * time.Millisecond)
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	var v, i int
	fmt.Sscanf(req.URL, "https://woopra.test/ce?cookie=v%d&id=%d", &v, &i)
	if s.r.failing[fmt.Sprint("v", v)] {
		return destination.Attempt{Class: destination.Retry, Status: 503}
	}
	s.r.sent = append(s.r.sent, sent{s.name, req.URL})
	return destination.Attempt{Class: destination.Done, Status: 200}
}

// relay is one queue and its dispatcher, as one woorelay serve holds them.
type relay struct {
	q    *Queue
	stop context.CancelFunc
	done chan error
}

func startRelay(t *testing.T, url, stream, name string, rec *recorder) *relay {
	return startRelayWith(t, Options{URL: url, Stream: stream, Partitions: 8, Logger: quiet, LeaseTTL: 900 * time.Millisecond, Grace: 300 * time.Millisecond, Instance: name}, rec)
}

// startRelayWith opens a queue with o and runs a dispatcher on it, sending as o.Instance.
func startRelayWith(t *testing.T, o Options, rec *recorder) *relay {
	name := o.Instance
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	d := destination.NewDispatcher(q, relaySender{rec, name}, destination.DispatcherOptions{
		Workers: 4, Window: 256, PerVisitor: 16, Rescan: 50 * time.Millisecond,
		Backoff: destination.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}, Logger: quiet,
	})
	ctx, cancel := context.WithCancel(context.Background())
	r := &relay{q: q, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	return r
}

// close stops delivery, then the queue (giving its partitions up).
func (r *relay) close(t *testing.T) {
	r.stop()
	if err := <-r.done; err != nil {
		t.Error(err)
	}
	if err := r.q.Close(); err != nil {
		t.Error(err)
	}
}

// TestPartitionsMoveBetweenRelays: a second relay joins while the first delivers a backlog,
// takes a share of the partitions, a retrying visitor's attempts move with its partition,
// and the first relay leaves; every event is delivered, each visitor's in order, and the
// cluster's counters reconcile.
func TestPartitionsMoveBetweenRelays(t *testing.T) {
	srv := natstest.Run(t)
	rec := &recorder{failing: map[string]bool{}}
	const visitors, per = 40, 10
	a := startRelay(t, srv.URL(), "MOVE", "a", rec)
	rec.mu.Lock()
	rec.failing["v7"] = true
	rec.mu.Unlock()
	appendBacklog(t, a.q, visitors, per)
	b := startRelay(t, srv.URL(), "MOVE", "b", rec)
	time.Sleep(2 * time.Second) // the partitions rebalance; v7 keeps failing, wherever it is
	a.q.mu.Lock()
	heldA := len(a.q.parts)
	a.q.mu.Unlock()
	if heldA == 0 || heldA == 8 {
		t.Errorf("relay a holds %d of 8 partitions after b joined, want a share", heldA)
	}
	a.close(t)
	// v7's head has been retried; its attempts are in the state bucket for whoever holds it.
	waitRetried(t, b.q, "v7")
	rec.mu.Lock()
	delete(rec.failing, "v7")
	rec.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for b.q.Counters().Delivered < visitors*per && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	b.close(t)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string]bool{}
	next := map[int]int{}
	by := map[string]int{}
	dups := 0
	for _, s := range rec.sent {
		if seen[s.url] {
			dups++
			continue
		}
		seen[s.url] = true
		by[s.relay]++
		var v, i int
		fmt.Sscanf(s.url, "https://woopra.test/ce?cookie=v%d&id=%d", &v, &i)
		if i != next[v] {
			t.Errorf("visitor v%d: event %d reached the destination after %d, want %d", v, i, next[v]-1, next[v])
		}
		next[v] = i + 1
	}
	if len(seen) != visitors*per {
		t.Errorf("%d distinct events reached the destination, want %d", len(seen), visitors*per)
	}
	if by["a"] == 0 || by["b"] == 0 {
		t.Errorf("sends by relay: %v, want both", by)
	}
	q, err := Open(Options{URL: srv.URL(), Stream: "MOVE", Partitions: 8, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	c := q.Counters()
	if !c.Reconciles() || c.Delivered != visitors*per || c.Queued != 0 {
		t.Errorf("counters %+v, want %d delivered, none queued, reconciling", c, visitors*per)
	}
	t.Logf("sends: %d (%d repeated after a move), by relay %v, counters %+v", len(rec.sent), dups, by, c)
}

// appendBacklog appends per events for each of visitors visitors (v0 to v<visitors-1>), in
// rounds, each event's request naming its visitor and number for the recorder.
func appendBacklog(t *testing.T, q *Queue, visitors, per int) {
	t.Helper()
	for i := range per {
		var batch []queue.Entry
		for v := range visitors {
			e := queuetest.Entry("web", fmt.Sprintf("v%d-%d", v, i), fmt.Sprint("v", v), queue.Deliver, 200)
			e.Requests[0].URL = fmt.Sprintf("https://woopra.test/ce?cookie=v%d&id=%d", v, i)
			batch = append(batch, e)
		}
		queuetest.MustAppend(t, q, batch...)
	}
}

func waitRetried(t *testing.T, q *Queue, visitor string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if items, _ := q.ScanVisitor(visitor, 0, 1); len(items) == 1 && items[0].Attempts > 0 {
			return
		}
	}
	t.Fatalf("%s's head was not retried by the relay holding it", visitor)
}
