package disk

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

// seqsOf lists the sequence numbers of items.
func seqsOf(items []queue.Item) []uint64 {
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = it.Seq
	}
	return out
}

// scanVisitorAll pages through one visitor's items, limit at a time.
func scanVisitorAll(t *testing.T, q *Queue, visitor string, limit int) []uint64 {
	t.Helper()
	var got []uint64
	for after := uint64(0); ; {
		page, err := q.ScanVisitor(visitor, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page {
			if it.Entry.Visitor != visitor {
				t.Fatalf("ScanVisitor(%q) returned item %d of %q", visitor, it.Seq, it.Entry.Visitor)
			}
		}
		got = append(got, seqsOf(page)...)
		if len(page) < limit {
			return got
		}
		after = page[len(page)-1].Seq
	}
}

// TestScanVisitorWhenHashesCollide: visitors that share a hash in the visitor runs are told
// apart by the visitor of the item read, so each visitor gets its own items, in order, and a
// page that ends on another visitor's item is not cut short.
func TestScanVisitorWhenHashesCollide(t *testing.T) {
	orig := visitorHash
	visitorHash = func(string) uint64 { return 42 }
	t.Cleanup(func() { visitorHash = orig })
	q := open(t, t.TempDir(), Options{})
	want := map[string][]uint64{}
	for round := range 3 {
		var batch []queue.Entry
		for i, v := range []string{"ann", "bob", "ann", "cyd", "bob", "ann"} {
			batch = append(batch, entry("web", fmt.Sprintf("r%d-%d", round, i), v, queue.Deliver, 100))
		}
		mustAppend(t, q, batch...)
	}
	for _, it := range scanAll(t, q) {
		want[it.Entry.Visitor] = append(want[it.Entry.Visitor], it.Seq)
	}
	for _, v := range []string{"ann", "bob", "cyd"} {
		for _, limit := range []int{1, 2, 100} {
			if got := scanVisitorAll(t, q, v, limit); !slices.Equal(got, want[v]) {
				t.Errorf("ScanVisitor(%q) by %d = %v, want %v", v, limit, got, want[v])
			}
		}
	}
	if got := scanVisitorAll(t, q, "dan", 10); len(got) != 0 {
		t.Errorf("ScanVisitor(dan) = %v, want nothing", got)
	}
	checkStore(t, q)
}

// TestVisitorRunsPruned: a group commit writes one visitor run, and once every item of the runs
// below the lowest pending item is gone, the reclaimer's pruning deletes them; a run that holds
// a pending item stays, and so do the runs after it.
func TestVisitorRunsPruned(t *testing.T) {
	q := open(t, t.TempDir(), Options{})
	var groups [][]queue.Item
	for g := range 4 {
		mustAppend(t, q, entry("web", fmt.Sprintf("g%d-a", g), "ann", queue.Deliver, 100),
			entry("web", fmt.Sprintf("g%d-b", g), fmt.Sprintf("v%d", g), queue.Deliver, 100))
	}
	items := scanAll(t, q)
	for i := 0; i < len(items); i += 2 {
		groups = append(groups, items[i:i+2])
	}
	if n := countPrefix(t, q, prefixVisitorRun); n != 4 {
		t.Fatalf("%d visitor runs after 4 group commits, want 4", n)
	}
	done := func(items ...queue.Item) {
		t.Helper()
		for _, it := range items {
			if err := q.Done(it.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	prune := func(want int) {
		t.Helper()
		if err := q.pruneVisitorRuns(); err != nil {
			t.Fatal(err)
		}
		if n := countPrefix(t, q, prefixVisitorRun); n != want {
			t.Fatalf("%d visitor runs left, want %d", n, want)
		}
		checkStore(t, q)
	}
	done(groups[1]...) // above the lowest pending item: stays
	done(groups[0][1])
	prune(4)
	done(groups[0][0])
	prune(2)
	done(groups[3][0])
	prune(2)
	if got := scanVisitorAll(t, q, "ann", 10); !slices.Equal(got, []uint64{groups[2][0].Seq}) {
		t.Fatalf("ScanVisitor(ann) after pruning = %v, want [%d]", got, groups[2][0].Seq)
	}
	done(groups[2]...)
	done(groups[3][1])
	prune(0)
	// Runs written after a prune that left nothing are kept and found.
	mustAppend(t, q, entry("web", "late", "ann", queue.Deliver, 100))
	prune(1)
	if got := scanVisitorAll(t, q, "ann", 10); len(got) != 1 {
		t.Fatalf("ScanVisitor(ann) after a new append = %v, want one item", got)
	}
}

// TestVersion2StoreUpgrade: a store with version 2's per-item visitor index (and runs left by
// an upgrade that a crash cut short) opens with the index rebuilt as visitor runs: every pending
// item is found by its visitor, the per-item keys are gone and the marker is the current one.
func TestVersion2StoreUpgrade(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	for g := range 3 {
		mustAppend(t, q, entry("web", fmt.Sprintf("g%d-a", g), "ann", queue.Deliver, 100),
			entry("web", fmt.Sprintf("g%d-b", g), "bob", queue.Deliver, 100))
	}
	items := scanAll(t, q)
	if err := q.Done(items[2].Seq); err != nil { // a gap: the runs are rebuilt around it
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// Rewrite the index as version 2 had it, with a wrong run left over.
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{quietLogger}})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	_ = b.DeleteRange([]byte{prefixVisitorRun}, rangeEnd(prefixVisitorRun), nil)
	for _, it := range items[:2] {
		_ = b.Set(visitorKey(it.Entry.Visitor, it.Seq), nil, nil)
	}
	for _, it := range items[3:] {
		_ = b.Set(visitorKey(it.Entry.Visitor, it.Seq), nil, nil)
	}
	_ = b.Set(visitorRunKey(items[0].Seq), make([]byte, 8), nil) // hash 0 for the first item
	_ = b.Set(keyFormat, []byte(formatVersion2), nil)
	if err := db.Apply(b, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	q = open(t, dir, Options{})
	want := map[string][]uint64{}
	for _, it := range append(items[:2:2], items[3:]...) {
		want[it.Entry.Visitor] = append(want[it.Entry.Visitor], it.Seq)
	}
	for v, seqs := range want {
		if got := scanVisitorAll(t, q, v, 2); !slices.Equal(got, seqs) {
			t.Errorf("ScanVisitor(%q) after the upgrade = %v, want %v", v, got, seqs)
		}
	}
	checkStore(t, q) // no per-item keys left, every pending item in a run
	v, closer, err := q.db.Get(keyFormat)
	if err != nil || string(v) != formatVersion {
		t.Fatalf("format marker %q, %v; want %q", v, err, formatVersion)
	}
	closer.Close()
}
