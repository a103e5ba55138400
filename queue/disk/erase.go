package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/klauspost/compress/s2"

	"github.com/woorelay/woorelay/queue"
)

// Privacy: the suppression list, erasure and the dead letters' retention (queue.Privacy).
//
// The suppression list is one pebble key per selector ('s' and its stored form), written with
// a synced batch. An erasure removes the person's pending items and dead letters from pebble
// (counted Filtered), then removes every copy of their events from the files: it rewrites in
// place each frame of the payload log that holds one (a payload frame holding their entry, a
// commit frame holding their item's visitor or their dead letter), zeroing the event, the
// visitor and any request URL while keeping every length, so the frame still decodes; then it
// flushes pebble, empties the write-ahead log files that flush made obsolete (the ones pebble
// keeps to recycle would otherwise keep the bytes until reused), and compacts the whole key
// range, which drops the deleted records from pebble's tables.
const (
	prefixSuppression = 's'
	// framePadded is the version of a frame an erasure rewrote in place: its body is the
	// length of the compressed bytes (a uvarint), the compressed bytes, and zeros up to the
	// frame's original length, so every later frame keeps its offset.
	framePadded = 2
)

var _ queue.Privacy = (*Queue)(nil)

func suppressionKey(k string) []byte { return append([]byte{prefixSuppression}, k...) }

// AddSuppressions stores the keys with one synced write.
func (q *Queue) AddSuppressions(keys []string) error {
	if err := q.begin(); err != nil {
		return err
	}
	defer q.end()
	b := q.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		_ = b.Set(suppressionKey(k), nil, nil)
	}
	if err := q.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("queue/disk: store suppressions: %w", err)
	}
	return nil
}

// RemoveSuppressions deletes the keys with one synced write and says how many were stored.
func (q *Queue) RemoveSuppressions(keys []string) (int, error) {
	if err := q.begin(); err != nil {
		return 0, err
	}
	defer q.end()
	b := q.db.NewBatch()
	defer b.Close()
	n := 0
	for _, k := range keys {
		_, closer, err := q.db.Get(suppressionKey(k))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("queue/disk: read a suppression: %w", err)
		}
		closer.Close()
		_ = b.Delete(suppressionKey(k), nil)
		n++
	}
	if err := q.db.Apply(b, pebble.Sync); err != nil {
		return 0, fmt.Errorf("queue/disk: remove suppressions: %w", err)
	}
	return n, nil
}

// Suppressions lists the stored keys, sorted.
func (q *Queue) Suppressions() ([]string, error) {
	if err := q.begin(); err != nil {
		return nil, err
	}
	defer q.end()
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSuppression}, UpperBound: rangeEnd(prefixSuppression)})
	if err != nil {
		return nil, fmt.Errorf("queue/disk: list suppressions: %w", err)
	}
	var out []string
	for valid := it.First(); valid; valid = it.Next() {
		out = append(out, string(it.Key()[1:]))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("queue/disk: list suppressions: %w", err)
	}
	return out, nil
}

// Erase removes the pending items and dead letters match selects, then their events' bytes
// from the payload log and from pebble's files (see the top of this file). It reads every
// pending item, every dead letter and every frame of the payload log once.
func (q *Queue) Erase(match func(queue.Entry) bool) (queue.Erased, error) {
	var res queue.Erased
	if err := q.begin(); err != nil {
		return res, err
	}
	defer q.end()
	q.replayMu.Lock() // no letter is replayed while it is being erased
	defer q.replayMu.Unlock()
	seqs := map[uint64]bool{}

	var ops []removal
	err := q.each(prefixItem, func(seq uint64, v []byte) {
		it, err := q.decodeItem(seq, v)
		if err == nil && match(it.Entry) {
			ops = append(ops, removal{seq: seq, filtered: true})
			seqs[seq] = true
		}
	})
	if err != nil {
		return res, err
	}
	if len(ops) > 0 {
		if err := q.removeAll(ops); err != nil {
			return res, err
		}
	}
	res.Items = len(ops)

	ids, err := q.removeLetters(func(dl queue.DeadLetter) bool { return match(dl.Entry) })
	res.DeadLetters = len(ids)
	if err != nil {
		return res, err
	}
	// The payload log also holds the events delivered or dead-lettered since its segment
	// was written: every copy match selects goes.
	if err := q.scrubLog(seqs, match); err != nil {
		return res, err
	}
	return res, q.purge()
}

// ExpireDeadLetters removes the dead letters that went dead before cutoff (counted Filtered).
// Their bytes leave pebble's files with its next compactions.
func (q *Queue) ExpireDeadLetters(cutoff time.Time) (int, error) {
	if err := q.begin(); err != nil {
		return 0, err
	}
	defer q.end()
	q.replayMu.Lock()
	defer q.replayMu.Unlock()
	ids, err := q.removeLetters(func(dl queue.DeadLetter) bool { return dl.At.Before(cutoff) })
	return len(ids), err
}

// each calls fn with every key of a one-byte prefix whose key is a sequence key, and a copy
// of its value.
func (q *Queue) each(prefix byte, fn func(seq uint64, v []byte)) error {
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: rangeEnd(prefix)})
	if err != nil {
		return fmt.Errorf("queue/disk: read the store: %w", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		if seq, ok := seqOf(it.Key()); ok {
			fn(seq, append([]byte(nil), it.Value()...))
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("queue/disk: read the store: %w", err)
	}
	return nil
}

// removeLetters deletes the dead letters sel selects (DeadLettered−n, Filtered+n) in one
// batch and returns their ids. The caller holds replayMu.
func (q *Queue) removeLetters(sel func(queue.DeadLetter) bool) ([]uint64, error) {
	q.dmu.Lock()
	defer q.dmu.Unlock()
	var ids []uint64
	err := q.each(prefixDeadLetter, func(id uint64, v []byte) {
		if dl, _, err := decodeDeadLetter(id, v); err == nil && sel(dl) {
			ids = append(ids, id)
		}
	})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	b := q.db.NewBatch()
	defer b.Close()
	for _, id := range ids {
		_ = b.SingleDelete(deadKey(id), nil)
	}
	n := int64(len(ids))
	if err := q.commitMeta(b, func(m *meta) {
		m.c.DeadLettered -= n
		m.c.Filtered += n
	}); err != nil {
		return nil, err
	}
	return ids, nil
}

// scrubLog rewrites every frame of the payload log that holds an event match selects: a
// payload frame holding its entry, a commit frame holding its item's visitor (one of seqs, or
// one whose entry was scrubbed) or its dead letter. The segments written are synced.
func (q *Queue) scrubLog(seqs map[uint64]bool, match func(queue.Entry) bool) error {
	s := q.segs
	scrubbed := map[[3]uint64]bool{} // entries scrubbed: segment, frame, offset in the frame
	for _, id := range s.ids() {
		s.mu.Lock()
		seg := s.segs[id]
		var size int64
		if seg != nil {
			size = seg.size
		}
		s.mu.Unlock()
		wrote := false
		for off := uint64(0); seg != nil && int64(off) < size; {
			h, err := seg.header(off)
			if err != nil {
				break // a torn tail, or a segment collected meanwhile
			}
			next := off + frameHeader + uint64(h.clen)
			raw, err := seg.body(off, h)
			if err != nil {
				off = next
				continue // a damaged frame: its items were dead-lettered as corrupt records
			}
			raw = append([]byte(nil), raw...)
			changed := false
			switch h.kind {
			case frameMagic:
				changed = scrubEntries(raw, match, func(inner int) { scrubbed[[3]uint64{id, off, uint64(inner)}] = true })
			case commitMagic:
				raw, changed = scrubGroup(raw, func(it groupItem) bool {
					return seqs[it.seq] || scrubbed[[3]uint64{it.loc.seg, it.loc.off, it.loc.inner}]
				}, match)
			}
			if changed {
				if err := s.rewriteFrame(seg, frameRef{id, off}, h, raw); err != nil {
					return err
				}
				wrote = true
			}
			off = next
		}
		if wrote && !s.noSync {
			if err := seg.f.Sync(); err != nil && !errors.Is(err, fs.ErrClosed) {
				return fmt.Errorf("queue/disk: sync payload segment %s after an erasure: %w", segmentName(id), err)
			}
		}
	}
	return nil
}

// scrubEntry reads one entry body at the decoder's position and, when match selects it,
// zeroes its visitor, event, request URLs and header values in place. It reports whether it
// did.
func scrubEntry(d *decoder, match func(queue.Entry) bool) bool {
	var e queue.Entry
	e.Source = d.str("source")
	e.MessageID = d.str("message_id")
	vis := d.raw("visitor")
	e.Visitor = string(vis)
	e.Received = d.time("received")
	e.Event = d.raw("event")
	spans := [][]byte{vis, e.Event}
	e.Outcome = queue.Outcome(d.uvarint("outcome"))
	e.Reason = d.str("reason")
	n := d.count("requests", 3)
	for range n {
		r := queue.Request{Method: d.str("request.method")}
		url := d.raw("request.url")
		r.URL = string(url)
		spans = append(spans, url)
		for range d.count("request.headers", 2) {
			d.raw("header.name")
			spans = append(spans, d.raw("header.value"))
		}
		e.Requests = append(e.Requests, r)
	}
	if d.err != nil || !match(e) {
		return false
	}
	for _, p := range spans {
		clear(p)
	}
	return true
}

// scrubEntries scrubs the erased entries of a payload frame's bytes (entry bodies end to end),
// calling done with the offset of each.
func scrubEntries(raw []byte, match func(queue.Entry) bool, done func(inner int)) bool {
	changed := false
	d := decoder{kind: kindItem, b: raw}
	for d.err == nil && d.off < len(raw) {
		at := d.off
		if scrubEntry(&d, match) {
			changed = true
			done(at)
		}
	}
	return changed
}

// scrubLetter scrubs a dead letter's value in place when match selects its entry: the
// failed request and answer, and the entry. It reports whether it did.
func scrubLetter(v []byte, match func(queue.Entry) bool) bool {
	d := decoder{kind: kindDeadLetter, b: v}
	d.header(kindDeadLetter, deadLetterVersion)
	d.time("at")
	d.raw("failure.reason")
	req := d.raw("failure.request")
	d.sint("failure.status")
	resp := d.raw("failure.response")
	d.sint("failure.attempts")
	if d.err != nil || !scrubEntry(&d, match) {
		return false
	}
	clear(req)
	clear(resp)
	return true
}

// scrubGroup scrubs a commit record: the visitors of the items erased selects (an erased
// pending item, or one whose payload entry was scrubbed), and the dead letters match
// selects. It returns the record re-encoded (same length) and whether anything changed.
func scrubGroup(raw []byte, erased func(groupItem) bool, match func(queue.Entry) bool) ([]byte, bool) {
	g, err := decodeGroup(raw)
	if err != nil {
		return raw, false
	}
	changed := false
	for i := range g.items {
		if erased(g.items[i]) {
			g.items[i].loc.visitor = strings.Repeat("\x00", len(g.items[i].loc.visitor))
			changed = true
		}
	}
	for i := range g.dead {
		if scrubLetter(g.dead[i].value, match) {
			changed = true
		}
	}
	if !changed {
		return raw, false
	}
	out := encodeGroup(&g)
	if len(out) != len(raw) {
		return raw, false // cannot happen: every length is kept
	}
	return out, true
}

// rewriteFrame writes raw, compressed, over the frame at r (header h) in a padded frame of
// the same length, and replaces the cached copy.
func (s *segmentLog) rewriteFrame(seg *segment, r frameRef, h frameHead, raw []byte) error {
	body := padded(s2.Encode(nil, raw), int(h.clen))
	if body == nil {
		body = padded(s2.EncodeBest(nil, raw), int(h.clen))
	}
	if body == nil {
		return fmt.Errorf("queue/disk: the frame at %d of payload segment %s does not fit its place once erased; nothing of it was changed (the pending items and dead letters are erased from the index)", r.off, segmentName(r.seg))
	}
	buf := make([]byte, frameHeader, frameHeader+len(body))
	buf[0], buf[1] = h.kind, framePadded
	binary.BigEndian.PutUint32(buf[2:], h.clen)
	binary.BigEndian.PutUint32(buf[6:], uint32(len(raw)))
	binary.BigEndian.PutUint32(buf[10:], crc32.Checksum(body, castagnoli))
	buf = append(buf, body...)
	s.rewrite.Lock()
	_, err := seg.f.WriteAt(buf, int64(r.off))
	s.rewrite.Unlock()
	if err != nil && !errors.Is(err, fs.ErrClosed) {
		return fmt.Errorf("queue/disk: rewrite the frame at %d of payload segment %s: %w", r.off, segmentName(r.seg), err)
	}
	s.mu.Lock()
	if _, ok := s.cache[r]; ok {
		s.cache[r] = raw // a new slice: items delivery holds keep viewing the old one
	}
	s.mu.Unlock()
	return nil
}

// padded is the body of a padded frame of n bytes holding comp, or nil when it does not fit.
func padded(comp []byte, n int) []byte {
	b := binary.AppendUvarint(make([]byte, 0, n), uint64(len(comp)))
	if len(b)+len(comp) > n {
		return nil
	}
	b = append(b, comp...)
	return append(b, make([]byte, n-len(b))...)
}

// purge makes pebble's files forget what was deleted: a flush (the memtable's write-ahead log
// becomes obsolete), the obsolete log files emptied, and a compaction of every key.
func (q *Queue) purge() error {
	mark := q.wals.mark()
	if err := q.db.Flush(); err != nil {
		return fmt.Errorf("queue/disk: flush after an erasure: %w", err)
	}
	if first := q.wals.firstSince(mark); first > 0 {
		if err := emptyLogsBefore(q.dir, first); err != nil {
			return err
		}
	}
	if err := q.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("queue/disk: compact after an erasure: %w", err)
	}
	return nil
}

// emptyLogsBefore truncates pebble's write-ahead log files numbered below first: after a
// flush they are obsolete, deleted or kept for reuse (scrubFS empties those when reused).
func emptyLogsBefore(dir string, first uint64) error {
	names, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("queue/disk: read %s: %w", dir, err)
	}
	for _, de := range names {
		name := de.Name()
		if !strings.HasSuffix(name, ".log") {
			continue
		}
		num := strings.TrimSuffix(name, ".log")
		if i := strings.IndexByte(num, '-'); i >= 0 {
			num = num[:i]
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil || n >= first {
			continue
		}
		if err := os.Truncate(filepath.Join(dir, name), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue/disk: empty the obsolete log %s after an erasure: %w", name, err)
		}
	}
	return nil
}

// walLog remembers the numbers of the write-ahead log files pebble created.
type walLog struct {
	mu   sync.Mutex
	nums []uint64
}

func (w *walLog) created(info pebble.WALCreateInfo) {
	w.mu.Lock()
	w.nums = append(w.nums, uint64(info.FileNum))
	w.mu.Unlock()
}

func (w *walLog) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.nums)
}

// firstSince is the lowest number of a log created after mark (0: none).
func (w *walLog) firstSince(mark int) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first uint64
	for _, n := range w.nums[mark:] {
		if first == 0 || n < first {
			first = n
		}
	}
	if len(w.nums) > 64 {
		w.nums = append(w.nums[:0:0], w.nums[len(w.nums)-16:]...)
	}
	return first
}

// scrubFS is pebble's file system with one change: a write-ahead log file reused for a new
// log is emptied first, so that what an old log held (an erased event) is not kept past the
// new log's end.
type scrubFS struct{ vfs.FS }

// ReuseForWrite empties oldname and reuses it.
func (f scrubFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	_ = os.Truncate(oldname, 0)
	return f.FS.ReuseForWrite(oldname, newname, category)
}

// withWALs records the logs pebble creates in q.wals, besides what el does.
func (q *Queue) withWALs(el *pebble.EventListener) *pebble.EventListener {
	prev := el.WALCreated
	el.WALCreated = func(info pebble.WALCreateInfo) {
		q.wals.created(info)
		if prev != nil {
			prev(info)
		}
	}
	return el
}
