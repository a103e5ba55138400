// Package disk is the embedded implementation of queue.Queue: a durable queue on pebble, the
// LSM key-value store of CockroachDB. Pebble was chosen because its write-ahead log
// group-commits concurrent synced writes (one fsync for many batches), it is mature and
// heavily exercised in production, it recovers from a crash by replaying its log, and its
// batches are atomic, which lets the counters live in the same write as the changes they count.
//
// # Durability
//
// Append returns only after its entries are in the write-ahead log and the log is fsynced.
// A single committer goroutine takes every Append waiting while the previous commit syncs
// (group commit), checks all of them for duplicates, assigns sequence numbers, writes one
// batch and waits for one sync, then wakes every caller: one fsync serves many HTTP requests.
// Each Append is all or none. Replay is synced too. The delivery side (Done, Progress,
// Retrying, Dead) and dedup pruning write without waiting for a sync: a machine crash may undo
// the last few of them, which makes delivery redo work (at least once), never lose an event.
// Every batch that changes the counters also rewrites them, so after kill -9 or power loss
// they reconcile exactly: Received = Delivered + DeadLettered + Filtered + Queued.
//
// # Key layout
//
// Every key starts with one byte naming its space; numbers are big-endian so that key order is
// numeric order and a scan is a range iteration:
//
//	m/format                       layout version of the store
//	m/state                        counters, last sequence number, last dead-letter id
//	q <seq:8>                      pending item: delivery state + entry
//	v <len(visitor)> visitor <seq:8>   index of pending items per visitor (empty value)
//	d <id:8>                       dead letter: time, failure, entry
//	k <len(source)> source messageID   dedup key; value: first-seen time (8 bytes)
//	t <time:8> <dedup key>         dedup keys by first-seen time, for pruning (empty value)
//
// Values use a compact, versioned binary encoding: a kind byte and a version byte, then
// length-prefixed fields with encoding/binary varints. A record that cannot be decoded gives
// an error wrapping ErrCorrupt that names the record and the field. A pending item that cannot
// be decoded does not stall delivery: Scan, ScanVisitor and Dead move it to the dead letters,
// keeping the raw record as the letter's Event and the error as its reason.
//
// # Deleted keys
//
// A long-running queue deletes everything it delivers. Items, index entries and dead letters
// written once are deleted with SingleDelete, which cancels out with the original Set at the
// next flush or compaction instead of leaving a tombstone; items rewritten by Progress or
// Retrying (flagged in their state) use an ordinary Delete. Scan starts at an in-memory lower
// bound of the lowest pending sequence number, so it never walks the keys of items delivered
// before the queue's head. Expired dedup keys are deleted by walking the time index in order,
// and the walked span of the index is removed with one DeleteRange.
//
// # Memory
//
// The block cache (Options.CacheSize, 32 MiB by default) and the memtables (at most four of
// Options.MemTableSize, 16 MiB by default) bound the memory pebble uses, whatever the backlog
// on disk.
package disk
