package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// ErrCorrupt is wrapped by every error caused by a stored record that cannot be decoded: a
// record truncated or altered on disk, or written by an incompatible version of woorelay.
// errors.Is(err, ErrCorrupt) tells a damaged store from an I/O error.
var ErrCorrupt = errors.New("corrupt record")

// Record kinds and versions. Every value starts with two bytes, kind and version, so a value
// read from the wrong place or written by a newer encoding is recognised instead of misread.
const (
	kindItem       = 'I'
	kindDeadLetter = 'L'
	kindMeta       = 'M'

	// itemVersion 2 adds the payload's location after the delivery state; version 1 records
	// (the entry inline after the state) are still read.
	itemVersion       = 2
	itemVersion1      = 1
	deadLetterVersion = 1
	metaVersion       = 1
)

// itemFlagRewritten marks an item value that has been Set more than once (by Progress or
// Retrying), so deleting it needs a full Delete rather than a SingleDelete.
const itemFlagRewritten = 1

// corruptf builds an ErrCorrupt error naming the record kind and the field that failed.
func corruptf(kind byte, field, format string, args ...any) error {
	return fmt.Errorf("%w (%s record, field %s: %s)", ErrCorrupt, kindName(kind), field, fmt.Sprintf(format, args...))
}

func kindName(kind byte) string {
	switch kind {
	case kindItem:
		return "item"
	case kindDeadLetter:
		return "dead-letter"
	case kindMeta:
		return "meta"
	}
	return fmt.Sprintf("0x%02x", kind)
}

// ---- encoding ----

func putUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
func putVarint(b []byte, v int64) []byte   { return binary.AppendVarint(b, v) }

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// putTime encodes the zero time as a single 0 byte, any other time as 1 and its Unix nanoseconds
// (the location is not kept; times decode in UTC).
func putTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.AppendVarint(b, t.UnixNano())
}

// entrySize estimates the encoded size of e, to size buffers in one allocation.
func entrySize(e *queue.Entry) int {
	n := 32 + len(e.Source) + len(e.MessageID) + len(e.Visitor) + len(e.Event) + len(e.Reason)
	for i := range e.Requests {
		r := &e.Requests[i]
		n += 8 + len(r.Method) + len(r.URL)
		for _, h := range r.Headers {
			n += 4 + len(h.Name) + len(h.Value)
		}
	}
	return n
}

// appendEntry appends the fields of e (no header: the enclosing record carries the version).
func appendEntry(b []byte, e *queue.Entry) []byte {
	b = putString(b, e.Source)
	b = putString(b, e.MessageID)
	b = putString(b, e.Visitor)
	b = putTime(b, e.Received)
	b = putBytes(b, e.Event)
	b = putUvarint(b, uint64(e.Outcome))
	b = putString(b, e.Reason)
	b = putUvarint(b, uint64(len(e.Requests)))
	for i := range e.Requests {
		r := &e.Requests[i]
		b = putString(b, r.Method)
		b = putString(b, r.URL)
		b = putUvarint(b, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			b = putString(b, h.Name)
			b = putString(b, h.Value)
		}
	}
	return b
}

// itemState is the delivery state kept in front of an item's entry.
type itemState struct {
	flags        uint64
	attempts     int
	firstAttempt time.Time
	nextRequest  int
}

// Where an item's entry body is (the byte after the delivery state of a version 2 record).
const (
	locInline = 0 // the entry body follows
	locFrame  = 1 // in a frame of the payload log: segment, frame offset, offset and length in the frame, visitor
)

// itemLoc is where an item's entry body is: inline in the record, or in a frame of the
// payload log (with the visitor kept in the record, so removing the item reads no payload).
type itemLoc struct {
	body     []byte // the inline entry body, when ref is false
	ref      bool
	seg, off uint64 // the frame
	inner, n uint64 // the entry body within the frame's decompressed bytes
	visitor  string
}

func appendItemHeader(b []byte, st itemState) []byte {
	b = append(b, kindItem, itemVersion)
	b = putUvarint(b, st.flags)
	b = putUvarint(b, uint64(max(st.attempts, 0)))
	b = putTime(b, st.firstAttempt)
	b = putUvarint(b, uint64(max(st.nextRequest, 0)))
	return b
}

// encodeEntryBody encodes the entry part of an item once, off the commit path; encodeItem
// prefixes it with a state header.
func encodeEntryBody(e *queue.Entry) []byte {
	return appendEntry(make([]byte, 0, entrySize(e)), e)
}

// encodeItem encodes an item value with its entry inline: header (kind, version), delivery
// state, entry.
func encodeItem(st itemState, entryBody []byte) []byte {
	return encodeItemLoc(st, itemLoc{body: entryBody})
}

// encodeItemLoc encodes an item value with its delivery state and the location of its entry.
func encodeItemLoc(st itemState, loc itemLoc) []byte {
	b := make([]byte, 0, 24+len(loc.body)+len(loc.visitor))
	b = appendItemHeader(b, st)
	if !loc.ref {
		b = append(b, locInline)
		return append(b, loc.body...)
	}
	b = append(b, locFrame)
	b = putUvarint(b, loc.seg)
	b = putUvarint(b, loc.off)
	b = putUvarint(b, loc.inner)
	b = putUvarint(b, loc.n)
	return putString(b, loc.visitor)
}

// encodeDeadLetter encodes a dead-letter value (its id is the key).
func encodeDeadLetter(at time.Time, f *queue.Failure, entryBody []byte) []byte {
	b := make([]byte, 0, 32+len(f.Reason)+len(f.Request)+len(f.Response)+len(entryBody))
	b = append(b, kindDeadLetter, deadLetterVersion)
	b = putTime(b, at)
	b = putString(b, f.Reason)
	b = putString(b, f.Request)
	b = putVarint(b, int64(f.Status))
	b = putString(b, f.Response)
	b = putVarint(b, int64(f.Attempts))
	return append(b, entryBody...)
}

// meta is the store-wide state rewritten in every batch that changes it.
type meta struct {
	lastSeq  uint64 // highest item sequence number ever assigned
	lastDead uint64 // highest dead-letter id ever assigned
	c        queue.Counters
}

// counterFields lists the counters in their stored order; encodeMeta and decodeMeta share it.
func counterFields(c *queue.Counters) []*int64 {
	return []*int64{&c.Received, &c.Delivered, &c.DeadLettered, &c.Filtered, &c.Queued, &c.Duplicates, &c.Replayed}
}

func encodeMeta(m *meta) []byte {
	b := make([]byte, 0, 2+10*9)
	b = append(b, kindMeta, metaVersion)
	b = putUvarint(b, m.lastSeq)
	b = putUvarint(b, m.lastDead)
	for _, p := range counterFields(&m.c) {
		b = putVarint(b, *p)
	}
	return b
}

// ---- decoding ----

// decoder reads fields in order; the first failure is kept in err and later reads are no-ops,
// so a caller checks err once at the end. It never panics and never allocates more than the
// input could hold.
type decoder struct {
	kind byte
	b    []byte
	off  int
	err  error
	// shared is set when b is never modified or reused (a frame of the payload log): bytes then
	// returns views of it instead of copies.
	shared bool
}

func (d *decoder) fail(field, format string, args ...any) {
	if d.err == nil {
		d.err = corruptf(d.kind, field, format, args...)
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) header(kind, version byte) {
	if d.remaining() < 2 {
		d.fail("header", "%d bytes, want at least 2", d.remaining())
		return
	}
	if d.b[0] != kind {
		d.err = fmt.Errorf("%w (expected a %s record, found kind %s)", ErrCorrupt, kindName(kind), kindName(d.b[0]))
		return
	}
	if d.b[1] != version {
		d.fail("version", "version %d is not supported by this build (it reads version %d); was the store written by a newer woorelay?", d.b[1], version)
		return
	}
	d.off = 2
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(field, "bad varint at offset %d", d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(field, "bad varint at offset %d", d.off)
		return 0
	}
	d.off += n
	return v
}

// int reads a uvarint that must fit a non-negative int.
func (d *decoder) int(field string) int {
	v := d.uvarint(field)
	if v > 1<<31-1 {
		d.fail(field, "value %d out of range", v)
		return 0
	}
	return int(v)
}

// sint reads a varint that must fit an int32.
func (d *decoder) sint(field string) int {
	v := d.varint(field)
	if v < -1<<31 || v > 1<<31-1 {
		d.fail(field, "value %d out of range", v)
		return 0
	}
	return int(v)
}

func (d *decoder) raw(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(d.remaining()) {
		d.fail(field, "length %d exceeds the %d bytes left", n, d.remaining())
		return nil
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *decoder) str(field string) string { return string(d.raw(field)) }

func (d *decoder) bytes(field string) []byte {
	p := d.raw(field)
	if len(p) == 0 {
		return nil
	}
	if d.shared {
		return p[:len(p):len(p)] // an append by the caller copies instead of writing into b
	}
	return append([]byte(nil), p...)
}

func (d *decoder) time(field string) time.Time {
	if d.err != nil {
		return time.Time{}
	}
	if d.remaining() < 1 {
		d.fail(field, "truncated")
		return time.Time{}
	}
	flag := d.b[d.off]
	d.off++
	switch flag {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, d.varint(field)).UTC()
	}
	d.fail(field, "bad time flag %d", flag)
	return time.Time{}
}

// count reads an element count, bounded by the bytes left (each element takes at least
// minSize bytes), so a corrupt count cannot cause a huge allocation.
func (d *decoder) count(field string, minSize int) int {
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if n > uint64(d.remaining()/minSize) {
		d.fail(field, "count %d cannot fit in the %d bytes left", n, d.remaining())
		return 0
	}
	return int(n)
}

func (d *decoder) entry(e *queue.Entry) {
	e.Source = d.str("source")
	e.MessageID = d.str("message_id")
	e.Visitor = d.str("visitor")
	e.Received = d.time("received")
	e.Event = d.bytes("event")
	o := d.uvarint("outcome")
	if d.err == nil && o > uint64(queue.Rejected) {
		d.fail("outcome", "unknown outcome %d", o)
	}
	e.Outcome = queue.Outcome(o)
	e.Reason = d.str("reason")
	n := d.count("requests", 3)
	if n > 0 {
		e.Requests = make([]queue.Request, n)
		for i := range e.Requests {
			r := &e.Requests[i]
			r.Method = d.str("request.method")
			r.URL = d.str("request.url")
			nh := d.count("request.headers", 2)
			if nh > 0 {
				r.Headers = make([]queue.Header, nh)
				for j := range r.Headers {
					r.Headers[j].Name = d.str("header.name")
					r.Headers[j].Value = d.str("header.value")
				}
			}
			if d.err != nil {
				break
			}
		}
	}
}

func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail("end", "%d unexpected trailing bytes", len(d.b)-d.off)
	}
}

// decodeItemState reads an item's header, state and the location of its entry.
func decodeItemState(b []byte) (itemState, itemLoc, error) {
	d := decoder{kind: kindItem, b: b}
	version := itemVersion
	if len(b) >= 2 && b[0] == kindItem && b[1] == itemVersion1 {
		version = itemVersion1
	}
	d.header(kindItem, byte(version))
	var st itemState
	st.flags = d.uvarint("flags")
	st.attempts = d.int("attempts")
	st.firstAttempt = d.time("first_attempt")
	st.nextRequest = d.int("next_request")
	if d.err != nil {
		return itemState{}, itemLoc{}, d.err
	}
	if version == itemVersion1 {
		return st, itemLoc{body: b[d.off:]}, nil
	}
	if d.remaining() < 1 {
		return itemState{}, itemLoc{}, corruptf(kindItem, "location", "truncated")
	}
	where := b[d.off]
	d.off++
	switch where {
	case locInline:
		return st, itemLoc{body: b[d.off:]}, nil
	case locFrame:
		loc := itemLoc{ref: true}
		loc.seg = d.uvarint("location.segment")
		loc.off = d.uvarint("location.frame")
		loc.inner = d.uvarint("location.offset")
		loc.n = d.uvarint("location.length")
		loc.visitor = d.str("location.visitor")
		d.end()
		if d.err != nil {
			return itemState{}, itemLoc{}, d.err
		}
		return st, loc, nil
	}
	return itemState{}, itemLoc{}, corruptf(kindItem, "location", "unknown location kind %d", where)
}

// decodeItem decodes an item value whose entry is inline; seq comes from its key.
func decodeItem(seq uint64, b []byte) (queue.Item, error) {
	return decodeItemWith(seq, b, nil)
}

// decodeItemWith decodes an item value; seq comes from its key, and body reads an entry kept in
// the payload log (nil: such an item is an error).
func decodeItemWith(seq uint64, b []byte, body func(itemLoc) ([]byte, error)) (queue.Item, error) {
	st, loc, err := decodeItemState(b)
	if err != nil {
		return queue.Item{}, err
	}
	raw := loc.body
	if loc.ref {
		if body == nil {
			return queue.Item{}, corruptf(kindItem, "location", "the entry is in the payload log")
		}
		if raw, err = body(loc); err != nil {
			return queue.Item{}, err
		}
	}
	it := queue.Item{Seq: seq, Attempts: st.attempts, FirstAttempt: st.firstAttempt, NextRequest: st.nextRequest}
	// A frame's bytes are never modified, so the entry's event is a view of them (the frame
	// stays in memory while the item is held; delivery drops the event once it is mapped).
	d := decoder{kind: kindItem, b: raw, shared: loc.ref}
	d.entry(&it.Entry)
	d.end()
	if d.err != nil {
		return queue.Item{}, d.err
	}
	if loc.ref && it.Entry.Visitor != loc.visitor {
		return queue.Item{}, corruptf(kindItem, "location", "the payload's visitor %q is not the record's %q", it.Entry.Visitor, loc.visitor)
	}
	return it, nil
}

// decodeItemVisitor reads only what deleting an item needs: its state and visitor.
func decodeItemVisitor(b []byte) (itemState, string, error) {
	st, loc, err := decodeItemState(b)
	if err != nil {
		return itemState{}, "", err
	}
	if loc.ref {
		return st, loc.visitor, nil
	}
	d := decoder{kind: kindItem, b: loc.body}
	d.raw("source")
	d.raw("message_id")
	v := d.str("visitor")
	return st, v, d.err
}

// decodeDeadLetter decodes a dead-letter value; id comes from its key. It also returns the raw
// entry bytes, which Replay reuses when no remap changes the entry.
func decodeDeadLetter(id uint64, b []byte) (queue.DeadLetter, []byte, error) {
	d := decoder{kind: kindDeadLetter, b: b}
	d.header(kindDeadLetter, deadLetterVersion)
	dl := queue.DeadLetter{ID: id}
	dl.At = d.time("at")
	dl.Failure.Reason = d.str("failure.reason")
	dl.Failure.Request = d.str("failure.request")
	dl.Failure.Status = d.sint("failure.status")
	dl.Failure.Response = d.str("failure.response")
	dl.Failure.Attempts = d.sint("failure.attempts")
	if d.err != nil {
		return queue.DeadLetter{}, nil, d.err
	}
	body := b[d.off:]
	d.entry(&dl.Entry)
	d.end()
	if d.err != nil {
		return queue.DeadLetter{}, nil, d.err
	}
	return dl, body, nil
}

func decodeMeta(b []byte) (meta, error) {
	d := decoder{kind: kindMeta, b: b}
	d.header(kindMeta, metaVersion)
	var m meta
	m.lastSeq = d.uvarint("last_seq")
	m.lastDead = d.uvarint("last_dead")
	for _, p := range counterFields(&m.c) {
		*p = d.varint("counters")
	}
	d.end()
	if d.err != nil {
		return meta{}, d.err
	}
	return m, nil
}
