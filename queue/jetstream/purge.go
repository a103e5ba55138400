package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// A delivered item leaves the items stream in batches (see "Finished items leave in stream
// order" in the package doc): Done records it in its hold's finished list, and the flusher
// removes the finished items below the lowest item still held with one filtered purge of the
// partition, every purgeEvery (or at once when purgeBatch are waiting). Finished items above
// a held one that stays unfinished for purgeStuck (a head being retried) are deleted one by
// one, lowest first, stopping at the first failure, so that what a partition's next holder
// reads is always, for every visitor, a suffix of what was sent.
const (
	purgeEvery = 50 * time.Millisecond
	purgeBatch = 512
	purgeStuck = time.Second
)

// flushLoop removes finished items from the stream until ctx ends.
func (q *Queue) flushLoop(ctx context.Context) {
	defer close(q.flushDone)
	tick := time.NewTicker(purgeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-q.flushNow:
		}
		q.flushAll(ctx, false)
	}
}

// flushAll flushes every hold with finished items; force removes those above a held item
// too, whatever their age.
func (q *Queue) flushAll(ctx context.Context, force bool) {
	q.mu.Lock()
	held := make(map[int]*part, len(q.parts))
	for p, pt := range q.parts {
		if len(pt.fin) > 0 {
			held[p] = pt
		}
	}
	q.mu.Unlock()
	for p, pt := range held {
		if err := q.flushPart(p, pt, force); err != nil && ctx.Err() == nil {
			q.log.Warn("removing delivered items from the stream failed; retrying", "partition", p, "err", err)
		}
	}
}

// finishedLocked records that the held item r was delivered; its message leaves the stream
// with the hold's next flush (lock held).
func (q *Queue) finishedLocked(r *rec) {
	pt := r.pt
	q.removeLocked(r)
	if q.parts[r.part] != pt {
		return // the partition moved: its next holder has the item
	}
	if len(pt.fin) == 0 {
		pt.finSince = time.Now()
	}
	pt.fin = append(pt.fin, r.sseq)
	if len(pt.fin) >= purgeBatch {
		select {
		case q.flushNow <- struct{}{}:
		default:
		}
	}
}

// lowestHeldLocked returns the stream sequence of the hold's lowest item still held, or 0
// when it holds none (lock held).
func (q *Queue) lowestHeldLocked(pt *part) uint64 {
	for len(pt.live) > 0 {
		if ls, ok := q.bySSeq[pt.live[0]]; ok {
			if r := q.recs[ls]; r != nil && r.pt == pt {
				return pt.live[0]
			}
		}
		pt.live = pt.live[1:]
	}
	return 0
}

// purgePlan is what one flush of a hold removes: every finished item below floor (0: none)
// with one purge, then above one by one when they have waited long enough.
type purgePlan struct {
	floor uint64
	above []uint64
}

// planLocked says what a flush of pt removes now; force removes the finished items above a
// held one whatever their age (lock held).
func (q *Queue) planLocked(pt *part, force bool) purgePlan {
	if len(pt.fin) == 0 {
		return purgePlan{}
	}
	slices.Sort(pt.fin)
	low := q.lowestHeldLocked(pt)
	i := len(pt.fin)
	if low != 0 {
		i, _ = slices.BinarySearch(pt.fin, low)
	}
	var plan purgePlan
	if i > 0 {
		plan.floor = pt.fin[i-1] + 1
	}
	if i < len(pt.fin) && (force || time.Since(pt.finSince) >= purgeStuck) {
		plan.above = slices.Clone(pt.fin[i:])
	}
	return plan
}

// flushPart removes partition p's finished items from the stream (see purgePlan).
func (q *Queue) flushPart(p int, pt *part, force bool) error {
	pt.flushMu.Lock()
	defer pt.flushMu.Unlock()
	q.mu.Lock()
	if q.parts[p] != pt { // dropped: drop removed what it could, with the items it held
		q.mu.Unlock()
		return nil
	}
	plan := q.planLocked(pt, force)
	q.mu.Unlock()
	return q.carryOut(p, pt, plan)
}

// carryOut removes what plan says and forgets it from pt's finished list (pt.flushMu held).
func (q *Queue) carryOut(p int, pt *part, plan purgePlan) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var err error
	if plan.floor > 0 {
		if err = q.purgeBelow(ctx, p, plan.floor); err != nil {
			plan = purgePlan{}
		}
	}
	deleted := 0
	for err == nil && deleted < len(plan.above) {
		if err = q.deleteMsg(ctx, q.o.Stream, plan.above[deleted]); err == nil {
			deleted++
		}
	}
	if plan.floor == 0 && deleted == 0 {
		return err
	}
	gone := plan.above[:deleted]
	q.mu.Lock()
	kept := pt.fin[:0]
	for _, s := range pt.fin {
		if _, found := slices.BinarySearch(gone, s); s >= plan.floor && !found {
			kept = append(kept, s)
		}
	}
	pt.fin = kept
	if len(kept) > 0 {
		pt.finSince = time.Now()
	}
	q.mu.Unlock()
	q.stale()
	return err
}

// purgeBelow removes every message of partition p's subject with a stream sequence below
// floor: one replicated stream operation for a batch of delivered items.
func (q *Queue) purgeBelow(ctx context.Context, p int, floor uint64) error {
	body := append(strconv.AppendQuote([]byte(`{"filter":`), q.subject(p)), `,"seq":`...)
	body = strconv.AppendUint(body, floor, 10)
	body = append(body, '}')
	resp, err := q.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+q.o.Stream, body)
	if err != nil {
		return fmt.Errorf("purge partition %d below %d: %w", p, floor, err)
	}
	var r apiResponse
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("purge partition %d below %d: unreadable answer %q: %w", p, floor, resp.Data, err)
	}
	if r.Error != nil {
		return fmt.Errorf("purge partition %d below %d: %s (code %d, err_code %d)", p, floor, r.Error.Description, r.Error.Code, r.Error.ErrCode)
	}
	return nil
}
