package jetstream

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// health is whether appends succeed: the first failed Append makes the queue not ready
// (Ready answers why), and the next successful Append, or a probe of the items stream's
// leader (once a second while failing, since a relay taken out of its load balancer gets no
// appends to learn from), makes it ready again.
type health struct {
	q       *Queue
	mu      sync.Mutex
	err     error // the last failure, nil while appends succeed
	since   time.Time
	probing bool
}

func (h *health) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.since = time.Now()
		h.q.log.Warn("appends to the items stream fail: this relay reports not ready until one succeeds", "err", err)
	}
	h.err = err
	if !h.probing {
		h.probing = true
		go h.probe()
	}
}

func (h *health) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		h.q.log.Info("appends to the items stream succeed again: ready", "after", time.Since(h.since).Round(time.Millisecond))
		h.err = nil
	}
}

// probe asks the items stream's leader for the stream's state once a second while appends
// fail, and declares the queue ready when it answers.
func (h *health) probe() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.q.closing:
			h.mu.Lock()
			h.probing = false
			h.mu.Unlock()
			return
		}
		h.mu.Lock()
		if h.err == nil {
			h.probing = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := h.q.items.Info(ctx)
		cancel()
		if err == nil {
			h.ok()
		}
	}
}

// Ready says whether this relay can store events now: an error, naming the last failure,
// while its appends fail and the items stream's leader does not answer it. A relay reports
// it on /readyz, so that a load balancer sends the events to one that can store them.
func (q *Queue) Ready() error {
	h := &q.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return nil
	}
	return fmt.Errorf("appends to NATS JetStream failing for %s: %w", time.Since(h.since).Round(time.Second), h.err)
}
