package disk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/woorelay/woorelay/queue"
)

// Defaults of Options.
const (
	// DefaultDedupWindow is how long a (Source, MessageID) pair is remembered when
	// Options.DedupWindow is zero. It must be at least delivery's retry window, so that a client
	// retrying while an event still waits for delivery is recognised.
	DefaultDedupWindow = 24 * time.Hour
	// DefaultCacheSize is the block cache size when Options.CacheSize is zero.
	DefaultCacheSize = 32 << 20
	// DefaultMemTableSize is the memtable size when Options.MemTableSize is zero. Up to
	// memTableStopWrites memtables exist at once, so memtables take at most 4 × this much memory.
	DefaultMemTableSize = 16 << 20
)

const (
	memTableStopWrites = 4
	// maxGroupBytes bounds one group commit (and so does a quarter of the memtable size), below
	// pebble's large-batch threshold of half a memtable.
	maxGroupBytes = 4 << 20
	// maxGroupCalls bounds how many Append calls share one commit.
	maxGroupCalls = 1024
	// pruneInterval is how often expired dedup keys are removed; pruneChunk bounds one pass.
	pruneInterval = time.Minute
	pruneChunk    = 10000
	// reclaimInterval is the shortest time between two automatic compactions triggered by a
	// full disk budget.
	reclaimInterval = 30 * time.Second
)

// Options configure a Queue. The zero value is usable: unlimited disk, a 24 h dedup window,
// the wall clock, slog.Default, bounded memory (about 32 MiB of cache and at most 64 MiB of
// memtables) and synced appends.
type Options struct {
	// DiskBudget is the most disk space, in bytes, the store may take: the blocks of every
	// file under its directory (pebble's tables and preallocated log files, the payload log,
	// the reserve file). Append returns queue.ErrFull and stores nothing when a write would
	// leave less than pebble's margin under it (4 × MemTableSize and the size of its live
	// tables, which a compaction may rewrite before it deletes them), until delivered items
	// have been removed (the queue compacts by itself when it turns clients away). 0 means
	// unlimited. Without a MemTableSize, the memtable is sized to a 32nd of the budget (at
	// least 256 KiB), so that pebble's preallocated log files fit it.
	DiskBudget int64
	// DedupWindow is how long an entry's (Source, MessageID) is remembered; a second entry with
	// the same pair within the window is a duplicate, counted and not stored. 0 means
	// DefaultDedupWindow. Set it to at least delivery's retry window.
	DedupWindow time.Duration
	// Clock returns the current time; nil means time.Now. Tests inject it to move across the
	// dedup window.
	Clock func() time.Time
	// Logger receives the queue's and pebble's messages; nil means slog.Default().
	Logger *slog.Logger
	// CacheSize is pebble's block cache in bytes; 0 means DefaultCacheSize. It is the cache
	// for blocks: pebble counts its memtables against the cache it is given, so the queue gives
	// it CacheSize plus the most the memtables may take.
	CacheSize int64
	// MemTableSize is pebble's memtable size in bytes; 0 means DefaultMemTableSize, or less
	// on a small disk budget or file system (a 32nd of it, at least 256 KiB).
	MemTableSize uint64
	// NoSync makes Append return before the write-ahead log is synced to disk. UNSAFE: an
	// acknowledged event is lost if the machine crashes or loses power. For benchmarks only.
	NoSync bool
}

// Queue is the on-disk implementation of queue.Queue. It is safe for concurrent use.
type Queue struct {
	dir    string
	wals   walLog // the write-ahead logs pebble created (erase.go)
	db     *pebble.DB
	segs   *segmentLog // the payload log: entry bodies of pending items
	room   *room       // the lock, the reserve file, the disk budget's measure
	opts   Options
	log    *slog.Logger
	window time.Duration
	// groupBytes bounds the bytes of values one group commit collects.
	groupBytes int64
	now        func() time.Time

	// closeMu guards closed: every operation holds it for reading while it uses db, Close takes
	// it for writing, so the database is never used after it is closed.
	closeMu sync.RWMutex
	closed  bool

	// wmu serialises every write that changes meta (counters, sequence numbers): the meta value
	// is computed and the batch applied (made visible) under wmu, so batches reach pebble in the
	// order their meta values were computed. Synced commits wait for the fsync after releasing it.
	wmu  sync.Mutex
	meta meta // guarded by wmu

	// dmu serialises the delivery-side read-modify-write operations (Done, Progress, Retrying,
	// Dead, Replay), which read an item or letter before changing it.
	dmu sync.Mutex

	// rmu guards rnext and rbusy: the removal group collecting Done and Filter calls, and
	// whether a group is being written (see Queue.remove).
	rmu   sync.Mutex
	rnext *removalGroup
	rbusy bool

	// known remembers, for the pending items a scan has returned, what removing them needs (the
	// visitor of the index key, whether the item was rewritten), so Done and Filter delete
	// without reading the item back. An entry is dropped when its item is removed; the map
	// never holds more than the items scanned and not yet removed.
	kmu   sync.Mutex
	known map[uint64]knownItem
	// changes counts the removals and rewrites of pending items; while scans are under way
	// (scans > 0), touched maps each item changed to its change number, so a scan does not
	// record what its older snapshot read of it. All three are guarded by kmu.
	changes uint64
	scans   int
	touched map[uint64]uint64

	// head is a lower bound of the lowest pending sequence number: Scan starts there instead of
	// walking the deleted keys of delivered items.
	head atomic.Uint64

	reqs     chan *appendReq
	appended chan struct{}
	reclaim  chan struct{}
	pruneReq chan chan struct{} // tests ask the committer to prune now
	stop     context.CancelFunc
	wg       sync.WaitGroup

	// commits counts group commits (one WAL sync each); tests read it.
	commits atomic.Int64
	// removalWrites counts the batches removal groups wrote; tests read it.
	removalWrites atomic.Int64
	// testHookRemoval, when set, runs in a removal group's leader before it writes the group.
	testHookRemoval atomic.Pointer[func()]
	// testHookGroup, when set, runs in the committer after it has taken a group's first call
	// and before it collects the rest.
	testHookGroup atomic.Pointer[func()]
	// testHookCommit, when set, runs in the committer after it has checked the group's
	// contexts and before it writes the group.
	testHookCommit atomic.Pointer[func()]

	// seqMu is held by a group commit from reserving its sequence numbers until its items are
	// visible, and by Replay while it assigns and writes its own, so items become visible in
	// Seq order.
	seqMu sync.Mutex

	// testHookApply, when set, runs after a group's payload log write and abandons the commit
	// (pebble never gets it, as after a machine crash) when it returns false.
	testHookApply atomic.Pointer[func() bool]

	// replayMu serialises Replay calls, so a letter is never replayed twice.
	replayMu sync.Mutex

	// damaged is set once a corrupt item record has been removed: the segment its payload was
	// in may stay counted (so kept on disk) until the next open counts the records again.
	damaged atomic.Bool

	// broken holds the error of a failed WAL sync; Append refuses writes after one.
	broken atomic.Pointer[error]

	// owned by the committer goroutine
	groupID      uint64 // the id of the next dedup group entry: random high half per open, then a counter
	pruneFrom    []byte // the dedup time index below this key has been pruned
	lastReclaim  time.Time
	dedupScratch map[string]bool

	// owned by the reclaimer goroutine
	runsPrunedTo []byte // the visitor runs below this key have been deleted

	// set by load, read and cleared by recoverAndCount: the format of a store whose visitor
	// index is still a key per item
	upgradeFrom string
	// set by recoverGroups, reported and cleared by recoverAndCount
	torn []tornFrame
}

var _ queue.Queue = (*Queue)(nil)

// Open opens (creating it if needed) the store in dir and starts the committer. Only one
// process may open a directory at a time: a second Open fails naming the holder. A store
// whose files cannot be read fails with an error wrapping ErrDamaged that says how to recover. Reopening a store resumes it: sequence numbers
// continue, counters are restored, pending items are scanned in order.
func Open(dir string, opts Options) (*Queue, error) {
	if opts.DiskBudget < 0 {
		return nil, fmt.Errorf("queue/disk: DiskBudget %d is negative; use 0 for unlimited", opts.DiskBudget)
	}
	if opts.DedupWindow < 0 {
		return nil, fmt.Errorf("queue/disk: DedupWindow %s is negative; use 0 for the default of %s", opts.DedupWindow, DefaultDedupWindow)
	}
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("queue/disk: CacheSize %d is negative; use 0 for the default", opts.CacheSize)
	}
	if opts.MemTableSize >= 1<<32 {
		return nil, fmt.Errorf("queue/disk: MemTableSize %d must be below 4 GiB", opts.MemTableSize)
	}
	q := &Queue{
		dir:          dir,
		known:        map[uint64]knownItem{},
		touched:      map[uint64]uint64{},
		opts:         opts,
		log:          opts.Logger,
		window:       opts.DedupWindow,
		now:          opts.Clock,
		reqs:         make(chan *appendReq, maxGroupCalls),
		appended:     make(chan struct{}, 1),
		reclaim:      make(chan struct{}, 1),
		pruneReq:     make(chan chan struct{}),
		dedupScratch: make(map[string]bool),
		groupID:      uint64(rand.Uint32()) << 32,
	}
	if q.log == nil {
		q.log = slog.Default()
	}
	q.log = q.log.With("component", "queue")
	if q.window == 0 {
		q.window = DefaultDedupWindow
	}
	if q.now == nil {
		q.now = time.Now
	}
	if opts.NoSync {
		q.log.Warn("queue opened with NoSync: acknowledged events can be lost on a crash; use it for benchmarks only")
	}
	cache := opts.CacheSize
	if cache == 0 {
		cache = DefaultCacheSize
	}
	rm, err := newRoom(dir, opts.DiskBudget, opts.MemTableSize, q.log)
	if err != nil {
		return nil, err
	}
	q.room = rm
	mem := uint64(rm.memTable)
	q.groupBytes = min(maxGroupBytes, int64(mem/4))
	po := &pebble.Options{
		// Pebble reserves each memtable's size in the block cache: without room for them, two
		// memtables of 16 MiB left a 32 MiB cache no room for blocks, and every lookup of a
		// dedup key read its table's filter from disk.
		CacheSize:                   cache + memTableStopWrites*int64(mem),
		MemTableSize:                mem,
		MemTableStopWritesThreshold: memTableStopWrites,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{q.log},
		EventListener:               q.withWALs(q.pebbleEvents()),
		FS:                          scrubFS{vfs.Default},
	}
	for i := range po.Levels {
		// Bloom filters make the dedup lookup of a new (unseen) message id cheap.
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		rm.close()
		if isNotWritable(err) || isNoSpace(err) {
			return nil, envError(dir, "open the store", err)
		}
		return nil, damagedError(dir, err)
	}
	q.db = db
	rm.tableFn = func() int64 { return int64(db.Metrics().Table.Local.LiveSize) }
	if err := q.load(); err != nil {
		_ = db.Close()
		rm.close()
		return nil, q.openError(dir, err)
	}
	if q.segs, err = openSegmentLog(dir, rm.segment, opts.NoSync); err != nil {
		_ = db.Close()
		rm.close()
		return nil, err
	}
	live, err := q.recoverAndCount()
	if err == nil {
		err = q.segs.start(live)
	}
	if err != nil {
		_ = q.segs.close()
		_ = db.Close()
		rm.close()
		return nil, q.openError(dir, err)
	}
	if gone := q.segs.missing(live); len(gone) > 0 {
		q.log.Error("payload segments are missing: their pending items will be moved to the dead letters as corrupt", "segments", gone)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.stop = cancel
	q.wg.Add(2)
	go q.committer()
	go q.reclaimer(ctx)
	return q, nil
}

// load reads the format marker and meta.
func (q *Queue) load() error {
	f, closer, err := q.db.Get(keyFormat)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := q.db.Set(keyFormat, []byte(formatVersion), pebble.Sync); err != nil {
			return fmt.Errorf("queue/disk: initialise store: %w", err)
		}
	case err != nil:
		return fmt.Errorf("queue/disk: read store format: %w", err)
	default:
		v := string(f)
		closer.Close()
		switch v {
		case formatVersion:
		case formatVersion1, formatVersion2:
			// Version 1 stores keep every entry inline, which this version still reads; both
			// index visitors with a key per item, which recoverAndCount moves to visitor runs
			// before it moves the marker on (so that an older woorelay does not open a store it
			// cannot read).
			q.upgradeFrom = v
		default:
			return fmt.Errorf("queue/disk: store format %q is not %q: it was written by another version of woorelay; open it with that version, or point woorelay at a new directory", v, formatVersion)
		}
	}
	m, closer, err := q.db.Get(keyMeta)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("queue/disk: read counters: %w", err)
	default:
		q.meta, err = decodeMeta(m)
		closer.Close()
		if err != nil {
			return fmt.Errorf("queue/disk: counters: %w; the store is damaged: restore the directory from a backup", err)
		}
	}
	return nil
}

// recoverAndCount applies the group commits pebble lost (see recoverGroups), finds the first
// pending item and counts the pending items of each payload log segment.
func (q *Queue) recoverAndCount() (map[uint64]int64, error) {
	if err := q.recoverGroups(); err != nil {
		return nil, err
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixItem}, UpperBound: rangeEnd(prefixItem)})
	if err != nil {
		return nil, fmt.Errorf("queue/disk: scan items: %w", err)
	}
	defer it.Close()
	live := map[uint64]int64{}
	var upgrade *visitorUpgrade
	if q.upgradeFrom != "" {
		upgrade = q.startVisitorUpgrade()
	}
	if it.First() {
		if s, ok := seqOf(it.Key()); ok {
			q.head.Store(s)
		}
	} else {
		q.head.Store(q.meta.lastSeq + 1)
	}
	lost := map[uint64]int64{} // pending items whose payload is at or after a torn frame
	for valid := it.Valid(); valid; valid = it.Next() {
		if seg := recordSeg(it.Value()); seg != 0 {
			live[seg]++
			if len(q.torn) > 0 {
				_, loc, _ := decodeItemState(it.Value())
				for _, t := range q.torn {
					if t.at.seg == seg && loc.off >= t.at.off {
						lost[seg]++
					}
				}
			}
		}
		if upgrade != nil {
			if err := upgrade.addKey(it.Key(), it.Value()); err != nil {
				return nil, err
			}
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("queue/disk: scan items: %w", err)
	}
	q.reportTorn(lost)
	if upgrade != nil {
		if err := upgrade.finish(q.upgradeFrom); err != nil {
			return nil, err
		}
		q.upgradeFrom = ""
	}
	c := q.meta.c
	q.log.Info("queue opened", "queued", c.Queued, "dead_lettered", c.DeadLettered, "received", c.Received,
		"delivered", c.Delivered, "last_seq", q.meta.lastSeq)
	if !c.Reconciles() {
		q.log.Error("queue counters do not reconcile", "counters", fmt.Sprintf("%+v", c))
	}
	return live, nil
}

// Counters returns the running totals; it reads an in-memory copy kept in step with the store.
func (q *Queue) Counters() queue.Counters {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	return q.meta.c
}

// Appended is signalled, coalesced, after every Append or Replay that queued items.
func (q *Queue) Appended() <-chan struct{} { return q.appended }

func (q *Queue) signal() {
	select {
	case q.appended <- struct{}{}:
	default:
	}
}

// Close stops accepting Appends, commits the ones already waiting (each either commits or
// gets queue.ErrClosed; none hangs), flushes the memtable and closes the store. Delivery-side
// writes made with NoSync are made durable by the flush. Later calls return queue.ErrClosed.
func (q *Queue) Close() error {
	q.stop() // cancel a running compaction first, so taking closeMu does not wait for it
	q.closeMu.Lock()
	if q.closed {
		q.closeMu.Unlock()
		return queue.ErrClosed
	}
	q.closed = true
	close(q.reqs)
	q.closeMu.Unlock()

	q.wg.Wait()
	err := q.db.Flush()
	if err != nil {
		err = fmt.Errorf("queue/disk: flush on close: %w", err)
	}
	if cerr := q.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("queue/disk: close: %w", cerr)
	}
	if cerr := q.segs.close(); cerr != nil && err == nil {
		err = fmt.Errorf("queue/disk: close the payload log: %w", cerr)
	}
	if cerr := q.room.close(); cerr != nil && err == nil {
		err = fmt.Errorf("queue/disk: release the lock: %w", cerr)
	}
	return err
}

// Refusing returns why Append refuses entries now (an error wrapping queue.ErrFull while the
// disk or the disk budget is full, or the error of a failed sync of the payload log), or nil.
func (q *Queue) Refusing() error {
	if err := q.brokenErr(); err != nil {
		return err
	}
	return q.room.refusing()
}

// begin takes the read side of closeMu; it fails once the queue is closed.
func (q *Queue) begin() error {
	q.closeMu.RLock()
	if q.closed {
		q.closeMu.RUnlock()
		return queue.ErrClosed
	}
	return nil
}

func (q *Queue) end() { q.closeMu.RUnlock() }

// Compact flushes the memtable and compacts the whole store, so that the space of delivered
// items, replayed dead letters and expired dedup keys is returned to the file system. It runs
// by itself (at most every 30 s) while Append is turning clients away with queue.ErrFull;
// operators and tests may call it directly.
func (q *Queue) Compact(ctx context.Context) error {
	if err := q.begin(); err != nil {
		return err
	}
	defer q.end()
	if err := q.db.Flush(); err != nil {
		return fmt.Errorf("queue/disk: flush: %w", err)
	}
	if err := q.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		return fmt.Errorf("queue/disk: compact: %w", err)
	}
	if err := q.segs.rotateIfUnused(); err != nil {
		return err
	}
	return q.collectSegmentsLocked()
}

// collectSegments deletes the payload log segments that no pending item refers to any more.
func (q *Queue) collectSegments() error {
	if err := q.begin(); err != nil {
		return err
	}
	defer q.end()
	return q.collectSegmentsLocked()
}

// collectSegmentsLocked is collectSegments for a caller that holds closeMu (read). The
// removals that emptied the segments were written without a sync; they are synced first, so
// that a crash cannot bring back an item whose payload is gone.
func (q *Queue) collectSegmentsLocked() error {
	if !q.opts.NoSync {
		if err := q.db.LogData(nil, pebble.Sync); err != nil {
			return fmt.Errorf("queue/disk: sync before deleting payload segments: %w", err)
		}
	}
	return q.segs.collect()
}

// DiskUsage returns the bytes the store takes on disk, as compared with Options.DiskBudget:
// the blocks of every file under its directory, pebble's preallocated log files, the payload
// log and the reserve file included.
func (q *Queue) DiskUsage() int64 {
	if err := q.begin(); err != nil {
		return 0
	}
	defer q.end()
	return q.room.usage(true)
}

// reclaimer deletes the payload segments delivery has emptied, compacts the store when Append
// signals that the disk budget was reached, and looks at the room (see room.poll) every
// roomPoll and after deleting segments.
func (q *Queue) reclaimer(ctx context.Context) {
	defer q.wg.Done()
	tick := time.NewTicker(roomPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if q.room.diskFull.Load() != nil {
				// The active segment's space returns only once it is no longer active.
				q.reclaimSegments()
			}
			q.room.poll()
			continue
		case <-q.segs.empty:
			if err := q.collectSegments(); err != nil && !errors.Is(err, queue.ErrClosed) {
				q.log.Error("deleting delivered payload segments failed", "err", err)
			}
			q.pruneIndex()
			q.room.poll()
			continue
		case <-q.reclaim:
		}
		q.pruneIndex()
		if err := q.Compact(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, queue.ErrClosed) {
			q.log.Error("compaction to reclaim disk space failed", "err", err)
		}
	}
}

// reclaimSegments starts a new segment when the active one has no pending item and deletes
// the segments no pending item refers to, unless the queue is closed.
func (q *Queue) reclaimSegments() {
	if err := q.begin(); err != nil {
		return
	}
	defer q.end()
	err := q.segs.rotateIfUnused()
	if err == nil {
		err = q.collectSegmentsLocked()
	}
	if err != nil {
		q.log.Error("deleting delivered payload segments failed", "err", err)
	}
}

// pruneIndex deletes the spent visitor runs (see pruneVisitorRuns) unless the queue is closed.
func (q *Queue) pruneIndex() {
	if err := q.begin(); err != nil {
		return
	}
	defer q.end()
	if err := q.pruneVisitorRuns(); err != nil {
		q.log.Error("pruning the visitor index failed", "err", err)
	}
}

// pebbleLogger sends pebble's messages to slog.
type pebbleLogger struct{ l *slog.Logger }

// Infof logs pebble's routine notes at debug level.
func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "source", "pebble")
}

// Errorf logs pebble's errors.
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "source", "pebble")
}

// Fatalf is called by pebble on an invariant violation it cannot continue from.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "source", "pebble", "fatal", true)
	panic("pebble: " + msg)
}
