package emulator

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Overload choices of Faults.Overload: what a request finds when Faults.Capacity requests
// are already being served.
const (
	OverloadRefuse503 = "503"   // answered 503 Service Unavailable (the default)
	OverloadRefuse429 = "429"   // answered 429 Too Many Requests (Retry-After from Faults.RetryAfter)
	OverloadQueue     = "queue" // waits, first come first served, for a request to finish: latency grows
)

// validOverload reports whether o is one of the Overload choices ("" is the default, 503).
func validOverload(o string) bool {
	switch o {
	case "", OverloadRefuse503, OverloadRefuse429, OverloadQueue:
		return true
	}
	return false
}

// jittered spreads d uniformly over d × [1 - j, 1 + j].
func jittered(d time.Duration, j float64) time.Duration {
	if j <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
}

// wait sleeps for d (nothing when d ≤ 0); false when ctx ended first.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// gate admits at most limit requests at once (0: any number); with queueing, the others
// wait in arrival order for a slot.
type gate struct {
	mu      sync.Mutex
	limit   int
	busy    int
	waiters []chan struct{}
}

// setLimit changes the limit; a raised limit (or none) lets waiting requests in.
func (g *gate) setLimit(n int) {
	g.mu.Lock()
	g.limit = n
	g.handOver()
	g.mu.Unlock()
}

// handOver gives free slots to waiters; g.mu is held.
func (g *gate) handOver() {
	for len(g.waiters) > 0 && (g.limit <= 0 || g.busy < g.limit) {
		g.busy++
		close(g.waiters[0])
		g.waiters = g.waiters[1:]
	}
	if len(g.waiters) == 0 {
		g.waiters = nil
	}
}

// enter takes a slot. Without one free it returns false at once, or, with queue set, waits
// for one (false when ctx ends first). A true answer must be followed by leave.
func (g *gate) enter(ctx context.Context, queue bool) bool {
	g.mu.Lock()
	if g.limit <= 0 || g.busy < g.limit {
		g.busy++
		g.mu.Unlock()
		return true
	}
	if !queue {
		g.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	g.waiters = append(g.waiters, ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, w := range g.waiters {
			if w == ch {
				g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
				return false
			}
		}
		// The slot was handed over as the context ended: give it back.
		g.busy--
		g.handOver()
		return false
	}
}

// leave frees a slot, handing it to the first waiter.
func (g *gate) leave() {
	g.mu.Lock()
	g.busy--
	g.handOver()
	g.mu.Unlock()
}

// state is the number of requests served and waiting now.
func (g *gate) state() (busy, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.busy, len(g.waiters)
}

// admit applies the capacity model to one request: it reports whether the request may be
// served (then leave must be called once it is answered) and, when not, has answered it
// with the overload status after the latency (the network's share of a refusal).
func (e *Emulator) admit(w http.ResponseWriter, r *http.Request, d decision, finish func(int, Outcome)) (served bool) {
	if d.capacity <= 0 {
		return true
	}
	if e.faults.gate.enter(r.Context(), d.overload == OverloadQueue) {
		return true
	}
	if r.Context().Err() != nil {
		finish(0, OutcomeAbandoned)
		return false
	}
	e.counters.refused.Add(1)
	status := http.StatusServiceUnavailable
	if d.overload == OverloadRefuse429 {
		status = http.StatusTooManyRequests
	}
	if !wait(r.Context(), d.latency) {
		finish(0, OutcomeAbandoned)
		return false
	}
	finish(status, OutcomeOverloaded)
	writeFault(w, status, d.retryAfter)
	return false
}
