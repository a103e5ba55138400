package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

// A group commit's record. The committer writes what a group adds to the store (its items'
// records, dead letters, dedup keys and counter changes) to the payload log as a commit frame,
// after the group's payload frames and in the same write and fsync, and only then applies it
// to pebble without waiting for pebble's own sync: the payload log is the group commit's
// write-ahead log, so one fsync acknowledges a group. Pebble records, in the same batch, the
// position of the last record it applied (m/applied); Open applies the records after it, which
// are the ones a machine crash took from pebble's unsynced log. A record carries counter
// changes, not totals, so applying it after pebble lost some delivery-side writes still gives
// counters that match the store.
const (
	commitMagic   = 'C'
	groupKind     = 'G'
	groupVersion  = 1
	recoverChunk  = 256 // records applied per batch when Open replays the payload log
	groupItemSize = 6   // the least bytes one item takes in a record, to bound counts
)

var keyApplied = []byte("m/applied")

// groupRecord is what one group commit adds to the store.
type groupRecord struct {
	at                time.Time
	groupID           uint64
	lastSeq, lastDead uint64 // the highest assigned by the group (0: none)
	c                 queue.Counters
	items             []groupItem
	dead              []groupDead
	dkeys             [][]byte
}

type groupItem struct {
	seq uint64
	loc itemLoc
}

type groupDead struct {
	id    uint64
	value []byte
}

// groupCounters lists the counter changes a record carries, in their stored order.
func groupCounters(c *queue.Counters) []*int64 {
	return []*int64{&c.Received, &c.Queued, &c.Filtered, &c.DeadLettered, &c.Duplicates}
}

func encodeGroup(g *groupRecord) []byte {
	n := 64
	for _, it := range g.items {
		n += 24 + len(it.loc.visitor)
	}
	for _, d := range g.dead {
		n += 12 + len(d.value)
	}
	for _, k := range g.dkeys {
		n += 2 + len(k)
	}
	b := make([]byte, 0, n)
	b = append(b, groupKind, groupVersion)
	b = putUvarint(b, timeNanos(g.at))
	b = putUvarint(b, g.groupID)
	b = putUvarint(b, g.lastSeq)
	b = putUvarint(b, g.lastDead)
	for _, p := range groupCounters(&g.c) {
		b = putVarint(b, *p)
	}
	b = putUvarint(b, uint64(len(g.items)))
	for _, it := range g.items {
		b = putUvarint(b, it.seq)
		b = putUvarint(b, it.loc.seg)
		b = putUvarint(b, it.loc.off)
		b = putUvarint(b, it.loc.inner)
		b = putUvarint(b, it.loc.n)
		b = putString(b, it.loc.visitor)
	}
	b = putUvarint(b, uint64(len(g.dead)))
	for _, d := range g.dead {
		b = putUvarint(b, d.id)
		b = putBytes(b, d.value)
	}
	b = putUvarint(b, uint64(len(g.dkeys)))
	for _, k := range g.dkeys {
		b = putBytes(b, k)
	}
	return b
}

func decodeGroup(b []byte) (groupRecord, error) {
	d := decoder{kind: groupKind, b: b}
	d.header(groupKind, groupVersion)
	var g groupRecord
	g.at = time.Unix(0, int64(d.uvarint("at"))).UTC()
	g.groupID = d.uvarint("group_id")
	g.lastSeq = d.uvarint("last_seq")
	g.lastDead = d.uvarint("last_dead")
	for _, p := range groupCounters(&g.c) {
		*p = d.varint("counters")
	}
	g.items = make([]groupItem, d.count("items", groupItemSize))
	for i := range g.items {
		it := &g.items[i]
		it.seq = d.uvarint("item.seq")
		it.loc = itemLoc{ref: true, seg: d.uvarint("item.segment"), off: d.uvarint("item.frame"), inner: d.uvarint("item.offset"), n: d.uvarint("item.length")}
		it.loc.visitor = d.str("item.visitor")
	}
	g.dead = make([]groupDead, d.count("dead", 2))
	for i := range g.dead {
		g.dead[i].id = d.uvarint("dead.id")
		g.dead[i].value = d.bytes("dead.value")
	}
	g.dkeys = make([][]byte, d.count("dedup_keys", 1))
	for i := range g.dkeys {
		g.dkeys[i] = d.bytes("dedup_key")
	}
	d.end()
	if d.err != nil {
		return groupRecord{}, d.err
	}
	return g, nil
}

// applyGroup adds what g stores to b and moves m by it, recording pos as the last record
// applied; the caller writes m (keyMeta) with b.
func applyGroup(b *pebble.Batch, g *groupRecord, m *meta, pos frameRef) {
	// The items of a group have consecutive sequence numbers: one visitor run indexes them
	// (a new run starts wherever a record says otherwise).
	var runs runBuilder
	for _, it := range g.items {
		_ = b.Set(itemKey(it.seq), encodeItemLoc(itemState{}, it.loc), nil)
		runs.add(b, it.seq, it.loc.visitor)
	}
	runs.flush(b)
	for _, d := range g.dead {
		_ = b.Set(deadKey(d.id), d.value, nil)
	}
	if len(g.dkeys) > 0 {
		seen := encodeSeenAt(g.at)
		var list []byte
		for _, k := range g.dkeys {
			_ = b.Set(k, seen, nil)
			list = putBytes(list, k)
		}
		// One time index entry for the whole group: pruning reads the keys it lists.
		_ = b.Set(dedupGroupKey(g.at, g.groupID), list, nil)
	}
	m.lastSeq = max(m.lastSeq, g.lastSeq)
	m.lastDead = max(m.lastDead, g.lastDead)
	m.c.Received += g.c.Received
	m.c.Queued += g.c.Queued
	m.c.Filtered += g.c.Filtered
	m.c.DeadLettered += g.c.DeadLettered
	m.c.Duplicates += g.c.Duplicates
	_ = b.Set(keyApplied, binary.AppendUvarint(binary.AppendUvarint(nil, pos.seg), pos.off), nil)
}

// readApplied returns the position of the last group record pebble applied.
func (q *Queue) readApplied() (frameRef, bool, error) {
	v, closer, err := q.db.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return frameRef{}, false, nil
	}
	if err != nil {
		return frameRef{}, false, fmt.Errorf("queue/disk: read the last applied group commit: %w", err)
	}
	defer closer.Close()
	seg, n := binary.Uvarint(v)
	off, m := binary.Uvarint(v[max(n, 0):])
	if n <= 0 || m <= 0 || n+m != len(v) {
		return frameRef{}, false, fmt.Errorf("queue/disk: the last applied group commit: %w (%d bytes); the store is damaged: restore the directory from a backup", ErrCorrupt, len(v))
	}
	return frameRef{seg, off}, true, nil
}

// recoverGroups applies to pebble the group records of the payload log after the last one it
// applied: the group commits a machine crash took from pebble's unsynced log. It reads each
// segment's frames in order from there and stops at a segment's first unreadable frame (the
// torn tail of a write that never completed, so never acknowledged).
func (q *Queue) recoverGroups() error {
	applied, haveApplied, err := q.readApplied()
	if err != nil {
		return err
	}
	after := func(p frameRef) bool {
		return !haveApplied || p.seg > applied.seg || (p.seg == applied.seg && p.off > applied.off)
	}
	m := q.meta
	b := q.db.NewBatch()
	pending, total := 0, 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		_ = b.Set(keyMeta, encodeMeta(&m), nil)
		if err := q.db.Apply(b, pebble.Sync); err != nil {
			return fmt.Errorf("queue/disk: apply group commits from the payload log: %w", err)
		}
		b.Close()
		b = q.db.NewBatch()
		q.meta, total, pending = m, total+pending, 0
		return nil
	}
	defer func() { b.Close() }()
	for _, id := range q.segs.ids() {
		if haveApplied && id < applied.seg {
			continue
		}
		for off := uint64(0); ; {
			kind, size, body, err := q.segs.readFrame(id, off, after(frameRef{id, off}))
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				// Whether it was acknowledged is known once the items are counted: see
				// reportTorn.
				q.torn = append(q.torn, tornFrame{frameRef{id, off}, err})
				break
			}
			if kind == commitMagic && body != nil {
				g, err := decodeGroup(body)
				if err != nil {
					return fmt.Errorf("queue/disk: group commit in payload segment %s at %d: %w; the store is damaged: restore the directory from a backup", segmentName(id), off, err)
				}
				applyGroup(b, &g, &m, frameRef{id, off})
				if pending++; pending == recoverChunk {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			off += frameHeader + size
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if total > 0 {
		q.log.Warn("applied group commits that pebble had lost from the payload log (the machine stopped before pebble's log was synced)", "commits", total)
	}
	return nil
}

// tornFrame is the first unreadable frame of a payload segment, found by recoverGroups.
type tornFrame struct {
	at  frameRef
	err error
}

// reportTorn says what each unreadable frame found at open means, now that lost counts the
// pending items whose payload is at or after it: none, and it is the tail of a write that
// was interrupted before it was acknowledged; some, and the segment was damaged (cut short or
// overwritten) after their events were acknowledged.
func (q *Queue) reportTorn(lost map[uint64]int64) {
	for _, t := range q.torn {
		if n := lost[t.at.seg]; n > 0 {
			q.log.Error("a payload segment is damaged: the payloads of acknowledged events are lost; each is moved to the dead letters as a corrupt record when delivery reaches it (restore the segment from a backup to recover them)",
				"segment", segmentName(t.at.seg), "offset", t.at.off, "acknowledged_events", n, "err", t.err)
			continue
		}
		q.log.Warn("payload log segment ends with an unreadable frame that no pending event refers to (a write interrupted before it was acknowledged)",
			"segment", segmentName(t.at.seg), "offset", t.at.off, "err", t.err)
	}
	q.torn = nil
}
