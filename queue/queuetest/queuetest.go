// Package queuetest is the behavioural suite every queue.Queue backend passes: the lifecycle
// of an item (append, scan, progress, retrying, done, dead, replay, reopen), dedup by
// Source and MessageID, dead letters, the counters that reconcile, per-visitor order, the
// filter at delivery and a close under load. queue/disk and queue/jetstream run it from their
// tests with Run; what only one backend can show (group commit, a disk budget, a partition
// moving between relays) stays in that backend's own tests.
package queuetest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// Config is what the suite asks of a queue it opens.
type Config struct {
	DedupWindow time.Duration    // the dedup window to use
	Clock       func() time.Time // the clock the queue reads (dead letters' At, dedup for a backend that keeps it)
}

// Backend describes one implementation to the suite.
type Backend struct {
	// New creates an empty store and returns the function that opens a queue on it. open is
	// called again after the previous queue was closed, as a restart would; the suite closes
	// every queue it opens, and the backend removes the store when the test ends.
	New func(t testing.TB, cfg Config) (open func(t testing.TB) queue.Queue)

	// DedupWindow is the window the dedup tests use; DedupSlack how far from its end they
	// stay: "within" appends at window-slack, "outside" at window+slack-1ns. A backend on a
	// test clock uses 1ns (the exact boundary); one whose window is timed by a server uses
	// real time (RealTime) and a slack its pruning keeps to.
	DedupWindow, DedupSlack time.Duration
	// RealTime says the dedup window runs on the wall clock: the suite sleeps instead of only
	// advancing Config.Clock.
	RealTime bool

	// Settle is how long the counters and dead letters may take to show what an Append or a
	// write did (a backend that finishes filtered and rejected entries asynchronously); 0
	// means at once, which the suite then asserts.
	Settle time.Duration

	// GlobalOrder says Scan returns every pending item in append order with dense sequence
	// numbers from 1 (one log, one process): the suite then also asserts exact Seqs and ids.
	GlobalOrder bool

	// Check, when set, asserts what the backend's own store holds (indexes, persisted state)
	// after every step that checkStore runs.
	Check func(t testing.TB, q queue.Queue)
}

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, b) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, b) })
	t.Run("DedupConcurrent", func(t *testing.T) { testDedupConcurrent(t, b) })
	t.Run("Order", func(t *testing.T) { testOrder(t, b) })
	t.Run("RetryStateSurvivesReopen", func(t *testing.T) { testRetryState(t, b) })
	t.Run("FilterAtDelivery", func(t *testing.T) { testFilterAtDelivery(t, b) })
	t.Run("AppendCanceled", func(t *testing.T) { testAppendCanceled(t, b) })
	t.Run("CloseUnderLoad", func(t *testing.T) { testCloseUnderLoad(t, b) })
	t.Run("OldestReceived", func(t *testing.T) { testOldestReceived(t, b) })
	t.Run("Suppressions", func(t *testing.T) { testSuppressions(t, b) })
	t.Run("Erase", func(t *testing.T) { testErase(t, b) })
	t.Run("ExpireDeadLetters", func(t *testing.T) { testExpireDeadLetters(t, b) })
}

// testOldestReceived: a queue that reports its oldest pending item (queue.OldestReporter)
// reports none when empty, the first of two pending items, the second once the first is
// delivered, and none again once both are.
func testOldestReceived(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	o, ok := e.q.(queue.OldestReporter)
	if !ok {
		t.Skip("the queue does not implement queue.OldestReporter")
	}
	oldest := func(want time.Time, wantFound bool) {
		t.Helper()
		deadline := time.Now().Add(b.Settle + 5*time.Second)
		for {
			got, found, err := o.OldestReceived()
			if err != nil {
				t.Fatal(err)
			}
			if found == wantFound && got.Equal(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("OldestReceived = %v, %v; want %v, %v", got, found, want, wantFound)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	oldest(time.Time{}, false)
	first, second := Entry("web", "o1", "alice", queue.Deliver, 200), Entry("web", "o2", "bob", queue.Deliver, 200)
	second.Received = first.Received.Add(time.Hour)
	MustAppend(t, e.q, first)
	MustAppend(t, e.q, second)
	oldest(first.Received, true)
	items := WaitPending(t, e.q, 2, b.Settle)
	if err := e.q.Done(byID(t, items, "o1").Seq); err != nil {
		t.Fatal(err)
	}
	oldest(second.Received, true)
	if err := e.q.Done(byID(t, items, "o2").Seq); err != nil {
		t.Fatal(err)
	}
	oldest(time.Time{}, false)
}

var ctx = context.Background()

// Clock is an injectable clock tests move by hand.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed moment.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one test's store, its clock and the queue currently open on it.
type env struct {
	b     Backend
	clock *Clock
	open  func(t testing.TB) queue.Queue
	q     queue.Queue
}

func newEnv(t *testing.T, b Backend, window time.Duration) *env {
	e := &env{b: b, clock: NewClock()}
	e.open = b.New(t, Config{DedupWindow: window, Clock: e.clock.Now})
	e.q = e.open(t)
	t.Cleanup(func() { _ = e.q.Close() })
	return e
}

// reopen closes the queue and opens it again on the same store.
func (e *env) reopen(t testing.TB) queue.Queue {
	t.Helper()
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	e.q = e.open(t)
	return e.q
}

// advance moves the test clock, and real time for a backend whose window the server times.
func (e *env) advance(d time.Duration) {
	if e.b.RealTime {
		time.Sleep(d)
	}
	e.clock.Advance(d)
}

// Entry builds an entry; payload pads the event to about that many bytes.
func Entry(source, id, visitor string, o queue.Outcome, payload int) queue.Entry {
	e := queue.Entry{
		Source:    source,
		MessageID: id,
		Visitor:   visitor,
		Received:  time.Date(2026, 11, 20, 8, 59, 0, 123, time.UTC),
		Outcome:   o,
	}
	e.Event = []byte(fmt.Sprintf(`{"messageId":%q,"anonymousId":%q,"pad":%q}`, id, visitor, padding(id, payload-80)))
	switch o {
	case queue.Deliver:
		e.Requests = []queue.Request{{
			Method:  "GET",
			URL:     "https://www.woopra.com/track/ce?project=example.com&event=purchase&cookie=" + visitor,
			Headers: []queue.Header{{Name: "User-Agent", Value: "Mozilla/5.0"}},
		}}
	case queue.Filtered:
		e.Reason = "filtered: deny list"
	case queue.Rejected:
		e.Reason = "no_identity: no cv_id, cv_email or cookie"
	}
	return e
}

// padding returns n bytes of hex derived from seed: realistic to compress (about 2:1).
func padding(seed string, n int) string {
	if n <= 0 {
		return ""
	}
	h := fnv.New64a()
	h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), 1))
	b := make([]byte, n/2+1)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return hex.EncodeToString(b)[:n]
}

// MustAppend appends entries or fails the test.
func MustAppend(t testing.TB, q queue.Queue, entries ...queue.Entry) queue.AppendResult {
	t.Helper()
	res, err := q.Append(ctx, entries)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

// ScanAll returns every pending item, in Seq order.
func ScanAll(t testing.TB, q queue.Queue) []queue.Item {
	t.Helper()
	var all []queue.Item
	after := uint64(0)
	for {
		items, err := q.Scan(after, 100)
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if len(items) == 0 {
			return all
		}
		all = append(all, items...)
		after = items[len(items)-1].Seq
	}
}

// DeadAll returns every dead letter, oldest first.
func DeadAll(t testing.TB, q queue.Queue) []queue.DeadLetter {
	t.Helper()
	var all []queue.DeadLetter
	after := uint64(0)
	for {
		dls, err := q.DeadLetters(after, 100)
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		if len(dls) == 0 {
			return all
		}
		all = append(all, dls...)
		after = dls[len(dls)-1].ID
	}
}

// WaitPending waits until n items are pending (at once for a synchronous backend) and
// returns them.
func WaitPending(t testing.TB, q queue.Queue, n int, settle time.Duration) []queue.Item {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		items := ScanAll(t, q)
		if len(items) == n || time.Now().After(deadline) {
			if len(items) != n {
				t.Fatalf("%d items pending, want %d", len(items), n)
			}
			return items
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bySeq finds the pending item with this message id.
func byID(t testing.TB, items []queue.Item, id string) queue.Item {
	t.Helper()
	for _, it := range items {
		if it.Entry.MessageID == id {
			return it
		}
	}
	t.Fatalf("no pending item %q among %d", id, len(items))
	return queue.Item{}
}

// CheckStore asserts that the counters reconcile, that Queued and DeadLettered match what
// the store holds, that Seqs increase, that every pending item is found by ScanVisitor, and
// then the backend's own Check. It returns the counters.
func CheckStore(t testing.TB, b Backend, q queue.Queue) queue.Counters {
	t.Helper()
	c := q.Counters()
	if !c.Reconciles() {
		t.Fatalf("counters do not reconcile: %+v", c)
	}
	items := ScanAll(t, q)
	if int64(len(items)) != c.Queued {
		t.Fatalf("Queued = %d but %d items are pending", c.Queued, len(items))
	}
	for i := 1; i < len(items); i++ {
		if items[i].Seq <= items[i-1].Seq {
			t.Fatalf("items out of order: %d then %d", items[i-1].Seq, items[i].Seq)
		}
	}
	for _, it := range items {
		got, err := q.ScanVisitor(it.Entry.Visitor, it.Seq-1, 1)
		if err != nil || len(got) != 1 || got[0].Seq != it.Seq {
			t.Fatalf("ScanVisitor(%q, %d) = %v, %v; want item %d", it.Entry.Visitor, it.Seq-1, got, err, it.Seq)
		}
	}
	if dls := DeadAll(t, q); int64(len(dls)) != c.DeadLettered {
		t.Fatalf("DeadLettered = %d but %d dead letters are stored", c.DeadLettered, len(dls))
	}
	if b.Check != nil {
		b.Check(t, q)
	}
	return c
}

// settle runs CheckStore until the counters equal want, for at most b.Settle.
func settle(t testing.TB, b Backend, q queue.Queue, want queue.Counters) queue.Counters {
	t.Helper()
	deadline := time.Now().Add(b.Settle)
	for {
		c := q.Counters()
		if c == want && int64(len(ScanAll(t, q))) == c.Queued || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := CheckStore(t, b, q)
	if got != want {
		t.Fatalf("counters %+v, want %+v", got, want)
	}
	return got
}

// testLifecycle walks append, scan, done, progress, retrying, dead and replay, and after
// every step checks the counters and what the store holds.
func testLifecycle(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	var a1, b1 queue.Item
	var r1, b1dl uint64
	steps := []struct {
		name string
		do   func(t *testing.T, q queue.Queue)
		want queue.Counters
	}{
		{"append mixed outcomes", func(t *testing.T, q queue.Queue) {
			res, err := q.Append(ctx, []queue.Entry{
				Entry("web", "a1", "alice", queue.Deliver, 500),
				Entry("web", "b1", "bob", queue.Deliver, 500),
				Entry("web", "f1", "carol", queue.Filtered, 100),
				Entry("web", "r1", "", queue.Rejected, 100),
				Entry("web", "a2", "alice", queue.Deliver, 500),
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := (queue.AppendResult{Queued: 3, Filtered: 1, Rejected: 1}); res != want {
				t.Fatalf("result %+v, want %+v", res, want)
			}
		}, queue.Counters{Received: 5, Queued: 3, Filtered: 1, DeadLettered: 1}},
		{"scan returns the items in order with their entries", func(t *testing.T, q queue.Queue) {
			items := WaitPending(t, q, 3, b.Settle)
			a1, b1 = byID(t, items, "a1"), byID(t, items, "b1")
			if b.GlobalOrder {
				var ids []string
				for _, it := range items {
					ids = append(ids, it.Entry.MessageID)
				}
				if strings.Join(ids, ",") != "a1,b1,a2" || items[0].Seq != 1 || items[2].Seq != 3 {
					t.Fatalf("scan = %v (seqs %d..%d)", ids, items[0].Seq, items[2].Seq)
				}
				if page, _ := q.Scan(1, 1); len(page) != 1 || page[0].Seq != 2 {
					t.Fatalf("Scan(1, 1) = %+v", page)
				}
			}
			if page, _ := q.Scan(items[0].Seq, 1); len(page) != 1 || page[0].Seq != items[1].Seq {
				t.Fatalf("Scan(%d, 1) = %+v, want item %d", items[0].Seq, page, items[1].Seq)
			}
			want := Entry("web", "a1", "alice", queue.Deliver, 500)
			if !reflect.DeepEqual(a1.Entry, want) {
				t.Fatalf("entry read back differs:\n got %+v\nwant %+v", a1.Entry, want)
			}
			alice, _ := q.ScanVisitor("alice", 0, 10)
			if len(alice) != 2 || alice[0].Entry.MessageID != "a1" || alice[1].Entry.MessageID != "a2" || alice[0].Seq >= alice[1].Seq {
				t.Fatalf("ScanVisitor(alice) = %+v", alice)
			}
			if rest, _ := q.ScanVisitor("alice", alice[0].Seq, 10); len(rest) != 1 || rest[0].Seq != alice[1].Seq {
				t.Fatalf("ScanVisitor(alice, %d) = %+v", alice[0].Seq, rest)
			}
			if none, _ := q.ScanVisitor("alic", 0, 10); len(none) != 0 {
				t.Fatalf("ScanVisitor(alic) = %+v, want nothing (prefix of another visitor)", none)
			}
		}, queue.Counters{Received: 5, Queued: 3, Filtered: 1, DeadLettered: 1}},
		{"the rejected entry is a dead letter with its reason", func(t *testing.T, q queue.Queue) {
			dls := DeadAll(t, q)
			if len(dls) != 1 || dls[0].Entry.MessageID != "r1" || dls[0].Failure.Reason != "no_identity: no cv_id, cv_email or cookie" || !dls[0].At.Equal(e.clock.Now()) {
				t.Fatalf("dead letters = %+v", dls)
			}
			r1 = dls[0].ID
		}, queue.Counters{Received: 5, Queued: 3, Filtered: 1, DeadLettered: 1}},
		{"done removes the item", func(t *testing.T, q queue.Queue) {
			if err := q.Done(a1.Seq); err != nil {
				t.Fatal(err)
			}
			if err := q.Done(a1.Seq); err != nil { // again: nothing to do, counters unchanged
				t.Fatal(err)
			}
		}, queue.Counters{Received: 5, Queued: 2, Filtered: 1, DeadLettered: 1, Delivered: 1}},
		{"progress and retrying are kept", func(t *testing.T, q queue.Queue) {
			first := e.clock.Now().Add(-time.Minute)
			if err := q.Progress(b1.Seq, 1); err != nil {
				t.Fatal(err)
			}
			if err := q.Retrying(b1.Seq, 3, first); err != nil {
				t.Fatal(err)
			}
			items, _ := q.ScanVisitor("bob", 0, 1)
			if len(items) != 1 || items[0].Attempts != 3 || !items[0].FirstAttempt.Equal(first) || items[0].NextRequest != 1 {
				t.Fatalf("item after Progress/Retrying = %+v", items)
			}
			if err := q.Retrying(b1.Seq+1000, 1, first); err != nil {
				t.Fatalf("Retrying of an unknown item: %v", err)
			}
		}, queue.Counters{Received: 5, Queued: 2, Filtered: 1, DeadLettered: 1, Delivered: 1}},
		{"dead moves the item to the dead letters", func(t *testing.T, q queue.Queue) {
			f := queue.Failure{Reason: "woopra answered 403 Forbidden", Request: "GET https://www.woopra.com/track/ce", Status: 403, Response: "forbidden", Attempts: 4}
			if err := q.Dead(b1.Seq, f); err != nil {
				t.Fatal(err)
			}
			var dls []queue.DeadLetter
			for deadline := time.Now().Add(b.Settle); ; time.Sleep(10 * time.Millisecond) {
				if dls = DeadAll(t, q); len(dls) == 2 || time.Now().After(deadline) {
					break
				}
			}
			if len(dls) != 2 || dls[0].ID != r1 {
				t.Fatalf("dead letters = %+v", dls)
			}
			b1dl = dls[1].ID
			if b.GlobalOrder && b1dl != 2 {
				t.Fatalf("the second dead letter has id %d, want 2", b1dl)
			}
			dl, ok, err := q.DeadLetter(b1dl)
			if err != nil || !ok || dl.Failure != f || dl.Entry.MessageID != "b1" {
				t.Fatalf("DeadLetter(%d) = %+v, %v, %v", b1dl, dl, ok, err)
			}
			if _, ok, _ := q.DeadLetter(b1dl + 1); ok {
				t.Fatalf("DeadLetter(%d) exists", b1dl+1)
			}
		}, queue.Counters{Received: 5, Queued: 1, Filtered: 1, DeadLettered: 2, Delivered: 1}},
		{"replay: unchanged, remapped, left in place", func(t *testing.T, q queue.Queue) {
			// r1 was rejected at ingest: without a remap it stays; b1 goes back.
			n, err := q.Replay([]uint64{r1, b1dl, b1dl, b1dl + 77}, nil)
			if err != nil || n != 1 {
				t.Fatalf("Replay = %d, %v; want 1", n, err)
			}
			items := WaitPending(t, q, 2, b.Settle)
			last := items[len(items)-1]
			if last.Entry.MessageID != "b1" || last.Attempts != 0 || last.NextRequest != 0 {
				t.Fatalf("replayed item = %+v, want b1 last with a fresh state", last)
			}
			if b.GlobalOrder && last.Seq != 4 {
				t.Fatalf("replayed item has seq %d, want 4", last.Seq)
			}
			n, err = q.Replay([]uint64{r1}, func(e queue.Entry) (queue.Entry, error) {
				return queue.Entry{}, errors.New("still broken")
			})
			if err != nil || n != 0 {
				t.Fatalf("Replay with a failing remap = %d, %v", n, err)
			}
			n, err = q.Replay([]uint64{r1}, func(e queue.Entry) (queue.Entry, error) {
				e.Outcome, e.Visitor, e.Reason = queue.Deliver, "dave", ""
				e.Requests = []queue.Request{{Method: "GET", URL: "https://www.woopra.com/track/ce?cookie=dave"}}
				return e, nil
			})
			if err != nil || n != 1 {
				t.Fatalf("Replay with a remap = %d, %v", n, err)
			}
			WaitPending(t, q, 3, b.Settle)
			dave, _ := q.ScanVisitor("dave", 0, 10)
			if len(dave) != 1 || dave[0].Entry.MessageID != "r1" || (b.GlobalOrder && dave[0].Seq != 5) {
				t.Fatalf("remapped item = %+v", dave)
			}
		}, queue.Counters{Received: 5, Queued: 3, Filtered: 1, DeadLettered: 0, Delivered: 1, Replayed: 2}},
		{"reopen resumes", func(t *testing.T, q queue.Queue) {
			before := q.Counters()
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Append(ctx, []queue.Entry{Entry("web", "x", "v", queue.Deliver, 10)}); !errors.Is(err, queue.ErrClosed) {
				t.Fatalf("Append after Close = %v, want ErrClosed", err)
			}
			e.q = e.open(t)
			q = e.q
			if q.Counters() != before {
				t.Fatalf("counters after reopen %+v, want %+v", q.Counters(), before)
			}
			MustAppend(t, q, Entry("web", "a3", "alice", queue.Deliver, 10))
			items := WaitPending(t, q, 4, b.Settle)
			if b.GlobalOrder && items[3].Seq != 6 {
				t.Fatalf("after reopen the new item has seq %d, want 6", items[3].Seq)
			}
			for _, it := range items {
				if err := q.Done(it.Seq); err != nil {
					t.Fatal(err)
				}
			}
		}, queue.Counters{Received: 6, Queued: 0, Filtered: 1, DeadLettered: 0, Delivered: 5, Replayed: 2}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t, e.q)
			settle(t, b, e.q, s.want)
		})
	}
}

// testDedup: a Source and MessageID seen within the window is a duplicate, whatever its
// outcome, within one append or across appends, a reopen and delivery.
func testDedup(t *testing.T, b Backend) {
	window, slack := b.DedupWindow, b.DedupSlack
	tests := []struct {
		name   string
		run    func(t *testing.T, e *env)
		stored int   // pending items at the end
		dups   int64 // Counters.Duplicates at the end
	}{
		{"within one append", func(t *testing.T, e *env) {
			res, err := e.q.Append(ctx, []queue.Entry{Entry("web", "m", "v", queue.Deliver, 10), Entry("web", "m", "v", queue.Deliver, 10), Entry("web", "m", "v", queue.Rejected, 10)})
			if err != nil || res != (queue.AppendResult{Queued: 1, Duplicates: 2}) {
				t.Fatalf("Append = %+v, %v", res, err)
			}
		}, 1, 2},
		{"across appends and outcomes", func(t *testing.T, e *env) {
			MustAppend(t, e.q, Entry("web", "m", "v", queue.Filtered, 10))
			if res := MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10)); res.Duplicates != 1 {
				t.Fatalf("second append = %+v", res)
			}
		}, 0, 1},
		{"no message id is never a duplicate", func(t *testing.T, e *env) {
			MustAppend(t, e.q, Entry("web", "", "v", queue.Deliver, 10), Entry("web", "", "v", queue.Deliver, 10))
			MustAppend(t, e.q, Entry("web", "", "v", queue.Deliver, 10))
		}, 3, 0},
		{"same id from another source is not a duplicate", func(t *testing.T, e *env) {
			MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10), Entry("ios", "m", "v", queue.Deliver, 10))
			// A source name that is a prefix of another must not collide either.
			MustAppend(t, e.q, Entry("we", "bm", "v", queue.Deliver, 10))
		}, 3, 0},
		{"across a reopen", func(t *testing.T, e *env) {
			MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10))
			e.reopen(t)
			if res := MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10)); res.Duplicates != 1 {
				t.Fatalf("after reopen: %+v", res)
			}
		}, 1, 1},
		{"after delivery, still within the window", func(t *testing.T, e *env) {
			MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10))
			items := WaitPending(t, e.q, 1, b.Settle)
			if err := e.q.Done(items[0].Seq); err != nil {
				t.Fatal(err)
			}
			e.advance(window - slack)
			MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10))
		}, 0, 1},
		{"just outside the window", func(t *testing.T, e *env) {
			MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10))
			e.advance(window + slack - time.Nanosecond)
			if res := MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10)); res.Queued != 1 {
				t.Fatalf("outside the window: %+v", res)
			}
			// ...and the new sighting opens a new window.
			e.advance(window / 2)
			if res := MustAppend(t, e.q, Entry("web", "m", "v", queue.Deliver, 10)); res.Duplicates != 1 {
				t.Fatalf("inside the new window: %+v", res)
			}
		}, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, b, window)
			tc.run(t, e)
			WaitPending(t, e.q, tc.stored, b.Settle)
			for deadline := time.Now().Add(b.Settle); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if c := e.q.Counters(); c.Queued == int64(tc.stored) && c.Duplicates == tc.dups && len(ScanAll(t, e.q)) == tc.stored {
					break
				}
			}
			c := CheckStore(t, b, e.q)
			if c.Queued != int64(tc.stored) || c.Duplicates != tc.dups {
				t.Fatalf("queued %d, duplicates %d; want %d, %d", c.Queued, c.Duplicates, tc.stored, tc.dups)
			}
		})
	}
}

// testDedupConcurrent appends the same message id from many goroutines at once: exactly one
// is stored, every other is a duplicate.
func testDedupConcurrent(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	const n = 32
	var wg sync.WaitGroup
	results := make([]queue.AppendResult, n)
	for i := range n {
		wg.Go(func() {
			res, err := e.q.Append(ctx, []queue.Entry{Entry("web", "same", fmt.Sprint("v", i), queue.Deliver, 100)})
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	var total queue.AppendResult
	for _, r := range results {
		total.Queued += r.Queued
		total.Duplicates += r.Duplicates
	}
	if total != (queue.AppendResult{Queued: 1, Duplicates: n - 1}) {
		t.Fatalf("results add up to %+v", total)
	}
	settle(t, b, e.q, queue.Counters{Received: 1, Queued: 1, Duplicates: n - 1})
}

// testOrder appends interleaved visitors in many appends: Scan returns each visitor's items
// in append order, ScanVisitor pages through them, and delivering out of visitor order
// (other visitors first) leaves the rest in order.
func testOrder(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	const visitors, per = 12, 15
	for i := range per {
		batch := make([]queue.Entry, 0, visitors)
		for v := range visitors {
			batch = append(batch, Entry("web", fmt.Sprintf("v%d-%02d", v, i), fmt.Sprint("v", v), queue.Deliver, 120))
		}
		MustAppend(t, e.q, batch...)
	}
	items := WaitPending(t, e.q, visitors*per, b.Settle)
	next := map[string]int{}
	for _, it := range items {
		v := it.Entry.Visitor
		if want := fmt.Sprintf("%s-%02d", v, next[v]); it.Entry.MessageID != want {
			t.Fatalf("visitor %s: scanned %s, want %s", v, it.Entry.MessageID, want)
		}
		next[v]++
	}
	// Page through one visitor.
	var got []string
	for after := uint64(0); ; {
		page, err := e.q.ScanVisitor("v3", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, it := range page {
			got = append(got, it.Entry.MessageID)
		}
		after = page[len(page)-1].Seq
	}
	if len(got) != per || got[0] != "v3-00" || got[per-1] != fmt.Sprintf("v3-%02d", per-1) {
		t.Fatalf("ScanVisitor(v3) paged = %v", got)
	}
	// Deliver every even visitor's items and the first half of the odd ones'.
	for _, it := range items {
		var v, i int
		fmt.Sscanf(it.Entry.MessageID, "v%d-%d", &v, &i)
		if v%2 == 0 || i < per/2 {
			if err := e.q.Done(it.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	left := ScanAll(t, e.q)
	if len(left) != visitors/2*(per-per/2) {
		t.Fatalf("%d items left, want %d", len(left), visitors/2*(per-per/2))
	}
	next = map[string]int{}
	for _, it := range left {
		v := it.Entry.Visitor
		if want := fmt.Sprintf("%s-%02d", v, per/2+next[v]); it.Entry.MessageID != want {
			t.Fatalf("after delivering: visitor %s scanned %s, want %s", v, it.Entry.MessageID, want)
		}
		next[v]++
	}
	settle(t, b, e.q, queue.Counters{Received: visitors * per, Delivered: int64(visitors*per - len(left)), Queued: int64(len(left))})
}

// testRetryState: attempts, the first failure and progress survive a reopen, and a write
// after the reopen applies to the item as read back.
func testRetryState(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	multi := Entry("web", "multi", "erin", queue.Deliver, 100)
	multi.Requests = append(multi.Requests, queue.Request{Method: "GET", URL: "https://www.woopra.com/track/identify?cookie=erin"})
	MustAppend(t, e.q, multi, Entry("web", "after", "erin", queue.Deliver, 100))
	items := WaitPending(t, e.q, 2, b.Settle)
	first := e.clock.Now().Add(-2 * time.Hour)
	it := byID(t, items, "multi")
	if err := e.q.Progress(it.Seq, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retrying(it.Seq, 7, first); err != nil {
		t.Fatal(err)
	}
	q := e.reopen(t)
	items = WaitPending(t, q, 2, b.Settle)
	it = byID(t, items, "multi")
	if it.Attempts != 7 || !it.FirstAttempt.Equal(first) || it.NextRequest != 1 || len(it.Entry.Requests) != 2 {
		t.Fatalf("after reopen the item is %+v, want 7 attempts, first failure %v, next request 1", it, first)
	}
	if after := byID(t, items, "after"); after.Seq <= it.Seq || after.Attempts != 0 {
		t.Fatalf("the visitor's later item %+v is not after %d with a fresh state", after, it.Seq)
	}
	if err := q.Retrying(it.Seq, 8, first); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.ScanVisitor("erin", 0, 1); len(got) != 1 || got[0].Attempts != 8 || got[0].NextRequest != 1 {
		t.Fatalf("after another attempt: %+v", got)
	}
	if err := q.Done(it.Seq); err != nil {
		t.Fatal(err)
	}
	settle(t, b, q, queue.Counters{Received: 2, Delivered: 1, Queued: 1})
}

// testFilterAtDelivery: an item delivery's mapping drops on purpose leaves the queue and is
// counted as filtered; filtering it again, or a finished item, changes nothing.
func testFilterAtDelivery(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	MustAppend(t, e.q, Entry("web", "f-1", "u:1", queue.Deliver, 100), Entry("web", "f-2", "u:1", queue.Deliver, 100))
	items := WaitPending(t, e.q, 2, b.Settle)
	if err := e.q.Filter(items[0].Seq, "consent: denied"); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Done(items[1].Seq); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{items[0].Seq, items[1].Seq} {
		if err := e.q.Filter(seq, "again"); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, b, e.q, queue.Counters{Received: 2, Delivered: 1, Filtered: 1})
	if n := len(ScanAll(t, e.q)); n != 0 {
		t.Errorf("%d items still pending", n)
	}
}

// testAppendCanceled: a caller whose context has ended stores nothing.
func testAppendCanceled(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.q.Append(cctx, []queue.Entry{Entry("web", "m", "v", queue.Deliver, 10)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context = %v", err)
	}
	MustAppend(t, e.q, Entry("web", "last", "v", queue.Deliver, 10))
	items := WaitPending(t, e.q, 1, b.Settle)
	if items[0].Entry.MessageID != "last" {
		t.Fatalf("stored %s, want last", items[0].Entry.MessageID)
	}
	settle(t, b, e.q, queue.Counters{Received: 1, Queued: 1})
}

// testCloseUnderLoad closes the queue while appenders run: every Append returns (nil or
// ErrClosed), and what was acknowledged is exactly what the reopened store holds.
func testCloseUnderLoad(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	started := make(chan struct{}, 8)
	q := e.q
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				_, err := q.Append(ctx, []queue.Entry{Entry("web", id, "v", queue.Deliver, 200)})
				if errors.Is(err, queue.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				if i == 10 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 8 {
		<-started
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	e.q = e.open(t)
	q = e.q
	items := WaitPending(t, q, len(acked), b.Settle)
	for _, it := range items {
		if !acked[it.Entry.MessageID] {
			t.Fatalf("item %s stored but not acknowledged", it.Entry.MessageID)
		}
	}
	CheckStore(t, b, q)
}
