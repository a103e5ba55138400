package emulator

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// fire sends n tracking requests at once to url and returns their statuses.
func fire(t *testing.T, url string, n int) []int {
	t.Helper()
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get(url + "/track/ce?project=p.com&event=e&cookie=c")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	return statuses
}

func count(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

// TestCapacityRefusesBeyondItAndChangesWhileRunning: with room for 4 requests, 10 sent at
// once (each held 300 ms) get 4 answers 200 and 6 refusals 503 with Retry-After; raised to
// 10 while running, all are served; "429" refuses with 429.
func TestCapacityRefusesBeyondItAndChangesWhileRunning(t *testing.T) {
	e := New(Options{MaxRecords: -1, NoProfiles: true})
	url, stop, err := e.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	if err := e.SetFaults(Faults{Latency: Duration(300 * time.Millisecond), Capacity: 4, RetryAfter: "1"}); err != nil {
		t.Fatal(err)
	}
	got := fire(t, url, 10)
	if count(got, 200) != 4 || count(got, 503) != 6 {
		t.Errorf("capacity 4, 10 at once: %v; want 4 × 200 and 6 × 503", got)
	}
	if s := e.Stats(); s.Refused != 6 || s.ByOutcome[OutcomeOverloaded] != 6 || s.Serving != 0 {
		t.Errorf("stats: refused %d, overloaded %d, serving %d; want 6, 6, 0", s.Refused, s.ByOutcome[OutcomeOverloaded], s.Serving)
	}
	if err := e.SetFaults(Faults{Latency: Duration(300 * time.Millisecond), Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	if got := fire(t, url, 10); count(got, 200) != 10 {
		t.Errorf("capacity raised to 10: %v; want all 200", got)
	}
	if err := e.SetFaults(Faults{Latency: Duration(300 * time.Millisecond), Capacity: 2, Overload: "429"}); err != nil {
		t.Fatal(err)
	}
	if got := fire(t, url, 5); count(got, 200) != 2 || count(got, 429) != 3 {
		t.Errorf("capacity 2, overload 429: %v; want 2 × 200 and 3 × 429", got)
	}
}

// TestCapacityQueueGrowsLatency: with overload "queue" nothing is refused; the requests
// beyond the capacity wait their turn, so the last of 6 at capacity 2 and 200 ms takes about
// three service times.
func TestCapacityQueueGrowsLatency(t *testing.T) {
	e := New(Options{MaxRecords: -1, NoProfiles: true})
	url, stop, err := e.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	if err := e.SetFaults(Faults{Latency: Duration(200 * time.Millisecond), Capacity: 2, Overload: "queue"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	got := fire(t, url, 6)
	if count(got, 200) != 6 {
		t.Errorf("queue: %v; want all 200", got)
	}
	if d := time.Since(t0); d < 550*time.Millisecond {
		t.Errorf("6 requests through 2 slots of 200 ms took %s; want ≥ 600 ms (they queue)", d)
	}
}

// TestJitterSpreadsLatency: latency 100 ms ± 50 % stays within its bounds and is not
// constant.
func TestJitterSpreadsLatency(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		d := jittered(100*time.Millisecond, 0.5)
		if d < 50*time.Millisecond || d > 150*time.Millisecond {
			t.Fatalf("jittered latency %s outside 50-150 ms", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter gave only %d distinct latencies in 50", len(seen))
	}
	if err := (Faults{Jitter: 1.5}).validate(); err == nil {
		t.Error("jitter 1.5 accepted")
	}
	if err := (Faults{Overload: "drop"}).validate(); err == nil {
		t.Error(`overload "drop" accepted`)
	}
}
