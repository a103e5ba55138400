// Package disk is the embedded implementation of queue.Queue: a durable queue on pebble, the
// LSM key-value store of CockroachDB, with the event payloads in an append-only log of
// compressed segment files beside it. Pebble was chosen because its write-ahead log
// group-commits concurrent synced writes (one fsync for many batches), it is mature and
// heavily exercised in production, it recovers from a crash by replaying its log, and its
// batches are atomic, which lets the counters live in the same write as the changes they count.
// The payloads stay out of it so that its flushes and compactions move only small records.
//
// # Durability
//
// Append returns only after its entries are on disk and synced. A single committer goroutine
// takes every Append waiting while the previous commit syncs (group commit), checks all of
// them for duplicates, reserves their sequence numbers, and writes the group's payloads and a
// commit record of everything the group adds (item records, dead letters, dedup keys, counter
// changes) to the payload log with one write and one fsync; it then applies the record to
// pebble without waiting for pebble's own sync and wakes every caller: one fsync serves many
// HTTP requests. The payload log is the group commit's write-ahead log: pebble records the last
// record it applied in the same batch, and Open applies the records after it (the ones a
// machine crash took from pebble's unsynced log), so an acknowledged Append is never lost, and
// one that was interrupted is either all there or not at all. Records carry counter changes,
// not totals, so the counters match the store even when pebble also lost delivery-side writes.
// Replay writes its items with a synced pebble batch. The delivery side (Done, Progress,
// Retrying, Dead) and dedup pruning write without waiting for a sync: a machine crash may undo
// the last few of them, which makes delivery redo work (at least once), never lose an event;
// a payload segment is deleted only after the removals that emptied it are synced. Every batch
// that changes the counters also rewrites them, so after kill -9 or power loss they reconcile
// exactly: Received = Delivered + DeadLettered + Filtered + Queued.
//
// # Payload log
//
// Each Append call's Deliver entries are encoded and compressed with S2 into one frame (in the
// caller's goroutine, so compression runs in parallel), and the committer appends the
// group's frames and its commit record to the active segment (segments/<id>.seg, at most 64 MiB, or a sixteenth of
// the disk budget or of the file system). A frame carries its lengths and a CRC-32C; an item's record holds its
// delivery state, the frame and the entry's place in it, and its visitor (so removing it
// reads no payload). The frames just written stay in a bounded cache (16 MiB), so delivery
// usually reads fresh items from memory; a backlog is read back frame by frame, in order. The
// queue counts each segment's pending items in memory (rebuilt at open from the records) and
// deletes a segment once it has none; every open starts a new segment, so a torn tail left
// by a crash is never appended to, and is deleted with its segment. Dead letters and replayed
// items keep their entry inline in their pebble record.
//
// # Key layout
//
// Every key starts with one byte naming its space; numbers are big-endian so that key order is
// numeric order and a scan is a range iteration:
//
//	m/format                       layout version of the store
//	m/state                        counters, last sequence number, last dead-letter id
//	q <seq:8>                      pending item: delivery state + where its entry is
//	w <first seq:8>                visitor run: one per group commit, the 8-byte hash of the
//	                               visitor of each of its items, in sequence order
//	d <id:8>                       dead letter: time, failure, entry
//	k <len(source)> source messageID   dedup key; value: first-seen time (8 bytes)
//	t <time:8> 0 <id:8>            dedup keys by first-seen time, one entry per group commit
//	                               listing its keys, for pruning
//
// Values use a compact, versioned binary encoding: a kind byte and a version byte, then
// length-prefixed fields with encoding/binary varints. A record that cannot be decoded gives
// an error wrapping ErrCorrupt that names the record and the field. A pending item that cannot
// be decoded does not stall delivery: Scan, ScanVisitor and Dead move it to the dead letters,
// keeping the raw record as the letter's Event and the error as its reason.
//
// # Deleted keys
//
// A long-running queue deletes everything it delivers. Items and dead letters written once
// are deleted with SingleDelete, which cancels out with the original Set at the next flush or
// compaction instead of leaving a tombstone; items rewritten by Progress or Retrying (flagged
// in their state) use an ordinary Delete. Removing an item touches no index: the visitor runs
// below the lowest pending item are removed together with one DeleteRange after payload
// segments are deleted. Scan starts at an in-memory lower bound of the lowest pending sequence
// number, so it never walks the keys of items delivered before the queue's head. Expired dedup
// keys are deleted by walking the time index in order, and the walked span of the index is
// removed with one DeleteRange.
//
// # Visitor index
//
// ScanVisitor walks the visitor runs from the one holding the sequence number it starts at,
// and reads only the items whose hash is the visitor's (checking the visitor, since two may
// share a hash): 8 bytes of index an item it passes, and a read for each of the visitor's own
// items. A run costs ingest one memtable insert a group commit, where a key per item (the
// layout of version 2 stores, rebuilt as runs when one is opened) cost one an event at a
// random place in the memtable and a deletion an event at delivery.
//
// # Memory
//
// The block cache (Options.CacheSize, 32 MiB by default) and the memtables (at most four of
// Options.MemTableSize, 16 MiB by default) bound the memory pebble uses, whatever the backlog
// on disk. Pebble counts memtables against its block cache, so the cache it is given is the
// sum of the two: the blocks keep their 32 MiB while memtables fill.
//
// # Room on disk
//
// Open locks the directory with a lock file that names the holder (a second Open fails
// saying which process has the store), and errors of a store that cannot be read wrap
// ErrDamaged and say how to recover (room.go). The disk budget counts the blocks of every
// file under the directory. Pebble panics when a write fails for want of space, so the queue
// never lets the disk fill: below a low mark of free space (or when a payload log write fails
// with no space, which is undone) Append answers an error wrapping queue.ErrFull and a reserve
// file is deleted to give pebble room for delivery's writes; once space returns the reserve
// is written back and Append accepts entries again, without a reopen. Refusing says which.
package disk
