// Package jetstream is a queue.Queue on NATS JetStream, shared by any number of relays: each
// `woorelay serve --queue nats://...` opens the same streams, ingests into them, and delivers
// the partitions it holds. It keeps the promises of queue/disk and passes the same
// behavioural suite (queue/queuetest).
//
// # Streams and buckets
//
//	<Stream>           subjects <Stream>.q.<partition>: the events waiting for delivery; a
//	                   finished one is deleted from it (the stream is what is pending)
//	<Stream>_DLQ       dead letters (<Stream>.dlq); a letter's id is its stream sequence
//	<Stream>_COUNTERS  counter CRDTs (nats-server 2.12+): delivered, filtered, dead, duplicates
//	KV <Stream>_LEASES which relay delivers which partition (p.<n>), which relays live (m.<id>)
//	KV <Stream>_STATE  attempts, first failure and next request of items being retried
//
// # Durable acknowledgement and dedup
//
// Append publishes every entry of the request asynchronously and waits for all the
// acknowledgements together, so ingest answers 200 only once every event is stored on a
// quorum of the stream's replicas, for one round trip per request, not per event. Each
// message carries Nats-Msg-Id = source and messageId: JetStream drops a second one within
// Options.DedupWindow and says so in its acknowledgement, which Append counts as a
// duplicate. Filtered and rejected entries are stored too and finished by the partition's
// owner (counted filtered, or moved to the dead letters with their reason), so that every
// event received is one message of the items stream. An Append is not all-or-none as on
// disk: when some acknowledgements fail, the request gets 503 and its retry finds the stored
// ones duplicates (an event without messageId would be stored twice). Append returns within
// AppendTimeout (5 s) whatever the cluster does: acknowledgements not in by then fail the
// request with queue.ErrUnavailable (503 with Retry-After), and nats.go forgets them (a
// publish timeout), so acknowledgements lost with a hung leader never fill the window of
// pending publishes.
//
// # Partitions and ownership: a KV lease
//
// An entry goes to partition fnv32a(visitor) mod Partitions, so a visitor's events are in
// one partition, in the order they were acknowledged. Each partition is delivered by one relay
// at a time, the holder of its lease in the LEASES bucket (a key with the bucket's TTL,
// Options.LeaseTTL, created with Create and renewed with Update on its revision every TTL/3,
// all of a relay's leases at once, so a round costs one round trip to the store however many
// it holds; a renewal that timed out here but was stored is recognised by its value, this
// relay's id).
// Which relay should hold a partition is a rendezvous hash over the live relays (their m.<id>
// keys, renewed the same way): all relays agree, a dead relay's partitions move once its keys
// expire, and a relay that joins takes an even share, moving only the partitions it wins.
// A relay giving one up stops starting attempts on it at once (Owns answers Moved, and
// delivery drops the visitor's lanes), records the attempts under way for Options.Grace, then
// deletes the lease; the next holder reads the partition from its first message through an
// ordered consumer of its own (no acknowledgements: it notices a delivery lost on the way, by
// a gap in its sequence, missed heartbeats or a reconnect, and starts again after the last
// message it gave out; and a reader left waiting 5 s asks the stream whether it holds a
// message the reader has not had, which would mean that the consumer stalled unnoticed, and
// then reads again from there). An item is deleted from the stream (confirmed) before delivery
// sends the visitor's next one, so what the next holder reads is exactly what is left. A relay
// starts attempts on a partition only until half a TTL after it sent its last successful
// renewal, while the lease lasts a TTL after the server stored it: a relay cut off from NATS
// stops starting attempts at least half a TTL before another can take over (Owns answers
// Paused: delivery keeps the items, in order, and asks again; once a renewal lands it goes
// on, and once the lease is lost the items are dropped and read by the next holder; an attempt
// already under way may still finish in that half: keep the Woopra timeout below it, or
// accept that rare overlap as a duplicate).
//
// Ownership is checked before an attempt, not fenced with the send (Woopra's API takes no
// fencing token, so nothing can refuse a late request): a relay paused between Owns and the
// send can send after its lease moved. What it can send then is bounded, and it never puts
// an event's first delivery out of order. Delivery has at most one request of a visitor under
// way, its head x, and sends the visitor's next event only once x's message is deleted. After
// the pause the relay's lease is past its validity, so Owns answers Paused for every later
// attempt until a renewal lands, and no renewal lands: the lease has expired or is another
// relay's (the renewal is an update on this relay's revision), so the partition is dropped
// and Owns answers Moved. The paused relay thus sends at most x, once per visitor it had an
// attempt ready for. The next holder reads what the stream holds, which includes x (not
// deleted before it was sent). Either the late x arrives first, and the next holder's x is
// the duplicate right after it, or the next holder delivered x (and maybe later events) first,
// and the late x is a repeat of an event already delivered, which Woopra places by its own
// timestamp. Every event's first delivery keeps the visitor's order; the late request is at
// most one duplicate. Writes for an item whose partition this relay no longer holds are given
// up (the next holder redoes the item), so the late attempt records nothing.
//
// # Gray failures: hung servers
//
// A NATS server that hangs (a stopped process, a stalled machine) keeps its connections open
// and answers nothing. Every JetStream call has a deadline (5 s unless it has its own), so
// no request and no delivery write waits on it for longer. The connection pings its server
// every 2 s and gives it up after two unanswered pings, then moves to another server (one
// that accepts but does not greet within 2 s is passed over), so a relay connected to a hung
// node, leader or follower, is moved within about 6 s. A hung stream leader is replaced by
// the cluster's election within seconds; the writes that were waiting on it are retried.
// Ready reports appends failing: the relay answers 503 on /readyz from the first failed
// Append until an Append succeeds or, once a second, the items stream's leader answers it,
// so that a load balancer sends the events to a relay that can store them. An answer that a
// write is still in progress (err_code 10158, a publish with the same id not yet stored, seen
// when a leader comes back) is retried quietly and does not count as a failure.
//
// Consumer priority groups with pinned clients were the other candidate. They were not taken
// because a pinned client is whichever pulls first and stays pinned until it stops pulling:
// a relay that joins gets nothing until another dies, so work does not spread; and the
// messages the dead client held come back only after AckWait, which must be hours here,
// since a failing head is held back (unacknowledged) for up to the 4 h retry window.
//
// # Retries, progress and restarts
//
// Retrying and Progress write the item's state to the STATE bucket under
// <partition>.<stream sequence>; the next holder of the partition reads those keys before the
// messages, so attempts, the first failure (the 4 h window) and the next request survive a
// restart and a move. A relay holds at most Options.MaxPending items per partition (reading
// waits while it has that many), whatever the backlog in the stream.
//
// # Counters
//
// Counters are the cluster's totals, the same from every relay, read as one snapshot:
// Received and Queued come from one answer of the items stream's leader (its last sequence,
// one per event ever stored, replays included, less the replays; and the messages it holds).
// Filtered and dead-lettered items are counted in the COUNTERS stream before their message is
// deleted, with Nats-Msg-Id fin-<sequence>, so a relay that redoes an item after a crash does
// not count it twice (within the counter stream's 5 minute window); DeadLettered is what the
// dead-letter stream holds; the replays are the dead letters counted less those still
// stored. Delivered is what is left: an event received, no longer queued, neither filtered
// nor dead-lettered was delivered, so a delivered item's one write is its delete, and
// Received = Delivered + DeadLettered + Filtered + Queued holds in every snapshot, crashes
// included. The parts are read in the order they are written (the items stream first), so a
// snapshot taken while an item is being filtered or dead-lettered can only show Delivered
// short by it, never over; Counters reads again when Delivered or Received would go back.
//
// # What differs from the disk queue
//
// Seq is this relay's own numbering of the items it reads, in per-visitor order; it starts
// again after a restart. Dedup after delivery lasts as long as the stream leader keeps its
// in-memory window: a NATS node that restarts rebuilds it from the messages still stored, so
// a delivered event resent after a leader restart is not recognised.
package jetstream
