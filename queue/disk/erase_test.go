package disk

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// personEntry is an event of one person carrying a marker that only their events hold.
func personEntry(id, visitor, marker string, o queue.Outcome) queue.Entry {
	e := entry("web", id, visitor, o, 400)
	e.Event = []byte(`{"messageId":"` + id + `","userId":"` + visitor + `","context":{"traits":{"email":"` + marker + `@example.com"}},"pad":"` + strings.Repeat("ab", 150) + `"}`)
	return e
}

// dirHolds reports which of the needles some file under dir holds.
func dirHolds(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // a file deleted meanwhile
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n+" in "+filepath.Base(path)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range found {
		out = append(out, k)
	}
	return out
}

// TestEraseLeavesNothingOnDisk: after an erasure no file of the data directory (payload
// segments, pebble's tables and logs) holds the person's id or e-mail, not even of an event
// already delivered, while another person's
// events stay there, pending and readable, also after a reopen.
func TestEraseLeavesNothingOnDisk(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	q := open(t, dir, Options{Clock: clock.Now})
	const who, mark, other, otherMark = "visitor-5e1f9a", "erase-me-7c3d", "visitor-2b8e44", "keep-me-4a9f"
	for i, e := range []queue.Entry{
		personEntry("x-0", who, mark, queue.Deliver), personEntry("x-1", who, mark, queue.Deliver), personEntry("y-1", other, otherMark, queue.Deliver),
		personEntry("x-2", who, mark, queue.Rejected), personEntry("x-3", who, mark, queue.Deliver),
	} {
		if _, err := q.Append(t.Context(), []queue.Entry{e}); err != nil {
			t.Fatal(i, err)
		}
	}
	items := scanAll(t, q)
	for _, it := range items {
		if it.Entry.MessageID == "x-0" { // delivered: its payload stays in the log with the others
			if err := q.Done(it.Seq); err != nil {
				t.Fatal(err)
			}
		}
		if it.Entry.MessageID == "x-3" {
			if err := q.Dead(it.Seq, queue.Failure{Reason: "woopra answered 403", Request: "GET /track/ce?cv_id=" + who}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := q.db.Flush(); err != nil { // some of it in pebble's tables too
		t.Fatal(err)
	}
	if got := dirHolds(t, dir, who, mark); len(got) == 0 {
		t.Fatal("the person's events are not in the data directory before the erasure: the check below would prove nothing")
	}
	res, err := q.Erase(func(e queue.Entry) bool { return bytes.Contains(e.Event, []byte(who)) })
	if err != nil {
		t.Fatal(err)
	}
	if res != (queue.Erased{Items: 1, DeadLetters: 2}) {
		t.Fatalf("Erase = %+v, want 1 item and 2 dead letters", res)
	}
	// Pebble deletes the tables a compaction made obsolete in the background.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := dirHolds(t, dir, who, mark)
		if len(got) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the erasure the data directory still holds: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := dirHolds(t, dir, otherMark); len(got) == 0 {
		t.Error("the other person's event is gone from the files too")
	}
	c := checkStore(t, q)
	if c.Queued != 1 || c.Filtered != 3 || c.DeadLettered != 0 || c.Delivered != 1 {
		t.Errorf("counters %+v, want 1 queued, 1 delivered, 3 filtered", c)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, Options{Clock: clock.Now})
	items = scanAll(t, q)
	if len(items) != 1 || !bytes.Contains(items[0].Entry.Event, []byte(otherMark)) {
		t.Fatalf("after a reopen the pending items are %+v, want the other person's", items)
	}
	checkStore(t, q)
}

// TestEraseThenRebuild: after an erasure, an index rebuilt from the payload log (the README's
// recovery of a damaged store) brings the erased pending item back with nothing of its event:
// the log reads from end to end through the rewritten frames.
func TestEraseThenRebuild(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	const who = "visitor-8d2c61"
	if _, err := q.Append(t.Context(), []queue.Entry{personEntry("x-1", who, "m4r7q", queue.Deliver), personEntry("y-1", "visitor-0f3b77", "k2p9w", queue.Deliver)}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Erase(func(e queue.Entry) bool { return e.Visitor == who }); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(dir)
	for _, de := range names { // every file of the index goes: what the README's recovery moves aside
		if !de.IsDir() && !strings.HasPrefix(de.Name(), "woorelay.") {
			os.Remove(filepath.Join(dir, de.Name()))
		}
	}
	q = open(t, dir, Options{})
	items := scanAll(t, q)
	if len(items) != 2 {
		t.Fatalf("the rebuilt index holds %d items, want both of the log's", len(items))
	}
	for _, it := range items {
		if it.Entry.MessageID == "x-1" && (bytes.ContainsAny(it.Entry.Event, "{}\"") || strings.Trim(it.Entry.Visitor, "\x00") != "") {
			t.Errorf("the erased item came back with %q (visitor %q)", it.Entry.Event, it.Entry.Visitor)
		}
		if it.Entry.MessageID == "y-1" && !bytes.Contains(it.Entry.Event, []byte("k2p9w")) {
			t.Errorf("the other item came back as %q", it.Entry.Event)
		}
	}
}
