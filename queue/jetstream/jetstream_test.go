package jetstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
	"github.com/woorelay/woorelay/queue/queuetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var streams atomic.Int64

// backend opens queues on one in-process JetStream server, a fresh stream per store.
func backend(t *testing.T) queuetest.Backend {
	srv := natstest.Run(t)
	return queuetest.Backend{
		New: func(t testing.TB, cfg queuetest.Config) func(t testing.TB) queue.Queue {
			name := fmt.Sprintf("T%d", streams.Add(1))
			return func(t testing.TB) queue.Queue {
				q, err := Open(Options{URL: srv.URL(), Stream: name, Partitions: 4, DedupWindow: cfg.DedupWindow,
					Clock: cfg.Clock, Logger: quiet, LeaseTTL: 3 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = q.Close() })
				return q
			}
		},
		DedupWindow: 1500 * time.Millisecond,
		DedupSlack:  700 * time.Millisecond,
		RealTime:    true,
		Settle:      10 * time.Second,
	}
}

// TestSuite runs the behavioural suite queue/disk passes on an in-process JetStream server.
func TestSuite(t *testing.T) {
	queuetest.Run(t, backend(t))
}

func connect(t *testing.T, url string) *nats.Conn {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestOverdueLeasePauses: while a partition's lease is overdue for renewal, its items are
// still scanned (so a scan's cursor never passes them) but Owns answers Paused, not Moved;
// the next renewal makes them Owned again, under the same Seqs.
func TestOverdueLeasePauses(t *testing.T) {
	srv := natstest.Run(t)
	q, err := Open(Options{URL: srv.URL(), Stream: "PAUSE", Partitions: 2, Logger: quiet, LeaseTTL: 900 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	var entries []queue.Entry
	for i := range 6 {
		entries = append(entries, queue.Entry{Source: "s", MessageID: fmt.Sprint("m", i), Visitor: fmt.Sprint("v", i%3), Event: []byte(`{}`), Received: time.Now()})
	}
	if _, err := q.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	var items []queue.Item
	deadline := time.Now().Add(10 * time.Second)
	for len(items) < len(entries) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		items, _ = q.Scan(0, 100)
	}
	if len(items) != len(entries) {
		t.Fatalf("scanned %d items, want %d", len(items), len(entries))
	}
	q.mu.Lock()
	for _, pt := range q.parts {
		pt.valid = time.Now().Add(-time.Millisecond)
	}
	q.mu.Unlock()
	again, _ := q.Scan(0, 100)
	if len(again) != len(items) {
		t.Fatalf("with overdue leases Scan gave %d items, want all %d", len(again), len(items))
	}
	for _, it := range items {
		if o := q.Owns(it.Seq); o != queue.Paused {
			t.Fatalf("item %d with an overdue lease: %s, want paused", it.Seq, o)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for q.Owns(items[0].Seq) != queue.Owned && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, it := range items {
		if o := q.Owns(it.Seq); o != queue.Owned {
			t.Fatalf("item %d after the next renewal: %s, want owned", it.Seq, o)
		}
	}
	if o := q.Owns(1 << 40); o != queue.Moved {
		t.Fatalf("an unknown item: %s, want moved", o)
	}
}

// TestDoneOfAnItemAlreadyRemoved: on a three-node cluster, an item whose message is already
// gone from the stream when it is finished (an earlier removal that timed out here but was
// applied, or another relay's) is finished like any other, counted once; on a cluster the
// server answers such a delete with 10057 "no message found", not "message not found".
func TestDoneOfAnItemAlreadyRemoved(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	q, err := Open(Options{URL: c.URLs(), Stream: "GONE", Partitions: 1, Replicas: 3, Logger: quiet, LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	entries := []queue.Entry{
		{Source: "s", MessageID: "m1", Visitor: "v", Event: []byte(`{}`), Received: time.Now()},
		{Source: "s", MessageID: "m2", Visitor: "v", Event: []byte(`{}`), Received: time.Now()},
	}
	if _, err := q.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	items := waitItems(t, q, 2)
	ctx := context.Background()
	for _, it := range items {
		if err := q.items.DeleteMsg(ctx, q.get(it.Seq).sseq); err != nil {
			t.Fatal(err)
		}
	}
	// The raw answer a second delete gets, so the test fails if the server changes it.
	err = q.items.DeleteMsg(ctx, q.get(items[0].Seq).sseq)
	if err == nil {
		t.Fatal("deleting a deleted message succeeded; want the server's refusal")
	}
	t.Logf("nats.go on a second delete: %v", err)
	if err := q.Done(items[0].Seq); err != nil {
		t.Fatalf("Done of an item already removed: %v", err)
	}
	if err := q.Filter(items[1].Seq, "test"); err != nil {
		t.Fatalf("Filter of an item already removed: %v", err)
	}
	if err := q.deleteMsg(ctx, "GONE", 1<<40); err == nil {
		t.Error("deleting a sequence past the stream's end succeeded; want an error")
	}
	n := q.Counters()
	if n.Delivered != 1 || n.Filtered != 1 || n.Queued != 0 || n.Received != 2 || !n.Reconciles() {
		t.Errorf("counters %+v: want 2 received, 1 delivered, 1 filtered, none queued", n)
	}
}
