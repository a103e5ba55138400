package disk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/woorelay/woorelay/queue"
)

// segmentFiles lists the payload log's segment files of the store in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, segmentsDir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// dropCache empties the frame cache, so the next reads go to the files.
func dropCache(s *segmentLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.cache)
	s.order, s.cached = nil, 0
}

// waitSegments waits until the store in dir has n segment files (the reclaimer deletes them in
// the background; the deadline only stops a broken test).
func waitSegments(t testing.TB, dir string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); len(segmentFiles(t, dir)) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d segment files, want %d: %v", len(segmentFiles(t, dir)), n, segmentFiles(t, dir))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appendCalls appends calls Append calls of per entries each (visitor v<call>).
func appendCalls(t *testing.T, q *Queue, prefix string, calls, per, payload int) {
	t.Helper()
	for i := range calls {
		batch := make([]queue.Entry, per)
		for j := range batch {
			batch[j] = entry("web", fmt.Sprintf("%s%d-%d", prefix, i, j), fmt.Sprintf("v%d", i%3), queue.Deliver, payload)
		}
		mustAppend(t, q, batch...)
	}
}

// TestPayloadSegmentsRotateAndGo: the payload log starts a new segment when the active one is
// full, keeps a segment while one of its items is pending (across a reopen too), and deletes it
// once every item in it is delivered, dead-lettered or filtered.
func TestPayloadSegmentsRotateAndGo(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	q.segs.limit = 16 << 10 // a few frames per segment
	appendCalls(t, q, "a", 30, 10, 600)
	if n := len(segmentFiles(t, dir)); n < 4 {
		t.Fatalf("%d segment files after 30 frames of about 3 KB with a 16 KB limit, want several", n)
	}
	items := scanAll(t, q)
	first := items[0]
	for _, it := range items[1:] {
		switch it.Seq % 3 {
		case 0:
			if err := q.Dead(it.Seq, queue.Failure{Reason: "woopra answered 400"}); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := q.Filter(it.Seq, "test"); err != nil {
				t.Fatal(err)
			}
		default:
			if err := q.Done(it.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The first segment holds the first item; the active one is kept; the others go.
	waitSegments(t, dir, 2)
	checkStore(t, q)
	dl, ok, err := q.DeadLetter(1)
	if err != nil || !ok || dl.Entry.MessageID != items[2].Entry.MessageID || !bytes.Equal(dl.Entry.Event, items[2].Entry.Event) {
		t.Fatalf("a dead letter must keep its event after its segment is deleted: %+v, %v, %v", dl, ok, err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, Options{})
	got := scanAll(t, q)
	if len(got) != 1 || got[0].Seq != first.Seq || !bytes.Equal(got[0].Entry.Event, first.Entry.Event) {
		t.Fatalf("after reopening: %+v, want item %d with its event", got, first.Seq)
	}
	checkStore(t, q)
	if err := q.Done(first.Seq); err != nil {
		t.Fatal(err)
	}
	waitSegments(t, dir, 1) // only the segment this open started
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, Options{})
	if names := segmentFiles(t, dir); len(names) != 1 {
		t.Fatalf("after reopening an empty queue: segment files %v, want only the new active one", names)
	}
	checkStore(t, q)
}

// TestFrameCodec: a frame decodes to what was encoded, and a frame that is altered or cut
// short is reported as corrupt instead of being misread.
func TestFrameCodec(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte(`{"event":"signup","properties":{"plan":"pro"}}`), 50)
	s, err := openSegmentLog(dir, maxSegmentSize, false)
	if err == nil {
		err = s.start(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	frame := encodeFrame(nil, raw)
	if len(frame) >= len(raw)/2 {
		t.Errorf("a %d-byte repetitive payload compressed to %d bytes", len(raw), len(frame))
	}
	seg, offs, _, err := s.write([][]byte{frame, frame}, [][]byte{nil, nil}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dropCache(s)
	for _, off := range offs {
		got, err := s.frame(frameRef{seg, off})
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("frame at %d: %d bytes, %v; want the %d bytes written", off, len(got), err, len(raw))
		}
	}
	path := filepath.Join(dir, segmentsDir, segmentName(seg))
	tests := []struct {
		name   string
		change func(b []byte) []byte
		want   string
	}{
		{"flipped byte", func(b []byte) []byte { b[frameHeader+3] ^= 0xff; return b }, "checksum mismatch"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad header"},
		{"cut short", func(b []byte) []byte { return b[:frameHeader+5] }, "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.change(slices.Clone(frame))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			dropCache(s)
			_, err := s.frame(frameRef{seg, 0})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reading a frame with a %s = %v, want ErrCorrupt mentioning %q", tc.name, err, tc.want)
			}
		})
	}
}

// TestCorruptPayload: items whose frame fails its checksum, or whose segment is gone, are moved
// to the dead letters with a reason naming the damage; the items of intact frames are delivered
// as usual and the counters reconcile.
func TestCorruptPayload(t *testing.T) {
	for _, damage := range []string{"checksum mismatch", "is missing"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			q := open(t, dir, Options{})
			appendCalls(t, q, "a", 1, 3, 300)
			if damage == "is missing" {
				q.segs.limit = 1 // the next frame starts a new segment
			}
			appendCalls(t, q, "b", 1, 2, 300)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			names := segmentFiles(t, dir)
			if damage == "is missing" {
				if len(names) != 2 {
					t.Fatalf("segment files %v, want 2", names)
				}
				if err := os.Remove(names[0]); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := os.ReadFile(names[0])
				if err != nil {
					t.Fatal(err)
				}
				b[frameHeader+10] ^= 0xff // inside the first frame's compressed bytes
				if err := os.WriteFile(names[0], b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			q = open(t, dir, Options{})
			items := scanAll(t, q)
			if len(items) != 2 || items[0].Entry.MessageID != "b0-0" || items[1].Entry.MessageID != "b0-1" {
				t.Fatalf("pending after the damage: %+v, want the two items of the intact frame", items)
			}
			dls := deadAll(t, q)
			if len(dls) != 3 {
				t.Fatalf("%d dead letters, want the 3 items of the damaged frame", len(dls))
			}
			for _, dl := range dls {
				if !strings.Contains(dl.Failure.Reason, "corrupt queue record") || !strings.Contains(dl.Failure.Reason, damage) {
					t.Errorf("dead letter %d: reason %q, want it to say %q", dl.ID, dl.Failure.Reason, damage)
				}
			}
			c := checkStore(t, q)
			if c.Queued != 2 || c.DeadLettered != 3 || c.Received != 5 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

// TestVersion1Store: a store written by the previous layout (every entry inline in its record)
// is read, delivered from and upgraded: its marker moves to the current version.
func TestVersion1Store(t *testing.T) {
	dir := t.TempDir()
	e := entry("web", "old-1", "visitor-1", queue.Deliver, 200)
	st := itemState{attempts: 2, firstAttempt: time.Unix(1_800_000_000, 0).UTC()}
	v1 := append([]byte{kindItem, itemVersion1}, appendItemHeader(nil, st)[2:]...)
	v1 = appendEntry(v1, &e)
	m := meta{lastSeq: 1, c: queue.Counters{Received: 1, Queued: 1}}
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{quietLogger}})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	_ = b.Set(keyFormat, []byte(formatVersion1), nil)
	_ = b.Set(keyMeta, encodeMeta(&m), nil)
	_ = b.Set(itemKey(1), v1, nil)
	_ = b.Set(visitorKey(e.Visitor, 1), nil, nil)
	_ = b.Set(dedupSuffix(e.Source, e.MessageID), encodeSeenAt(time.Now()), nil)
	if err := db.Apply(b, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	q := open(t, dir, Options{})
	items := scanAll(t, q)
	if len(items) != 1 || items[0].Seq != 1 || items[0].Attempts != 2 || !items[0].FirstAttempt.Equal(st.firstAttempt) ||
		!bytes.Equal(items[0].Entry.Event, e.Event) || items[0].Entry.Requests[0].URL != e.Requests[0].URL {
		t.Fatalf("version 1 item read as %+v", items)
	}
	if res := mustAppend(t, q, e, entry("web", "new-1", "visitor-1", queue.Deliver, 200)); res.Duplicates != 1 || res.Queued != 1 {
		t.Fatalf("append to an upgraded store: %+v, want the old id a duplicate", res)
	}
	if err := q.Retrying(1, 3, st.firstAttempt); err != nil {
		t.Fatal(err)
	}
	checkStore(t, q)
	if err := q.Done(1); err != nil {
		t.Fatal(err)
	}
	v, closer, err := q.db.Get(keyFormat)
	if err != nil || string(v) != formatVersion {
		t.Fatalf("format marker %q, %v; want %q", v, err, formatVersion)
	}
	closer.Close()
	c := checkStore(t, q)
	if c.Delivered != 1 || c.Queued != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestGroupCommitRecovery: a group commit whose payload log write was synced but which pebble
// never got (the machine stopped before pebble's unsynced log reached the disk) is applied
// when the store is opened again, once: its items, dead letters, dedup keys and counters are
// all there. A commit frame cut short by the crash is not applied: it was never acknowledged.
func TestGroupCommitRecovery(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			dir := t.TempDir()
			q := open(t, dir, Options{})
			mustAppend(t, q, entry("web", "before", "v1", queue.Deliver, 300))
			lose := func() bool { return false }
			q.testHookApply.Store(&lose)
			lost := []queue.Entry{
				entry("web", "lost-1", "v1", queue.Deliver, 300),
				entry("web", "lost-2", "v2", queue.Rejected, 300),
				entry("web", "lost-3", "v2", queue.Filtered, 300),
			}
			if _, err := q.Append(ctx, lost); err == nil {
				t.Fatal("Append succeeded although its commit was abandoned")
			}
			if c := q.Counters(); c.Received != 1 {
				t.Fatalf("counters after the abandoned commit: %+v", c)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if torn {
				names := segmentFiles(t, dir)
				last := names[len(names)-1]
				fi, err := os.Stat(last)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(last, fi.Size()-3); err != nil {
					t.Fatal(err)
				}
			}
			q = open(t, dir, Options{})
			c := checkStore(t, q)
			ids := map[string]bool{}
			for _, it := range scanAll(t, q) {
				ids[it.Entry.MessageID] = true
			}
			if torn {
				if c.Received != 1 || !ids["before"] || len(ids) != 1 {
					t.Fatalf("a torn commit was applied: counters %+v, pending %v", c, ids)
				}
				if res := mustAppend(t, q, lost...); res.Duplicates != 0 {
					t.Fatalf("ids of a torn commit are duplicates: %+v", res)
				}
				return
			}
			if c.Received != 4 || c.Queued != 2 || c.DeadLettered != 1 || c.Filtered != 1 || !ids["before"] || !ids["lost-1"] {
				t.Fatalf("after recovery: counters %+v, pending %v; want the abandoned group applied", c, ids)
			}
			if dls := deadAll(t, q); len(dls) != 1 || dls[0].Entry.MessageID != "lost-2" {
				t.Fatalf("dead letters after recovery: %+v", dls)
			}
			if res := mustAppend(t, q, lost...); res.Duplicates != 3 {
				t.Fatalf("re-sending the recovered ids: %+v, want 3 duplicates", res)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = open(t, dir, Options{}) // applied once only
			if c2 := checkStore(t, q); c2.Received != 4 || c2.Duplicates != 3 {
				t.Fatalf("after a second reopen: %+v", c2)
			}
		})
	}
}
