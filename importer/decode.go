package importer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
)

// timeLayout is how the importer writes a timestamp it computed (as the SDKs do).
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// decoded is one event read from an archive, ready to send.
type decoded struct {
	event []byte    // the event as it will be sent
	at    time.Time // its time (zero: none could be read)
}

// decodeLine returns the events of one archive line: the line itself, or, for a RudderStack
// record, its payload (one event, or the events of a gateway batch). Each event gets a
// timestamp (the archive's, or one computed as the pipeline that archived it would have), an
// originalTimestamp (so the relay keeps that timestamp instead of correcting it against the
// import's clock) and a messageId (derived from id when it has none: the same on every run).
func decodeLine(line []byte, id string, out []decoded) ([]decoded, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return out, nil
	}
	if !gjson.ValidBytes(line) || line[0] != '{' {
		return out, fmt.Errorf("not a JSON object")
	}
	root := readTop(gjson.ParseBytes(line))
	if !root.payload.IsObject() || !root.createdAt.Exists() {
		ev, at, err := normalise(line, root, "", "", id)
		return append(out, decoded{ev, at}), err
	}
	// A RudderStack archive record: the gateway's job payload.
	created := root.createdAt.String()
	payload := readTop(root.payload)
	ip := payload.requestIP.String()
	batch := payload.batch
	if !batch.IsArray() {
		ev, at, err := normalise([]byte(root.payload.Raw), payload, created, ip, id)
		return append(out, decoded{ev, at}), err
	}
	recv := payload.receivedAt.String()
	if recv == "" {
		recv = created
	}
	var err error
	i := 0
	batch.ForEach(func(_, e gjson.Result) bool {
		if !e.IsObject() {
			err = fmt.Errorf("batch[%d] is not an object", i)
			return false
		}
		var ev []byte
		var at time.Time
		ev, at, err = normalise([]byte(e.Raw), readTop(e), recv, ip, id+"#"+strconv.Itoa(i))
		out = append(out, decoded{ev, at})
		i++
		return err == nil
	})
	return out, err
}

// topFields are the members of an event (or of a RudderStack record or payload) the importer
// reads, found in one pass over the object.
type topFields struct {
	payload, createdAt, batch, requestIP                        gjson.Result
	timestamp, originalTimestamp, sentAt, receivedAt, messageId gjson.Result
	context                                                     gjson.Result
}

// readTop reads the members of v that topFields holds (the first of each name).
func readTop(v gjson.Result) topFields {
	var t topFields
	v.ForEach(func(k, val gjson.Result) bool {
		var dst *gjson.Result
		switch k.Str {
		case "payload":
			dst = &t.payload
		case "createdAt":
			dst = &t.createdAt
		case "batch":
			dst = &t.batch
		case "requestIP":
			dst = &t.requestIP
		case "timestamp":
			dst = &t.timestamp
		case "originalTimestamp":
			dst = &t.originalTimestamp
		case "sentAt":
			dst = &t.sentAt
		case "receivedAt":
			dst = &t.receivedAt
		case "messageId":
			dst = &t.messageId
		case "context":
			dst = &t.context
		default:
			return true
		}
		if !dst.Exists() {
			*dst = val
		}
		return true
	})
	return t
}

// eventTime reads an event's time as the relay would settle it: timestamp; else
// receivedAt − (sentAt − originalTimestamp) when all three are known (the clock-skew
// correction Segment and RudderStack apply); else originalTimestamp; else the time it was
// received (recv, the archive's, when the event has no receivedAt).
func eventTime(ev topFields, recv string) (at time.Time, computed bool) {
	if t, ok := parseTime(ev.timestamp); ok {
		return t, false
	}
	orig, okOrig := parseTime(ev.originalTimestamp)
	r := ev.receivedAt
	if !r.Exists() {
		r = gjson.Parse(strconv.Quote(recv))
	}
	rt, okRecv := parseTime(r)
	if sent, ok := parseTime(ev.sentAt); ok && okOrig && okRecv {
		return rt.Add(-sent.Sub(orig)), true
	}
	if okOrig {
		return orig, true
	}
	if okRecv {
		return rt, true
	}
	return time.Time{}, false
}

// parseTime reads an ISO-8601 time or a Unix time in seconds or milliseconds.
func parseTime(v gjson.Result) (time.Time, bool) {
	switch v.Type {
	case gjson.String:
		for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
			if t, err := time.Parse(l, v.Str); err == nil {
				return t, true
			}
		}
	case gjson.Number:
		n := v.Int()
		if n > 1e11 {
			return time.UnixMilli(n), true
		}
		if n > 0 {
			return time.Unix(n, 0), true
		}
	}
	return time.Time{}, false
}

// normalise returns ev ready to send (see decodeLine) and its time. An event that already has
// a timestamp, an originalTimestamp and a messageId is returned as it is. ip, when not empty, is
// the address the archive recorded for the request (RudderStack's requestIP): it becomes the
// event's context.ip when the event has none, as RudderStack's processor does, instead of
// the relay taking the importer's address.
func normalise(raw []byte, ev topFields, recv, ip, id string) ([]byte, time.Time, error) {
	if ip != "" && ev.context.Get("ip").String() == "" {
		// Offsets from GetBytes on raw itself: a Result taken from a larger document counts
		// them from that document's start.
		if ctx := gjson.GetBytes(raw, "context"); ctx.IsObject() && ctx.Index > 0 && !ctx.Get("ip").Exists() {
			sep := ","
			if len(ctx.Map()) == 0 {
				sep = ""
			}
			raw = slices.Concat(raw[:ctx.Index+1], []byte(`"ip":`+strconv.Quote(ip)+sep), raw[ctx.Index+1:])
		} else if !ctx.Exists() {
			raw = appendMembers(raw, `"context":{"ip":`+strconv.Quote(ip)+`}`)
		}
		ev = readTop(gjson.ParseBytes(raw))
	}
	at, computed := eventTime(ev, recv)
	var add []string // "key":value pairs to add
	if computed {
		add = append(add, `"timestamp":`+strconv.Quote(at.UTC().Format(timeLayout)))
	}
	if !ev.originalTimestamp.Exists() && !at.IsZero() {
		add = append(add, `"originalTimestamp":`+strconv.Quote(at.UTC().Format(timeLayout)))
	}
	if mid := ev.messageId; mid.Type != gjson.String || mid.Str == "" {
		if mid.Type == gjson.Number {
			add = append(add, `"messageId":`+strconv.Quote(mid.Raw))
		} else {
			sum := sha256.Sum256([]byte(id))
			add = append(add, `"messageId":"import-`+hex.EncodeToString(sum[:12])+`"`)
		}
	}
	if len(add) == 0 {
		return raw, at, nil
	}
	// Keys that are present with another kind of value (null, a number) are replaced; keys
	// that are absent are appended before the closing brace.
	for k, v := range map[string]gjson.Result{"timestamp": ev.timestamp, "originalTimestamp": ev.originalTimestamp, "messageId": ev.messageId} {
		if v.Exists() && addsKey(add, k) {
			return rewrite(raw, add, at)
		}
	}
	return appendMembers(raw, add...), at, nil
}

// appendMembers adds "key":value pairs at the end of a JSON object.
func appendMembers(raw []byte, kvs ...string) []byte {
	out := make([]byte, 0, len(raw)+64)
	body := bytes.TrimRight(raw, " \t\r\n")
	out = append(out, body[:len(body)-1]...)
	empty := len(bytes.TrimSpace(body[1:len(body)-1])) == 0
	for i, kv := range kvs {
		if i > 0 || !empty {
			out = append(out, ',')
		}
		out = append(out, kv...)
	}
	return append(out, '}')
}

// addsKey reports whether add sets key.
func addsKey(add []string, key string) bool {
	for _, kv := range add {
		if len(kv) > len(key)+2 && kv[1:len(key)+1] == key && kv[len(key)+1] == '"' {
			return true
		}
	}
	return false
}

// rewrite sets the pairs of add in raw through a decode and an encode of its top level.
func rewrite(raw []byte, add []string, at time.Time) ([]byte, time.Time, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, at, err
	}
	for _, kv := range add {
		var one map[string]json.RawMessage
		if err := json.Unmarshal([]byte("{"+kv+"}"), &one); err != nil {
			return nil, at, err
		}
		for k, v := range one {
			m[k] = v
		}
	}
	out, err := json.Marshal(m)
	return out, at, err
}
