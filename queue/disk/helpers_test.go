package disk

import (
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/queuetest"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testClock is an injectable clock tests move by hand (the suite's).
type testClock = queuetest.Clock

func newTestClock() *testClock { return queuetest.NewClock() }

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

// entry builds an entry (queuetest.Entry); payload pads the event to about that many bytes.
func entry(source, id, visitor string, o queue.Outcome, payload int) queue.Entry {
	return queuetest.Entry(source, id, visitor, o, payload)
}

// diskBackend describes the disk queue to the shared suite: a test clock (exact dedup
// boundaries), one log (exact sequence numbers), writes visible at once.
var diskBackend = queuetest.Backend{
	New: func(t testing.TB, cfg queuetest.Config) func(t testing.TB) queue.Queue {
		dir := t.TempDir()
		return func(t testing.TB) queue.Queue {
			return open(t, dir, Options{Clock: cfg.Clock, DedupWindow: cfg.DedupWindow})
		}
	},
	DedupWindow: time.Hour,
	DedupSlack:  time.Nanosecond,
	GlobalOrder: true,
	Check:       func(t testing.TB, q queue.Queue) { checkInternal(t, q.(*Queue)) },
}

// scanAll returns every pending item, in order.
func scanAll(t testing.TB, q *Queue) []queue.Item { return queuetest.ScanAll(t, q) }

func deadAll(t testing.TB, q *Queue) []queue.DeadLetter { return queuetest.DeadAll(t, q) }

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
// store holds (queuetest.CheckStore), that every pending item has its visitor index entry and
// nothing else is indexed, and that the persisted counters equal the in-memory ones.
func checkStore(t testing.TB, q *Queue) queue.Counters {
	t.Helper()
	return queuetest.CheckStore(t, diskBackend, q)
}

// checkInternal is the disk queue's own part of checkStore.
func checkInternal(t testing.TB, q *Queue) {
	t.Helper()
	c := q.Counters()
	if n := countPrefix(t, q, prefixVisitor); n != 0 {
		t.Fatalf("%d per-item visitor index entries left (version 2 layout)", n)
	}
	checkVisitorRuns(t, q)
	// Every pending item kept in the payload log is counted in its segment. A segment may count
	// more than its records say only when a record was damaged on disk (its removal cannot tell
	// which segment to release; the next open counts again); fewer would delete a segment in use.
	want := map[uint64]int64{}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixItem}, UpperBound: rangeEnd(prefixItem)})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		if _, loc, err := decodeItemState(it.Value()); err == nil && loc.ref {
			want[loc.seg]++
		}
	}
	it.Close()
	q.segs.mu.Lock()
	for id, seg := range q.segs.segs {
		if seg.live < want[id] || (seg.live > want[id] && !q.damaged.Load()) {
			t.Errorf("segment %d counts %d pending items, its records say %d", id, seg.live, want[id])
		}
		delete(want, id)
	}
	q.segs.mu.Unlock()
	for id, n := range want {
		t.Errorf("%d pending items point at segment %d, which is not open", n, id)
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
}

// checkVisitorRuns checks that a visitor run indexes every pending item with its visitor's hash.
func checkVisitorRuns(t testing.TB, q *Queue) {
	t.Helper()
	hashes := map[uint64]uint64{} // seq → hash, from the runs
	runs, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixVisitorRun}, UpperBound: rangeEnd(prefixVisitorRun)})
	if err != nil {
		t.Fatal(err)
	}
	for valid := runs.First(); valid; valid = runs.Next() {
		first, ok := seqOf(runs.Key())
		v := runs.Value()
		if !ok || len(v)%8 != 0 {
			t.Fatalf("visitor run %q has a %d-byte value", runs.Key(), len(v))
		}
		for i := 0; i < len(v)/8; i++ {
			hashes[first+uint64(i)] = binary.LittleEndian.Uint64(v[8*i:])
		}
	}
	if err := runs.Close(); err != nil {
		t.Fatal(err)
	}
	items, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixItem}, UpperBound: rangeEnd(prefixItem)})
	if err != nil {
		t.Fatal(err)
	}
	defer items.Close()
	for valid := items.First(); valid; valid = items.Next() {
		seq, _ := seqOf(items.Key())
		_, visitor, err := decodeItemVisitor(items.Value())
		if err != nil {
			continue // corrupt on purpose: Scan moves it to the dead letters
		}
		h, ok := hashes[seq]
		if !ok || h != visitorHash(visitor) {
			t.Fatalf("pending item %d (visitor %q) is not in a visitor run (found %v, hash %x)", seq, visitor, ok, h)
		}
	}
}

// visitorKey is a key of the per-item visitor index of version 1 and 2 stores, which tests
// write to build such stores: 'v', the visitor's length (so that no visitor's keys start with
// another's), the visitor and the big-endian sequence number.
func visitorKey(visitor string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(visitorPrefix(visitor), seq)
}

func visitorPrefix(visitor string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(visitor)+8)
	k = append(k, prefixVisitor)
	k = binary.AppendUvarint(k, uint64(len(visitor)))
	return append(k, visitor...)
}
