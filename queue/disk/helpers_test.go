package disk

import (
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testClock is an injectable clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// open opens a queue in dir with a quiet logger and closes it when the test ends (unless the
// test closed it already).
func open(t testing.TB, dir string, opts Options) *Queue {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// entry builds an entry; payload pads the event to about that many bytes.
func entry(source, id, visitor string, o queue.Outcome, payload int) queue.Entry {
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

// scanAll returns every pending item, in order.
func scanAll(t testing.TB, q *Queue) []queue.Item {
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

func deadAll(t testing.TB, q *Queue) []queue.DeadLetter {
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

// countPrefix counts the keys of one key space.
func countPrefix(t testing.TB, q *Queue, prefix byte) int {
	t.Helper()
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: rangeEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n
}

// checkStore asserts that the counters reconcile, that Queued and DeadLettered match what the
// store holds, that every pending item has its visitor index entry and nothing else is indexed,
// and that the persisted counters equal the in-memory ones.
func checkStore(t testing.TB, q *Queue) queue.Counters {
	t.Helper()
	c := q.Counters()
	if !c.Reconciles() {
		t.Fatalf("counters do not reconcile: %+v", c)
	}
	items := scanAll(t, q)
	if int64(len(items)) != c.Queued {
		t.Fatalf("Queued = %d but %d items are pending", c.Queued, len(items))
	}
	for i := 1; i < len(items); i++ {
		if items[i].Seq <= items[i-1].Seq {
			t.Fatalf("items out of order: %d then %d", items[i-1].Seq, items[i].Seq)
		}
	}
	if n := countPrefix(t, q, prefixVisitor); n != len(items) {
		t.Fatalf("%d visitor index entries for %d pending items", n, len(items))
	}
	for _, it := range items {
		got, err := q.ScanVisitor(it.Entry.Visitor, it.Seq-1, 1)
		if err != nil || len(got) != 1 || got[0].Seq != it.Seq {
			t.Fatalf("ScanVisitor(%q, %d) = %v, %v; want item %d", it.Entry.Visitor, it.Seq-1, got, err, it.Seq)
		}
	}
	if dls := deadAll(t, q); int64(len(dls)) != c.DeadLettered {
		t.Fatalf("DeadLettered = %d but %d dead letters are stored", c.DeadLettered, len(dls))
	}
	v, closer, err := q.db.Get(keyMeta)
	if err == nil {
		m, derr := decodeMeta(v)
		closer.Close()
		if derr != nil {
			t.Fatal(derr)
		}
		if m.c != c {
			t.Fatalf("persisted counters %+v differ from in-memory %+v", m.c, c)
		}
	} else if c != (queue.Counters{}) {
		t.Fatalf("no persisted counters, in-memory %+v", c)
	}
	return c
}
