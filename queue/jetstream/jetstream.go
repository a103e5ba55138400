package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/woorelay/woorelay/queue"
)

// Options configure a queue on JetStream. Zero values take the defaults named.
type Options struct {
	// URL is the NATS servers' URLs, comma separated (nats://host:4222,...). Unused with Conn.
	URL string
	// CredsFile is a NATS credentials file (user JWT and NKey seed), when the servers need one.
	CredsFile string
	// Conn is an open connection to use instead of dialling URL; Close leaves it open.
	Conn *nats.Conn

	// Stream names the items stream (default WOORELAY); the other streams and buckets are
	// named after it: <Stream>_DLQ, <Stream>_COUNTERS, KV <Stream>_LEASES and <Stream>_STATE.
	// Its subjects are <Stream>.q.<partition>, <Stream>.dlq and <Stream>.c.<counter>.
	Stream string
	// Replicas of every stream and bucket (default 1; 3 in production).
	Replicas int
	// Partitions is how many partition subjects the items are spread over by a hash of the
	// visitor (default 16). Each is delivered by one relay at a time, so it bounds how many
	// relays share the work. It is fixed when the stream is created.
	Partitions int
	// DedupWindow is the items stream's duplicate window for Nats-Msg-Id (default 1h; see the
	// README for what it costs the NATS servers' memory).
	DedupWindow time.Duration
	// MemoryStorage keeps the streams in memory instead of files (tests only).
	MemoryStorage bool

	// LeaseTTL is how long a partition's lease lasts without renewal (default 5s): a relay
	// that dies gives its partitions up after at most this long. Renewed every LeaseTTL/3.
	LeaseTTL time.Duration
	// Grace is how long a relay keeps a partition it gives up (to a relay that joined) after
	// it stopped starting attempts on it, so that attempts under way finish and are recorded
	// (default 12s: longer than delivery's 10 s request timeout).
	Grace time.Duration
	// MaxPending bounds how many items of one partition this relay holds in memory (default
	// 2048): reading the partition waits while it holds that many.
	MaxPending int

	// Instance names this relay in the leases (default: a random id).
	Instance string
	// Clock is the time source for dead letters' At (default time.Now).
	Clock func() time.Time
	// Logger receives ownership changes and errors (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = "WOORELAY"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Partitions <= 0 {
		o.Partitions = 16
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = time.Hour
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 5 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 12 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 2048
	}
	if o.Instance == "" {
		o.Instance = uuid.NewString()[:8]
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// AppendTimeout bounds Append: events not acknowledged by then are answered 503 (their
// pending acknowledgements are failed and forgotten), whatever the cluster does.
const AppendTimeout = 5 * time.Second

// callTimeout is the deadline of a JetStream call made without one of its own.
const callTimeout = 5 * time.Second

// pingInterval is how often the connection's server is pinged; two unanswered pings in a row
// (a hung server) move the connection to another server.
const pingInterval = 2 * time.Second

// finWindow is the counters stream's duplicate window: how long an item's outcome id
// (fin-<sequence>) is remembered, so that a relay redoing the item after another crashed
// between counting and acknowledging it does not count it again. The redo comes within a
// lease TTL and one attempt; 5 minutes keeps the ids' memory small (about 130 bytes each).
const finWindow = 5 * time.Minute

// counter subjects' last tokens. Delivered is no counter: it is what left the items stream
// otherwise (see Counters).
const (
	cFiltered   = "filtered"
	cDead       = "dead"
	cDuplicates = "duplicates"
)

// rec is one item this relay holds: its message, its entry and its delivery state.
type rec struct {
	seq      uint64 // local
	sseq     uint64 // items stream sequence: the item's identity in the cluster
	part     int
	pt       *part // the hold on the partition it was read under
	entry    queue.Entry
	st       state
	hasState bool
}

// part is this relay's hold on one partition.
type part struct {
	rev       uint64    // lease revision
	renewed   time.Time // last successful renewal
	valid     time.Time // attempts may start until then: half a TTL after the last renewal was sent
	releasing bool      // given up: no new attempts; writes still recorded until the grace ends
	releaseAt time.Time
	stop      context.CancelFunc
	done      chan struct{}
	held      int           // items of the partition this hold has (q.mu)
	room      chan struct{} // signalled when one of them is removed
	next      uint64        // the stream sequence to read from after a read error
}

// Queue is a queue.Queue on a JetStream cluster, shared by every relay that opens the same
// Stream. Create it with Open.
type Queue struct {
	o       Options
	readers atomic.Int64 // consumers created, to name each anew
	nc      *nats.Conn
	ownConn bool
	js      jetstream.JetStream
	items   jetstream.Stream
	dlq     jetstream.Stream
	ctrs    jetstream.Stream
	leases  jetstream.KeyValue
	states  jetstream.KeyValue
	log     *slog.Logger

	appended chan struct{}

	mu        sync.Mutex
	recs      map[uint64]*rec
	bySSeq    map[uint64]uint64 // stream seq -> local seq
	order     []uint64          // local seqs, increasing; may hold removed ones
	removed   int
	byVisitor map[string][]uint64
	parts     map[int]*part
	nextSeq   uint64

	cmu      sync.Mutex
	cached   queue.Counters
	cachedAt time.Time
	cacheGen uint64        // writes when cached was read
	writes   atomic.Uint64 // this relay's writes: a cached read older than the last is stale

	closeMu  sync.RWMutex
	closed   bool
	appends  sync.WaitGroup
	stop     context.CancelFunc
	loopDone chan struct{}
	replayMu sync.Mutex
	closing  chan struct{} // closed by Close
	health   health

	supMu sync.Mutex
	sup   jetstream.KeyValue // the suppression list's bucket, once created (privacy.go)
}

// Open connects (unless Options.Conn is given), creates or binds the streams and buckets,
// takes this relay's share of the partitions and starts reading them.
func Open(o Options) (*Queue, error) {
	o = o.withDefaults()
	q := &Queue{o: o, log: o.Logger.With("queue", "jetstream", "instance", o.Instance), appended: make(chan struct{}, 1),
		recs: map[uint64]*rec{}, bySSeq: map[uint64]uint64{}, byVisitor: map[string][]uint64{}, parts: map[int]*part{},
		closing: make(chan struct{})}
	q.health.q = q
	if o.Conn != nil {
		q.nc = o.Conn
	} else {
		if o.URL == "" {
			return nil, errors.New("queue/jetstream: no NATS URL (hint: --queue nats://host:4222, or queue.urls in the sources file)")
		}
		// A server that hangs (a stopped process, a stalled machine) keeps its TCP connection
		// open: it is noticed by its unanswered pings, PingInterval times MaxPingsOutstanding,
		// and the connection moves to another server; a server that accepts but never
		// greets is given up after Timeout.
		opts := []nats.Option{nats.Name("woorelay " + o.Instance), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
			nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(2), nats.Timeout(2 * time.Second),
			nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
				q.log.Warn("the connection to a NATS server was lost (it may hang or be down); moving to another", "err", err)
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				q.log.Info("connected to another NATS server", "server", nc.ConnectedUrlRedacted(), "name", nc.ConnectedServerName())
			})}
		if o.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(o.CredsFile))
		}
		nc, err := nats.Connect(o.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("queue/jetstream: connect to %s: %w (hint: is nats-server running with JetStream enabled?)", o.URL, err)
		}
		q.nc, q.ownConn = nc, true
	}
	// An acknowledgement lost with a hung leader would otherwise stay pending until the
	// connection is replaced, and enough of them fill the window and stall every publish.
	js, err := jetstream.New(q.nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(AppendTimeout),
		jetstream.WithDefaultTimeout(callTimeout))
	if err != nil {
		q.closeConn()
		return nil, fmt.Errorf("queue/jetstream: %w", err)
	}
	q.js = js
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := q.setup(ctx); err != nil {
		q.closeConn()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	q.stop, q.loopDone = stop, make(chan struct{})
	q.round(lctx) // take a share before returning
	go q.leaseLoop(lctx)
	return q, nil
}

func (q *Queue) closeConn() {
	if q.ownConn {
		q.nc.Close()
	}
}

func (q *Queue) storage() jetstream.StorageType {
	if q.o.MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// setup creates (or binds) the three streams and two buckets. Each is tried again (10 s an
// attempt, for up to a minute): relays starting together race to create a replicated stream,
// and the loser's request can time out while the winner's is proposed; the retry finds it.
func (q *Queue) setup(ctx context.Context) error {
	s, r := q.o.Stream, q.o.Replicas
	ensure := func(what string, f func(ctx context.Context) error) error {
		var err error
		for ctx.Err() == nil {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = f(actx)
			cancel()
			if err == nil {
				return nil
			}
			q.log.Warn("creating a stream or bucket failed; retrying", "what", what, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		return fmt.Errorf("queue/jetstream: create %s: %w", what, err)
	}
	err := ensure("stream "+s, func(ctx context.Context) (err error) {
		q.items, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: s, Subjects: []string{s + ".q.*"}, Retention: jetstream.LimitsPolicy,
			Storage: q.storage(), Replicas: r, Duplicates: q.o.DedupWindow, AllowDirect: true,
			Description: "woorelay: events waiting for delivery, one subject per partition",
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("%w (hint: the replicas cannot exceed the cluster's nodes, and an existing stream's partitions and retention cannot change)", err)
	}
	if err := ensure("stream "+s+"_DLQ", func(ctx context.Context) (err error) {
		q.dlq, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: s + "_DLQ", Subjects: []string{s + ".dlq"}, Storage: q.storage(), Replicas: r,
			Duplicates: 10 * time.Minute, AllowDirect: true,
			Description: "woorelay: dead letters, replayable",
		})
		return err
	}); err != nil {
		return err
	}
	if err := ensure("stream "+s+"_COUNTERS", func(ctx context.Context) (err error) {
		q.ctrs, err = q.counterStream(ctx)
		return err
	}); err != nil {
		return err
	}
	if err := ensure("bucket "+s+"_LEASES", func(ctx context.Context) (err error) {
		q.leases, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: s + "_LEASES", TTL: q.o.LeaseTTL, Storage: q.storage(), Replicas: r,
			Description: "woorelay: which relay delivers which partition, and which relays are alive",
		})
		return err
	}); err != nil {
		return err
	}
	return ensure("bucket "+s+"_STATE", func(ctx context.Context) (err error) {
		q.states, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: s + "_STATE", Storage: q.storage(), Replicas: r, TTL: 7 * 24 * time.Hour,
			Description: "woorelay: attempts, first failure and progress of items being retried",
		})
		return err
	})
}

// counterStream creates the counters stream, a stream of counter CRDTs (allow_msg_counter,
// nats-server 2.12+), through the API directly: nats.go's StreamConfig has no field for it.
func (q *Queue) counterStream(ctx context.Context) (jetstream.Stream, error) {
	name := q.o.Stream + "_COUNTERS"
	if st, err := q.js.Stream(ctx, name); err == nil {
		return st, nil
	}
	cfg := map[string]any{
		"name": name, "subjects": []string{q.o.Stream + ".c.*"}, "retention": "limits", "storage": q.storage().String(),
		"num_replicas": q.o.Replicas, "allow_msg_counter": true, "allow_direct": true, "max_msgs_per_subject": 1,
		"duplicate_window": int64(finWindow), "discard": "old",
		"description": "woorelay: delivered, filtered, dead-lettered and duplicate counts; each item counted once by its id",
	}
	if q.o.MemoryStorage {
		cfg["storage"] = "memory"
	} else {
		cfg["storage"] = "file"
	}
	body, _ := json.Marshal(cfg)
	resp, err := q.nc.RequestWithContext(ctx, "$JS.API.STREAM.CREATE."+name, body)
	if err != nil {
		return nil, fmt.Errorf("queue/jetstream: create stream %s: %w", name, err)
	}
	var r apiResponse
	if json.Unmarshal(resp.Data, &r) == nil && r.Error != nil && r.Error.ErrCode != 10058 { // 10058: name in use
		return nil, fmt.Errorf("queue/jetstream: create stream %s: %s (hint: counter streams need nats-server 2.12 or later)", name, r.Error.Description)
	}
	return q.js.Stream(ctx, name)
}

// apiResponse is the part of a JetStream API response that says what failed.
type apiResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// deleteMsg deletes message seq of stream, through the API directly: a message already gone
// (an earlier try that timed out here but was applied, or another relay's) counts as
// deleted. nats.go's DeleteMsg cannot tell that case from a failure: in a cluster the server
// answers 10057 "no message found" (or 10043 "sequence not found"), and nats.go passes it on
// as text only.
func (q *Queue) deleteMsg(ctx context.Context, stream string, seq uint64) error {
	return q.removeMsg(ctx, stream, seq, false)
}

// removeMsg is deleteMsg; with erase, the server also overwrites the message in its files
// (an erasure: privacy.go).
func (q *Queue) removeMsg(ctx context.Context, stream string, seq uint64, erase bool) error {
	body := strconv.AppendUint([]byte(`{"no_erase":`+strconv.FormatBool(!erase)+`,"seq":`), seq, 10)
	body = append(body, '}')
	resp, err := q.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.DELETE."+stream, body)
	if err != nil {
		return fmt.Errorf("delete message %d of %s: %w", seq, stream, err)
	}
	var r apiResponse
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("delete message %d of %s: unreadable answer %q: %w", seq, stream, resp.Data, err)
	}
	if r.Error == nil || messageGone(r.Error.ErrCode, r.Error.Description) {
		return nil
	}
	return fmt.Errorf("delete message %d of %s: %s (code %d, err_code %d)", seq, stream, r.Error.Description, r.Error.Code, r.Error.ErrCode)
}

// messageGone reports whether a delete's error says the message is not in the stream.
func messageGone(errCode int, description string) bool {
	switch errCode {
	case 10037, 10043: // message not found, sequence not found
		return true
	case 10057: // delete failed: with the store's reason
		return strings.Contains(description, "no message found")
	}
	return false
}

// partitionOf hashes the ordering key to a partition; an item without a visitor is placed
// by its message id.
func (q *Queue) partitionOf(e *queue.Entry) int {
	h := fnv.New32a()
	if e.Visitor != "" {
		h.Write([]byte(e.Visitor))
	} else {
		h.Write([]byte(e.MessageID))
	}
	return int(h.Sum32() % uint32(q.o.Partitions))
}

func (q *Queue) subject(p int) string { return q.o.Stream + ".q." + strconv.Itoa(p) }

// msgID is the dedup key: source and message id, length-prefixed so neither can run into the
// other.
func msgID(e *queue.Entry) string {
	return strconv.Itoa(len(e.Source)) + ":" + e.Source + ":" + e.MessageID
}

// Append publishes every entry asynchronously to its partition subject and waits for all
// their acknowledgements together. An entry JetStream reports as a duplicate of one seen
// within the window is counted as a duplicate. Entries that were stored before an error are
// kept; the caller's retry finds them duplicates.
func (q *Queue) Append(ctx context.Context, entries []queue.Entry) (queue.AppendResult, error) {
	var res queue.AppendResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	q.closeMu.RLock()
	if q.closed {
		q.closeMu.RUnlock()
		return res, queue.ErrClosed
	}
	q.appends.Add(1)
	q.closeMu.RUnlock()
	defer q.appends.Done()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, AppendTimeout)
	defer cancel()
	at := strconv.FormatInt(q.o.Clock().UnixNano(), 10)
	futures := make([]jetstream.PubAckFuture, len(entries))
	for i := range entries {
		e := &entries[i]
		m := nats.NewMsg(q.subject(q.partitionOf(e)))
		m.Data = encodeEntry(e)
		if e.MessageID != "" {
			m.Header.Set(jetstream.MsgIDHeader, msgID(e))
		}
		if e.Outcome == queue.Rejected {
			m.Header.Set("Woorelay-At", at)
		}
		f, err := q.js.PublishMsgAsync(m)
		if err != nil {
			err = fmt.Errorf("queue/jetstream: publish: %w: %w (hint: is the items stream's leader reachable?)", queue.ErrUnavailable, err)
			q.health.failed(err)
			return res, err
		}
		futures[i] = f
	}
	var firstErr error
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			switch {
			case ack.Duplicate:
				res.Duplicates++
			case entries[i].Outcome == queue.Deliver:
				res.Queued++
			case entries[i].Outcome == queue.Filtered:
				res.Filtered++
			default:
				res.Rejected++
			}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			if parent.Err() != nil { // the client left: not the store's failure
				return res, parent.Err()
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("no acknowledgement within %s", AppendTimeout)
			}
		}
		if ctx.Err() != nil && parent.Err() == nil {
			break
		}
	}
	if res.Duplicates > 0 {
		q.countAsync(cDuplicates, int64(res.Duplicates))
	}
	q.stale()
	if firstErr != nil {
		err := fmt.Errorf("queue/jetstream: %d of %d events not acknowledged: %w: %w (hint: is the stream's leader reachable? the client's retry finds the others duplicates)", len(entries)-res.Queued-res.Filtered-res.Rejected-res.Duplicates, len(entries), queue.ErrUnavailable, firstErr)
		q.health.failed(err)
		return res, err
	}
	q.health.ok()
	return res, nil
}

// countAsync adds n to a counter without waiting for the acknowledgement (the duplicates,
// which are not part of the reconciling totals: one lost with a failing server is not
// counted).
func (q *Queue) countAsync(name string, n int64) {
	m := nats.NewMsg(q.o.Stream + ".c." + name)
	m.Header.Set("Nats-Incr", strconv.FormatInt(n, 10))
	if _, err := q.js.PublishMsgAsync(m); err != nil {
		q.log.Warn("counting duplicates failed", "n", n, "err", err)
	}
}

// count adds n to a counter; id, when set, makes the increment count once per item even if a
// relay does it again after a crash.
func (q *Queue) count(name string, n int64, id string) error {
	m := nats.NewMsg(q.o.Stream + ".c." + name)
	m.Header.Set("Nats-Incr", strconv.FormatInt(n, 10))
	if id != "" {
		m.Header.Set(jetstream.MsgIDHeader, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := q.js.PublishMsg(ctx, m)
	q.stale()
	if err != nil {
		return fmt.Errorf("queue/jetstream: count %s: %w", name, err)
	}
	return nil
}

// retry runs a delivery-side write of item r (nil: of none) until it succeeds, for up to
// 30 s: a stream's leader election after a NATS node is lost or hung takes a few seconds, and
// delivery would otherwise stop. Every write it retries is idempotent. An answer that the
// same write is still in progress (a publish with this id not yet stored, after a leader
// change) is retried quietly and does not use up the 30 s; a write of an item this relay no
// longer holds (its partition moved) is given up without an error: the next holder redoes it.
func (q *Queue) retry(r *rec, f func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	wait := 100 * time.Millisecond
	for {
		start := time.Now()
		err := f()
		if err == nil {
			return nil
		}
		if r != nil && !q.holds(r) {
			q.log.Info("a write of an item whose partition moved was given up; its next holder redoes it", "item", r.sseq, "err", err)
			return nil
		}
		if inProgress(err) {
			deadline = deadline.Add(time.Since(start) + wait)
			q.log.Debug("a write to JetStream is still in progress; asking again", "err", err, "in", wait)
		} else {
			if time.Now().After(deadline) {
				return err
			}
			q.log.Warn("a write to JetStream failed; retrying", "err", err, "in", wait)
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

// inProgress reports whether err is JetStream's answer that a publish with the same message
// id is being stored (err_code 10158, "duplicate message id is in process"): the write is
// under way, not failed.
func inProgress(err error) bool {
	if err == nil {
		return false
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) && ae.ErrorCode == 10158 {
		return true
	}
	return strings.Contains(err.Error(), "duplicate message id is in process")
}

// holds reports whether the hold on r's partition that r was read under is still this
// relay's (being given up counts: its attempts' writes are recorded until the grace ends).
func (q *Queue) holds(r *rec) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.parts[r.part] == r.pt
}

func finID(sseq uint64) string { return "fin-" + strconv.FormatUint(sseq, 10) }

// Appended is signalled when items of this relay's partitions were read.
func (q *Queue) Appended() <-chan struct{} { return q.appended }

func (q *Queue) signal() {
	select {
	case q.appended <- struct{}{}:
	default:
	}
}

// heldLocked reports whether this relay holds partition p and has not begun to give it up:
// its items are given out by Scan (lock held).
func (q *Queue) heldLocked(p int) bool {
	pt := q.parts[p]
	return pt != nil && !pt.releasing
}

func item(r *rec) queue.Item {
	return queue.Item{Seq: r.seq, Entry: r.entry, Attempts: r.st.Attempts, FirstAttempt: r.st.FirstAttempt, NextRequest: r.st.NextRequest}
}

// Scan returns up to limit items of the partitions this relay delivers with Seq > after.
func (q *Queue) Scan(after uint64, limit int) ([]queue.Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []queue.Item
	for i := sort.Search(len(q.order), func(i int) bool { return q.order[i] > after }); i < len(q.order) && len(out) < limit; i++ {
		if r := q.recs[q.order[i]]; r != nil && q.heldLocked(r.part) {
			out = append(out, item(r))
		}
	}
	return out, nil
}

// ScanVisitor returns up to limit items of one visitor with Seq > after, in order.
func (q *Queue) ScanVisitor(visitor string, after uint64, limit int) ([]queue.Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	seqs := q.byVisitor[visitor]
	var out []queue.Item
	for i := sort.Search(len(seqs), func(i int) bool { return seqs[i] > after }); i < len(seqs) && len(out) < limit; i++ {
		if r := q.recs[seqs[i]]; r != nil && q.heldLocked(r.part) {
			out = append(out, item(r))
		}
	}
	return out, nil
}

// Owns says whether the item may be attempted now (queue.Owner): Moved once its partition is
// dropped or being given up, Paused while the partition's lease is overdue for renewal (half
// a TTL after the last renewal was sent), so that an attempt never starts when another relay
// might be taking over.
func (q *Queue) Owns(seq uint64) queue.Ownership {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.recs[seq]
	if r == nil || !q.heldLocked(r.part) {
		return queue.Moved
	}
	if !time.Now().Before(q.parts[r.part].valid) {
		return queue.Paused
	}
	return queue.Owned
}

// get returns the item to write to, or nil when this relay no longer holds it (delivered,
// or its partition moved: then the new owner has it, and the write is not this relay's).
func (q *Queue) get(seq uint64) *rec {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.recs[seq]
}

// remove forgets an item (lock held).
func (q *Queue) removeLocked(r *rec) {
	if q.recs[r.seq] != r {
		return
	}
	delete(q.recs, r.seq)
	delete(q.bySSeq, r.sseq)
	r.pt.held--
	select {
	case r.pt.room <- struct{}{}:
	default:
	}
	q.removed++
	if seqs := q.byVisitor[r.entry.Visitor]; len(seqs) > 0 {
		i := sort.Search(len(seqs), func(i int) bool { return seqs[i] >= r.seq })
		if i < len(seqs) && seqs[i] == r.seq {
			seqs = append(seqs[:i], seqs[i+1:]...)
		}
		if len(seqs) == 0 {
			delete(q.byVisitor, r.entry.Visitor)
		} else {
			q.byVisitor[r.entry.Visitor] = seqs
		}
	}
	if q.removed > 1024 && q.removed > len(q.order)/2 {
		kept := q.order[:0]
		for _, s := range q.order {
			if q.recs[s] != nil {
				kept = append(kept, s)
			}
		}
		q.order, q.removed = kept, 0
	}
}

// finish counts the item's outcome once (by its stream sequence) unless it was delivered,
// deletes its message from the items stream and forgets it. A delivered item's only write is
// the delete: Delivered is what left the items stream neither filtered nor dead-lettered.
func (q *Queue) finish(r *rec, counter string) error {
	if counter != "" {
		if err := q.retry(r, func() error { return q.count(counter, 1, finID(r.sseq)) }); err != nil {
			return err
		}
	}
	// The stream, not the consumer, says what is pending: the item is deleted from it (a
	// replicated stream operation, confirmed) before delivery sends the visitor's next event,
	// so the next owner of the partition, reading what the stream holds, never sends it again
	// after a later one.
	if err := q.retry(r, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		return q.deleteMsg(ctx, q.o.Stream, r.sseq)
	}); err != nil {
		return fmt.Errorf("queue/jetstream: remove item %d: %w", r.sseq, err)
	}
	if r.hasState {
		q.dropState(r)
	}
	q.mu.Lock()
	q.removeLocked(r)
	q.mu.Unlock()
	q.stale()
	return nil
}

func (q *Queue) stateKey(r *rec) string {
	return strconv.Itoa(r.part) + "." + strconv.FormatUint(r.sseq, 10)
}

func (q *Queue) dropState(r *rec) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.states.Purge(ctx, q.stateKey(r)); err != nil {
		q.log.Warn("removing a delivered item's retry state failed; it expires within 7 days", "item", r.sseq, "err", err)
	}
}

// Done records that the item was delivered.
func (q *Queue) Done(seq uint64) error {
	if r := q.get(seq); r != nil {
		return q.finish(r, "")
	}
	return nil
}

// Filter records that delivery's mapping dropped the item on purpose.
func (q *Queue) Filter(seq uint64, reason string) error {
	if r := q.get(seq); r != nil {
		return q.finish(r, cFiltered)
	}
	return nil
}

// putState stores the item's delivery state in the state bucket.
func (q *Queue) putState(r *rec, st state) error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := q.retry(r, func() error { _, err := q.states.Put(ctx, q.stateKey(r), encodeState(st)); return err }); err != nil {
		return fmt.Errorf("queue/jetstream: record the state of item %d: %w", r.sseq, err)
	}
	q.mu.Lock()
	r.st, r.hasState = st, true
	q.mu.Unlock()
	return nil
}

// Progress records that the item's first n requests were delivered.
func (q *Queue) Progress(seq uint64, n int) error {
	r := q.get(seq)
	if r == nil {
		return nil
	}
	st := r.st
	st.NextRequest = n
	return q.putState(r, st)
}

// Retrying records a failed attempt that will be retried.
func (q *Queue) Retrying(seq uint64, attempts int, firstAttempt time.Time) error {
	r := q.get(seq)
	if r == nil {
		return nil
	}
	st := r.st
	st.Attempts, st.FirstAttempt = attempts, firstAttempt
	return q.putState(r, st)
}

// Dead moves the item to the dead-letter stream with the failure.
func (q *Queue) Dead(seq uint64, f queue.Failure) error {
	r := q.get(seq)
	if r == nil {
		return nil
	}
	return q.deadLetter(r, q.o.Clock(), f)
}

func (q *Queue) deadLetter(r *rec, at time.Time, f queue.Failure) error {
	m := nats.NewMsg(q.o.Stream + ".dlq")
	m.Data = encodeDeadLetter(at, f, &r.entry)
	m.Header.Set(jetstream.MsgIDHeader, "dl-"+strconv.FormatUint(r.sseq, 10))
	if err := q.retry(r, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := q.js.PublishMsg(ctx, m)
		return err
	}); err != nil {
		return fmt.Errorf("queue/jetstream: store dead letter of item %d: %w", r.sseq, err)
	}
	return q.finish(r, cDead)
}

// DeadLetters lists up to limit dead letters with ID > after, oldest first.
func (q *Queue) DeadLetters(after uint64, limit int) ([]queue.DeadLetter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []queue.DeadLetter
	for len(out) < limit {
		m, err := q.dlq.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(q.o.Stream+".dlq"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("queue/jetstream: read dead letters after %d: %w", after, err)
		}
		dl, err := decodeDeadLetter(m.Sequence, m.Data)
		if err != nil {
			dl = queue.DeadLetter{ID: m.Sequence, At: m.Time, Entry: queue.Entry{Event: m.Data}, Failure: queue.Failure{Reason: err.Error()}}
		}
		out = append(out, dl)
		after = m.Sequence
	}
	return out, nil
}

// DeadLetter returns one dead letter.
func (q *Queue) DeadLetter(id uint64) (queue.DeadLetter, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := q.dlq.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return queue.DeadLetter{}, false, nil
	}
	if err != nil {
		return queue.DeadLetter{}, false, fmt.Errorf("queue/jetstream: read dead letter %d: %w", id, err)
	}
	dl, err := decodeDeadLetter(id, m.Data)
	return dl, err == nil, err
}

// Replay publishes dead letters back to their partitions (with a fresh state) and removes
// them from the dead-letter stream. Each replay is published with an id of its letter, so a
// replay repeated after a crash does not queue the event twice.
func (q *Queue) Replay(ids []uint64, remap func(queue.Entry) (queue.Entry, error)) (int, error) {
	q.closeMu.RLock()
	closed := q.closed
	q.closeMu.RUnlock()
	if closed {
		return 0, queue.ErrClosed
	}
	q.replayMu.Lock()
	defer q.replayMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[uint64]bool{}
	n := 0
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		dl, ok, err := q.DeadLetter(id)
		if err != nil && !errors.Is(err, errCorrupt) {
			return n, err
		}
		if !ok {
			continue
		}
		e := dl.Entry
		if remap != nil {
			if e, err = remap(dl.Entry); err != nil {
				q.log.Info("dead letter left in place: remap failed", "id", id, "err", err)
				continue
			}
		}
		if e.Outcome != queue.Deliver {
			q.log.Info("dead letter left in place: its outcome is not deliver", "id", id, "outcome", e.Outcome.String(), "reason", e.Reason)
			continue
		}
		m := nats.NewMsg(q.subject(q.partitionOf(&e)))
		m.Data = encodeEntry(&e)
		m.Header.Set(jetstream.MsgIDHeader, "replay-"+strconv.FormatUint(id, 10))
		if _, err := q.js.PublishMsg(ctx, m); err != nil {
			return n, fmt.Errorf("queue/jetstream: replay dead letter %d: %w", id, err)
		}
		if err := q.deleteMsg(ctx, q.o.Stream+"_DLQ", id); err != nil {
			return n, fmt.Errorf("queue/jetstream: remove replayed dead letter %d: %w", id, err)
		}
		n++
	}
	q.stale()
	return n, nil
}

// stale makes the next Counters read the cluster again.
func (q *Queue) stale() {
	q.writes.Add(1) // never waits for a Counters read in progress

}

// Counters returns the cluster-wide totals, read at most every 250 ms (or after this relay
// wrote), as one snapshot: Received and Queued come from one answer of the items stream's
// leader (its last sequence, one per event ever stored, replays included, less the replays;
// and the messages it holds), then DeadLettered (what the dead-letter stream holds), and the
// Filtered, dead-lettered and Duplicates counters. Delivered is what is left: every event
// received and no longer queued that was neither filtered nor dead-lettered, which is what a
// delivered item's delete records, so the totals reconcile in every snapshot. An item being
// filtered or dead-lettered is counted (and its letter stored) before its delete, and the
// parts are read in that order, so a snapshot taken in between can only show Delivered short
// by that item, never over; such a snapshot (Delivered or Received lower than the last one
// this relay read) is read again, and after three tries the last one is returned, as it is
// on a read error.
func (q *Queue) Counters() queue.Counters {
	q.cmu.Lock()
	defer q.cmu.Unlock()
	gen := q.writes.Load()
	if gen == q.cacheGen && time.Since(q.cachedAt) < 250*time.Millisecond {
		return q.cached
	}
	for try := 0; ; try++ {
		c, err := q.readCounters()
		if err != nil {
			q.log.Warn("reading the cluster's counters failed; showing the last ones", "err", err)
			return q.cached
		}
		if c.Delivered >= q.cached.Delivered && c.Received >= q.cached.Received {
			q.cached, q.cachedAt, q.cacheGen = c, time.Now(), gen
			return c
		}
		if try == 2 {
			return q.cached
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (q *Queue) readCounters() (queue.Counters, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	ii, err := q.items.Info(ctx)
	if err != nil {
		return queue.Counters{}, err
	}
	// The rest after the items stream's state, together.
	var wg sync.WaitGroup
	var di *jetstream.StreamInfo
	var derr error
	names := []string{cFiltered, cDead, cDuplicates}
	vals, errs := make([]int64, len(names)), make([]error, len(names))
	wg.Go(func() { di, derr = q.dlq.Info(ctx) })
	for i, name := range names {
		wg.Go(func() { vals[i], errs[i] = q.counter(ctx, name) })
	}
	wg.Wait()
	if derr != nil {
		return queue.Counters{}, derr
	}
	if err := errors.Join(errs...); err != nil {
		return queue.Counters{}, err
	}
	c := queue.Counters{Filtered: vals[0], Duplicates: vals[2], DeadLettered: int64(di.State.Msgs), Queued: int64(ii.State.Msgs)}
	c.Replayed = max(vals[1]-c.DeadLettered, 0)
	c.Received = int64(ii.State.LastSeq) - c.Replayed
	c.Delivered = c.Received - c.Queued - c.DeadLettered - c.Filtered
	return c, nil
}

// counter reads a counter's value (0 before its first increment).
func (q *Queue) counter(ctx context.Context, name string) (int64, error) {
	m, err := q.ctrs.GetLastMsgForSubject(ctx, q.o.Stream+".c."+name)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var cv struct {
		Val string `json:"val"`
	}
	if err := json.Unmarshal(m.Data, &cv); err != nil {
		return 0, fmt.Errorf("counter %s: %w", name, err)
	}
	return strconv.ParseInt(cv.Val, 10, 64)
}

// Close stops reading, gives every partition up at once (this relay's delivery must have
// stopped), and closes the connection it opened; later Appends fail with ErrClosed.
func (q *Queue) Close() error {
	q.closeMu.Lock()
	if q.closed {
		q.closeMu.Unlock()
		return nil
	}
	q.closed = true
	close(q.closing)
	q.closeMu.Unlock()
	q.appends.Wait()
	q.stop()
	<-q.loopDone
	q.mu.Lock()
	ps := make([]int, 0, len(q.parts))
	for p := range q.parts {
		ps = append(ps, p)
	}
	q.mu.Unlock()
	for _, p := range ps {
		q.drop(p, true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = q.leases.Delete(ctx, "m."+q.o.Instance)
	select {
	case <-q.js.PublishAsyncComplete():
	case <-ctx.Done():
	}
	if q.ownConn {
		return q.nc.Drain()
	}
	return nil
}

// String names the queue in logs.
func (q *Queue) String() string {
	return fmt.Sprintf("jetstream %s (%s, %d partitions, replicas %d)", q.o.Stream, strings.Join(q.nc.Servers(), ","), q.o.Partitions, q.o.Replicas)
}
