package destination

import (
	"container/heap"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// simServer is a destination in simulated time: latency ± jitter per request, at most
// capacity requests served at once (0: no limit); beyond it a request is refused at once
// with 503, or, with queue set, waits for a slot so its round trip grows. down answers
// nothing (a refused connection, at once).
type simServer struct {
	latency  time.Duration
	jitter   float64
	capacity int
	queue    bool
	down     bool
	busy     int
	waitq    []*simReq
}

type simReq struct {
	start, done time.Time
	status      int
	served      bool // holds a slot
}

type simHeap []*simReq

func (h simHeap) Len() int           { return len(h) }
func (h simHeap) Less(i, j int) bool { return h[i].done.Before(h[j].done) }
func (h simHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *simHeap) Push(x any)        { *h = append(*h, x.(*simReq)) }
func (h *simHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// simRun drives a limiter against s with unbounded demand in steps of simulated time and
// reports, per phase, the requests answered 200 per second and the share refused.
type simRun struct {
	t      *testing.T
	now    time.Time
	l      *limiter
	s      *simServer
	rng    *rand.Rand
	flight simHeap
}

func newSimRun(t *testing.T, minL, maxL int, s *simServer) *simRun {
	r := &simRun{t: t, now: time.Unix(1e9, 0), s: s, rng: rand.New(rand.NewPCG(1, 2))}
	r.l = newLimiter(minL, maxL, newMetrics(nil), slog.New(slog.DiscardHandler), func() time.Time { return r.now })
	return r
}

func (r *simRun) service() time.Duration {
	j := 1 + r.s.jitter*(2*r.rng.Float64()-1)
	return time.Duration(float64(r.s.latency) * j)
}

// run simulates d and returns the 200s per second and the share of attempts refused.
func (r *simRun) run(d time.Duration) (rate, refused float64) {
	end := r.now.Add(d)
	var ok, ref, all int
	for r.now.Before(end) {
		for len(r.flight)+len(r.s.waitq) < r.l.get() {
			q := &simReq{start: r.now}
			switch {
			case r.s.down:
				q.done, q.status = r.now.Add(time.Millisecond), 0
			case r.s.capacity == 0 || r.s.busy < r.s.capacity:
				r.s.busy++
				q.served, q.done, q.status = true, r.now.Add(r.service()), 200
			case r.s.queue:
				r.s.waitq = append(r.s.waitq, q)
				continue
			default: // refused at once, answered after the network's share of the latency
				q.done, q.status = r.now.Add(r.service()), 503
			}
			heap.Push(&r.flight, q)
		}
		if len(r.flight)+len(r.s.waitq) >= r.l.get() {
			r.l.blocked()
		}
		if len(r.flight) == 0 {
			r.now = r.now.Add(time.Millisecond)
			continue
		}
		q := heap.Pop(&r.flight).(*simReq)
		r.now = q.done
		if q.served {
			r.s.busy--
			if len(r.s.waitq) > 0 { // the next queued request takes the slot
				w := r.s.waitq[0]
				r.s.waitq = r.s.waitq[1:]
				r.s.busy++
				w.served, w.done, w.status = true, r.now.Add(r.service()), 200
				heap.Push(&r.flight, w)
			}
		}
		a := Attempt{Status: q.status, Duration: q.done.Sub(q.start)}
		if q.status == 0 {
			a.Err = errors.New("connection refused")
		}
		r.l.observe(q.start, a)
		all++
		switch q.status {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			ref++
		}
	}
	return float64(ok) / d.Seconds(), float64(ref) / float64(max(all, 1))
}

// TestLimiterFindsCapacityAndFollowsItsChanges: at 150 ms ± 20 % and room for 600 requests
// the limit settles near the bound capacity / latency with few refusals, follows a drop of
// the capacity to 150 and its return, and climbs back after an outage.
func TestLimiterFindsCapacityAndFollowsItsChanges(t *testing.T) {
	s := &simServer{latency: 150 * time.Millisecond, jitter: 0.2, capacity: 600}
	r := newSimRun(t, 4, 1024, s)
	bound := func() float64 { return float64(s.capacity) / s.latency.Seconds() }
	check := func(what string, rate, refused, wantRatio, maxRefused float64) {
		t.Helper()
		t.Logf("%s: %.0f/s = %.2f of the bound %.0f/s, %.1f%% refused, limit %d, baseline %s", what, rate, rate/bound(), bound(), 100*refused, r.l.get(), r.l.baseline)
		if rate < wantRatio*bound() || refused > maxRefused {
			t.Errorf("%s: %.0f/s (%.2f of the bound, want ≥ %.2f) with %.1f%% refused (want ≤ %.0f%%)", what, rate, rate/bound(), wantRatio, 100*refused, 100*maxRefused)
		}
	}
	rate, refused := r.run(30 * time.Second)
	check("from a cold start", rate, refused, 0.75, 0.02)

	s.capacity = 150
	r.run(10 * time.Second)
	rate, refused = r.run(10 * time.Second)
	check("10 s after the capacity fell to 150", rate, refused, 0.7, 0.05)

	s.capacity = 600
	r.run(20 * time.Second)
	rate, refused = r.run(10 * time.Second)
	check("20 s after the capacity came back", rate, refused, 0.7, 0.05)

	s.down = true
	r.run(30 * time.Second)
	if got := r.l.get(); got != 4 {
		t.Errorf("after 30 s of refused connections the limit is %d, want the floor 4", got)
	}
	s.down = false
	r.run(20 * time.Second)
	rate, refused = r.run(10 * time.Second)
	check("20 s after an outage", rate, refused, 0.7, 0.05)
}

// TestLimiterBacksOffAQueueingDestination: a destination that queues beyond its capacity
// (latency grows, nothing refused) keeps the limit near its capacity instead of letting the
// queue, and every round trip, grow without end.
func TestLimiterBacksOffAQueueingDestination(t *testing.T) {
	s := &simServer{latency: 150 * time.Millisecond, jitter: 0.2, capacity: 200, queue: true}
	r := newSimRun(t, 4, 1024, s)
	r.run(100 * time.Second) // long past the baseline's 30-second window
	rate, _ := r.run(20 * time.Second)
	bound := float64(s.capacity) / s.latency.Seconds()
	t.Logf("queueing destination: %.0f/s = %.2f of the bound, limit %d, baseline %s", rate, rate/bound, r.l.get(), r.l.baseline)
	if rate < 0.7*bound {
		t.Errorf("%.0f/s is %.2f of the bound %.0f/s; want ≥ 0.7", rate, rate/bound, bound)
	}
	if got := r.l.get(); got > 2*s.capacity {
		t.Errorf("the limit grew to %d against a capacity of %d: the destination's queue grows unchecked", got, s.capacity)
	}
}

// TestLimiterPinned: min == max never moves, whatever the answers.
func TestLimiterPinned(t *testing.T) {
	s := &simServer{latency: 150 * time.Millisecond, capacity: 10}
	r := newSimRun(t, 64, 64, s)
	r.run(5 * time.Second)
	if got := r.l.get(); got != 64 {
		t.Errorf("a pinned limit moved to %d, want 64", got)
	}
}

// TestDispatcherAdaptiveLimitGrowsWithDemand: with MinWorkers below Workers the dispatcher
// starts at 16 attempts under way and, while every attempt succeeds at a steady pace and
// work waits, raises the limit up to Workers and never past it.
func TestDispatcherAdaptiveLimitGrowsWithDemand(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	s.hold = holdFor(20 * time.Millisecond)
	for i := range 3000 {
		v := "v" + strconv.Itoa(i%1000)
		q.add(v, req(evURL(v, i/1000)))
	}
	opts := fastOpts()
	opts.Workers, opts.MinWorkers, opts.Window = 96, 4, 2048
	d := NewDispatcher(q, s, opts)
	if got := d.Stats(); got.Limit != 16 || got.MinLimit != 4 || got.MaxLimit != 96 {
		t.Errorf("before Run: limit %d between %d and %d; want 16 between 4 and 96", got.Limit, got.MinLimit, got.MaxLimit)
	}
	start(t, d)
	waitFor(t, "delivery", drained(q))
	s.mu.Lock()
	peak := s.maxInflight
	s.mu.Unlock()
	if peak <= 16 || peak > 96 {
		t.Errorf("at most %d attempts were under way at once; want more than the initial 16 and at most Workers (96)", peak)
	}
	if b := d.Stats().Baseline; b < 20*time.Millisecond {
		t.Errorf("baseline %s; want about the 20 ms the sender takes", b)
	}
	checkQueue(t, q)
	s.check(t)
}

// TestLimiterLatencyAloneKeepsTheLatencyFloor: round trips that grow without any refusal (a
// queue far below the limit, or a busy machine) lower the limit to latencyFloor and no
// further: only back-pressure goes below it.
func TestLimiterLatencyAloneKeepsTheLatencyFloor(t *testing.T) {
	s := &simServer{latency: 5 * time.Millisecond, capacity: 8, queue: true}
	r := newSimRun(t, 4, 1024, s)
	r.run(30 * time.Second)
	if got := r.l.get(); got < latencyFloor {
		t.Errorf("round trips alone took the limit to %d, below the latency floor %d", got, latencyFloor)
	}
}
