package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

// Delivery-side writes (Done, Progress, Retrying, Dead) are applied with pebble.NoSync: they
// reach the write-ahead log without waiting for an fsync. A crash of the machine (not of the
// process: the log is written before the call returns) can lose the last few of them; the
// items then come back as pending and are delivered again, which is at-least-once, and the
// counters still reconcile because each change is in the same atomic batch as the counters
// it moves. Close flushes them.

func corruptItem(seq uint64, err error) error {
	return fmt.Errorf("queue/disk: item %d: %w; the store is damaged: restore the directory from a backup, or drop the item with Done(%d)", seq, err, seq)
}

func corruptLetter(id uint64, err error) error {
	return fmt.Errorf("queue/disk: dead letter %d: %w; the store is damaged: restore the directory from a backup", id, err)
}

// Scan returns up to limit pending items with Seq > after, in Seq order. An item that cannot
// be decoded is moved to the dead letters (see the package documentation) and skipped.
func (q *Queue) Scan(after uint64, limit int) ([]queue.Item, error) {
	if limit <= 0 || after == math.MaxUint64 {
		return nil, nil
	}
	if err := q.begin(); err != nil {
		return nil, err
	}
	defer q.end()
	start, head := after+1, q.head.Load()
	fromHead := start <= head
	if fromHead {
		start = head // nothing is pending below head: skip the deleted keys there
	}
	gen := q.scanStart()
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: itemKey(start), UpperBound: rangeEnd(prefixItem)})
	if err != nil {
		q.remember(gen, nil)
		return nil, fmt.Errorf("queue/disk: scan: %w", err)
	}
	var items []queue.Item
	var corrupt []uint64
	var seen []scanned
	for valid := it.First(); valid && len(items) < limit; valid = it.Next() {
		seq, ok := seqOf(it.Key())
		if !ok {
			continue
		}
		item, err := q.decodeItem(seq, it.Value())
		if err != nil {
			corrupt = append(corrupt, seq)
			continue
		}
		items = append(items, item)
		seen = append(seen, scanned{seq, knownOf(it.Value())})
	}
	if err := it.Close(); err != nil {
		q.remember(gen, nil)
		return nil, fmt.Errorf("queue/disk: scan: %w", err)
	}
	q.remember(gen, seen)
	for _, seq := range corrupt {
		if err := q.quarantine(seq); err != nil {
			return items, err
		}
	}
	// Items become visible in Seq order, so none below the first one seen can appear later.
	if fromHead && len(items) > 0 && items[0].Seq > head {
		q.head.CompareAndSwap(head, items[0].Seq)
	}
	return items, nil
}

// ScanVisitor returns up to limit pending items of one visitor with Seq > after, in order. It
// walks the visitor runs from the one holding after+1 and reads only the items whose visitor
// hash is the visitor's: its cost is 8 bytes of index for every sequence number it passes and
// a read for each of the visitor's items, never a read of another visitor's record (but for
// the rare one whose visitor shares the hash, which is read and passed over).
func (q *Queue) ScanVisitor(visitor string, after uint64, limit int) ([]queue.Item, error) {
	if limit <= 0 || after >= math.MaxUint64-1 {
		return nil, nil
	}
	if err := q.begin(); err != nil {
		return nil, err
	}
	defer q.end()
	runs, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixVisitorRun}, UpperBound: rangeEnd(prefixVisitorRun)})
	if err != nil {
		return nil, fmt.Errorf("queue/disk: scan visitor: %w", err)
	}
	defer runs.Close()
	want := visitorHash(visitor)
	var items []queue.Item
	// Every sequence number up to covered has been considered; the run holding after+1
	// starts at or before it.
	covered := after
	valid := runs.SeekLT(visitorRunKey(after + 2))
	if !valid {
		valid = runs.First()
	}
	for ; valid && len(items) < limit; valid = runs.Next() {
		first, ok := seqOf(runs.Key())
		hashes, err := runs.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("queue/disk: scan visitor: %w", err)
		}
		if !ok || len(hashes)%8 != 0 {
			q.log.Warn("ignoring a corrupt visitor run", "key", fmt.Sprintf("%q", runs.Key()), "value_len", len(hashes))
			q.damaged.Store(true)
			continue
		}
		n := uint64(len(hashes) / 8)
		for i := uint64(0); i < n && len(items) < limit; i++ {
			seq := first + i
			if seq <= covered || binary.LittleEndian.Uint64(hashes[8*i:]) != want {
				continue
			}
			covered = seq
			item, found, err := q.visitorItem(visitor, seq)
			if err != nil {
				return items, err
			}
			if found {
				items = append(items, item)
			}
		}
		covered = max(covered, first+n-1)
	}
	if err := runs.Error(); err != nil {
		return nil, fmt.Errorf("queue/disk: scan visitor: %w", err)
	}
	return items, nil
}

// visitorItem reads the pending item seq for ScanVisitor; found is false when it is not
// pending, is another visitor's (whose visitor has the same hash), or was corrupt (it is then
// moved to the dead letters).
func (q *Queue) visitorItem(visitor string, seq uint64) (item queue.Item, found bool, err error) {
	gen := q.scanStart()
	v, closer, err := q.db.Get(itemKey(seq))
	if err != nil {
		q.remember(gen, nil)
		if errors.Is(err, pebble.ErrNotFound) {
			return queue.Item{}, false, nil // delivered already
		}
		return queue.Item{}, false, fmt.Errorf("queue/disk: scan visitor: %w", err)
	}
	if _, vis, err := decodeItemVisitor(v); err == nil && vis != visitor {
		closer.Close()
		q.remember(gen, nil)
		return queue.Item{}, false, nil
	}
	item, err = q.decodeItem(seq, v)
	var seen []scanned
	if err == nil {
		seen = []scanned{{seq, knownOf(v)}}
	}
	closer.Close()
	q.remember(gen, seen)
	if err != nil {
		return queue.Item{}, false, q.quarantine(seq)
	}
	return item, true, nil
}

// knownItem is what removing a scanned item needs; see Queue.known.
type knownItem struct {
	rewritten bool
	seg       uint64 // the payload log segment holding its entry; 0 when inline
}

// scanned is what a scan learnt of one item.
type scanned struct {
	seq uint64
	k   knownItem
}

// knownOf reads what removing an item needs from its stored value v.
func knownOf(v []byte) knownItem {
	st, loc, err := decodeItemState(v)
	return knownItem{rewritten: err != nil || st.flags&itemFlagRewritten != 0, seg: segOf(loc)}
}

// segOf is the payload log segment of an item's entry, 0 when it is inline.
func segOf(loc itemLoc) uint64 {
	if loc.ref {
		return loc.seg
	}
	return 0
}

// recordSeg is the payload log segment of the item record v, 0 when its entry is inline or the
// record cannot be read.
func recordSeg(v []byte) uint64 {
	_, loc, err := decodeItemState(v)
	if err != nil {
		return 0
	}
	return segOf(loc)
}

// decodeItem decodes a pending item's record, reading its entry from the payload log when it
// is kept there.
func (q *Queue) decodeItem(seq uint64, v []byte) (queue.Item, error) {
	return decodeItemWith(seq, v, q.segs.body)
}

// releaseSegments counts removed items out of their payload log segments; a segment left
// without pending items is deleted by the reclaimer.
func (q *Queue) releaseSegments(counts map[uint64]int64) {
	delete(counts, 0)
	q.segs.release(counts)
}

// scanStart begins a scan that will remember what it reads: changes to pending items from
// now until its remember are noted in q.touched, so remember skips what they changed.
func (q *Queue) scanStart() uint64 {
	q.kmu.Lock()
	defer q.kmu.Unlock()
	q.scans++
	return q.changes
}

// remember records what a scan read, except the items removed or rewritten since the scan
// began (gen, from scanStart): the scan's snapshot may be older than they are. It ends the
// scan; touched is emptied when no scan is under way, so it stays as small as the changes
// made during one scan.
func (q *Queue) remember(gen uint64, seen []scanned) {
	q.kmu.Lock()
	defer q.kmu.Unlock()
	for _, s := range seen {
		if c, ok := q.touched[s.seq]; !ok || c <= gen {
			q.known[s.seq] = s.k
		}
	}
	if q.scans--; q.scans == 0 {
		clear(q.touched)
	}
}

// touch notes a change of a pending item for the scans under way; the caller holds kmu.
func (q *Queue) touch(seq uint64) {
	q.changes++
	if q.scans > 0 {
		q.touched[seq] = q.changes
	}
}

// takeKnown returns and forgets what a scan recorded of an item that is being removed.
func (q *Queue) takeKnown(seq uint64) (knownItem, bool) {
	q.kmu.Lock()
	defer q.kmu.Unlock()
	q.touch(seq)
	k, ok := q.known[seq]
	if ok {
		delete(q.known, seq)
	}
	return k, ok
}

// markRewritten notes that a pending item was rewritten (after the write).
func (q *Queue) markRewritten(seq uint64) {
	q.kmu.Lock()
	defer q.kmu.Unlock()
	q.touch(seq)
	if k, ok := q.known[seq]; ok {
		k.rewritten = true
		q.known[seq] = k
	}
}

// getItem reads an item's raw value (a copy); ok is false when it is not pending.
func (q *Queue) getItem(seq uint64) ([]byte, bool, error) {
	v, closer, err := q.db.Get(itemKey(seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("queue/disk: read item %d: %w", seq, err)
	}
	v = append([]byte(nil), v...)
	closer.Close()
	return v, true, nil
}

// deleteItem adds the deletion of an item to b. Keys written once are removed with
// SingleDelete, which cancels out with their Set at the next flush or compaction, so delivered
// items leave no tombstones to skip. A corrupt item (intact is false) is removed with a
// Delete, since its flags cannot be trusted. Its visitor run stays until the runs below the
// lowest pending item are pruned (see pruneVisitorRuns).
func deleteItem(b *pebble.Batch, seq uint64, st itemState, intact bool) {
	if !intact || st.flags&itemFlagRewritten != 0 {
		_ = b.Delete(itemKey(seq), nil)
	} else {
		_ = b.SingleDelete(itemKey(seq), nil)
	}
}

// commitMeta applies b together with the meta that change computes from the current one, under
// wmu, with NoSync.
func (q *Queue) commitMeta(b *pebble.Batch, change func(m *meta)) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	m := q.meta
	change(&m)
	_ = b.Set(keyMeta, encodeMeta(&m), nil)
	if err := q.db.Apply(b, pebble.NoSync); err != nil {
		return fmt.Errorf("queue/disk: write: %w", err)
	}
	q.meta = m
	return nil
}

// Done records that the item was delivered and removes it (Delivered+1, Queued−1). Done of an
// item that is not pending (already done, or dead) does nothing. A corrupt item is removed
// too, so an operator can drop it.
func (q *Queue) Done(seq uint64) error {
	return q.remove(removal{seq: seq})
}

// Filter records that delivery's mapping dropped the item on purpose and removes it
// (Filtered+1, Queued−1). It does nothing for an item that is not pending.
func (q *Queue) Filter(seq uint64, reason string) error {
	return q.remove(removal{seq: seq, filtered: true})
}

// removal is one Done or Filter.
type removal struct {
	seq      uint64
	filtered bool
}

// removalGroup is the removals that arrive while another group is being written: they are
// written together, in one batch with one update of the counters, by the caller that started
// the group (its leader), so concurrent delivery workers share one write instead of queueing
// for one each.
type removalGroup struct {
	ops  []removal
	err  error
	lead chan struct{} // closed when the previous group is written: the leader's turn
	done chan struct{} // closed when this group is written; err is then set
}

// remove deletes a pending item through the current removal group: the first caller of a
// group leads it (once the group before is written, or when none is being written, after
// letting the goroutines ready to run go first, so that the workers whose answers arrived
// together join it), the others wait for its write. Without that yield a group written at
// once held 1.5 items on average (BenchmarkDone), 4 in the bench's drain; with it 23 and 10,
// and a removal costs about half as much.
func (q *Queue) remove(op removal) error {
	if err := q.begin(); err != nil {
		return err
	}
	defer q.end()
	q.rmu.Lock()
	g := q.rnext
	if g != nil {
		g.ops = append(g.ops, op)
		q.rmu.Unlock()
		<-g.done
		return g.err
	}
	g = &removalGroup{ops: []removal{op}, lead: make(chan struct{}), done: make(chan struct{})}
	q.rnext = g
	if q.rbusy {
		q.rmu.Unlock()
		<-g.lead
		q.rmu.Lock()
	} else {
		q.rmu.Unlock()
		runtime.Gosched() // the others join g meanwhile: q.rnext is g
		q.rmu.Lock()
	}
	q.rbusy = true
	q.rnext = nil // later removals start the next group
	q.rmu.Unlock()
	if h := q.testHookRemoval.Load(); h != nil {
		(*h)()
	}

	g.err = q.removeAll(g.ops)
	close(g.done)

	q.rmu.Lock()
	if next := q.rnext; next != nil {
		close(next.lead) // q.rbusy stays set: the next leader takes over
	} else {
		q.rbusy = false
	}
	q.rmu.Unlock()
	return g.err
}

// removeAll deletes the pending items of ops in one batch, counting each (Delivered or
// Filtered +1, Queued −1) in the same batch. An item a scan returned is deleted with what the
// scan recorded; any other is read first; one that is not pending is skipped.
func (q *Queue) removeAll(ops []removal) error {
	q.dmu.Lock()
	defer q.dmu.Unlock()
	b := q.db.NewBatch()
	defer b.Close()
	var delivered, filtered int64
	segs := map[uint64]int64{}
	for i, op := range ops {
		if slices.ContainsFunc(ops[:i], func(o removal) bool { return o.seq == op.seq }) {
			continue // removed by an earlier op of the batch
		}
		if k, ok := q.takeKnown(op.seq); ok {
			// Known items are pending: every removal of an item goes through dmu and forgets it.
			var st itemState
			if k.rewritten {
				st.flags = itemFlagRewritten
			}
			deleteItem(b, op.seq, st, true)
			segs[k.seg]++
		} else {
			v, pending, err := q.getItem(op.seq)
			if err != nil {
				return err
			}
			if !pending {
				continue
			}
			st, _, verr := decodeItemVisitor(v)
			if verr != nil {
				q.log.Warn("removing a corrupt item", "seq", op.seq, "err", verr)
				q.damaged.Store(true)
			}
			deleteItem(b, op.seq, st, verr == nil)
			segs[recordSeg(v)]++
		}
		if op.filtered {
			filtered++
		} else {
			delivered++
		}
	}
	if delivered+filtered == 0 {
		return nil
	}
	q.removalWrites.Add(1)
	err := q.commitMeta(b, func(m *meta) {
		m.c.Delivered += delivered
		m.c.Filtered += filtered
		m.c.Queued -= delivered + filtered
	})
	if err == nil {
		q.releaseSegments(segs)
	}
	return err
}

// withPending runs fn with the stored value of a pending item, under the delivery lock; it
// does nothing for an item that is not pending.
func (q *Queue) withPending(seq uint64, fn func(v []byte) error) error {
	if err := q.begin(); err != nil {
		return err
	}
	defer q.end()
	q.dmu.Lock()
	defer q.dmu.Unlock()
	v, ok, err := q.getItem(seq)
	if err != nil || !ok {
		return err
	}
	return fn(v)
}

// rewriteItem replaces the delivery state of a pending item.
func (q *Queue) rewriteItem(seq uint64, change func(st *itemState)) error {
	return q.withPending(seq, func(v []byte) error {
		st, loc, err := decodeItemState(v)
		if err != nil {
			return corruptItem(seq, err)
		}
		change(&st)
		st.flags |= itemFlagRewritten
		if err := q.db.Set(itemKey(seq), encodeItemLoc(st, loc), pebble.NoSync); err != nil {
			return fmt.Errorf("queue/disk: write item %d: %w", seq, err)
		}
		q.markRewritten(seq)
		return nil
	})
}

// quarantine moves a pending item that cannot be decoded to the dead letters, so that delivery
// goes on: the letter keeps the raw record as its Event and the decoding error as its reason.
// The caller holds closeMu (read).
func (q *Queue) quarantine(seq uint64) error {
	q.dmu.Lock()
	defer q.dmu.Unlock()
	v, ok, err := q.getItem(seq)
	if err != nil || !ok {
		return err
	}
	_, err = q.decodeItem(seq, v)
	if err == nil {
		return nil // rewritten meanwhile
	}
	return q.quarantineLocked(seq, v, err)
}

// quarantineLocked does quarantine's work; the caller holds dmu.
func (q *Queue) quarantineLocked(seq uint64, raw []byte, derr error) error {
	q.log.Error("a pending item is corrupt; moved to the dead letters with its raw record", "seq", seq, "err", derr)
	q.damaged.Store(true)
	q.takeKnown(seq)
	st, visitor, _ := decodeItemVisitor(raw)
	e := queue.Entry{Event: raw, Visitor: visitor, Outcome: queue.Rejected, Reason: queue.ReasonCorruptRecord + ": " + derr.Error()}
	f := queue.Failure{Reason: fmt.Sprintf("corrupt queue record (item %d): %v", seq, derr)}
	value := encodeDeadLetter(q.now(), &f, encodeEntryBody(&e))
	b := q.db.NewBatch()
	defer b.Close()
	deleteItem(b, seq, st, false)
	err := q.commitMeta(b, func(m *meta) {
		m.lastDead++
		_ = b.Set(deadKey(m.lastDead), value, nil)
		m.c.DeadLettered++
		m.c.Queued--
	})
	if err == nil {
		q.releaseSegments(map[uint64]int64{recordSeg(raw): 1})
	}
	return err
}

// Progress records that the item's first n requests were delivered, so that after a restart
// delivery resumes at request n. It does nothing for an item that is not pending.
func (q *Queue) Progress(seq uint64, n int) error {
	if n < 0 {
		return fmt.Errorf("queue/disk: Progress(%d, %d): n must not be negative", seq, n)
	}
	return q.rewriteItem(seq, func(st *itemState) { st.nextRequest = n })
}

// Retrying records a failed attempt that will be retried: the attempts so far and when the
// first one failed, so the retry window survives a restart. It does nothing for an item that is
// not pending.
func (q *Queue) Retrying(seq uint64, attempts int, firstAttempt time.Time) error {
	if attempts < 0 {
		return fmt.Errorf("queue/disk: Retrying(%d, %d, …): attempts must not be negative", seq, attempts)
	}
	return q.rewriteItem(seq, func(st *itemState) {
		st.attempts = attempts
		st.firstAttempt = firstAttempt
	})
}

// Dead moves the item to the dead-letter store with the failure and the current time
// (DeadLettered+1, Queued−1). It does nothing for an item that is not pending.
func (q *Queue) Dead(seq uint64, f queue.Failure) error {
	return q.withPending(seq, func(v []byte) error {
		// The entry is read once: decoding checks it, the letter keeps its encoded bytes.
		st, loc, err := decodeItemState(v)
		var body []byte
		if err == nil {
			body, err = q.segs.body(loc)
		}
		if err == nil {
			_, err = decodeItemWith(seq, v, func(itemLoc) ([]byte, error) { return body, nil })
		}
		if err != nil {
			return q.quarantineLocked(seq, v, err)
		}
		q.takeKnown(seq)
		value := encodeDeadLetter(q.now(), &f, body)
		b := q.db.NewBatch()
		defer b.Close()
		deleteItem(b, seq, st, true)
		err = q.commitMeta(b, func(m *meta) {
			m.lastDead++
			_ = b.Set(deadKey(m.lastDead), value, nil)
			m.c.DeadLettered++
			m.c.Queued--
		})
		if err == nil {
			q.releaseSegments(map[uint64]int64{segOf(loc): 1})
		}
		return err
	})
}

// DeadLetters lists up to limit dead letters with ID > after, oldest first.
func (q *Queue) DeadLetters(after uint64, limit int) ([]queue.DeadLetter, error) {
	if limit <= 0 || after == math.MaxUint64 {
		return nil, nil
	}
	if err := q.begin(); err != nil {
		return nil, err
	}
	defer q.end()
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: deadKey(after + 1), UpperBound: rangeEnd(prefixDeadLetter)})
	if err != nil {
		return nil, fmt.Errorf("queue/disk: list dead letters: %w", err)
	}
	var out []queue.DeadLetter
	for valid := it.First(); valid && len(out) < limit; valid = it.Next() {
		id, ok := seqOf(it.Key())
		if !ok {
			continue
		}
		dl, _, err := decodeDeadLetter(id, it.Value())
		if err != nil {
			it.Close()
			return out, corruptLetter(id, err)
		}
		out = append(out, dl)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("queue/disk: list dead letters: %w", err)
	}
	return out, nil
}

// DeadLetter returns one dead letter; ok is false when there is none with that id.
func (q *Queue) DeadLetter(id uint64) (queue.DeadLetter, bool, error) {
	if err := q.begin(); err != nil {
		return queue.DeadLetter{}, false, err
	}
	defer q.end()
	v, closer, err := q.db.Get(deadKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return queue.DeadLetter{}, false, nil
	}
	if err != nil {
		return queue.DeadLetter{}, false, fmt.Errorf("queue/disk: read dead letter %d: %w", id, err)
	}
	defer closer.Close()
	dl, _, err := decodeDeadLetter(id, v)
	if err != nil {
		return queue.DeadLetter{}, false, corruptLetter(id, err)
	}
	return dl, true, nil
}

// replayChunk bounds the letters moved by one batch of Replay.
const replayChunk = 256

// Replay moves dead letters back to the end of the queue with new sequence numbers
// (DeadLettered−n, Queued+n, Replayed+n) and returns how many moved. remap, when not nil,
// replaces each letter's entry (after a mapping fix); a letter stays where it is when remap
// returns an error, when the resulting entry's outcome is not queue.Deliver (a letter rejected
// at ingest needs a remap to become deliverable), or when there is no letter with that id.
// Each chunk of letters is moved atomically and synced.
func (q *Queue) Replay(ids []uint64, remap func(queue.Entry) (queue.Entry, error)) (int, error) {
	if err := q.begin(); err != nil {
		return 0, err
	}
	defer q.end()
	q.replayMu.Lock()
	defer q.replayMu.Unlock()
	type move struct {
		id      uint64
		visitor string
		value   []byte
	}
	seen := make(map[uint64]bool, len(ids))
	total := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), replayChunk)]
		ids = ids[len(chunk):]
		var moves []move
		for _, id := range chunk {
			if seen[id] {
				continue
			}
			seen[id] = true
			v, closer, err := q.db.Get(deadKey(id))
			if errors.Is(err, pebble.ErrNotFound) {
				continue
			}
			if err != nil {
				return total, fmt.Errorf("queue/disk: read dead letter %d: %w", id, err)
			}
			dl, body, err := decodeDeadLetter(id, v)
			body = append([]byte(nil), body...)
			closer.Close()
			if err != nil {
				return total, corruptLetter(id, err)
			}
			e := dl.Entry
			if remap != nil {
				if e, err = remap(dl.Entry); err != nil {
					q.log.Info("dead letter left in place: remap failed", "id", id, "err", err)
					continue
				}
				body = encodeEntryBody(&e)
			}
			if e.Outcome != queue.Deliver {
				q.log.Info("dead letter left in place: its outcome is not deliver", "id", id, "outcome", e.Outcome.String(), "reason", e.Reason)
				continue
			}
			moves = append(moves, move{id: id, visitor: e.Visitor, value: encodeItem(itemState{}, body)})
		}
		if len(moves) == 0 {
			continue
		}
		b := q.db.NewBatch()
		q.seqMu.Lock()
		q.wmu.Lock()
		m := q.meta
		var runs runBuilder
		for _, mv := range moves {
			m.lastSeq++
			_ = b.Set(itemKey(m.lastSeq), mv.value, nil)
			_ = b.SingleDelete(deadKey(mv.id), nil)
			runs.add(b, m.lastSeq, mv.visitor)
		}
		runs.flush(b)
		n := int64(len(moves))
		m.c.DeadLettered -= n
		m.c.Queued += n
		m.c.Replayed += n
		_ = b.Set(keyMeta, encodeMeta(&m), nil)
		err := q.db.ApplyNoSyncWait(b, pebble.Sync)
		if err == nil {
			q.meta = m
		}
		q.wmu.Unlock()
		q.seqMu.Unlock()
		if err == nil {
			err = b.SyncWait()
		}
		b.Close()
		if err != nil {
			return total, fmt.Errorf("queue/disk: replay: %w", err)
		}
		total += len(moves)
		q.signal()
	}
	return total, nil
}

// OldestReceived returns when the pending item with the lowest Seq was received: one seek past
// head (below which nothing is pending) and one decode. It implements queue.OldestReporter.
func (q *Queue) OldestReceived() (time.Time, bool, error) {
	if err := q.begin(); err != nil {
		return time.Time{}, false, err
	}
	defer q.end()
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: itemKey(q.head.Load()), UpperBound: rangeEnd(prefixItem)})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("queue/disk: oldest item: %w", err)
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		seq, ok := seqOf(it.Key())
		if !ok {
			continue
		}
		if item, err := q.decodeItem(seq, it.Value()); err == nil {
			return item.Entry.Received, true, nil
		}
	}
	return time.Time{}, false, it.Error()
}
