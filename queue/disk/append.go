package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

// appendReq is one Append call waiting for the committer.
type appendReq struct {
	// Everything the committer needs is copied out of the caller's entries before the request
	// is handed over: a caller whose ctx ends returns at once and may reuse its entries while
	// the committer still works on the request.
	ctx      context.Context
	outcomes []queue.Outcome
	visitors []string
	values   [][]byte // encoded dead-letter value per Rejected entry; nil for the others
	dkeys    [][]byte // dedup key per entry; nil when it has no MessageID (the committer clears duplicates')
	// The entry bodies of the Deliver entries, concatenated (raw), and compressed into one
	// frame of the payload log (frame); inner and blen locate each entry's body in raw.
	raw         []byte
	frame       []byte
	inner, blen []uint64
	size        int64 // bytes the call adds to the store: its frame and dead letters

	// set by the committer
	dup  []bool
	res  queue.AppendResult
	err  error
	done chan struct{}
}

// Append stores the entries durably and atomically (all or none) and returns once the
// write-ahead log holding them is synced. Concurrent calls share one sync (group commit): a
// single committer takes every call waiting while the previous commit syncs, checks them for
// duplicates, writes them in one batch and wakes them all.
//
// An entry whose (Source, MessageID) was already stored within the dedup window, earlier or in
// the same group or call, is a duplicate: counted, not stored. Entries without a MessageID are
// never duplicates.
//
// It returns an error wrapping queue.ErrFull when the disk budget is reached or the disk is
// full, and queue.ErrClosed after Close; in both cases nothing of the call was stored. If ctx ends while the call waits, Append
// returns ctx.Err() but the entries may still be committed: delivery is at least once, and the
// client's retry is caught as a duplicate. Append does not use entries after it returns.
func (q *Queue) Append(ctx context.Context, entries []queue.Entry) (queue.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return queue.AppendResult{}, err
	}
	if len(entries) == 0 {
		if err := q.begin(); err != nil {
			return queue.AppendResult{}, err
		}
		q.end()
		return queue.AppendResult{}, nil
	}
	at := q.now()
	r := &appendReq{ctx: ctx, done: make(chan struct{})}
	r.values = make([][]byte, len(entries))
	r.outcomes = make([]queue.Outcome, len(entries))
	r.visitors = make([]string, len(entries))
	r.dkeys = make([][]byte, len(entries))
	r.inner, r.blen = make([]uint64, len(entries)), make([]uint64, len(entries))
	rawSize := 0
	for i := range entries {
		if entries[i].Outcome == queue.Deliver {
			rawSize += entrySize(&entries[i])
		}
	}
	for i := range entries {
		e := &entries[i]
		r.outcomes[i], r.visitors[i] = e.Outcome, e.Visitor
		if e.MessageID != "" {
			r.dkeys[i] = dedupSuffix(e.Source, e.MessageID)
		}
		switch e.Outcome {
		case queue.Deliver:
			if r.raw == nil {
				r.raw = make([]byte, 0, rawSize)
			}
			r.inner[i] = uint64(len(r.raw))
			r.raw = appendEntry(r.raw, e)
			r.blen[i] = uint64(len(r.raw)) - r.inner[i]
		case queue.Rejected:
			r.values[i] = encodeDeadLetter(at, &queue.Failure{Reason: e.Reason}, encodeEntryBody(e))
		case queue.Filtered:
		default:
			return queue.AppendResult{}, fmt.Errorf("queue/disk: entry %d has unknown outcome %d; use queue.Deliver, Filtered or Rejected", i, e.Outcome)
		}
		r.size += int64(len(r.values[i]))
	}
	if r.raw != nil {
		r.frame = encodeFrame(nil, r.raw)
		r.size += int64(len(r.frame))
	}
	if err := q.begin(); err != nil {
		return queue.AppendResult{}, err
	}
	if err := q.brokenErr(); err != nil {
		q.end()
		return queue.AppendResult{}, err
	}
	if p := q.room.diskFull.Load(); p != nil {
		q.end()
		return queue.AppendResult{}, *p
	}
	select {
	case q.reqs <- r:
		q.end()
	case <-ctx.Done():
		q.end()
		return queue.AppendResult{}, ctx.Err()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return queue.AppendResult{}, ctx.Err()
	}
}

// brokenErr returns the sticky error left by a failed WAL sync, if any.
func (q *Queue) brokenErr() error {
	if p := q.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// committer is the single goroutine that commits Appends and prunes dedup keys (both read and
// write the dedup keys, so running them in one goroutine keeps them consistent).
func (q *Queue) committer() {
	defer q.wg.Done()
	tick := time.NewTicker(pruneInterval)
	defer tick.Stop()
	pruning := true // prune once after opening
	group := make([]*appendReq, 0, maxGroupCalls)
	for {
		var r *appendReq
		var ok bool
		if pruning {
			select {
			case r, ok = <-q.reqs:
			case done := <-q.pruneReq:
				q.pruneAll(done)
				continue
			default:
				pruning = q.pruneChunk()
				continue
			}
		} else {
			select {
			case r, ok = <-q.reqs:
			case done := <-q.pruneReq:
				q.pruneAll(done)
				continue
			case <-tick.C:
				pruning = true
				continue
			}
		}
		if !ok {
			return // closed and drained
		}
		if h := q.testHookGroup.Load(); h != nil {
			(*h)()
		}
		group = append(group[:0], r)
		size := r.size
	collect:
		for len(group) < maxGroupCalls && size < q.groupBytes {
			select {
			case r, ok := <-q.reqs:
				if !ok {
					break collect // the next receive above sees the close
				}
				group = append(group, r)
				size += r.size
			default:
				break collect
			}
		}
		q.commitGroup(group)
		for i := range group {
			close(group[i].done)
			group[i] = nil
		}
		if pruning {
			pruning = q.pruneChunk()
		}
	}
}

// recentlySeen returns the dedup keys among keys (sorted, without repeats) that were stored
// within the window ending at now. One iterator serves the whole group: SeekPrefixGE consults
// the tables' bloom filters and, as the keys are sorted, reuses the blocks it has loaded.
func (q *Queue) recentlySeen(keys [][]byte, now time.Time) (map[string]bool, error) {
	found := map[string]bool{}
	if len(keys) == 0 {
		return found, nil
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDedup}, UpperBound: rangeEnd(prefixDedup)})
	if err != nil {
		return nil, fmt.Errorf("queue/disk: dedup lookup: %w", err)
	}
	defer it.Close()
	since := now.UnixNano() - int64(q.window)
	for _, dk := range keys {
		if !it.SeekPrefixGE(dk) || !bytes.Equal(it.Key(), dk) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("queue/disk: dedup lookup: %w", err)
		}
		at, ok := decodeSeenAt(v)
		if !ok {
			// Treated as unseen: the key is rewritten with a good value by this commit.
			q.log.Warn("ignoring a corrupt dedup key", "key", fmt.Sprintf("%q", dk), "value_len", len(v))
			continue
		}
		if int64(at) > since {
			found[string(dk)] = true
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("queue/disk: dedup lookup: %w", err)
	}
	return found, nil
}

// commitGroup checks a group of Append calls for duplicates and the disk budget, writes the
// accepted calls in one batch, syncs it once, and records each call's result.
func (q *Queue) commitGroup(group []*appendReq) {
	now := q.now()
	seen := q.dedupScratch
	clear(seen)
	var usage, size int64
	if q.opts.DiskBudget > 0 {
		usage = q.room.usage(false)
	}
	accepted := 0
	var lookups [][]byte
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = err // the caller has gone; store nothing of it
			continue
		}
		size += r.size
		r.dup = make([]bool, len(r.outcomes))
		for _, dk := range r.dkeys {
			if dk != nil {
				lookups = append(lookups, dk)
			}
		}
	}
	if h := q.testHookCommit.Load(); h != nil {
		(*h)()
	}
	if err := q.room.checkDisk(size); err != nil {
		for _, r := range group {
			if r.err == nil {
				r.err = err
			}
		}
		return
	}
	slices.SortFunc(lookups, bytes.Compare)
	lookups = slices.CompactFunc(lookups, bytes.Equal)
	known, err := q.recentlySeen(lookups, now)
	if err != nil {
		for _, r := range group {
			if r.err == nil {
				r.err = err
			}
		}
		return
	}
	var tentative []string
	measured := usage
	for _, r := range group {
		if r.err != nil {
			continue
		}
		tentative = tentative[:0]
		stored := r.size
		for i, dk := range r.dkeys {
			if dk != nil {
				if known[string(dk)] || seen[string(dk)] {
					r.dup[i], r.dkeys[i] = true, nil
					continue
				}
				seen[string(dk)] = true
				tentative = append(tentative, string(dk))
			}
		}
		if q.room.overBudget(usage, stored) {
			r.err = q.room.refusing()
			q.requestReclaim(now)
			for _, s := range tentative {
				delete(seen, s)
			}
			continue
		}
		usage += stored
		accepted++
	}
	if accepted == 0 {
		return
	}

	// What the group adds, in one pass: sequence numbers and dead-letter ids are counted from
	// 1 here and moved past the reserved ones below; an item's frame place is known only once
	// the log write places the frames (build).
	g := groupRecord{at: now, groupID: q.groupID}
	q.groupID++
	var frames, raws [][]byte
	var frameOf []int // per item of g, its frame
	for _, r := range group {
		if r.err != nil {
			continue
		}
		var res queue.AppendResult
		for i, outcome := range r.outcomes {
			if r.dup[i] {
				res.Duplicates++
				continue
			}
			switch outcome {
			case queue.Deliver:
				if res.Queued == 0 {
					frames, raws = append(frames, r.frame), append(raws, r.raw)
				}
				g.items = append(g.items, groupItem{seq: uint64(len(g.items) + 1), loc: itemLoc{ref: true, inner: r.inner[i], n: r.blen[i], visitor: r.visitors[i]}})
				frameOf = append(frameOf, len(frames)-1)
				res.Queued++
			case queue.Filtered:
				res.Filtered++
			case queue.Rejected:
				g.dead = append(g.dead, groupDead{id: uint64(len(g.dead) + 1), value: r.values[i]})
				res.Rejected++
			}
		}
		for _, dk := range r.dkeys {
			if dk != nil {
				g.dkeys = append(g.dkeys, dk)
			}
		}
		g.c.Received += int64(res.Queued + res.Filtered + res.Rejected)
		g.c.Queued += int64(res.Queued)
		g.c.Filtered += int64(res.Filtered)
		g.c.DeadLettered += int64(res.Rejected)
		g.c.Duplicates += int64(res.Duplicates)
		r.res = res
	}

	// The numbers are reserved under wmu; seqMu, held until the group is visible, keeps Replay
	// from making later sequence numbers visible first (Scan's cursor relies on items becoming
	// visible in Seq order).
	q.seqMu.Lock()
	defer q.seqMu.Unlock()
	q.wmu.Lock()
	seqBase, deadBase := q.meta.lastSeq, q.meta.lastDead
	q.meta.lastSeq += uint64(len(g.items))
	q.meta.lastDead += uint64(len(g.dead))
	q.wmu.Unlock()
	for i := range g.items {
		g.items[i].seq += seqBase
	}
	for i := range g.dead {
		g.dead[i].id += deadBase
	}
	g.lastSeq, g.lastDead = seqBase+uint64(len(g.items)), deadBase+uint64(len(g.dead))

	// The record is completed once the frames' place in the log is known, and written after
	// them in the same write and fsync: the payload log is the group commit's write-ahead log.
	build := func(segID uint64, offs []uint64) []byte {
		for i := range g.items {
			g.items[i].loc.seg, g.items[i].loc.off = segID, offs[frameOf[i]]
		}
		return encodeGroup(&g)
	}
	fail := func(err error) {
		q.broken.CompareAndSwap(nil, &err)
		q.log.Error("queue commit failed", "err", err)
		for _, r := range group {
			if r.err == nil {
				r.err, r.res = err, queue.AppendResult{}
			}
		}
	}
	segID, _, recOff, err := q.segs.write(frames, raws, int64(len(g.items)), build)
	if err != nil && isNoSpace(err) {
		// The write was undone: the disk is full, which is no reason to stop for good.
		full := q.room.full(err.Error())
		for _, r := range group {
			if r.err == nil {
				r.err, r.res = full, queue.AppendResult{}
			}
		}
		return
	}
	if err != nil {
		fail(fmt.Errorf("%w; the queue refuses writes until woorelay is restarted", err))
		return
	}
	q.room.wrote(usage - measured)
	if h := q.testHookApply.Load(); h != nil && !(*h)() {
		q.segs.release(map[uint64]int64{segID: int64(len(g.items))})
		fail(errors.New("queue/disk: commit abandoned by a test"))
		return
	}

	// Durable now: apply it to pebble without waiting for pebble's sync.
	batch := q.db.NewBatch()
	defer batch.Close()
	q.wmu.Lock()
	m := q.meta
	applyGroup(batch, &g, &m, frameRef{segID, recOff})
	_ = batch.Set(keyMeta, encodeMeta(&m), nil)
	err = q.db.Apply(batch, pebble.NoSync)
	if err == nil {
		q.meta = m
	} else {
		q.segs.release(map[uint64]int64{segID: int64(len(g.items))})
	}
	q.wmu.Unlock()
	q.commits.Add(1)
	if err != nil {
		fail(fmt.Errorf("queue/disk: commit: %w; the queue refuses writes until woorelay is restarted (it recovers the commit from the payload log)", err))
		return
	}
	if len(g.items) > 0 {
		q.signal()
	}
}

// pruneKey adds the deletion of dedup key dk to b unless it was stored again after cutoff.
func (q *Queue) pruneKey(b *pebble.Batch, dk []byte, cutoff int64) {
	v, closer, err := q.db.Get(dk)
	if err != nil {
		return
	}
	at, ok := decodeSeenAt(v)
	closer.Close()
	if !ok || int64(at) <= cutoff {
		_ = b.Delete(dk, nil)
	}
}

func (q *Queue) requestReclaim(now time.Time) {
	if !q.lastReclaim.IsZero() && now.Sub(q.lastReclaim) < reclaimInterval {
		return
	}
	q.lastReclaim = now
	select {
	case q.reclaim <- struct{}{}:
	default:
	}
}

// pruneAll prunes every expired dedup key, then closes done.
func (q *Queue) pruneAll(done chan struct{}) {
	for q.pruneChunk() {
	}
	close(done)
}

// pruneChunk removes up to pruneChunk expired dedup keys and reports whether more may remain.
// The time index 't' is walked in order from where the last pass stopped; each walked entry's
// dedup key is deleted unless it was stored again since, and the walked span of the index is
// removed with one range deletion.
func (q *Queue) pruneChunk() bool {
	now := q.now()
	cutoff := now.UnixNano() - int64(q.window)
	if cutoff <= 0 {
		return false
	}
	lower := q.pruneFrom
	if lower == nil {
		lower = []byte{prefixDedupTime}
	}
	upper := seqKey(prefixDedupTime, uint64(cutoff)+1) // keys seen at or before cutoff
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		q.log.Error("dedup pruning failed", "err", err)
		return false
	}
	batch := q.db.NewBatch()
	defer batch.Close()
	n := 0
	var last []byte
	more := false
	for valid := it.First(); valid; valid = it.Next() {
		if n == pruneChunk {
			more = true
			break
		}
		k := it.Key()
		n++
		last = append(last[:0], k...)
		if len(k) <= 9 {
			continue
		}
		if k[9] != 0 {
			q.pruneKey(batch, k[9:], cutoff) // an entry of one key (written by version 1 stores)
			continue
		}
		d := decoder{kind: prefixDedupTime, b: it.Value()}
		for d.remaining() > 0 && d.err == nil {
			if dk := d.raw("dedup_key"); d.err == nil {
				q.pruneKey(batch, dk, cutoff)
				n++
			}
		}
		if d.err != nil {
			q.log.Warn("ignoring a corrupt dedup time index entry", "key", fmt.Sprintf("%q", k), "err", d.err)
		}
	}
	if err := it.Close(); err != nil {
		q.log.Error("dedup pruning failed", "err", err)
		return false
	}
	if n == 0 {
		return false
	}
	end := append(last, 0) // just after the last walked key
	_ = batch.DeleteRange(lower, end, nil)
	// NoSync: if a crash loses the pruning, the keys are still expired and pruned again.
	if err := q.db.Apply(batch, pebble.NoSync); err != nil {
		q.log.Error("dedup pruning failed", "err", err)
		return false
	}
	q.pruneFrom = end
	if more {
		q.log.Debug("pruned expired dedup keys; more remain", "count", n)
	}
	return more
}
