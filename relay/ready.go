package relay

import (
	"sync"
	"time"
)

// storeReady is a queue that can tell whether it can store events now (queue/jetstream:
// not while its appends fail).
type storeReady interface{ Ready() error }

// readiness is what /readyz answers: ready between Start and Stop (or a halt), and, with a
// queue that can tell, only while it can store events, so that a load balancer sends the
// events a relay cannot store to one that can.
type readiness struct {
	mu      sync.Mutex
	final   bool // stopping or halted: not ready for good
	storeOK bool
	set     func(bool)
}

// store records whether the queue can store events.
func (g *readiness) store(ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.final {
		g.storeOK = ok
		g.set(ok)
	}
}

// end makes the relay not ready for good.
func (g *readiness) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.final = true
	g.set(false)
}

// watchStore polls the queue's readiness every 250 ms until stop is closed, and turns
// /readyz to 503 while it cannot store, with a log line at each change.
func (r *Relay) watchStore(stop <-chan struct{}) {
	sr, ok := r.q.(storeReady)
	if !ok {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	up := true
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := sr.Ready()
		if (err == nil) == up {
			continue
		}
		up = err == nil
		if up {
			r.log.Info("the queue stores events again: ready")
		} else {
			r.log.Warn("the queue cannot store events: not ready (/readyz answers 503) until it can", "err", err)
		}
		r.ready.store(up)
	}
}
