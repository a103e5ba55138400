package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
)

// The visitor index. ScanVisitor finds a visitor's pending items through visitor runs: one
// key per group commit (w <first seq:8>) whose value holds the hash of each of its items'
// visitors, in sequence order. A key per item (version 2's v <visitor> <seq>) cost a
// memtable insert at a random place for every event ingested and a deletion for every event
// delivered; a run costs one insert a group, and its items' removals touch nothing. Runs are
// deleted in bulk once every item below them is gone (pruneVisitorRuns).

// visitorHash is what a visitor run keeps of an item's visitor. Two visitors may share a hash:
// ScanVisitor checks the visitor of each item it reads. A variable so that a test can make
// every visitor collide.
var visitorHash = func(visitor string) uint64 { return xxhash.Sum64String(visitor) }

// appendVisitorRun adds the visitor run of the items first, first+1, … (one visitor each) to b.
func appendVisitorRun(b *pebble.Batch, first uint64, visitors []string) {
	if len(visitors) == 0 {
		return
	}
	v := make([]byte, 0, 8*len(visitors))
	for _, vis := range visitors {
		v = binary.LittleEndian.AppendUint64(v, visitorHash(vis))
	}
	_ = b.Set(visitorRunKey(first), v, nil)
}

// runBuilder collects items in sequence order into visitor runs, one run for each stretch of
// consecutive sequence numbers.
type runBuilder struct {
	first    uint64
	visitors []string
}

// add appends item seq of visitor, first writing the run under way to b when seq does not
// follow it.
func (r *runBuilder) add(b *pebble.Batch, seq uint64, visitor string) {
	if len(r.visitors) > 0 && seq != r.first+uint64(len(r.visitors)) {
		r.flush(b)
	}
	if len(r.visitors) == 0 {
		r.first = seq
	}
	r.visitors = append(r.visitors, visitor)
}

// flush writes the run under way to b.
func (r *runBuilder) flush(b *pebble.Batch) {
	appendVisitorRun(b, r.first, r.visitors)
	r.visitors = r.visitors[:0]
}

// pruneVisitorRuns deletes, with one range deletion, the visitor runs that lie wholly below the
// lowest pending item: every item they index is gone. The reclaimer runs it after deleting
// emptied payload segments, so that one seek serves the items of a whole segment. Runs above
// the lowest pending item stay, also where their items are gone: 8 bytes an item until the
// lowest pending one is delivered or dead-lettered (at the latest when its retry window ends).
func (q *Queue) pruneVisitorRuns() error {
	// Under seqMu every reserved sequence number up to last is visible, and later ones are
	// above last: no run below the bound found here can be written afterwards.
	q.seqMu.Lock()
	q.wmu.Lock()
	last := q.meta.lastSeq
	q.wmu.Unlock()
	q.seqMu.Unlock()
	if last == 0 {
		return nil
	}
	lowest := last + 1 // nothing pending: every run up to last is spent
	items, err := q.db.NewIter(&pebble.IterOptions{LowerBound: itemKey(q.head.Load()), UpperBound: itemKey(last + 1)})
	if err != nil {
		return fmt.Errorf("queue/disk: prune the visitor index: %w", err)
	}
	if items.First() {
		if seq, ok := seqOf(items.Key()); ok {
			lowest = seq
		}
	}
	if err := items.Close(); err != nil {
		return fmt.Errorf("queue/disk: prune the visitor index: %w", err)
	}
	// The run holding lowest starts at or before it; the runs before that one end before it.
	runs, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixVisitorRun}, UpperBound: visitorRunKey(lowest + 1)})
	if err != nil {
		return fmt.Errorf("queue/disk: prune the visitor index: %w", err)
	}
	var end []byte
	if runs.Last() {
		end = slices.Clone(runs.Key())
		if lowest == last+1 {
			end = visitorRunKey(lowest) // nothing pending: the last run goes too
		}
	}
	if err := runs.Close(); err != nil {
		return fmt.Errorf("queue/disk: prune the visitor index: %w", err)
	}
	if end == nil || (q.runsPrunedTo != nil && bytes.Compare(end, q.runsPrunedTo) <= 0) {
		return nil
	}
	// NoSync: a run a crash brings back is pruned again.
	if err := q.db.DeleteRange([]byte{prefixVisitorRun}, end, pebble.NoSync); err != nil {
		return fmt.Errorf("queue/disk: prune the visitor index: %w", err)
	}
	q.runsPrunedTo = end
	return nil
}

// visitorUpgrade rebuilds the visitor index of a version 1 or 2 store (a key per item) as
// visitor runs while Open reads the pending items in order, writing a batch every
// upgradeChunk items; finish deletes the old index and moves the format marker, synced. A
// crash before that leaves the old marker, and the next open rebuilds the runs again from
// scratch (the first batch deletes any runs there are).
type visitorUpgrade struct {
	q     *Queue
	b     *pebble.Batch
	runs  runBuilder
	items int
}

const upgradeChunk = 1 << 14

func (q *Queue) startVisitorUpgrade() *visitorUpgrade {
	u := &visitorUpgrade{q: q, b: q.db.NewBatch()}
	_ = u.b.DeleteRange([]byte{prefixVisitorRun}, rangeEnd(prefixVisitorRun), nil)
	return u
}

// addKey indexes the pending item of key k whose record is v; a record that cannot be read
// is indexed under the empty visitor (Scan moves it to the dead letters).
func (u *visitorUpgrade) addKey(k, v []byte) error {
	seq, ok := seqOf(k)
	if !ok {
		return nil
	}
	_, visitor, _ := decodeItemVisitor(v)
	u.runs.add(u.b, seq, visitor)
	if u.items++; u.items%upgradeChunk == 0 {
		u.runs.flush(u.b)
		if err := u.q.db.Apply(u.b, pebble.NoSync); err != nil {
			return fmt.Errorf("queue/disk: upgrade the visitor index: %w", err)
		}
		u.b.Reset()
	}
	return nil
}

// finish writes the last runs, deletes the per-item index and marks the store as the current
// version, with one synced batch.
func (u *visitorUpgrade) finish(from string) error {
	defer u.b.Close()
	u.runs.flush(u.b)
	_ = u.b.DeleteRange([]byte{prefixVisitor}, rangeEnd(prefixVisitor), nil)
	_ = u.b.Set(keyFormat, []byte(formatVersion), nil)
	if err := u.q.db.Apply(u.b, pebble.Sync); err != nil {
		return fmt.Errorf("queue/disk: upgrade store format: %w", err)
	}
	u.q.log.Info("queue store upgraded", "from", from, "to", formatVersion, "pending_items", u.items)
	return nil
}
