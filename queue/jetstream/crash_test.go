package jetstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue/jetstream/natstest"
)

// waitSent waits until the recorder holds at least n sends.
func waitSent(t *testing.T, rec *recorder, n int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		rec.mu.Lock()
		got := len(rec.sent)
		rec.mu.Unlock()
		if got >= n {
			return
		}
	}
	t.Fatalf("fewer than %d sends within %s", n, within)
}

// TestCrashAfterDeliveryKeepsOrder: a relay stops dead (no lease given up) in the middle of a
// backlog, one visitor's head being retried, right after its sends and a while after them.
// The next holder sends, for every visitor, the events from the first one the dead relay had
// not finished on, in order, to the last: nothing is lost, and no event reaches Woopra after a
// later one of its visitor (a repeat can only be of the event just sent), which is what the
// delete of each delivered item before the visitor's next keeps.
func TestCrashAfterDeliveryKeepsOrder(t *testing.T) {
	for _, wait := range []time.Duration{0, 1500 * time.Millisecond} {
		t.Run(fmt.Sprint("stopped ", wait, " after the sends"), func(t *testing.T) {
			srv := natstest.Run(t)
			rec := &recorder{failing: map[string]bool{"v7": true}}
			const visitors, per = 40, 10
			stream := fmt.Sprintf("CRASH%d", wait.Milliseconds())
			a := startRelay(t, srv.URL(), stream, "a", rec)
			appendBacklog(t, a.q, visitors, per)
			waitSent(t, rec, (visitors-1)*per/2, 30*time.Second)
			time.Sleep(wait)
			// Dead: delivery stops and the connection goes without a word.
			a.stop()
			<-a.done
			a.q.nc.Close()
			rec.mu.Lock()
			byA := len(rec.sent)
			delete(rec.failing, "v7")
			rec.mu.Unlock()

			b := startRelay(t, srv.URL(), stream, "b", rec)
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if c := b.q.Counters(); c.Delivered == visitors*per && c.Queued == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			b.close(t)

			rec.mu.Lock()
			defer rec.mu.Unlock()
			sentA := map[int]int{} // visitor -> events a sent (in order: checked below)
			nextB := map[int]int{} // visitor -> the event b must send next; -1 before its first
			repeats := 0
			for n, s := range rec.sent {
				var v, i int
				fmt.Sscanf(s.url, "https://woopra.test/ce?cookie=v%d&id=%d", &v, &i)
				if n < byA {
					if i != sentA[v] {
						t.Fatalf("relay a sent v%d's event %d after %d", v, i, sentA[v]-1)
					}
					sentA[v]++
					continue
				}
				next, started := nextB[v]
				switch {
				case !started && i > sentA[v]:
					t.Errorf("v%d: relay b began at event %d, but a had sent only up to %d: events lost", v, i, sentA[v]-1)
				case !started && i < sentA[v]-1:
					t.Errorf("v%d: relay b began at event %d, after a had sent up to %d: an event reached Woopra after a later one", v, i, sentA[v]-1)
				case started && i != next:
					t.Errorf("v%d: relay b sent event %d after %d", v, i, next-1)
				}
				if i < sentA[v] {
					repeats++
				}
				nextB[v] = i + 1
			}
			for v := range visitors {
				last, started := nextB[v]
				if !started {
					last = sentA[v]
				}
				if last != per {
					t.Errorf("v%d: the last event sent is %d, want %d", v, last-1, per-1)
				}
			}
			t.Logf("relay a sent %d, relay b %d (%d of them again)", byA, len(rec.sent)-byA, repeats)
		})
	}
}
