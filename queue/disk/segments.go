package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
)

// The payload log. Event payloads (the encoded entry bodies of pending items) live in
// append-only segment files beside the store, not in pebble: pebble keeps the small per-item
// records (delivery state and where the payload is), the indexes and the counters, so its
// flushes and compactions no longer rewrite the payloads, and its tables and bloom filters
// stay small enough for the block cache.
//
// A segment is a sequence of frames: a 14-byte header (kind, version, compressed length, raw
// length, CRC-32C of the compressed bytes) and an S2-compressed body. A payload frame ('F')
// holds one Append call's entry bodies, concatenated; a commit frame ('C') holds a group
// commit's record (group.go). The committer writes a group's payload frames and then its
// commit frame with one write and one fsync, before pebble gets the record, so a record in
// pebble never points at bytes that are not on disk; a crash can leave a torn frame at the end
// of a segment, which Open's replay stops at and which goes with the segment. Every open
// starts a new segment, so a torn tail is never appended to.
//
// A segment is deleted once no pending item refers to it (live counts are kept in memory and
// rebuilt at open from the item records), after the removals that emptied it are synced.
const (
	segmentsDir  = "segments"
	frameMagic   = 'F'
	frameVersion = 1
	frameHeader  = 14
	// maxSegmentSize and minSegmentSize bound a segment; a segment is at most a sixteenth of
	// the disk budget or of the file system, so delivered segments return space in small steps.
	maxSegmentSize = 64 << 20
	minSegmentSize = 64 << 10
	// frameCacheBytes bounds the decompressed frames kept in memory: the frames just committed
	// (delivery usually reads an item soon after ingest wrote it) and the ones scans read.
	frameCacheBytes = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameRef names a frame: its segment and its offset in the segment.
type frameRef struct{ seg, off uint64 }

// segment is one segment file.
type segment struct {
	f    *os.File
	size int64
	live int64 // pending items whose payload is in this segment
}

// segmentLog is the payload log of one store.
type segmentLog struct {
	dir    string
	limit  int64
	noSync bool

	// wmu serialises appends and rotations (the committer, and Compact's rotation).
	wmu sync.Mutex
	buf []byte // guarded by wmu

	// mu guards segs, active and the frame cache.
	mu     sync.Mutex
	segs   map[uint64]*segment
	active uint64
	cache  map[frameRef][]byte
	order  []frameRef // cached frames, oldest first
	cached int64

	empty chan struct{} // signalled when a segment other than the active one has no live item

	// rewrite is held for writing while an erasure rewrites frames in place (erase.go), and
	// for reading while a frame is read from its file, so no read sees a frame half rewritten.
	rewrite sync.RWMutex
}

func segmentName(id uint64) string { return fmt.Sprintf("%016x.seg", id) }

// openSegmentLog opens the segments of the payload log in dir/segments (creating the
// directory if needed). Nothing is written until start.
func openSegmentLog(dir string, limit int64, noSync bool) (*segmentLog, error) {
	s := &segmentLog{
		dir:    filepath.Join(dir, segmentsDir),
		limit:  limit,
		noSync: noSync,
		segs:   map[uint64]*segment{},
		cache:  map[frameRef][]byte{},
		empty:  make(chan struct{}, 1),
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("queue/disk: create the payload log %s: %w (is the data directory writable?)", s.dir, err)
	}
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("queue/disk: read the payload log %s: %w", s.dir, err)
	}
	for _, de := range names {
		name := de.Name()
		id, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 16, 64)
		if err != nil || !strings.HasSuffix(name, ".seg") {
			continue
		}
		path := filepath.Join(s.dir, name)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("queue/disk: open payload segment %s: %w", path, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			s.close()
			return nil, fmt.Errorf("queue/disk: open payload segment %s: %w", path, err)
		}
		s.segs[id] = &segment{f: f, size: fi.Size()}
	}
	return s, nil
}

// ids returns the ids of the open segments, in order.
func (s *segmentLog) ids() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, 0, len(s.segs))
	for id := range s.segs {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// start takes the pending items' counts per segment, deletes the segments no item refers to,
// and starts a new active segment after every id in use or seen.
func (s *segmentLog) start(live map[uint64]int64) error {
	var last uint64
	for id := range live {
		last = max(last, id)
	}
	for _, id := range s.ids() {
		last = max(last, id)
		s.mu.Lock()
		seg := s.segs[id]
		seg.live = live[id]
		unused := seg.live == 0
		if unused {
			seg.f.Close()
			delete(s.segs, id)
		}
		s.mu.Unlock()
		if unused {
			if err := os.Remove(filepath.Join(s.dir, segmentName(id))); err != nil {
				return fmt.Errorf("queue/disk: delete the unused payload segment %s: %w", segmentName(id), err)
			}
		}
	}
	return s.startSegment(last + 1)
}

// readFrame reads the header of the frame at off in segment id and returns its kind and
// compressed size; with wantBody, a commit frame's decompressed payload too. It returns io.EOF
// at the segment's end, and an error for a frame that is cut short or fails its checksum.
func (s *segmentLog) readFrame(id, off uint64, wantBody bool) (kind byte, size uint64, body []byte, err error) {
	s.mu.Lock()
	seg := s.segs[id]
	s.mu.Unlock()
	if seg == nil || int64(off) >= seg.size {
		return 0, 0, nil, io.EOF
	}
	h, err := seg.header(off)
	if err != nil {
		return 0, 0, nil, err
	}
	if h.kind == commitMagic && wantBody {
		if body, err = seg.body(off, h); err != nil {
			return 0, 0, nil, err
		}
	}
	return h.kind, uint64(h.clen), body, nil
}

// frameHead is a frame's decoded header.
type frameHead struct {
	kind       byte
	version    byte // frameVersion, or framePadded for a frame an erasure rewrote in place
	clen, rlen uint32
	crc        uint32
}

// header reads and checks the header of the frame at off: its kind and version, and lengths
// that fit the segment.
func (seg *segment) header(off uint64) (frameHead, error) {
	var b [frameHeader]byte
	if _, err := seg.f.ReadAt(b[:], int64(off)); err != nil {
		return frameHead{}, fmt.Errorf("frame header: %w", err)
	}
	h := frameHead{kind: b[0], version: b[1], clen: binary.BigEndian.Uint32(b[2:]), rlen: binary.BigEndian.Uint32(b[6:]), crc: binary.BigEndian.Uint32(b[10:])}
	if (h.kind != frameMagic && h.kind != commitMagic) || (b[1] != frameVersion && b[1] != framePadded) {
		return frameHead{}, fmt.Errorf("bad header %x", b[:2])
	}
	if int64(off)+frameHeader+int64(h.clen) > seg.size || h.rlen > 8*maxGroupBytes {
		return frameHead{}, fmt.Errorf("lengths %d/%d out of range", h.clen, h.rlen)
	}
	return h, nil
}

// body reads the body of the frame at off with header h, checks its checksum and decompresses it.
func (seg *segment) body(off uint64, h frameHead) ([]byte, error) {
	comp := make([]byte, h.clen)
	if _, err := seg.f.ReadAt(comp, int64(off)+frameHeader); err != nil {
		return nil, fmt.Errorf("frame body: %w", err)
	}
	if crc32.Checksum(comp, castagnoli) != h.crc {
		return nil, errors.New("checksum mismatch")
	}
	if h.version == framePadded {
		n, k := binary.Uvarint(comp)
		if k <= 0 || n > uint64(len(comp)-k) {
			return nil, errors.New("bad inner length of a rewritten frame")
		}
		comp = comp[k : k+int(n)]
	}
	raw, err := s2.Decode(make([]byte, h.rlen), comp)
	if err != nil || len(raw) != int(h.rlen) {
		return nil, fmt.Errorf("cannot decompress: %v", err)
	}
	return raw, nil
}

// missing returns the ids that live counts name but that have no segment file.
func (s *segmentLog) missing(live map[uint64]int64) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for id, n := range live {
		if _, ok := s.segs[id]; !ok && n > 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// startSegment creates segment id and makes it the active one; the caller holds wmu or is
// opening the log. The directory is synced so the new file outlives a crash before any record
// refers to it.
func (s *segmentLog) startSegment(id uint64) error {
	path := filepath.Join(s.dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("queue/disk: create payload segment %s: %w", path, err)
	}
	if !s.noSync {
		if err := syncDir(s.dir); err != nil {
			f.Close()
			os.Remove(path) // so that the next try can create it
			return err
		}
	}
	s.mu.Lock()
	s.segs[id] = &segment{f: f}
	prev := s.active
	s.active = id
	empty := prev != 0 && s.segs[prev] != nil && s.segs[prev].live == 0
	s.mu.Unlock()
	if empty {
		s.signalEmpty()
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("queue/disk: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("queue/disk: sync %s: %w", dir, err)
	}
	return nil
}

// encodeFrame compresses raw into a payload frame (header and S2 block), appended to dst.
func encodeFrame(dst, raw []byte) []byte { return encodeFrameKind(dst, raw, frameMagic) }

// encodeFrameKind compresses raw into a frame of the given kind (frameMagic, commitMagic).
func encodeFrameKind(dst, raw []byte, kind byte) []byte {
	need := frameHeader + s2.MaxEncodedLen(len(raw))
	dst = slices.Grow(dst, need)
	at := len(dst)
	comp := s2.Encode(dst[at+frameHeader:at+need], raw)
	dst = dst[:at+frameHeader+len(comp)]
	h := dst[at : at+frameHeader]
	h[0], h[1] = kind, frameVersion
	binary.BigEndian.PutUint32(h[2:], uint32(len(comp)))
	binary.BigEndian.PutUint32(h[6:], uint32(len(raw)))
	binary.BigEndian.PutUint32(h[10:], crc32.Checksum(comp, castagnoli))
	return dst
}

// write appends frames to the active segment, then the commit frame record builds for the
// segment and the frames' offsets (nil: none), with one write and, unless the log is NoSync,
// one fsync, starting a new segment first when the active one is full. It returns the segment,
// each frame's offset and the commit frame's; raws, the frames' decompressed bytes, are cached.
// live pending items are counted in the segment as the write lands, so that the segment is
// never collected between the write and the items' apply to pebble (release them if the apply
// fails).
func (s *segmentLog) write(frames, raws [][]byte, live int64, record func(seg uint64, offs []uint64) []byte) (uint64, []uint64, uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	id := s.active
	seg := s.segs[id]
	s.mu.Unlock()
	if seg.size >= s.limit {
		if err := s.startSegment(id + 1); err != nil {
			return 0, nil, 0, err
		}
		id++
		s.mu.Lock()
		seg = s.segs[id]
		s.mu.Unlock()
	}
	buf := s.buf[:0]
	offs := make([]uint64, len(frames))
	for i, f := range frames {
		offs[i] = uint64(seg.size) + uint64(len(buf))
		buf = append(buf, f...)
	}
	recOff := uint64(seg.size) + uint64(len(buf))
	if record != nil {
		if raw := record(id, offs); raw != nil {
			buf = encodeFrameKind(buf, raw, commitMagic)
		}
	}
	s.buf = buf
	if len(buf) > 4*maxGroupBytes {
		s.buf = nil // do not keep an unusually large buffer
	}
	// A write that fails (a full disk) is cut off again, so that the segment ends with its
	// last whole frame and the next write goes where it would have.
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		_ = seg.f.Truncate(seg.size)
		return 0, nil, 0, fmt.Errorf("queue/disk: write payload segment %s: %w", segmentName(id), err)
	}
	if !s.noSync {
		if err := seg.f.Sync(); err != nil {
			_ = seg.f.Truncate(seg.size)
			return 0, nil, 0, fmt.Errorf("queue/disk: sync payload segment %s: %w", segmentName(id), err)
		}
	}
	s.mu.Lock()
	seg.size += int64(len(buf))
	seg.live += live
	for i, raw := range raws {
		s.putLocked(frameRef{id, offs[i]}, raw)
	}
	s.mu.Unlock()
	return id, offs, recOff, nil
}

// release counts n pending items of each segment as removed, and signals the segments that
// are left without any.
func (s *segmentLog) release(counts map[uint64]int64) {
	if len(counts) == 0 {
		return
	}
	s.mu.Lock()
	empty := false
	for id, n := range counts {
		if seg := s.segs[id]; seg != nil {
			seg.live -= n
			empty = empty || (seg.live <= 0 && id != s.active)
		}
	}
	s.mu.Unlock()
	if empty {
		s.signalEmpty()
	}
}

func (s *segmentLog) signalEmpty() {
	select {
	case s.empty <- struct{}{}:
	default:
	}
}

// rotateIfUnused starts a new segment when the active one holds bytes but no pending item, so
// that Compact can return its space.
func (s *segmentLog) rotateIfUnused() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	id := s.active
	seg := s.segs[id]
	unused := seg.size > 0 && seg.live <= 0
	s.mu.Unlock()
	if !unused {
		return nil
	}
	return s.startSegment(id + 1)
}

// collect deletes the segments, other than the active one, that no pending item refers to. The
// caller has synced the removals that emptied them.
func (s *segmentLog) collect() error {
	s.mu.Lock()
	var gone []uint64
	for id, seg := range s.segs {
		if id != s.active && seg.live <= 0 {
			gone = append(gone, id)
			seg.f.Close()
			delete(s.segs, id)
		}
	}
	if len(gone) > 0 {
		kept := s.order[:0]
		for _, r := range s.order {
			if _, ok := s.segs[r.seg]; ok {
				kept = append(kept, r)
			} else {
				s.cached -= int64(len(s.cache[r]))
				delete(s.cache, r)
			}
		}
		s.order = kept
	}
	s.mu.Unlock()
	var errs []error
	for _, id := range gone {
		if err := os.Remove(filepath.Join(s.dir, segmentName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("queue/disk: delete payload segment %s: %w", segmentName(id), err))
		}
	}
	return errors.Join(errs...)
}

// putLocked caches a frame's decompressed bytes, evicting the oldest beyond frameCacheBytes;
// the caller holds mu.
func (s *segmentLog) putLocked(r frameRef, raw []byte) {
	if _, ok := s.cache[r]; ok || len(raw) > frameCacheBytes/4 {
		return
	}
	for s.cached+int64(len(raw)) > frameCacheBytes && len(s.order) > 0 {
		old := s.order[0]
		s.order = s.order[1:]
		s.cached -= int64(len(s.cache[old]))
		delete(s.cache, old)
	}
	s.cache[r] = raw
	s.order = append(s.order, r)
	s.cached += int64(len(raw))
}

// frame returns the decompressed bytes of a frame, from the cache or from its segment. A frame
// that is missing or fails its checksum gives an error wrapping ErrCorrupt.
func (s *segmentLog) frame(r frameRef) ([]byte, error) {
	s.mu.Lock()
	if raw, ok := s.cache[r]; ok {
		s.mu.Unlock()
		return raw, nil
	}
	seg := s.segs[r.seg]
	s.mu.Unlock()
	if seg == nil {
		return nil, fmt.Errorf("%w (payload segment %s is missing)", ErrCorrupt, segmentName(r.seg))
	}
	s.rewrite.RLock()
	h, err := seg.header(r.off)
	var raw []byte
	if err == nil && h.kind != frameMagic {
		err = fmt.Errorf("a %q frame where a payload frame should be", h.kind)
	}
	if err == nil {
		raw, err = seg.body(r.off, h)
	}
	s.rewrite.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("%w (payload segment %s, frame at %d: %v)", ErrCorrupt, segmentName(r.seg), r.off, err)
	}
	s.mu.Lock()
	s.putLocked(r, raw)
	s.mu.Unlock()
	return raw, nil
}

// body returns the entry body an item record's location names.
func (s *segmentLog) body(loc itemLoc) ([]byte, error) {
	if !loc.ref {
		return loc.body, nil
	}
	raw, err := s.frame(frameRef{loc.seg, loc.off})
	if err != nil {
		return nil, err
	}
	if loc.inner > uint64(len(raw)) || loc.n > uint64(len(raw))-loc.inner {
		return nil, fmt.Errorf("%w (payload segment %s, frame at %d: entry %d+%d beyond its %d bytes)", ErrCorrupt, segmentName(loc.seg), loc.off, loc.inner, loc.n, len(raw))
	}
	return raw[loc.inner : loc.inner+loc.n], nil
}

// close closes every segment file.
func (s *segmentLog) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, seg := range s.segs {
		if err := seg.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.segs = map[uint64]*segment{}
	return errors.Join(errs...)
}
