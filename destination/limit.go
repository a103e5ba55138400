package destination

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Tuning of the adaptive limit (see the package doc, "Concurrency").
const (
	// limitInitial is where an adaptive limit starts (clamped to its bounds); slow start
	// doubles it every cycle from there.
	limitInitial = 16
	// backoffFactor multiplies the limit after a cycle with back-pressure (429, 503, 502,
	// 504, a timeout, a refused connection).
	backoffFactor = 0.75
	// latencyFactor multiplies the limit after a cycle whose mean round trip was more than
	// latencyTolerance × the baseline (plus latencySlack): requests queue somewhere.
	latencyFactor = 0.9
	// latencyFloor is as low as round trips alone may take the limit (within its bounds):
	// they also rise for reasons fewer requests do not cure (the relay's own CPU, a busy
	// machine, the network), so below it only back-pressure lowers the limit.
	latencyFloor     = 64
	latencyTolerance = 2.0
	// slowStartExit ends slow start once a cycle's mean round trip is this far above the
	// baseline (plus latencySlack).
	slowStartExit = 1.5
	latencySlack  = 5 * time.Millisecond
	// minCycle is the shortest decision cycle (a cycle is otherwise one baseline round trip).
	minCycle = 20 * time.Millisecond
	// baselineBucket and baselineBuckets make the baseline: the shortest round trip of the
	// last 30 seconds, kept as the minimum of each second.
	baselineBucket  = time.Second
	baselineBuckets = 30
	// logFactor is how far the limit must move from the last logged value to be logged again.
	logFactor = 2.0
)

// signal is what one attempt tells the limiter.
type signal uint8

const (
	sigRTT      signal = iota // an answer whose round trip says how loaded the destination is
	sigPressure               // back-pressure: lower the limit
	sigNeutral                // says nothing about load (a 500, a request that could not be built)
)

// classifySignal reads an attempt as the limiter sees it.
func classifySignal(a Attempt) signal {
	switch a.Status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return sigPressure
	case 0:
		if a.Err == nil || errors.Is(a.Err, context.Canceled) {
			return sigNeutral
		}
		return sigPressure // timeout, refused or reset connection: no answer at all
	}
	if a.Status >= 500 {
		return sigNeutral
	}
	return sigRTT
}

// limiter is the adaptive limit on attempts under way (AIMD on the round trip against a
// moving baseline, see the package doc). Workers report attempts through observe; the
// scheduler reads the limit and reports, through blocked, that work waited on it. All
// methods are safe for concurrent use.
type limiter struct {
	min, max int
	fixed    bool
	log      *slog.Logger
	m        *metrics
	now      func() time.Time

	cur     atomic.Int64 // the limit, read by the scheduler on every dispatch
	waiting atomic.Bool  // work waited on the limit during this cycle

	mu         sync.Mutex
	limit      float64
	ssthresh   float64 // slow start (doubling) below it, additive increase above
	cycleStart time.Time
	sumRTT     time.Duration
	nRTT       int
	pressure   int
	answered   int // attempts with any answer (RTT or pressure) this cycle
	decreased  time.Time
	lastGood   float64 // the limit of the last cycle with answers
	wmax       float64 // the limit when back-pressure was last met
	probing    bool    // the limit is halved to measure the round trip without a queue
	probeStart time.Time
	probeMin   time.Duration
	outage     bool // the last cycle had failures and no answer
	buckets    [baselineBuckets]rttBucket
	bucketAt   int
	baseline   time.Duration
	logged     float64
}

// rttBucket is the shortest round trip of one second.
type rttBucket struct {
	start time.Time
	min   time.Duration
}

func newLimiter(minL, maxL int, m *metrics, log *slog.Logger, now func() time.Time) *limiter {
	minL = min(max(minL, 1), maxL)
	l := &limiter{min: minL, max: maxL, fixed: minL >= maxL, log: log, m: m, now: now}
	start := float64(maxL)
	if !l.fixed {
		start = math.Min(math.Max(limitInitial, float64(minL)), float64(maxL))
	}
	l.limit, l.ssthresh, l.lastGood, l.logged = start, float64(maxL), start, start
	l.cur.Store(int64(start))
	l.cycleStart = now()
	m.limit.Set(start)
	return l
}

// get is the current limit.
func (l *limiter) get() int { return int(l.cur.Load()) }

// blocked tells the limiter that ready work waited because the limit was reached: the
// limit is in use, so a calm cycle may raise it.
func (l *limiter) blocked() {
	if !l.waiting.Load() {
		l.waiting.Store(true)
	}
}

// observe takes one attempt started at start.
func (l *limiter) observe(start time.Time, a Attempt) {
	sig := classifySignal(a)
	if sig == sigNeutral && a.Err == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch sig {
	case sigRTT:
		l.sumRTT += a.Duration
		l.nRTT++
		l.answered++
		l.addBaseline(now, start, a.Duration)
	case sigPressure:
		// An attempt sent before the last decrease was sent under the old limit: it says
		// nothing about the new one (one decrease per round trip, as TCP does).
		if start.After(l.decreased) {
			l.pressure++
		}
		if a.Status != 0 {
			l.answered++
		}
	}
	cycle := max(l.baseline, minCycle)
	if now.Sub(l.cycleStart) >= cycle {
		l.decide(now)
	}
}

// addBaseline adds a round trip (of an attempt started at start) to the current one-second
// bucket and refreshes the baseline: the shortest round trip of the last 30 seconds (the
// bucket minimums). When that minimum has risen by more than a tenth, the rise may be a
// queue of the limit's own making, standing long enough to fill the window: the limit is
// halved for two round trips first (a probe, as BBR's ProbeRTT), and the shortest round trip
// of the attempts started after the cut becomes the baseline.
func (l *limiter) addBaseline(now, start time.Time, rtt time.Duration) {
	if l.probing {
		if start.After(l.probeStart) && (l.probeMin == 0 || rtt < l.probeMin) {
			l.probeMin = rtt
		}
		if l.probeMin == 0 || now.Sub(l.probeStart) < 2*l.baseline {
			return
		}
		l.probing, l.baseline = false, l.probeMin
		l.buckets = [baselineBuckets]rttBucket{}
		l.bucketAt = 0
		l.buckets[0] = rttBucket{start: now, min: l.probeMin}
		return
	}
	b := &l.buckets[l.bucketAt]
	if b.start.IsZero() || now.Sub(b.start) >= baselineBucket {
		l.bucketAt = (l.bucketAt + 1) % baselineBuckets
		b = &l.buckets[l.bucketAt]
		*b = rttBucket{start: now, min: rtt}
	}
	if rtt < b.min {
		b.min = rtt
	}
	low := b.min
	for i := range l.buckets {
		x := &l.buckets[i]
		if !x.start.IsZero() && now.Sub(x.start) < baselineBuckets*baselineBucket && x.min < low {
			low = x.min
		}
	}
	if l.baseline > 0 && low > l.baseline+l.baseline/10 && !l.fixed {
		l.probing, l.probeStart, l.probeMin = true, now, 0
		l.limit = math.Max(l.limit/2, math.Min(l.limit, l.latencyMin()))
		l.decreased = now
		l.cur.Store(int64(l.limit))
		l.m.limit.Set(math.Floor(l.limit))
		l.m.decreases.WithLabelValues("probe").Inc()
		return
	}
	l.baseline = low
}

// decide ends a cycle: lower the limit on back-pressure or queueing, raise it when the
// limit was in use and the destination kept its pace, else leave it.
func (l *limiter) decide(now time.Time) {
	prev := l.limit
	reason := ""
	var mean time.Duration
	if l.nRTT > 0 {
		mean = l.sumRTT / time.Duration(l.nRTT)
	}
	waiting := l.waiting.Swap(false)
	switch {
	case l.fixed:
	case l.pressure > 0:
		if l.answered == 0 {
			// Nothing answered at all: an outage rather than load. Fall to the floor and
			// remember the last good limit, so recovery slow-starts back to half of it.
			if !l.outage {
				l.ssthresh = math.Max(l.lastGood/2, float64(l.min))
			}
			l.outage = true
		} else {
			l.ssthresh = math.Max(l.limit*backoffFactor, float64(l.min))
			l.wmax = l.limit
		}
		l.limit = math.Max(l.limit*backoffFactor, float64(l.min))
		l.decreased = now
		reason = "back-pressure"
	case l.nRTT > 0 && mean > time.Duration(float64(l.baseline)*latencyTolerance)+latencySlack && now.Sub(l.decreased) > 2*l.baseline:
		l.limit = math.Max(l.limit*latencyFactor, l.latencyMin())
		l.ssthresh = l.limit
		l.decreased = now
		reason = "latency"
	case waiting && l.nRTT > 0:
		if l.limit < l.ssthresh && mean > time.Duration(float64(l.baseline)*slowStartExit)+latencySlack {
			// Round trips rise: the destination starts to queue. Leave slow start before
			// doubling into refusals (HyStart's rule), and probe additively from here.
			l.ssthresh = l.limit
		}
		if l.limit < l.ssthresh {
			l.limit = math.Min(l.limit*2, l.ssthresh)
			reason = "slow start"
		} else {
			step := math.Sqrt(l.limit)
			if l.limit > l.wmax*0.9 && l.limit < l.wmax*1.1 {
				step = math.Max(1, step/4) // near where back-pressure began last time: probe gently
			}
			l.limit += step
			reason = "increase"
		}
		l.limit = math.Min(l.limit, float64(l.max))
	}
	if l.answered > 0 {
		l.outage = false
		l.lastGood = l.limit
	}
	l.cycleStart, l.sumRTT, l.nRTT, l.pressure, l.answered = now, 0, 0, 0, 0
	l.cur.Store(int64(l.limit))
	l.m.limit.Set(math.Floor(l.limit))
	l.m.baseline.Set(l.baseline.Seconds())
	if l.limit < prev {
		l.m.decreases.WithLabelValues(reason).Inc()
	}
	if l.limit >= l.logged*logFactor || l.limit <= l.logged/logFactor {
		l.log.Info("delivery concurrency limit moved", "from", int(l.logged), "to", int(l.limit), "reason", reason,
			"baseline", l.baseline.Round(time.Millisecond), "cycle_rtt", mean.Round(time.Millisecond), "min", l.min, "max", l.max)
		l.logged = l.limit
	}
}

// latencyMin is the lowest limit a latency decision or a probe may set.
func (l *limiter) latencyMin() float64 {
	return float64(min(max(latencyFloor, l.min), l.max))
}

// snapshot is the limit and the baseline for Stats.
func (l *limiter) snapshot() (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit), l.baseline
}
