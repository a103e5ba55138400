package jetstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// Message bodies: a kind byte, a version byte, then fields as uvarint-length-prefixed bytes
// or varints. Entries are what the items stream holds, dead letters what the dead-letter
// stream holds, states (attempts, first failure, next request) what the state bucket holds.
const (
	kindEntry      = 'e'
	kindDeadLetter = 'd'
	kindState      = 's'
	codecVersion   = 1
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("queue/jetstream: corrupt record")

func putBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendEntry(b []byte, e *queue.Entry) []byte {
	b = putString(b, e.Source)
	b = putString(b, e.MessageID)
	b = putString(b, e.Visitor)
	b = putTime(b, e.Received)
	b = putBytes(b, e.Event)
	b = append(b, byte(e.Outcome))
	b = putString(b, e.Reason)
	b = binary.AppendUvarint(b, uint64(len(e.Requests)))
	for _, r := range e.Requests {
		b = putString(b, r.Method)
		b = putString(b, r.URL)
		b = binary.AppendUvarint(b, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			b = putString(b, h.Name)
			b = putString(b, h.Value)
		}
	}
	return b
}

func encodeEntry(e *queue.Entry) []byte {
	return appendEntry([]byte{kindEntry, codecVersion}, e)
}

func encodeDeadLetter(at time.Time, f queue.Failure, e *queue.Entry) []byte {
	b := []byte{kindDeadLetter, codecVersion}
	b = putTime(b, at)
	b = putString(b, f.Reason)
	b = putString(b, f.Request)
	b = binary.AppendVarint(b, int64(f.Status))
	b = putString(b, f.Response)
	b = binary.AppendVarint(b, int64(f.Attempts))
	return appendEntry(b, e)
}

// state is an item's delivery state, kept in the state bucket once it differs from new.
type state struct {
	Attempts     int
	FirstAttempt time.Time
	NextRequest  int
}

func encodeState(s state) []byte {
	b := []byte{kindState, codecVersion}
	b = binary.AppendVarint(b, int64(s.Attempts))
	b = putTime(b, s.FirstAttempt)
	return binary.AppendVarint(b, int64(s.NextRequest))
}

// decoder reads fields and remembers the first error, naming the field.
type decoder struct {
	b    []byte
	what string
	err  error
}

func newDecoder(b []byte, kind byte, what string) *decoder {
	d := &decoder{b: b, what: what}
	if len(b) < 2 || b[0] != kind {
		d.fail("header")
	} else if b[1] != codecVersion {
		d.err = fmt.Errorf("%w (%s): version %d, this relay reads %d (hint: run the same woorelay version on every instance)", errCorrupt, what, b[1], codecVersion)
	} else {
		d.b = b[2:]
	}
	return d
}

func (d *decoder) fail(field string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w (%s): field %s", errCorrupt, d.what, field)
	}
	d.b = nil
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(field)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(field string) string { return string(d.bytes(field)) }

func (d *decoder) time(field string) time.Time {
	v := d.varint(field)
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *decoder) entry() queue.Entry {
	var e queue.Entry
	e.Source = d.string("source")
	e.MessageID = d.string("message id")
	e.Visitor = d.string("visitor")
	e.Received = d.time("received")
	if ev := d.bytes("event"); len(ev) > 0 {
		e.Event = append([]byte(nil), ev...)
	}
	if d.err == nil {
		if len(d.b) == 0 {
			d.fail("outcome")
		} else {
			e.Outcome = queue.Outcome(d.b[0])
			d.b = d.b[1:]
		}
	}
	e.Reason = d.string("reason")
	n := d.uvarint("requests")
	if n > uint64(len(d.b)) {
		d.fail("requests")
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := queue.Request{Method: d.string("method"), URL: d.string("url")}
		hn := d.uvarint("headers")
		if hn > uint64(len(d.b)) {
			d.fail("headers")
		}
		for j := uint64(0); j < hn && d.err == nil; j++ {
			r.Headers = append(r.Headers, queue.Header{Name: d.string("header name"), Value: d.string("header value")})
		}
		e.Requests = append(e.Requests, r)
	}
	return e
}

func decodeEntry(b []byte, what string) (queue.Entry, error) {
	d := newDecoder(b, kindEntry, what)
	e := d.entry()
	return e, d.err
}

func decodeDeadLetter(id uint64, b []byte) (queue.DeadLetter, error) {
	d := newDecoder(b, kindDeadLetter, fmt.Sprintf("dead letter %d", id))
	dl := queue.DeadLetter{ID: id, At: d.time("at")}
	dl.Failure.Reason = d.string("reason")
	dl.Failure.Request = d.string("request")
	dl.Failure.Status = int(d.varint("status"))
	dl.Failure.Response = d.string("response")
	dl.Failure.Attempts = int(d.varint("attempts"))
	dl.Entry = d.entry()
	return dl, d.err
}

func decodeState(b []byte, what string) (state, error) {
	d := newDecoder(b, kindState, what)
	s := state{Attempts: int(d.varint("attempts")), FirstAttempt: d.time("first attempt"), NextRequest: int(d.varint("next request"))}
	return s, d.err
}
