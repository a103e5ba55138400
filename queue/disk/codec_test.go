package disk

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

func codecEntries() map[string]queue.Entry {
	return map[string]queue.Entry{
		"empty":    {},
		"deliver":  entry("web", "m-1", "v-1", queue.Deliver, 1200),
		"rejected": entry("web", "m-2", "", queue.Rejected, 100),
		"several requests": {
			Source: "s", MessageID: "id", Visitor: "v", Received: time.Unix(0, 1).UTC(),
			Event:   []byte(`{}`),
			Outcome: queue.Deliver,
			Requests: []queue.Request{
				{Method: "GET", URL: "https://www.woopra.com/track/identify?x=1"},
				{Method: "GET", URL: "https://www.woopra.com/track/ce?y=é", Headers: []queue.Header{{Name: "A"}, {Value: "b"}, {Name: "User-Agent", Value: "ua"}}},
			},
		},
		"binary and unicode": {Source: "\x00\xff", MessageID: "✓", Visitor: "\n", Event: []byte{0, 1, 2, 255}, Reason: "r"},
		"pre-1970":           {Received: time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC)},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for name, e := range codecEntries() {
		t.Run(name, func(t *testing.T) {
			st := itemState{flags: itemFlagRewritten, attempts: 3, firstAttempt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), nextRequest: 1}
			got, err := decodeItem(42, encodeItem(st, encodeEntryBody(&e)))
			if err != nil {
				t.Fatalf("decodeItem: %v", err)
			}
			want := queue.Item{Seq: 42, Entry: e, Attempts: 3, FirstAttempt: st.firstAttempt, NextRequest: 1}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("item round trip:\n got %+v\nwant %+v", got, want)
			}
			st2, visitor, err := decodeItemVisitor(encodeItem(st, encodeEntryBody(&e)))
			if err != nil || visitor != e.Visitor || st2 != st {
				t.Fatalf("decodeItemVisitor = %+v, %q, %v", st2, visitor, err)
			}

			f := queue.Failure{Reason: "woopra answered 403 Forbidden", Request: "GET https://x", Status: 403, Response: "no", Attempts: 2}
			at := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
			dl, body, err := decodeDeadLetter(7, encodeDeadLetter(at, &f, encodeEntryBody(&e)))
			if err != nil {
				t.Fatalf("decodeDeadLetter: %v", err)
			}
			if want := (queue.DeadLetter{ID: 7, At: at, Entry: e, Failure: f}); !reflect.DeepEqual(dl, want) {
				t.Fatalf("dead letter round trip:\n got %+v\nwant %+v", dl, want)
			}
			if string(body) != string(encodeEntryBody(&e)) {
				t.Fatalf("dead letter entry bytes differ from the encoded entry")
			}
		})
	}
	m := meta{lastSeq: 1 << 60, lastDead: 3, c: queue.Counters{Received: 10, Delivered: 4, DeadLettered: 1, Filtered: 2, Queued: 3, Duplicates: 9, Replayed: -1}}
	if got, err := decodeMeta(encodeMeta(&m)); err != nil || got != m {
		t.Fatalf("meta round trip = %+v, %v; want %+v", got, err, m)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	e := entry("web", "m-1", "v-1", queue.Deliver, 300)
	good := encodeItem(itemState{}, encodeEntryBody(&e))
	withByte := func(i int, b byte) []byte {
		c := append([]byte(nil), good...)
		c[i] = b
		return c
	}
	// The requests count sits right after the reason; find it by encoding a prefix.
	countAt := len(encodeItem(itemState{}, nil)) + len(appendEntry(nil, &queue.Entry{Source: e.Source, MessageID: e.MessageID, Visitor: e.Visitor, Received: e.Received, Event: e.Event, Reason: e.Reason})) - 1
	tests := []struct {
		name  string
		value []byte
		want  string // in the error message
	}{
		{"empty", nil, "header"},
		{"one byte", []byte{kindItem}, "header"},
		{"wrong kind", withByte(0, kindDeadLetter), "expected a item record, found kind dead-letter"},
		{"newer version", withByte(1, 9), "version 9 is not supported"},
		{"truncated", good[:len(good)-3], "header.value"},
		{"trailing bytes", append(append([]byte(nil), good...), 1, 2), "trailing bytes"},
		{"huge request count", append(append([]byte(nil), good[:countAt]...), 0xff, 0xff, 0xff, 0x7f), "count"},
		{"bad varint", append(append([]byte(nil), good[:2]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "bad varint"},
		{"bad time flag", append([]byte{kindItem, itemVersion, 0, 0, 7}, good[5:]...), "bad time flag"},
		{"unknown outcome", encodeItem(itemState{}, encodeEntryBody(&queue.Entry{Outcome: 7})), "unknown outcome 7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeItem(1, tc.value)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeItem error = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if _, err := decodeMeta([]byte{kindMeta, metaVersion, 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated meta: %v", err)
	}
	if _, _, err := decodeDeadLetter(1, good); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("item decoded as a dead letter: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic or allocate beyond its
// input, and whatever decodes must encode back to a value that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	for _, e := range codecEntries() {
		f.Add(encodeItem(itemState{attempts: 2, firstAttempt: time.Unix(5, 0)}, encodeEntryBody(&e)))
		f.Add(encodeDeadLetter(time.Unix(9, 0), &queue.Failure{Reason: "r", Status: 500}, encodeEntryBody(&e)))
	}
	f.Add(encodeMeta(&meta{lastSeq: 5, c: queue.Counters{Received: 5, Queued: 5}}))
	f.Add([]byte{kindItem, itemVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if it, err := decodeItem(1, b); err == nil {
			st := itemState{attempts: it.Attempts, firstAttempt: it.FirstAttempt, nextRequest: it.NextRequest}
			st0, _, _ := decodeItemState(b)
			st.flags = st0.flags
			again, err := decodeItem(1, encodeItem(st, encodeEntryBody(&it.Entry)))
			if err != nil || !reflect.DeepEqual(again, it) {
				t.Fatalf("item re-encoding differs: %+v vs %+v (%v)", again, it, err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("item error does not wrap ErrCorrupt: %v", err)
		}
		if dl, _, err := decodeDeadLetter(1, b); err == nil {
			again, _, err := decodeDeadLetter(1, encodeDeadLetter(dl.At, &dl.Failure, encodeEntryBody(&dl.Entry)))
			if err != nil || !reflect.DeepEqual(again, dl) {
				t.Fatalf("dead letter re-encoding differs: %+v vs %+v (%v)", again, dl, err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("dead letter error does not wrap ErrCorrupt: %v", err)
		}
		if m, err := decodeMeta(b); err == nil {
			if again, err := decodeMeta(encodeMeta(&m)); err != nil || again != m {
				t.Fatalf("meta re-encoding differs")
			}
		}
		_, _, _ = decodeItemVisitor(b)
	})
}
