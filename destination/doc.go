// Package destination delivers queued events to Woopra: a Client that sends one request and
// classifies the answer, a Backoff that spaces retries, and a Dispatcher that drains a
// queue.Queue through them, in order per visitor, at least once.
//
// # Classification (Client)
//
// Each queue.Request is sent as built by the mapping (method, URL with its encoded query, the
// event's User-Agent header; no body). One attempt is bounded by ClientOptions.Timeout
// (default 10 s) from dial to the end of the body; the transport keeps connections alive
// (Conns per host, sized for the dispatcher's workers) and bodies are read (the first
// MaxBody bytes kept, 2 KiB by default) and drained so connections are reused. Up to 5
// redirects are followed. The answer is classified:
//
//   - 2xx: Done. Exception: a 200 whose body says "Host … not registered!" (Woopra's answer
//     for an unknown project) is Dead, since taking it as success would lose every event.
//   - 402 Over Quota: Done. Woopra's tracking documentation says the data is logged and only
//     triggers do not run, so retrying or dead-lettering (then replaying) would record the
//     event twice. The dispatcher counts it apart (woorelay_delivery_over_quota_total,
//     Stats.OverQuota) and warns at most once a minute.
//   - 401: Dead, with a reason that says whether the request carried credentials: without,
//     the project has secure tracking enabled and the source needs woopra_auth_env; with,
//     the credentials were refused.
//   - 408, 429, 5xx except 501, timeouts and network errors: Retry. Retry-After (seconds or
//     an HTTP-date) is parsed into Attempt.RetryAfter.
//   - Any other status (other 4xx, 501, a 3xx not followed) and a request that cannot be
//     built: Dead at once. A 3xx still redirecting after MaxRedirects is reported as a
//     redirect loop, with the last URL and where it pointed.
//
// # Retries (Backoff)
//
// After the n-th failed attempt of an event, the next waits a uniformly random time in
// [0, min(Max, Min·2^(n-1))] (full jitter; defaults 1 s and 5 min), or the Retry-After value
// (capped to Backoff.MaxRetryAfter, 10 min by default; the relay sets it to --retry-max, but
// at least a minute, so that a destination asking for seconds is always obeyed) when that is
// longer. An event is retried until RetryWindow (default 4 h)
// has passed since its first failed attempt; the next failure then dead-letters it with the
// last request and answer. The first failure's time and the attempt count are kept in the
// queue (Queue.Retrying), so the window survives restarts. A 429 with Retry-After is taken as
// back-pressure on the whole destination: all sending pauses until it expires (attempts
// already under way finish), and the pause is counted. A 429 is not terminal: like a 5xx it
// dead-letters only once the retry window is spent. Nothing is ever dropped: every item ends
// in Queue.Done or Queue.Dead, or stays in the queue.
//
// # Scheduling (Dispatcher)
//
// Items are read from Queue.Scan in Seq order into a window of at most Window items and
// appended to their visitor's lane, a FIFO keyed by queue.Entry.Visitor (an item without a
// visitor gets a lane of its own). Only a lane's head is ever sent. When it succeeds the
// next item of the lane becomes eligible; when it is to be retried the lane waits (other
// lanes keep flowing) until its next attempt time; when it is dead-lettered the lane moves
// on. Ready lanes are served round robin by Workers goroutines.
//
// A source that declares order: none stores its events without a visitor key: each gets a
// lane of its own, so one visitor's events go out side by side.
//
// Memory is bounded by Window regardless of the backlog, and one visitor holds at most
// PerVisitor items: when a lane is full, the visitor's later items are left in the queue and
// the lane is marked overflowed; the global scan passes them by (they take no room), and
// once the lane has drained to half, Queue.ScanVisitor reads the next ones after the last
// loaded Seq. So a visitor with a long failing backlog cannot fill the window, and its later
// items never overtake the ones left behind. Items are held without their event JSON once
// they have requests (the queue keeps it for dead letters).
//
// An entry stored without requests (the mapping runs at delivery) is mapped by
// DispatcherOptions.Map on its first attempt: the requests it returns are kept with the lane
// for the retries, a filter reason removes the item through the queue's Filter, and a mapping
// error dead-letters it. Without Map such an entry is dead-lettered, never counted as
// delivered.
//
// An entry with several requests sends them in order from Item.NextRequest; after each
// success but the last Queue.Progress records it, after the last Queue.Done. A retry sends
// only the request that failed, never one that already succeeded.
//
// New items are noticed through Queue.Appended, with a rescan every Rescan (default 5 s) as
// a safety net. The dispatcher keeps nothing on disk itself: after a restart it starts from
// Seq 0, and every pending item (with its attempts, first failure and next request) is still
// in the queue. Delivery is at least once: an item is sent again if the process stops between
// the destination's answer and the queue recording it.
//
// A queue shared by several relays (queue/jetstream) implements queue.Owner: before each
// attempt the dispatcher asks whether the item is still its own, and when its partition has
// moved to another relay it drops the visitor's whole lane from memory, sending and recording
// nothing (the new owner reads those items, with their state, from the shared store), so two
// relays never send one visitor's events side by side; it then reads the queue again from
// the start, in case the partition comes back with new Seqs while the lane held old ones.
// When the queue answers Paused (its lease on the partition is overdue for renewal, so it may
// not start attempts but still holds the items) the lane keeps its items and its place and
// asks again 100 ms later, recording nothing.
//
// The queue is assumed to make items visible to Scan in Seq order (an item never appears
// after a higher Seq was read). If one does, it is picked up the next time the dispatcher
// has nothing in memory.
//
// # Concurrency
//
// How many attempts may be under way at once is a limit between MinWorkers and Workers that
// the dispatcher finds by itself (MinWorkers equal to Workers, or 0, pins it at Workers).
// Throughput is limit / round trip, so against a destination 150 ms away a fixed 64 gives at
// most 427 requests/s whatever the backlog, and a guess too high overloads it. The algorithm
// is AIMD on the round trip against a moving baseline, as Vector's Adaptive Request
// Concurrency and TCP congestion control do, with TCP's slow start:
//
//   - Decisions are taken once a cycle: a baseline round trip (at least 20 ms), over the
//     attempts answered in it. The baseline is the shortest round trip of the last 30
//     seconds: what the destination takes when nothing queues.
//   - Back-pressure (429, 502, 503, 504, a timeout, a refused or reset connection) in a
//     cycle multiplies the limit by 0.75. Only attempts sent after the last decrease count,
//     so one overload is answered by one decrease per round trip, not one per refusal.
//   - A cycle whose mean round trip exceeds twice the baseline (plus 5 ms, for loopback)
//     means requests queue somewhere: the limit is multiplied by 0.9, but never below 64
//     (or the bounds): round trips also rise for reasons fewer requests do not cure (the
//     relay's own CPU, a busy machine, the network), so below 64 only back-pressure lowers
//     the limit, and a relay is never slower on latency alone than the fixed 64 it had.
//   - Otherwise, when work waited on the limit during the cycle (the limit is what holds
//     delivery back), the limit grows: doubled each cycle in slow start (from 16), then by
//     √limit a cycle, and by a quarter of that within ±10 % of the limit where back-pressure
//     was last met, so it probes gently where it was refused and quickly elsewhere. Slow
//     start ends at the first back-pressure, or once round trips rise past 1.5 × the
//     baseline (HyStart's rule), before doubling into refusals.
//
// Why it converges: below the destination's capacity round trips stay at the baseline and
// the limit grows; past it, refusals or queueing lower it by a constant factor, so it
// oscillates in a band under the capacity (with a 503 past 600, about 0.75–1.0 of it, and
// refusals about 1 % of the attempts). A drop of capacity (600 to 150) meets refusals at once
// and is followed within a few round trips (0.75 per round trip: about seven); a rise is
// found by the √limit growth within seconds (150 to 420 in about twenty round trips). During
// an outage nothing answers: the limit falls to the floor, and the limit of the last good
// cycle is kept, so recovery slow-starts back to half of it in a few round trips, then grows
// on. Requests already under way when the limit falls finish; nothing is cancelled.
//
// The baseline must not follow a queue of the limit's own making (the failure Vector's and
// Gradient's users report: the baseline creeps up with the queue and the limit with it).
// When the 30-second minimum has risen by more than a tenth, the limit is first halved for
// two round trips (a probe, as BBR's ProbeRTT does) and the shortest round trip of the
// attempts started after the cut becomes the baseline: a queue of ours drains and the old
// baseline is confirmed; a destination that really became slower keeps its new round trip.
// One slow visitor cannot drag the limit down on its own: decisions use the mean of a whole
// cycle, and a lane waits on its own retries, not on the limit.
//
// Workers are goroutines started as the limit first needs them (one per attempt under way
// at the peak), the Client's connections are opened as needed up to Conns, and Window
// defaults to 4 × Workers (at least 4096), so neither caps the limit silently. A 429 with
// Retry-After still pauses all sending globally (see Retries), on top of the decrease.
//
// # Stopping
//
// Run returns when its context ends: it stops taking new work at once, waits for attempts
// under way (at most DrainTimeout, default 30 s, after which they are cancelled and count as
// not sent), and returns. There is no Stop method; cancel the context (on SIGTERM, say) and
// wait for Run to return before closing the queue.
//
// # Metrics
//
// With DispatcherOptions.Registerer set: woorelay_delivery_attempts_total{class,status,source},
// woorelay_delivery_events_total{outcome,source}, woorelay_delivery_latency_seconds{source}
// (ingest to delivery), woorelay_delivery_request_duration_seconds, woorelay_delivery_in_flight,
// woorelay_delivery_loaded_items, woorelay_delivery_lanes, woorelay_delivery_pauses_total,
// woorelay_delivery_pause_seconds_total, woorelay_delivery_lane_overflows_total, woorelay_delivery_moved_items_total,
// woorelay_delivery_queue_errors_total{op}, woorelay_queue_backlog (Counters().Queued),
// woorelay_delivery_concurrency_limit, woorelay_delivery_rtt_baseline_seconds,
// woorelay_delivery_limit_decreases_total{reason} (back-pressure, latency, probe) and
// woorelay_delivery_over_quota_total. The limit is logged (Info) when it has moved by a
// factor of two since it was last logged.
package destination
