package jetstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
	"github.com/woorelay/woorelay/queue/queuetest"
)

// TestHoldIsBounded: a relay holds at most MaxPending items of a partition, whatever the
// backlog; finishing items lets the next ones in, in order.
func TestHoldIsBounded(t *testing.T) {
	srv := natstest.Run(t)
	q, err := Open(Options{URL: srv.URL(), Stream: "BOUND", Partitions: 1, MaxPending: 5, Logger: quiet, LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	for i := range 20 {
		queuetest.MustAppend(t, q, queuetest.Entry("web", fmt.Sprint("m", i), fmt.Sprint("v", i%4), queue.Deliver, 200))
	}
	scan := func(want int) []queue.Item {
		t.Helper()
		var items []queue.Item
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if items, _ = q.Scan(0, 100); len(items) == want {
				time.Sleep(200 * time.Millisecond) // and no more come
				if items, _ = q.Scan(0, 100); len(items) == want {
					return items
				}
			}
		}
		t.Fatalf("held %d items, want %d", len(items), want)
		return nil
	}
	var order []string
	for left := 20; left > 0; {
		items := scan(min(5, left))
		for _, it := range items[:min(3, len(items))] {
			order = append(order, it.Entry.MessageID)
			if err := q.Done(it.Seq); err != nil {
				t.Fatal(err)
			}
			left--
		}
	}
	for i, m := range order {
		if m != fmt.Sprint("m", i) {
			t.Fatalf("finished in the order %v, want m0 to m19", order)
		}
	}
	if c := q.Counters(); c.Delivered != 20 || c.Queued != 0 || !c.Reconciles() {
		t.Errorf("counters %+v, want 20 delivered, none queued", c)
	}
}

// TestReadingSurvivesANodeKill: the NATS node a relay is connected to is killed while the
// relay delivers a backlog through small holds (so it reads the partitions many times over)
// and restarted later: every event is delivered, each visitor's in order, none lost in the
// deliveries that were on their way, and the counters reconcile.
func TestReadingSurvivesANodeKill(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	rec := &recorder{failing: map[string]bool{}}
	const visitors, per = 30, 60
	r := startRelayWith(t, Options{URL: c.URLs(), Stream: "KILL", Partitions: 3, Replicas: 3, MaxPending: 16, Logger: quiet,
		LeaseTTL: 3 * time.Second, Instance: "a"}, rec)
	appendBacklog(t, r.q, visitors, per)
	for deadline := time.Now().Add(10 * time.Second); r.q.Counters().Delivered < 100 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	name := r.q.nc.ConnectedServerName()
	killed := -1
	for i, s := range c.Nodes {
		if s.Opts.ServerName == name {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("the relay's server %q is not a node of the cluster", name)
	}
	c.Kill(killed)
	time.Sleep(3 * time.Second)
	if err := c.Restart(killed); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for r.q.Counters().Delivered < visitors*per && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r.close(t) // its last outcomes recorded: the counters are read when none is half done
	q, err := Open(Options{URL: c.URLs(), Stream: "KILL", Partitions: 3, Replicas: 3, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n := q.Counters()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string]bool{}
	next := map[int]int{}
	for _, s := range rec.sent {
		var v, i int
		fmt.Sscanf(s.url, "https://woopra.test/ce?cookie=v%d&id=%d", &v, &i)
		if seen[s.url] {
			if i != next[v]-1 {
				t.Errorf("visitor v%d: event %d sent again after %d", v, i, next[v]-1)
			}
			continue
		}
		seen[s.url] = true
		if i != next[v] {
			t.Errorf("visitor v%d: event %d reached the destination after %d, want %d", v, i, next[v]-1, next[v])
		}
		next[v] = i + 1
	}
	if len(seen) != visitors*per {
		t.Errorf("%d distinct events reached the destination, want %d", len(seen), visitors*per)
	}
	if !n.Reconciles() || n.Delivered != visitors*per || n.Queued != 0 {
		t.Errorf("counters %+v, want %d delivered, none queued, reconciling", n, visitors*per)
	}
	t.Logf("node %s killed and restarted mid-backlog: %d sends for %d events, counters %+v", name, len(rec.sent), len(seen), n)
}

// TestStalledConsumerIsReplaced: a partition's consumer that stops delivering without the
// client noticing (here: paused on the server, which still answers its heartbeats) is found
// out by the reader, which asks the stream after a quiet while and reads again through a new
// consumer: an event appended meanwhile is delivered, not left until the consumer wakes.
func TestStalledConsumerIsReplaced(t *testing.T) {
	srv := natstest.Run(t)
	q, err := Open(Options{URL: srv.URL(), Stream: "STALL", Partitions: 1, Logger: quiet, LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	queuetest.MustAppend(t, q, queuetest.Entry("web", "m0", "v", queue.Deliver, 200))
	first := waitItems(t, q, 1)
	if err := q.Done(first[0].Seq); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	paused := 0
	for info := range q.items.ListConsumers(ctx).Info() {
		if _, err := q.js.PauseConsumer(ctx, "STALL", info.Name, time.Now().Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		paused++
	}
	if paused != 1 {
		t.Fatalf("paused %d consumers, want the reader's one", paused)
	}
	queuetest.MustAppend(t, q, queuetest.Entry("web", "m1", "v", queue.Deliver, 200))
	start := time.Now()
	items := waitItems(t, q, 1)
	if items[0].Entry.MessageID != "m1" {
		t.Fatalf("read %s, want m1", items[0].Entry.MessageID)
	}
	t.Logf("the event appended behind a stalled consumer was read after %s", time.Since(start).Round(100*time.Millisecond))
}

// waitItems waits up to 20 s until Scan gives n items.
func waitItems(t *testing.T, q *Queue, n int) []queue.Item {
	t.Helper()
	var items []queue.Item
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if items, _ = q.Scan(0, 100); len(items) == n {
			return items
		}
	}
	t.Fatalf("scanned %d items, want %d", len(items), n)
	return nil
}
