package server

import (
	"fmt"
	"net/http"
	"unicode/utf8"
)

// field names a member of an event (or of a batch wrapper) that the edge reads or rewrites.
type field uint8

const (
	fNone field = iota
	fType
	fMessageID
	fUserID
	fAnonymousID
	fTimestamp
	fOriginalTimestamp
	fSentAt
	fReceivedAt
	fContext
	fIntegrations
	fWriteKey
	fBatch
	nFields
)

// fieldOf maps a raw (unescaped) member name to its field; the switch on string(key) does
// not allocate.
func fieldOf(key []byte) field {
	switch string(key) {
	case "type":
		return fType
	case "messageId":
		return fMessageID
	case "userId":
		return fUserID
	case "anonymousId":
		return fAnonymousID
	case "timestamp":
		return fTimestamp
	case "originalTimestamp":
		return fOriginalTimestamp
	case "sentAt":
		return fSentAt
	case "receivedAt":
		return fReceivedAt
	case "context":
		return fContext
	case "integrations":
		return fIntegrations
	case "writeKey":
		return fWriteKey
	case "batch":
		return fBatch
	}
	return fNone
}

// member is one "key": value pair of a recorded object, as offsets into the body.
type member struct {
	keyStart, valStart, valEnd int
	f                          field
}

// object is a recorded JSON object: its span, its members (a range of parser.members) and,
// per known field, 1 + the index of its first member (0 when absent; the first duplicate wins,
// as everywhere in the mapping engine).
type object struct {
	start, end   int
	memLo, memHi int
	at           [nFields]int32
}

// reqError is a problem that fails the whole request.
type reqError struct {
	status int
	code   string
	msg    string
}

func (e *reqError) Error() string { return e.code + ": " + e.msg }

// parser validates a body in one pass — syntax, UTF-8, nesting depth, per-event size and the
// event count — and records the members of the event objects (and of the batch wrapper) so
// the edge can normalise events without parsing them again.
type parser struct {
	data          []byte
	pos           int
	maxDepth      int
	maxEventBytes int
	maxEvents     int
	members       []member // members of the events, in order
	rootMembers   []member // members of the batch wrapper
	events        []object
	root          object
	err           *reqError
}

func (p *parser) reset(data []byte, l *Limits) {
	p.data = data
	p.pos = 0
	p.maxDepth = l.MaxDepth
	p.maxEventBytes = l.MaxEventBytes
	p.maxEvents = l.MaxBatchEvents
	p.members = p.members[:0]
	p.rootMembers = p.rootMembers[:0]
	p.events = p.events[:0]
	p.root = object{}
	p.err = nil
}

func (p *parser) fail(status int, code, format string, args ...any) bool {
	if p.err == nil {
		p.err = &reqError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
	}
	return false
}

func (p *parser) syntax(what string) bool {
	if p.pos >= len(p.data) {
		return p.fail(http.StatusBadRequest, "invalid_json", "invalid JSON at byte %d: unexpected end of input, %s; send one complete JSON document", p.pos, what)
	}
	return p.fail(http.StatusBadRequest, "invalid_json", "invalid JSON at byte %d: unexpected %s, %s", p.pos, describeByte(p.data[p.pos]), what)
}

func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) end() bool {
	p.ws()
	if p.pos != len(p.data) {
		return p.syntax("want the end of the body after the JSON object")
	}
	return true
}

// parseEvent parses a body that is one event object.
func (p *parser) parseEvent() bool {
	p.ws()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		if p.pos < len(p.data) && p.value(0) {
			return p.fail(http.StatusBadRequest, "not_an_object", "the body is a JSON %s; send one event as a JSON object", kindOf(p.data[p.pos-1]))
		}
		return p.syntax("want a JSON object")
	}
	var ev object
	if !p.object(1, &ev) {
		return false
	}
	p.events = append(p.events, ev)
	return p.end()
}

// parseBatch parses a batch wrapper {"batch":[...], ...}: the wrapper's members are recorded
// in root, each element of the first batch array in events.
func (p *parser) parseBatch() bool {
	p.ws()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		if p.pos < len(p.data) && p.value(0) {
			return p.fail(http.StatusBadRequest, "not_an_object", `the body is a JSON %s; send {"batch":[...]}`, kindOf(p.data[p.pos-1]))
		}
		return p.syntax(`want a JSON object {"batch":[...]}`)
	}
	if !p.object(1, &p.root) {
		return false
	}
	return p.end()
}

func kindOf(last byte) string {
	switch last {
	case '}':
		return "object"
	case ']':
		return "array"
	case '"':
		return "string"
	case 'e', 'l':
		return "literal"
	}
	return "number"
}

// value parses any JSON value at the given depth of its parent.
func (p *parser) value(depth int) bool {
	p.ws()
	if p.pos >= len(p.data) {
		return p.syntax("want a value")
	}
	switch c := p.data[p.pos]; c {
	case '{':
		return p.object(depth+1, nil)
	case '[':
		return p.array(depth + 1)
	case '"':
		_, ok := p.str()
		return ok
	case 't':
		return p.lit("true")
	case 'f':
		return p.lit("false")
	case 'n':
		return p.lit("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.number()
		}
		return p.syntax("want a value")
	}
}

func (p *parser) tooDeep() bool {
	return p.fail(http.StatusBadRequest, "too_deep", "JSON nested deeper than %d levels at byte %d; flatten the properties", p.maxDepth, p.pos)
}

// object parses an object whose opening brace is at p.pos. When rec is not nil its members
// are recorded; at depth 1 of a batch body the batch array's elements are recorded as events.
func (p *parser) object(depth int, rec *object) bool {
	if depth > p.maxDepth {
		return p.tooDeep()
	}
	start := p.pos
	p.pos++ // {
	list := &p.members
	if rec == &p.root {
		list = &p.rootMembers
	}
	if rec != nil {
		rec.start = start
		rec.memLo = len(*list)
	}
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		if rec != nil {
			rec.end, rec.memHi = p.pos, len(*list)
		}
		return true
	}
	for {
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.syntax("want a member name in double quotes")
		}
		keyStart := p.pos
		escaped, ok := p.str()
		if !ok {
			return false
		}
		keyEnd := p.pos
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.syntax("want ':' after the member name")
		}
		p.pos++
		p.ws()
		valStart := p.pos
		f := fNone
		if rec != nil && !escaped {
			f = fieldOf(p.data[keyStart+1 : keyEnd-1])
		}
		if f == fBatch && rec == &p.root && rec.at[fBatch] == 0 {
			if !p.batchArray() {
				return false
			}
		} else if !p.value(depth) {
			return false
		}
		if rec != nil {
			*list = append(*list, member{keyStart: keyStart, valStart: valStart, valEnd: p.pos, f: f})
			if f != fNone && rec.at[f] == 0 {
				rec.at[f] = int32(len(*list) - rec.memLo)
			}
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("want ',' or '}'")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			if rec != nil {
				rec.end, rec.memHi = p.pos, len(*list)
			}
			return true
		default:
			return p.syntax("want ',' or '}'")
		}
	}
}

// batchArray parses the wrapper's batch array, recording each element as an event. Events
// nest two levels below the wrapper, so their depth is counted from their own brace.
func (p *parser) batchArray() bool {
	if p.pos >= len(p.data) || p.data[p.pos] != '[' {
		if p.pos < len(p.data) && p.value(1) {
			return p.fail(http.StatusBadRequest, "invalid_batch", `"batch" is a JSON %s; send an array of event objects`, kindOf(p.data[p.pos-1]))
		}
		return p.syntax(`want the "batch" array`)
	}
	p.pos++
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return true
	}
	for i := 0; ; i++ {
		if i >= p.maxEvents {
			return p.fail(http.StatusRequestEntityTooLarge, "too_many_events", "the batch has more than %d events; send at most %d per request", p.maxEvents, p.maxEvents)
		}
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != '{' {
			at := p.pos
			if p.pos < len(p.data) && p.value(2) {
				return p.fail(http.StatusBadRequest, "not_an_object", "batch[%d] (byte %d) is a JSON %s; every batch element must be an event object", i, at, kindOf(p.data[p.pos-1]))
			}
			return p.syntax(fmt.Sprintf("want event object batch[%d]", i))
		}
		var ev object
		if !p.object(1, &ev) {
			if p.err != nil && p.err.code != "too_many_events" {
				p.err.msg = fmt.Sprintf("batch[%d]: %s", i, p.err.msg)
			}
			return false
		}
		if n := ev.end - ev.start; n > p.maxEventBytes {
			return p.fail(http.StatusRequestEntityTooLarge, "event_too_large", "batch[%d] is %d bytes, over the limit of %d bytes per event; trim its properties", i, n, p.maxEventBytes)
		}
		p.events = append(p.events, ev)
		if more, ok := p.arrayNext(); !more {
			return ok
		}
	}
}

func (p *parser) array(depth int) bool {
	if depth > p.maxDepth {
		return p.tooDeep()
	}
	p.pos++ // [
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return true
	}
	for {
		if !p.value(depth) {
			return false
		}
		if more, ok := p.arrayNext(); !more {
			return ok
		}
	}
}

// arrayNext consumes what follows an array element: a comma (more is true) or the closing
// bracket (more is false, ok true); anything else is a syntax error (ok false).
func (p *parser) arrayNext() (more, ok bool) {
	p.ws()
	if p.pos >= len(p.data) {
		return false, p.syntax("want ',' or ']'")
	}
	switch p.data[p.pos] {
	case ',':
		p.pos++
		return true, true
	case ']':
		p.pos++
		return false, true
	}
	return false, p.syntax("want ',' or ']'")
}

// strSafe marks the bytes a string may hold without further checks.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str parses a string whose opening quote is at p.pos and reports whether it holds escapes.
func (p *parser) str() (escaped, ok bool) {
	d := p.data
	i := p.pos + 1
	for {
		for i < len(d) && strSafe[d[i]] {
			i++
		}
		if i >= len(d) {
			p.pos = i
			return false, p.syntax("want the closing '\"' of the string")
		}
		switch c := d[i]; {
		case c == '"':
			p.pos = i + 1
			return escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				p.pos = i + 1
				return false, p.syntax("want an escape character")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					p.pos = i
					return false, p.fail(http.StatusBadRequest, "invalid_json", `invalid JSON at byte %d: \u must be followed by four hex digits`, i)
				}
				i += 6
			default:
				p.pos = i + 1
				return false, p.syntax("want a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)")
			}
		case c < 0x20:
			p.pos = i
			return false, p.syntax("control characters must be escaped inside strings")
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				return false, p.fail(http.StatusBadRequest, "invalid_utf8", "invalid UTF-8 at byte %d; send text encoded as UTF-8", i)
			}
			i += size
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (p *parser) lit(word string) bool {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.syntax("want a value")
	}
	p.pos += len(word)
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *parser) number() bool {
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	if p.pos >= len(d) || !isDigit(d[p.pos]) {
		return p.syntax("want a digit")
	}
	if d[p.pos] == '0' {
		p.pos++
	} else {
		for p.pos < len(d) && isDigit(d[p.pos]) {
			p.pos++
		}
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if p.pos >= len(d) || !isDigit(d[p.pos]) {
			return p.syntax("want a digit after '.'")
		}
		for p.pos < len(d) && isDigit(d[p.pos]) {
			p.pos++
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if p.pos >= len(d) || !isDigit(d[p.pos]) {
			return p.syntax("want a digit in the exponent")
		}
		for p.pos < len(d) && isDigit(d[p.pos]) {
			p.pos++
		}
	}
	return true
}

// get returns the first member of event o with field f.
func (p *parser) get(o *object, f field) (member, bool) {
	i := o.at[f]
	if i == 0 {
		return member{}, false
	}
	return p.members[o.memLo+int(i)-1], true
}

// rootGet returns the first member of the batch wrapper with field f.
func (p *parser) rootGet(f field) (member, bool) {
	i := p.root.at[f]
	if i == 0 {
		return member{}, false
	}
	return p.rootMembers[int(i)-1], true
}
