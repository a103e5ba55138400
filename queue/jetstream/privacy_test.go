package jetstream

import (
	"slices"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
	"github.com/woorelay/woorelay/queue/queuetest"
)

// TestSuppressionsShared: two relays on one stream share the suppression list, and an
// erasure through one removes the dead letters both see.
func TestSuppressionsShared(t *testing.T) {
	srv := natstest.Run(t)
	open := func() *Queue {
		q, err := Open(Options{URL: srv.URL(), Stream: "PRIV", Partitions: 4, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = q.Close() })
		return q
	}
	a, b := open(), open()
	if err := a.AddSuppressions([]string{"user_id:u1"}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Suppressions(); err != nil || !slices.Equal(got, []string{"user_id:u1"}) {
		t.Fatalf("the other relay lists %q, %v; want the suppression made through the first", got, err)
	}
	queuetest.MustAppend(t, a, queuetest.Entry("web", "r-1", "u:1", queue.Rejected, 100))
	for deadline := time.Now().Add(10 * time.Second); len(queuetest.DeadAll(t, b)) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the dead letter did not appear")
		}
	}
	got, err := b.Erase(func(e queue.Entry) bool { return e.Visitor == "u:1" })
	if err != nil || got.DeadLetters != 1 {
		t.Fatalf("Erase through the other relay = %+v, %v", got, err)
	}
	if dls := queuetest.DeadAll(t, a); len(dls) != 0 {
		t.Errorf("the first relay still sees %d dead letters", len(dls))
	}
}
