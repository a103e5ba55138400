package queuetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// testSuppressions: the suppression list is stored durably (it survives a reopen), adding a
// key twice keeps one, and removing says how many were there.
func testSuppressions(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	p := mustPrivacy(t, e.q)
	if got, err := p.Suppressions(); err != nil || len(got) != 0 {
		t.Fatalf("Suppressions() of a new store = %q, %v; want none", got, err)
	}
	if err := p.AddSuppressions([]string{"user_id:x", "email_sha256:ab12"}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddSuppressions([]string{"user_id:x"}); err != nil {
		t.Fatal(err)
	}
	p = mustPrivacy(t, e.reopen(t))
	got, err := p.Suppressions()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"email_sha256:ab12", "user_id:x"}; !slices.Equal(got, want) {
		t.Fatalf("Suppressions() = %q after a reopen, want %q", got, want)
	}
	n, err := p.RemoveSuppressions([]string{"user_id:x", "user_id:nobody"})
	if err != nil || n != 1 {
		t.Fatalf("RemoveSuppressions = %d, %v; want 1", n, err)
	}
	if got, _ := p.Suppressions(); !slices.Equal(got, []string{"email_sha256:ab12"}) {
		t.Fatalf("Suppressions() = %q after a removal", got)
	}
}

func mustPrivacy(t testing.TB, q queue.Queue) queue.Privacy {
	t.Helper()
	p, ok := q.(queue.Privacy)
	if !ok {
		t.Fatalf("%T does not implement queue.Privacy", q)
	}
	return p
}

// ofVisitor selects the entries of one visitor (by the visitor key or the event's text).
func ofVisitor(v string) func(queue.Entry) bool {
	return func(e queue.Entry) bool {
		return e.Visitor == v || strings.Contains(string(e.Event), `"anonymousId":"`+v+`"`)
	}
}

// testErase: a person's pending items, the dead letters of their events rejected at ingest
// and of those dead-lettered at delivery are removed and counted filtered; another person's
// stay; the counters reconcile, also after a reopen.
func testErase(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	p := mustPrivacy(t, e.q)
	MustAppend(t, e.q,
		Entry("web", "x-1", "x:1", queue.Deliver, 300),
		Entry("web", "y-1", "y:1", queue.Deliver, 300),
		Entry("web", "x-2", "x:1", queue.Deliver, 300),
		Entry("web", "x-3", "x:1", queue.Rejected, 300),
		Entry("web", "y-2", "y:1", queue.Rejected, 300),
		Entry("web", "x-4", "x:1", queue.Deliver, 300),
	)
	items := WaitPending(t, e.q, 4, b.Settle)
	if err := e.q.Dead(byID(t, items, "x-4").Seq, queue.Failure{Reason: "woopra answered 403", Request: "GET https://www.woopra.com/track/ce?cookie=x:1", Status: 403}); err != nil {
		t.Fatal(err)
	}
	settle(t, b, e.q, queue.Counters{Received: 6, Queued: 3, DeadLettered: 3})

	got, err := p.Erase(ofVisitor("x:1"))
	if err != nil {
		t.Fatal(err)
	}
	if got != (queue.Erased{Items: 2, DeadLetters: 2}) {
		t.Fatalf("Erase = %+v, want 2 items and 2 dead letters", got)
	}
	want := queue.Counters{Received: 6, Queued: 1, DeadLettered: 1, Filtered: 4}
	settle(t, b, e.q, want)
	check := func(q queue.Queue) {
		t.Helper()
		for _, it := range ScanAll(t, q) {
			if it.Entry.Visitor == "x:1" {
				t.Errorf("item %s of the erased person is still pending", it.Entry.MessageID)
			}
		}
		dls := DeadAll(t, q)
		if len(dls) != 1 || dls[0].Entry.MessageID != "y-2" {
			t.Errorf("dead letters after the erasure: %+v; want only y-2", dls)
		}
	}
	check(e.q)
	settle(t, b, e.reopen(t), want)
	check(e.q)
	again, err := mustPrivacy(t, e.q).Erase(ofVisitor("x:1"))
	if err != nil || again != (queue.Erased{}) {
		t.Fatalf("a second Erase = %+v, %v; want nothing", again, err)
	}
}

// testExpireDeadLetters: a dead letter older than the cutoff is removed and counted
// filtered; a younger one stays.
func testExpireDeadLetters(t *testing.T, b Backend) {
	e := newEnv(t, b, 0)
	p := mustPrivacy(t, e.q)
	MustAppend(t, e.q, Entry("web", "old", "o:1", queue.Rejected, 100))
	settle(t, b, e.q, queue.Counters{Received: 1, DeadLettered: 1})
	e.clock.Advance(2 * time.Hour) // the letters' times come from the clock: no need to wait
	MustAppend(t, e.q, Entry("web", "young", "y:1", queue.Rejected, 100))
	settle(t, b, e.q, queue.Counters{Received: 2, DeadLettered: 2})
	n, err := p.ExpireDeadLetters(e.clock.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("ExpireDeadLetters = %d, %v; want 1", n, err)
	}
	settle(t, b, e.q, queue.Counters{Received: 2, DeadLettered: 1, Filtered: 1})
	if dls := DeadAll(t, e.q); len(dls) != 1 || dls[0].Entry.MessageID != "young" {
		t.Fatalf("dead letters after expiry: %+v; want only the young one", dls)
	}
}
