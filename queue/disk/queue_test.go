package disk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/queuetest"
)

var ctx = context.Background()

// TestSuite runs the behavioural suite every queue backend passes (queue/queuetest) on the
// disk queue, on a test clock, with its exact sequence numbers and store checks.
func TestSuite(t *testing.T) {
	queuetest.Run(t, diskBackend)
}

// TestDedupPruning: pruning removes expired dedup keys only, also the ones found on open.
func TestDedupPruning(t *testing.T) {
	const window = time.Hour
	dir := t.TempDir()
	clock := newTestClock()
	opts := Options{Clock: clock.Now, DedupWindow: window}
	q := open(t, dir, opts)
	for i := range 50 {
		mustAppend(t, q, entry("web", fmt.Sprint("old", i), "v", queue.Deliver, 10))
	}
	clock.Advance(window / 2)
	mustAppend(t, q, entry("web", "new", "v", queue.Deliver, 10))
	mustAppend(t, q, entry("web", "old0", "v", queue.Deliver, 10)) // duplicate
	clock.Advance(window / 2)
	mustAppend(t, q, entry("web", "old1", "v", queue.Deliver, 10)) // expired: stored again
	prune(q)
	if k, tk := countPrefix(t, q, prefixDedup), countPrefix(t, q, prefixDedupTime); k != 2 || tk != 2 {
		t.Fatalf("after pruning %d dedup keys and %d time entries remain, want 2 and 2 (new, old1)", k, tk)
	}
	if res := mustAppend(t, q, entry("web", "new", "v", queue.Deliver, 10), entry("web", "old1", "v", queue.Deliver, 10)); res.Duplicates != 2 {
		t.Fatalf("kept keys no longer deduplicate: %+v", res)
	}
	clock.Advance(window)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, opts) // pruning also runs on open
	prune(q)
	if k := countPrefix(t, q, prefixDedup); k != 0 {
		t.Fatalf("%d dedup keys remain after every window expired", k)
	}
	c := checkStore(t, q)
	if c.Queued != 52 || c.Duplicates != 3 {
		t.Fatalf("queued %d, duplicates %d; want 52, 3", c.Queued, c.Duplicates)
	}
}

func mustAppend(t *testing.T, q *Queue, entries ...queue.Entry) queue.AppendResult {
	t.Helper()
	res, err := q.Append(ctx, entries)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

// prune asks the committer to prune every expired dedup key and waits for it.
func prune(q *Queue) {
	done := make(chan struct{})
	q.pruneReq <- done
	<-done
}

// TestGroupCommit holds the committer while N appenders queue up, then checks that they all
// shared a single commit (one WAL sync).
func TestGroupCommit(t *testing.T) {
	q := open(t, t.TempDir(), Options{})
	const n = 64
	release := make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { <-release }) }
	q.testHookGroup.Store(&hook)
	before := q.commits.Load()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			batch := make([]queue.Entry, 20)
			for j := range batch {
				batch[j] = entry("web", fmt.Sprintf("g%d-%d", i, j), fmt.Sprint("v", i), queue.Deliver, 1200)
			}
			if _, err := q.Append(ctx, batch); err != nil {
				t.Error(err)
			}
		})
	}
	// The committer has taken the first call and waits in the hook; wait until the other
	// n-1 are queued behind it.
	for len(q.reqs) < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if commits := q.commits.Load() - before; commits != 1 {
		t.Fatalf("%d appenders took %d commits, want 1", n, commits)
	}
	if c := checkStore(t, q); c.Queued != n*20 {
		t.Fatalf("queued %d, want %d", c.Queued, n*20)
	}
}

// TestDiskBudget fills the store to its budget: the refused Append stores nothing, and once
// the items are delivered and compacted away appends succeed again.
func TestDiskBudget(t *testing.T) {
	const budget = 4 << 20
	q := open(t, t.TempDir(), Options{DiskBudget: budget, MemTableSize: 256 << 10})
	var accepted int
	var full bool
	for i := 0; i < 1000 && !full; i++ {
		batch := make([]queue.Entry, 10)
		for j := range batch {
			batch[j] = entry("web", fmt.Sprintf("m%d-%d", i, j), "v", queue.Deliver, 4000)
		}
		before := q.Counters()
		_, err := q.Append(ctx, batch)
		switch {
		case err == nil:
			accepted += len(batch)
		case errors.Is(err, queue.ErrFull):
			full = true
			if after := q.Counters(); after != before {
				t.Fatalf("a refused append changed the counters: %+v -> %+v", before, after)
			}
		default:
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatalf("no ErrFull after %d entries (usage %d, budget %d)", accepted, q.DiskUsage(), budget)
	}
	c := checkStore(t, q)
	if c.Queued != int64(accepted) || c.Received != int64(accepted) {
		t.Fatalf("counters %+v after %d accepted entries", c, accepted)
	}
	for _, it := range scanAll(t, q) {
		if err := q.Done(it.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// pebble deletes the compacted-away files in the background: wait for it (this is a
	// condition, not a timing assertion; the deadline only stops a broken test).
	for deadline := time.Now().Add(30 * time.Second); q.DiskUsage() >= budget/2; {
		if time.Now().After(deadline) {
			t.Fatalf("usage still %d after delivering and compacting, want below %d", q.DiskUsage(), budget/2)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := q.Append(ctx, []queue.Entry{entry("web", "after", "v", queue.Deliver, 4000)}); err != nil {
		t.Fatalf("Append after space was reclaimed: %v", err)
	}
	checkStore(t, q)
}

// TestAppendContext: a caller whose context has ended stores nothing.
func TestAppendContext(t *testing.T) {
	q := open(t, t.TempDir(), Options{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := q.Append(cctx, []queue.Entry{entry("web", "m", "v", queue.Deliver, 10)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context = %v", err)
	}
	// A caller that gives up while its request waits for the committer: the committer sees the
	// ended context and stores nothing of it.
	release, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(entered); <-release }) }
	q.testHookGroup.Store(&hook)
	firstDone := make(chan error)
	go func() {
		_, err := q.Append(ctx, []queue.Entry{entry("web", "first", "v", queue.Deliver, 10)})
		firstDone <- err
	}()
	<-entered // the committer holds "first"
	cctx, cancel = context.WithCancel(ctx)
	errc := make(chan error)
	go func() {
		_, err := q.Append(cctx, []queue.Entry{entry("web", "gone", "v", queue.Deliver, 10)})
		errc <- err
	}()
	for len(q.reqs) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append canceled while queued = %v", err)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(ctx, []queue.Entry{entry("web", "last", "v", queue.Deliver, 10)}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range scanAll(t, q) {
		ids = append(ids, it.Entry.MessageID)
	}
	if strings.Join(ids, ",") != "first,last" {
		t.Fatalf("stored %v, want first,last", ids)
	}
	checkStore(t, q)
}

// TestAppendCallerGoneMidCommit: a caller whose context ends after the committer took its
// call returns at once and may reuse its entries (ingest pools them); what is committed is what
// the caller passed, not what it wrote afterwards.
func TestAppendCallerGoneMidCommit(t *testing.T) {
	q := open(t, t.TempDir(), Options{})
	release, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(entered); <-release }) }
	q.testHookCommit.Store(&hook)
	cctx, cancel := context.WithCancel(ctx)
	entries := []queue.Entry{entry("web", "kept", "alice", queue.Deliver, 10), entry("web", "gone", "bob", queue.Filtered, 10)}
	errc := make(chan error)
	go func() {
		_, err := q.Append(cctx, entries)
		errc <- err
	}()
	<-entered // the committer has checked the context and holds the call
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append canceled mid-commit = %v", err)
	}
	for i := range entries { // the caller reuses its entries
		entries[i] = entry("other", "reused", "mallory", queue.Rejected, 10)
	}
	close(release)
	res, err := q.Append(ctx, []queue.Entry{entry("web", "kept", "alice", queue.Deliver, 10), entry("web", "reused", "mallory", queue.Deliver, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 1 || res.Queued != 1 {
		t.Errorf("after the commit: %+v, want kept a duplicate and reused queued", res)
	}
	items, err := q.ScanVisitor("alice", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Entry.MessageID != "kept" {
		t.Fatalf("alice's items = %+v, want the committed \"kept\"", items)
	}
	if c := q.Counters(); c.Filtered != 1 || c.DeadLettered != 0 || c.Queued != 2 {
		t.Errorf("counters %+v: want the call's own outcomes (1 filtered, no dead letter) and 2 queued", c)
	}
	checkStore(t, q)
}

// TestCorruptItem: a pending item that cannot be decoded is moved to the dead letters with
// its raw record and a reason naming the failure, instead of panicking or stalling delivery.
func TestCorruptItem(t *testing.T) {
	tests := []struct {
		name   string
		record []byte // stored under item 1
		scan   func(q *Queue) ([]queue.Item, error)
	}{
		{"scan, visitor readable", append(encodeItem(itemState{}, appendEntry(nil, &queue.Entry{Visitor: "v"}))[:11], 0xff), func(q *Queue) ([]queue.Item, error) { return q.Scan(0, 10) }},
		{"scan, header broken", []byte{kindItem, 9, 0}, func(q *Queue) ([]queue.Item, error) { return q.Scan(0, 10) }},
		{"scan visitor", append(encodeItem(itemState{}, appendEntry(nil, &queue.Entry{Visitor: "v"}))[:11], 0xff), func(q *Queue) ([]queue.Item, error) { return q.ScanVisitor("v", 0, 10) }},
		{"dead", []byte{kindDeadLetter}, func(q *Queue) ([]queue.Item, error) {
			if err := q.Dead(1, queue.Failure{}); err != nil {
				return nil, err
			}
			return q.Scan(0, 10)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := open(t, t.TempDir(), Options{})
			mustAppend(t, q, entry("web", "a", "v", queue.Deliver, 10), entry("web", "b", "v", queue.Deliver, 10))
			if err := q.db.Set(itemKey(1), tc.record, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			items, err := tc.scan(q)
			if err != nil || len(items) != 1 || items[0].Entry.MessageID != "b" {
				t.Fatalf("after the corrupt item: %+v, %v; want item b only", items, err)
			}
			dl, ok, err := q.DeadLetter(1)
			if err != nil || !ok || !strings.Contains(dl.Failure.Reason, "corrupt queue record (item 1)") || string(dl.Entry.Event) != string(tc.record) {
				t.Fatalf("dead letter = %+v, %v, %v", dl, ok, err)
			}
			if n, err := q.Replay([]uint64{1}, nil); err != nil || n != 0 {
				t.Fatalf("Replay of a quarantined record without remap = %d, %v; want it left in place", n, err)
			}
			if c := q.Counters(); c.Queued != 1 || c.DeadLettered != 1 || !c.Reconciles() {
				t.Fatalf("counters %+v", c)
			}
			if _, _, err := decodeItemVisitor(tc.record); err != nil {
				return // its visitor index entry could not be found; checkStore would count it
			}
			checkStore(t, q)
		})
	}
	t.Run("done drops it", func(t *testing.T) {
		q := open(t, t.TempDir(), Options{})
		mustAppend(t, q, entry("web", "a", "v", queue.Deliver, 10))
		if err := q.db.Set(itemKey(1), []byte{kindItem, 9}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := q.Progress(1, 1); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "item 1") {
			t.Fatalf("Progress of a corrupt item = %v, want an error naming item 1", err)
		}
		if err := q.Done(1); err != nil {
			t.Fatal(err)
		}
		if items, err := q.ScanVisitor("v", 0, 10); err != nil || len(items) != 0 {
			t.Fatalf("ScanVisitor after dropping = %+v, %v (a dangling index entry must be skipped)", items, err)
		}
		if c := q.Counters(); c.Queued != 0 || c.Delivered != 1 {
			t.Fatalf("counters %+v", c)
		}
	})
}

// TestScanSkipsDeliveredHead delivers a long run of items and checks that a scan from the
// start still finds the first pending one (through the head watermark), also after a reopen.
func TestScanSkipsDeliveredHead(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	for i := range 20 {
		batch := make([]queue.Entry, 50)
		for j := range batch {
			batch[j] = entry("web", fmt.Sprintf("m%d-%d", i, j), fmt.Sprint("v", j%7), queue.Deliver, 100)
		}
		mustAppend(t, q, batch...)
	}
	for s := uint64(1); s <= 990; s++ {
		if err := q.Done(s); err != nil {
			t.Fatal(err)
		}
		if s%97 == 0 {
			if items, _ := q.Scan(0, 1); len(items) != 1 || items[0].Seq != s+1 {
				t.Fatalf("after delivering 1..%d Scan(0,1) = %+v", s, items)
			}
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, Options{})
	if h := q.head.Load(); h != 991 {
		t.Fatalf("head after reopen = %d, want 991", h)
	}
	items := scanAll(t, q)
	if len(items) != 10 || items[0].Seq != 991 {
		t.Fatalf("pending after reopen: %d items from %d", len(items), items[0].Seq)
	}
	checkStore(t, q)
}

// TestRemoveScannedItems checks removals of items a scan returned, which use what the scan
// read instead of reading the item again: a rewritten item stays deleted after a reopen, a
// second Done counts nothing, and a removal that races with a scan leaves nothing stale.
func TestRemoveScannedItems(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, q *Queue, items []queue.Item)
	}{
		{"done twice counts once", func(t *testing.T, q *Queue, items []queue.Item) {
			for range 2 {
				if err := q.Done(items[0].Seq); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"retried then done", func(t *testing.T, q *Queue, items []queue.Item) {
			if err := q.Retrying(items[0].Seq, 1, time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := q.Done(items[0].Seq); err != nil {
				t.Fatal(err)
			}
		}},
		{"retried after the scan, filtered", func(t *testing.T, q *Queue, items []queue.Item) {
			if err := q.Retrying(items[0].Seq, 1, time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Scan(0, 10); err != nil { // remembers the rewritten item again
				t.Fatal(err)
			}
			if err := q.Filter(items[0].Seq, "skip: test"); err != nil {
				t.Fatal(err)
			}
		}},
		{"done by another scan's snapshot", func(t *testing.T, q *Queue, items []queue.Item) {
			// A removal between a scan's snapshot and its record must not leave a record.
			gen := q.scanStart()
			if err := q.Done(items[0].Seq); err != nil {
				t.Fatal(err)
			}
			q.remember(gen, []scanned{{items[0].Seq, knownItem{}}})
			if err := q.Done(items[0].Seq); err != nil {
				t.Fatal(err)
			}
		}},
		{"dead letter", func(t *testing.T, q *Queue, items []queue.Item) {
			if err := q.Dead(items[0].Seq, queue.Failure{Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			if err := q.Done(items[0].Seq); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			q := open(t, dir, Options{})
			if _, err := q.Append(ctx, []queue.Entry{entry("s", "a", "v1", queue.Deliver, 100), entry("s", "b", "v1", queue.Deliver, 100)}); err != nil {
				t.Fatal(err)
			}
			items, err := q.Scan(0, 10)
			if err != nil || len(items) != 2 {
				t.Fatalf("Scan = %d items, %v", len(items), err)
			}
			tc.run(t, q, items)
			c := checkStore(t, q)
			if c.Queued != 1 || c.Delivered+c.Filtered+c.DeadLettered != 1 {
				t.Fatalf("counters after removing one of two: %+v", c)
			}
			if len(q.known) > 1 {
				t.Fatalf("%d items remembered, want at most the one still pending", len(q.known))
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = open(t, dir, Options{})
			left := scanAll(t, q)
			if len(left) != 1 || left[0].Seq != items[1].Seq {
				t.Fatalf("after reopen pending = %v, want only item %d", left, items[1].Seq)
			}
			checkStore(t, q)
		})
	}
}

// TestRemovalsGrouped removes items from many goroutines at once, each item twice and some
// through Filter, some scanned and some not: removals that wait for another group's write are
// written together, and every item is counted exactly once.
func TestRemovalsGrouped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q := open(t, dir, Options{})
	const n = 400
	var entries []queue.Entry
	for i := range n {
		entries = append(entries, entry("s", fmt.Sprint("m", i), fmt.Sprint("v", i%7), queue.Deliver, 50))
	}
	if _, err := q.Append(ctx, entries); err != nil {
		t.Fatal(err)
	}
	items, err := q.Scan(0, n/2) // the first half is known from a scan, the rest is read back
	if err != nil || len(items) != n/2 {
		t.Fatalf("Scan = %d items, %v", len(items), err)
	}
	first := items[0].Seq
	// The first leader waits until the other workers' removals have formed the next group, or
	// for 200 ms when they all joined its own (the leader yields before it takes its group).
	var once sync.Once
	hook := func() {
		once.Do(func() {
			for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
				q.rmu.Lock()
				waiting := 0
				if q.rnext != nil {
					waiting = len(q.rnext.ops)
				}
				q.rmu.Unlock()
				if waiting >= 15 {
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	q.testHookRemoval.Store(&hook)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				seq := first + uint64(i)
				remove := q.Done
				if i%5 == 0 {
					remove = func(seq uint64) error { return q.Filter(seq, "skip: test") }
				}
				errs <- remove(seq)
				errs <- remove(seq) // again: counted once
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c := checkStore(t, q)
	if c.Queued != 0 || c.Filtered != n/5 || c.Delivered != n-n/5 {
		t.Fatalf("counters = %+v, want %d delivered and %d filtered", c, n-n/5, n/5)
	}
	if len(q.known) != 0 {
		t.Fatalf("%d removed items still remembered", len(q.known))
	}
	if w := q.removalWrites.Load(); w > n-14 {
		t.Fatalf("%d batches written for %d removals: none was grouped", w, n)
	}
	q.testHookRemoval.Store(nil)
	if q.rbusy || q.rnext != nil {
		t.Fatalf("a removal group was left behind: busy %v, next %v", q.rbusy, q.rnext)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, Options{})
	if c2 := checkStore(t, q); c2 != c {
		t.Fatalf("counters after reopen %+v, before %+v", c2, c)
	}
}

// TestBlockCacheHasRoomBesideMemtables: pebble reserves every memtable's size in its block
// cache, so a cache of exactly CacheSize held no blocks at all while the memtables were as
// large as it (every dedup lookup read its table's filter from disk). A block read again is a
// cache hit.
func TestBlockCacheHasRoomBesideMemtables(t *testing.T) {
	q := open(t, t.TempDir(), Options{CacheSize: 1 << 20, MemTableSize: 2 << 20})
	// Dead letters are kept in pebble: 5 MiB of them fill memtables of 256 KiB, 512 KiB, 1 MiB
	// and 2 MiB (each twice the last), so the memtable now reserves more than CacheSize.
	for i := range 250 {
		var batch []queue.Entry
		for j := range 20 {
			batch = append(batch, entry("web", fmt.Sprintf("m-%d-%d", i, j), "v", queue.Rejected, 1000))
		}
		mustAppend(t, q, batch...)
	}
	if err := q.db.Flush(); err != nil {
		t.Fatal(err)
	}
	key := dedupSuffix("web", "m-3-7")
	read := func() {
		t.Helper()
		_, closer, err := q.db.Get(key)
		if err != nil {
			t.Fatalf("dedup key: %v", err)
		}
		closer.Close()
	}
	read()
	// The counters are not this test's alone (pebble's background work reads through the
	// cache, and its race-detector builds drop some blocks on purpose), so the test asks for
	// what no room for blocks rules out: a hit for every read, and blocks in the cache.
	const reads = 50
	before := q.db.Metrics().BlockCache
	for range reads {
		read()
	}
	after := q.db.Metrics().BlockCache
	if after.Count == 0 || after.Hits-before.Hits < reads {
		t.Fatalf("%d reads of one key: cache hits %d→%d, misses %d→%d, %d blocks cached; want hits", reads, before.Hits, after.Hits, before.Misses, after.Misses, after.Count)
	}
}
