package debugger

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/queue"
)

// healthSeries keeps one bucket a second for the last window seconds.
type healthSeries struct {
	buckets []bucket
	last    queue.Counters
	have    bool
}

// bucket is one second of the health view.
type bucket struct {
	T          int64          `json:"t"`           // unix seconds
	In         int64          `json:"in"`          // events received (the queue's counter)
	Out        int64          `json:"out"`         // events delivered (the queue's counter)
	Seen       int            `json:"seen"`        // events the debugger followed from ingest
	Attempts   int            `json:"attempts"`    // requests answered (or failed)
	LatencyAvg float64        `json:"latency_avg"` // ms
	LatencyMax float64        `json:"latency_max"` // ms
	Errors     map[string]int `json:"errors"`      // attempts that were not 2xx, by status ("0": no answer)
	Dropped    int64          `json:"dropped"`     // notes the debugger dropped so far
	Skipped    int64          `json:"skipped"`     // events the debugger did not follow so far (past its budget a second)
	Limit      int            `json:"limit"`       // delivery's concurrency limit at the end of the second
	InFlight   int            `json:"in_flight"`   // requests to Woopra under way then
	BaselineMs float64        `json:"baseline_ms"` // the round trip the limit is judged against
	latSum     float64
}

func newHealthSeries(window int) healthSeries {
	return healthSeries{buckets: make([]bucket, 0, window+1)}
}

// cur returns the bucket of the second t, starting it when needed.
func (h *healthSeries) cur(t time.Time) *bucket {
	s := t.Unix()
	if n := len(h.buckets); n > 0 && h.buckets[n-1].T >= s {
		return &h.buckets[n-1]
	}
	if len(h.buckets) == cap(h.buckets) {
		copy(h.buckets, h.buckets[1:])
		h.buckets = h.buckets[:len(h.buckets)-1]
	}
	h.buckets = append(h.buckets, bucket{T: s, Errors: map[string]int{}})
	return &h.buckets[len(h.buckets)-1]
}

func (h *healthSeries) in(t time.Time) { h.cur(t).Seen++ }

// attempt counts one answer (status 0: none came) that took latency ms.
func (h *healthSeries) attempt(t time.Time, status int, latency float64) {
	b := h.cur(t)
	b.Attempts++
	b.latSum += latency
	b.LatencyAvg = b.latSum / float64(b.Attempts)
	b.LatencyMax = max(b.LatencyMax, latency)
	if status < 200 || status > 299 {
		b.Errors[strconv.Itoa(status)]++
	}
}

// snapshot copies the series for a reader outside hmu: the buckets and their error counts,
// which the taps keep adding to.
func (h *healthSeries) snapshot() []bucket {
	out := slices.Clone(h.buckets)
	for i := range out {
		out[i].Errors = maps.Clone(out[i].Errors)
	}
	return out
}

// sample records the queue's counters at the second t: In and Out are what they grew by.
func (h *healthSeries) sample(t time.Time, c queue.Counters, ds destination.Stats, dropped, skipped int64) {
	b := h.cur(t.Add(-time.Second)) // the second that just ended
	if h.have {
		b.In, b.Out = c.Received-h.last.Received, c.Delivered-h.last.Delivered
	}
	b.Dropped, b.Skipped = dropped, skipped
	b.Limit, b.InFlight, b.BaselineMs = ds.Limit, ds.InFlight, float64(ds.Baseline)/float64(time.Millisecond)
	h.last, h.have = c, true
}
