package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

// The store's room: the lock that keeps a second process out of the data directory, the
// reserve file that keeps room for delivery on a full disk, and what counts against the disk
// budget.
//
// Pebble cannot survive a write that fails for want of space (it panics in its commit path),
// and delivery needs to write to remove what it delivered. So the queue never lets the disk
// fill: it refuses Appends (queue.ErrFull) once the free space falls below a low mark, and
// then deletes its reserve file, which gives pebble that much room for the deletions,
// flushes and compactions that make room again. Once the free space is back above the low
// mark with room for the reserve and some more, it writes the reserve again and accepts
// Appends; nothing needs a restart. A write of the payload log that fails for want of space
// (another process filled the disk first) is undone and answered the same way.

const (
	lockName    = "woorelay.lock"
	reserveName = "woorelay.reserve"
	// minMemTable and maxReserve bound the sizes derived from the room the store has.
	minMemTable = 256 << 10
	minReserve  = 256 << 10
	maxReserve  = 64 << 20
	// roomPoll is how often the free space and the budget are looked at again while Appends
	// are refused (and, otherwise, whether another process is filling the disk).
	roomPoll = time.Second
	// measureEvery bounds how often a group commit walks the directory for the disk budget;
	// between walks it adds what it wrote.
	measureEvery = 100 * time.Millisecond
)

var errLocked = errors.New("locked")

// isNoSpace reports whether err is a write that failed for want of space (or quota).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		(err != nil && strings.Contains(err.Error(), "no space left on device"))
}

// isNotWritable reports whether err is a write refused by permissions or a read-only mount.
func isNotWritable(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
}

// envError explains an error of the data directory's file system with what to do about it.
func envError(dir, what string, err error) error {
	switch {
	case isNotWritable(err):
		return fmt.Errorf("queue/disk: %s in %s: %w: the data directory is not writable; give woorelay write access to it, or choose another --data", what, dir, err)
	case isNoSpace(err):
		return fmt.Errorf("queue/disk: %s in %s: %w: the disk is full; free some space on it and start woorelay again", what, dir, err)
	}
	return fmt.Errorf("queue/disk: %s in %s: %w", what, dir, err)
}

// ErrDamaged is wrapped by the error Open returns for a store whose files cannot be read.
var ErrDamaged = errors.New("the store is damaged")

// damagedError explains an error of pebble's files at open: the store is damaged (or could not
// be read), nothing was changed, and how to recover.
func damagedError(dir string, err error) error {
	return fmt.Errorf("queue/disk: %w: the store in %s cannot be read (%s). Its index (the files outside segments/) is damaged: "+
		"nothing was changed and no event was dropped. To recover, restore the directory from a backup, or move the index aside "+
		"and let woorelay rebuild it from the payload log in segments/ (see \"Recovering a damaged store\" in the README)", ErrDamaged, dir, brief(err))
}

// brief is the first line of an error's text (pebble's errors carry stacks after it).
func brief(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// lockDir takes the data directory's lock and writes who holds it into the lock file, so that
// a second process is told which one has the store. Pebble's own lock stays, and names no one.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, envError(dir, "create the lock file", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				holder = "another woorelay (" + strings.TrimSpace(string(b)) + ")"
			}
			return nil, fmt.Errorf("queue/disk: the store in %s is in use by %s: stop it, or give this woorelay another data directory (--data)", dir, holder)
		}
		return nil, envError(dir, "lock the store", err)
	}
	host, _ := os.Hostname()
	// Best effort: a full disk may refuse the few bytes, and the lock holds without them.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt(fmt.Appendf(nil, "pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339)), 0)
	}
	return f, nil
}

// sizes are what the room derives from the disk budget and the file system's size.
type sizes struct {
	memTable int64 // pebble's memtable (its log files are preallocated at 1.1 × this)
	reserve  int64 // the reserve file
	low      int64 // Appends are refused while the free space is below this
	margin   int64 // what the budget keeps free for pebble's own growth (a new log, a flush, a compaction's output)
	segment  int64 // the payload log's segment size: delivery returns space a segment at a time
}

// roomSizes sizes the memtable so that pebble's preallocated log files fit the budget (or the
// file system) many times over, and the reserve after it.
func roomSizes(budget, fsSize int64, mem uint64) sizes {
	capacity := fsSize
	if budget > 0 && (capacity <= 0 || budget < capacity) {
		capacity = budget
	}
	var s sizes
	switch {
	case mem > 0:
		s.memTable = int64(mem)
	case capacity > 0:
		s.memTable = min(DefaultMemTableSize, max(minMemTable, capacity/32))
	default:
		s.memTable = DefaultMemTableSize
	}
	s.reserve = min(max(2*s.memTable, minReserve), maxReserve)
	if budget > 0 {
		s.reserve = min(s.reserve, max(budget/16, 64<<10))
	}
	s.low = s.reserve
	s.margin = 4 * s.memTable
	s.segment = maxSegmentSize
	if capacity > 0 {
		s.segment = min(max(capacity/16, minSegmentSize), maxSegmentSize)
	}
	return s
}

// room is the store's watch over its space; see the comment at the top of this file.
type room struct {
	dir    string
	budget int64
	sizes
	log *slog.Logger

	lock *os.File

	mu       sync.Mutex
	measured int64 // bytes under dir at the last walk
	tables   int64 // bytes of pebble's live tables at the last walk (what a compaction may rewrite)
	tableFn  func() int64
	since    int64     // bytes written by group commits since
	at       time.Time // of the last walk

	// fmu serialises the turns to and from a full disk with the reserve file's writes and
	// deletions, so a full disk never keeps its reserve.
	fmu        sync.Mutex
	diskFull   atomic.Pointer[error] // set while the disk is full
	noReserve  bool                  // the reserve file could not be written (warned once); guarded by fmu
	budgetFull atomic.Pointer[error] // set while the budget is used up
}

// newRoom locks dir and sets up the reserve: a store opened on a disk that is already full
// starts refusing Appends, with its reserve deleted to give pebble room to open.
func newRoom(dir string, budget int64, mem uint64, log *slog.Logger) (*room, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	_, fsSize, _ := diskSpace(dir)
	r := &room{dir: dir, budget: budget, sizes: roomSizes(budget, fsSize, mem), log: log, lock: lock}
	r.poll()
	return r, nil
}

// close releases the lock; the reserve file stays for the next open.
func (r *room) close() error { return r.lock.Close() }

// refusing returns why Appends are refused now, or nil.
func (r *room) refusing() error {
	if p := r.diskFull.Load(); p != nil {
		return *p
	}
	if p := r.budgetFull.Load(); p != nil {
		return *p
	}
	return nil
}

// usage returns the bytes under the data directory: a walk's, at most measureEvery old unless
// fresh, plus what was written since.
func (r *room) usage(fresh bool) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fresh || time.Since(r.at) >= measureEvery {
		r.measured, r.since, r.at = walkUsage(r.dir), 0, time.Now()
		if r.tableFn != nil {
			r.tables = r.tableFn()
		}
	}
	return r.measured + r.since
}

// wrote adds bytes a group commit wrote to the last walk's measure.
func (r *room) wrote(n int64) {
	r.mu.Lock()
	r.since += n
	r.mu.Unlock()
}

// walkUsage adds up the blocks of every file under dir.
func walkUsage(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file pebble deleted meanwhile
		}
		if fi, err := d.Info(); err == nil {
			total += allocated(fi)
		}
		return nil
	})
	return total
}

// overBudget reports whether writing n more bytes on top of usage would pass the budget
// (keeping its margin for pebble: a new log, a flush, and a compaction's output, which is
// written before its inputs are deleted and may be as large as the live tables), and notes
// the answer for refusing.
func (r *room) overBudget(usage, n int64) bool {
	if r.budget <= 0 {
		return false
	}
	r.mu.Lock()
	tables := r.tables
	r.mu.Unlock()
	over := usage+n+r.margin+tables > r.budget
	if over {
		err := fmt.Errorf("%w: the disk budget of %d bytes is used up (%d bytes under %s); delivery makes room", queue.ErrFull, r.budget, usage, r.dir)
		r.budgetFull.Store(&err)
	} else if r.budgetFull.Load() != nil {
		r.budgetFull.Store(nil)
	}
	return over
}

// checkDisk refuses a write of n bytes that would leave less than the low mark free, turning
// the store to refusing Appends; it returns nil when there is room (or the system cannot say).
func (r *room) checkDisk(n int64) error {
	if err := r.diskFull.Load(); err != nil {
		return *err
	}
	free, _, ok := diskSpace(r.dir)
	if ok && free-n < r.low {
		return r.full(fmt.Sprintf("%d bytes free", free))
	}
	return nil
}

// full turns the store to refusing Appends because the disk is full, and deletes the reserve
// so that delivery has room to record what it delivers. It returns the error Appends get.
func (r *room) full(why string) error {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	return r.fullLocked(why)
}

// fullLocked is full for a caller that holds fmu.
func (r *room) fullLocked(why string) error {
	err := fmt.Errorf("%w: the disk holding %s is full (%s); delivery goes on and makes room", queue.ErrFull, r.dir, why)
	if !r.diskFull.CompareAndSwap(nil, &err) {
		return *r.diskFull.Load()
	}
	var released int64
	if os.Remove(filepath.Join(r.dir, reserveName)) == nil {
		released = r.reserve
	}
	r.log.Warn("the disk is full: refusing new events (ingest answers 503 store_full with Retry-After) until space is freed; delivery goes on",
		"dir", r.dir, "why", why, "reserve_released_bytes", released)
	return err
}

// poll looks at the room again: it turns a store refusing Appends for a full disk back to
// accepting them once the free space allows the reserve and some more (writing the reserve
// again), turns a store whose disk another process is filling to refusing them, and clears a
// used-up budget that delivery has made room in.
func (r *room) poll() {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	free, _, ok := diskSpace(r.dir)
	path := filepath.Join(r.dir, reserveName)
	_, statErr := os.Stat(path)
	full := r.diskFull.Load() != nil
	roomy := !ok || free >= r.low+r.reserve+r.reserve/2
	switch {
	case !full && ok && free < r.low:
		r.fullLocked(fmt.Sprintf("%d bytes free", free))
	case !full && statErr != nil && !roomy:
		r.fullLocked(fmt.Sprintf("%d bytes free: no room for the reserve file", free))
	case !full && statErr != nil:
		if err := r.writeReserve(path); isNoSpace(err) {
			r.fullLocked("no room for the reserve file")
		} else if err != nil && !r.noReserve {
			r.noReserve = true
			r.log.Warn("cannot write the reserve file that keeps room for delivery on a full disk", "path", path, "err", err)
		}
	case full && roomy:
		if r.writeReserve(path) == nil {
			r.diskFull.Store(nil)
			r.log.Info("the disk has room again: accepting events", "dir", r.dir, "free_bytes", free)
		}
	}
	if r.budget > 0 && r.budgetFull.Load() != nil {
		r.overBudget(r.usage(true), 0)
	}
}

// writeReserve creates the reserve file with its blocks allocated; it leaves nothing behind
// when there is no room for it.
func (r *room) writeReserve(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	err = allocate(f, r.reserve)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeZeros writes n zero bytes to f from its start.
func writeZeros(f *os.File, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for off := int64(0); off < n; {
		w, err := f.WriteAt(buf[:min(int64(len(buf)), n-off)], off)
		if err != nil {
			return err
		}
		off += int64(w)
	}
	return nil
}

// openError explains an error of Open after pebble opened: a store that cannot be read is
// damaged; a file system that refuses writes says so.
func (q *Queue) openError(dir string, err error) error {
	switch {
	case isNotWritable(err) || isNoSpace(err):
		return envError(dir, "open the store", err)
	case pebble.IsCorruptionError(err) || errors.Is(err, ErrCorrupt):
		return damagedError(dir, err)
	}
	return err
}

// backgroundErrorEvery bounds how often pebble's failing background work is logged.
const backgroundErrorEvery = 10 * time.Second

// pebbleEvents are the queue's hooks into pebble: a background write that fails for want of
// space turns the store to refusing Appends (and releases the reserve, so pebble's retry
// finds room); background errors are logged at most every backgroundErrorEvery, with how many
// there were; a file that fails its checksum is logged as damage (pebble's default ends the
// process) and the read that found it fails with it.
func (q *Queue) pebbleEvents() *pebble.EventListener {
	var mu sync.Mutex
	var last time.Time
	var count int
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			if isNoSpace(err) {
				q.room.full("pebble: " + err.Error())
			}
			mu.Lock()
			count++
			n := count
			if time.Since(last) < backgroundErrorEvery {
				mu.Unlock()
				return
			}
			last, count = time.Now(), 0
			mu.Unlock()
			q.log.Error("pebble's background work failed; it retries", "err", brief(err), "times", n)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			q.log.Error("the store is damaged: a file failed its checksum, and reads of it fail (see \"Recovering a damaged store\" in the README)",
				"path", info.Path, "err", brief(info.Details))
		},
	}
}
