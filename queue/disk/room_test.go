package disk

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/queuetest"
)

// logBuffer is a logger whose text a test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// appendN appends n entries of about size bytes, m<start>… to m<start+n-1>, one per call.
func appendN(t *testing.T, q *Queue, start, n, size int) {
	t.Helper()
	for i := start; i < start+n; i++ {
		if _, err := q.Append(ctx, []queue.Entry{entry("web", fmt.Sprintf("m%d", i), fmt.Sprintf("v%d", i%7), queue.Deliver, size)}); err != nil {
			t.Fatalf("append m%d: %v", i, err)
		}
	}
}

// pendingIDs returns the message ids of the pending items.
func pendingIDs(t *testing.T, q *Queue) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, it := range scanAll(t, q) {
		ids[it.Entry.MessageID] = true
	}
	return ids
}

// TestOpenLockedNamesHolder: a second open of a directory in use fails, naming the process
// that holds it; the holder's close lets it in.
func TestOpenLockedNamesHolder(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	_, err := Open(dir, Options{Logger: quietLogger})
	if err == nil {
		t.Fatal("a second Open of a directory in use succeeded")
	}
	if want := fmt.Sprintf("in use by another woorelay (pid %d on", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open: %v; want it to name the holder (%q)", err, want)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, Options{})
}

// TestOpenDamagedIndex: a store whose pebble manifest was overwritten is refused with
// ErrDamaged and how to recover, and nothing is changed; moving the index aside, as the README
// says, rebuilds the queue from the payload log with every pending event.
func TestOpenDamagedIndex(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	appendN(t, q, 0, 50, 500)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "MANIFEST-000001")
	f, err := os.OpenFile(manifest, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{'X'}, 16), 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(dir, Options{Logger: quietLogger})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "MANIFEST-000001") || !strings.Contains(err.Error(), "Recovering a damaged store") {
		t.Fatalf("Open of a store with a damaged manifest: %v; want ErrDamaged naming the file and the way to recover", err)
	}
	// The README's recovery: move every file but the payload log and woorelay's own aside.
	aside := t.TempDir()
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if n.IsDir() || strings.HasPrefix(n.Name(), "woorelay.") {
			continue
		}
		if err := os.Rename(filepath.Join(dir, n.Name()), filepath.Join(aside, n.Name())); err != nil {
			t.Fatal(err)
		}
	}
	q = open(t, dir, Options{})
	ids := pendingIDs(t, q)
	for i := 0; i < 50; i++ {
		if !ids[fmt.Sprintf("m%d", i)] {
			t.Errorf("m%d is not pending after the index was rebuilt from the payload log", i)
		}
	}
	checkStore(t, q)
}

// TestDamagedSegmentIsReportedAsDamage: a payload segment cut short after its events were
// acknowledged is reported as lost acknowledged payloads (and its items go to the dead letters
// as corrupt records, which replay leaves in place), never as an interrupted write; a torn
// tail no item refers to is.
func TestDamagedSegmentIsReportedAsDamage(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	appendN(t, q, 0, 40, 2000)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, segmentsDir, segmentName(1))
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	q = open(t, dir, Options{Logger: logs.logger()})
	out := logs.String()
	if strings.Contains(out, "interrupted") || !strings.Contains(out, "payload segment is damaged") || !strings.Contains(out, "acknowledged_events=") {
		t.Fatalf("a segment cut short under acknowledged events was logged as:\n%s", out)
	}
	items := scanAll(t, q)
	dead := deadAll(t, q)
	if len(items)+len(dead) != 40 || len(dead) == 0 {
		t.Fatalf("%d pending and %d dead letters, want 40 in all, some dead", len(items), len(dead))
	}
	for _, d := range dead {
		if !strings.HasPrefix(d.Entry.Reason, queue.ReasonCorruptRecord) {
			t.Errorf("dead letter %d: reason %q, want it marked %s", d.ID, d.Entry.Reason, queue.ReasonCorruptRecord)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	// A torn tail that no item refers to: an interrupted write.
	dir = t.TempDir()
	q = open(t, dir, Options{})
	appendN(t, q, 0, 5, 200)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, segmentsDir, segmentName(1)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A whole header whose frame was cut short: its lengths run past the segment's end.
	torn := make([]byte, frameHeader)
	torn[0], torn[1], torn[4] = frameMagic, frameVersion, 9
	f.Write(torn)
	f.Close()
	logs = logBuffer{}
	q = open(t, dir, Options{Logger: logs.logger()})
	if out := logs.String(); !strings.Contains(out, "interrupted before it was acknowledged") || strings.Contains(out, "damaged") {
		t.Fatalf("a torn tail no item refers to was logged as:\n%s", out)
	}
	if n := len(scanAll(t, q)); n != 5 {
		t.Fatalf("%d pending after a torn tail, want 5", n)
	}
}

// TestDiskBudgetCountsEverything: with a budget and no memtable size, what the directory takes
// on disk (pebble's preallocated logs and the reserve included) stays within the budget.
func TestDiskBudgetCountsEverything(t *testing.T) {
	const budget = 8 << 20
	dir := t.TempDir()
	q := open(t, dir, Options{DiskBudget: budget})
	full := false
	for i := 0; i < 5000 && !full; i++ {
		batch := make([]queue.Entry, 20)
		for j := range batch {
			batch[j] = entry("web", fmt.Sprintf("m%d-%d", i, j), fmt.Sprintf("v%d", j), queue.Deliver, 1000)
		}
		_, err := q.Append(ctx, batch)
		switch {
		case errors.Is(err, queue.ErrFull):
			full = true
			if q.Refusing() == nil {
				t.Error("Refusing is nil while Append answers ErrFull")
			}
		case err != nil:
			t.Fatal(err)
		}
		if used := walkUsage(dir); used > budget {
			t.Fatalf("after %d batches the directory takes %d bytes on disk, over the budget of %d", i+1, used, budget)
		}
	}
	if !full {
		t.Fatalf("no ErrFull (usage %d, budget %d)", q.DiskUsage(), budget)
	}
	t.Logf("budget %d: %d bytes on disk when full", budget, walkUsage(dir))
}

// TestDiskFull: on a file system that fills up (a tmpfs another file fills), Append answers
// ErrFull and the reserve file is released, delivery goes on recording what it delivers, and
// once space is freed Append succeeds again without a reopen; nothing acknowledged is lost.
func TestDiskFull(t *testing.T) {
	dir := queuetest.Tmpfs(t, "48m")
	q := open(t, dir, Options{})
	if _, err := os.Stat(filepath.Join(dir, reserveName)); err != nil {
		t.Fatalf("no reserve file: %v", err)
	}
	appendN(t, q, 0, 200, 2000)
	filler := filepath.Join(dir, "filler")
	queuetest.Fill(t, filler)
	_, err := q.Append(ctx, []queue.Entry{entry("web", "refused", "v", queue.Deliver, 2000)})
	if !errors.Is(err, queue.ErrFull) || !strings.Contains(err.Error(), "disk") {
		t.Fatalf("Append on a full disk: %v; want ErrFull saying the disk is full", err)
	}
	if q.Refusing() == nil {
		t.Error("Refusing is nil on a full disk")
	}
	if _, err := os.Stat(filepath.Join(dir, reserveName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reserve file is still there on a full disk (%v)", err)
	}
	// Delivery goes on: every kind of delivery-side write succeeds.
	items := scanAll(t, q)
	for i, it := range items {
		var err error
		switch i % 3 {
		case 0:
			err = q.Done(it.Seq)
		case 1:
			err = q.Retrying(it.Seq, 1, time.Now())
		case 2:
			err = q.Dead(it.Seq, queue.Failure{Reason: "test"})
		}
		if err != nil {
			t.Fatalf("delivery-side write %d on a full disk: %v", i, err)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "Append accepted again", func() bool { return q.Refusing() == nil })
	appendN(t, q, 1000, 10, 2000)
	ids := pendingIDs(t, q)
	for i, it := range items {
		if i%3 == 1 && !ids[it.Entry.MessageID] {
			t.Errorf("%s was lost", it.Entry.MessageID)
		}
	}
	for i := 1000; i < 1010; i++ {
		if !ids[fmt.Sprintf("m%d", i)] {
			t.Errorf("m%d, appended after space returned, is not pending", i)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, reserveName)); err != nil {
		t.Errorf("the reserve file was not written again: %v", err)
	}
	checkStore(t, q)

	// A reopen on a full disk opens, refusing Appends.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	queuetest.Fill(t, filler)
	q = open(t, dir, Options{})
	if _, err := q.Append(ctx, []queue.Entry{entry("web", "refused2", "v", queue.Deliver, 2000)}); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("Append after a reopen on a full disk: %v; want ErrFull", err)
	}
	if n := len(scanAll(t, q)); n != len(ids) {
		t.Fatalf("%d pending after the reopen, want %d", n, len(ids))
	}
	os.Remove(filler)
	waitUntil(t, 30*time.Second, "Append accepted again after the reopen", func() bool { return q.Refusing() == nil })
	checkStore(t, q)
}

// waitUntil polls cond until it holds; the deadline only stops a broken test.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}
