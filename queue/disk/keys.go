package disk

import (
	"encoding/binary"
	"time"
)

// Key prefixes; see the package documentation for the layout.
const (
	prefixMeta       = 'm'
	prefixItem       = 'q'
	prefixVisitor    = 'v' // the per-item visitor index of version 1 and 2 stores, moved at open
	prefixVisitorRun = 'w'
	prefixDeadLetter = 'd'
	prefixDedup      = 'k'
	prefixDedupTime  = 't'
)

var (
	keyMeta   = []byte("m/state")
	keyFormat = []byte("m/format")
)

// formatVersion is the key layout version, stored under keyFormat when a store is created.
// Version 3 indexes visitors by runs of sequence numbers (visitor run keys) instead of a key
// per item; version 2 keeps the entries of pending items in the payload log (see segments.go).
// A version 1 store (every entry inline) or 2 store is read and upgraded in place at open.
const (
	formatVersion  = "woorelay-queue-3"
	formatVersion2 = "woorelay-queue-2"
	formatVersion1 = "woorelay-queue-1"
)

func seqKey(prefix byte, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func itemKey(seq uint64) []byte { return seqKey(prefixItem, seq) }
func deadKey(id uint64) []byte  { return seqKey(prefixDeadLetter, id) }

// seqOf reads the big-endian number of a 9-byte key made by seqKey.
func seqOf(k []byte) (uint64, bool) {
	if len(k) != 9 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// visitorRunKey is the key of the visitor run starting at sequence number first: its value
// holds, for each of the run's consecutive sequence numbers, the 8-byte hash of the item's
// visitor (see visitorHash), so that one key per group commit indexes every item it adds.
func visitorRunKey(first uint64) []byte { return seqKey(prefixVisitorRun, first) }

// dedupSuffix identifies (source, messageID): the source's length, the source, the id.
func dedupSuffix(source, messageID string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(source)+len(messageID))
	k = append(k, prefixDedup)
	k = binary.AppendUvarint(k, uint64(len(source)))
	k = append(k, source...)
	return append(k, messageID...)
}

// dedupGroupKey is 't', the big-endian first-seen time, a 0 byte (a dedup key starts with
// 'k', so the two kinds of time index entry never collide) and an id unique to one group
// commit; its value lists the dedup keys the commit stored (see applyGroup).
func dedupGroupKey(at time.Time, id uint64) []byte {
	k := make([]byte, 0, 18)
	k = append(k, prefixDedupTime)
	k = binary.BigEndian.AppendUint64(k, timeNanos(at))
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

func timeNanos(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func encodeSeenAt(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, timeNanos(t))
}

func decodeSeenAt(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// rangeEnd returns the first key after every key that starts with prefix p (a one-byte prefix).
func rangeEnd(p byte) []byte { return []byte{p + 1} }
