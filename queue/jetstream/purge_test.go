package jetstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/woorelay/woorelay/queue/jetstream/natstest"
)

// apiRequests is how many JetStream API requests the server has answered.
func apiRequests(t *testing.T, srv *natstest.Server) uint64 {
	t.Helper()
	info, err := srv.Jsz(&server.JSzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info.API.Total
}

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

// TestDeliveredItemsLeaveInBatches: delivered items leave the items stream in batches (one
// purge of a partition's delivered prefix), not with one confirmed delete each: delivering
// 2,000 events costs far fewer JetStream API requests than events, and the counters say
// every one delivered.
func TestDeliveredItemsLeaveInBatches(t *testing.T) {
	srv := natstest.Run(t)
	rec := &recorder{failing: map[string]bool{}}
	const visitors, per = 100, 20
	// Enough workers that delivery, not the recorder's 10 ms a send, sets the pace.
	a := startRelayWorkers(t, Options{URL: srv.URL(), Stream: "BATCH", Partitions: 8, Logger: quiet, LeaseTTL: 900 * time.Millisecond,
		Grace: 300 * time.Millisecond, Instance: "a"}, rec, 64)
	time.Sleep(200 * time.Millisecond) // the partitions are read
	before := apiRequests(t, srv)
	appendBacklog(t, a.q, visitors, per)
	waitSent(t, rec, visitors*per, 60*time.Second)
	time.Sleep(3 * purgeEvery)
	used := apiRequests(t, srv) - before
	c := a.q.Counters()
	a.close(t)
	if !c.Reconciles() || c.Delivered != visitors*per || c.Queued != 0 {
		t.Errorf("counters %+v, want %d delivered, none queued, reconciling", c, visitors*per)
	}
	// One delete an event would be 2,000 requests on its own.
	if used > visitors*per/5 {
		t.Errorf("delivering %d events took %d JetStream API requests, want at most %d", visitors*per, used, visitors*per/5)
	}
	t.Logf("%d events delivered with %d JetStream API requests (%.3f an event)", visitors*per, used, float64(used)/float64(visitors*per))
}

// TestCrashAfterDeliveryKeepsOrder: a relay stops dead (no flush, no lease given up) while
// some of its delivered items are still in the stream, one visitor's head being retried
// (so the delivered items above it wait). The next holder sends, for every visitor, a run
// of events that starts at or before the first one the dead relay had not sent and goes on
// in order to the last: what it repeats is a suffix of what was sent, never an older event
// after a newer one, and nothing is lost.
func TestCrashAfterDeliveryKeepsOrder(t *testing.T) {
	for _, wait := range []time.Duration{0, 3 * purgeStuck / 2} {
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
