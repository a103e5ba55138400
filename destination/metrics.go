package destination

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/queue"
)

// metrics are the dispatcher's Prometheus collectors. They exist (and are updated) even when
// no Registerer is given, so the code paths are the same.
type metrics struct {
	attempts     *prometheus.CounterVec   // by class, status and source
	events       *prometheus.CounterVec   // by outcome (delivered, dead_lettered, filtered, retry_scheduled) and source
	latency      *prometheus.HistogramVec // received at ingest -> delivered, by source
	duration     prometheus.Histogram     // one request
	inflight     prometheus.Gauge
	loaded       prometheus.Gauge
	lanes        prometheus.Gauge
	pauses       prometheus.Counter
	pauseSeconds prometheus.Counter
	overflows    prometheus.Counter
	moved        prometheus.Counter
	queueErrors  *prometheus.CounterVec // by operation
	backlog      prometheus.GaugeFunc
	limit        prometheus.Gauge
	baseline     prometheus.Gauge
	decreases    *prometheus.CounterVec // by reason: back-pressure, latency
	overQuota    prometheus.Counter
}

func newMetrics(q queue.Queue) *metrics {
	const ns, sub = "woorelay", "delivery"
	return &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "attempts_total",
			Help: "Requests sent to the destination, by class (done, retry, dead), HTTP status (none for a transport error) and source.",
		}, []string{"class", "status", "source"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Events leaving the dispatcher, by outcome (delivered, dead_lettered, filtered by the mapping at delivery, or retry_scheduled: one per failed attempt) and source.",
		}, []string{"outcome", "source"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "latency_seconds",
			Help:    "Time from ingest to delivery of an event, retries included, by source.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400},
		}, []string{"source"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Duration of one request to the destination, whatever its outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "in_flight",
			Help: "Requests to the destination under way.",
		}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "loaded_items",
			Help: "Queue items held in memory by the dispatcher (bounded by its window).",
		}),
		lanes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "lanes",
			Help: "Visitors with items in memory (one ordered lane each).",
		}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "pauses_total",
			Help: "Times all sending paused because the destination answered 429 with Retry-After.",
		}),
		pauseSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "pause_seconds_total",
			Help: "Seconds of pause the destination asked for with 429 Retry-After.",
		}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "moved_items_total",
			Help: "Items dropped from memory because their partition moved to another relay, which delivers them.",
		}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "lane_overflows_total",
			Help: "Times a visitor had more items pending than one lane holds; the rest are read later, in order.",
		}),
		queueErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "queue_errors_total",
			Help: "Errors from the queue, by operation.",
		}, []string{"op"}),
		backlog: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "woorelay", Subsystem: "queue", Name: "backlog",
			Help: "Events queued and not yet delivered or dead-lettered (the queue's Queued counter).",
		}, func() float64 { return float64(q.Counters().Queued) }),
		limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "concurrency_limit",
			Help: "The adaptive limit on requests to the destination under way (between --workers-min and --workers).",
		}),
		baseline: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "rtt_baseline_seconds",
			Help: "The round trip the limit is judged against: the lowest one-second mean of the last 30 seconds.",
		}),
		decreases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "limit_decreases_total",
			Help: "Times the concurrency limit was lowered, by reason: back-pressure (429, 502, 503, 504, timeouts, refused connections) or latency (round trips well above the baseline).",
		}, []string{"reason"}),
		overQuota: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "over_quota_total",
			Help: "Requests Woopra answered 402 Over Quota: the data is logged (counted delivered) but triggers do not run. Alert on any increase.",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.attempts, m.events, m.latency, m.duration, m.inflight,
		m.loaded, m.lanes, m.pauses, m.pauseSeconds, m.overflows, m.moved, m.queueErrors, m.backlog,
		m.limit, m.baseline, m.decreases, m.overQuota} {
		if err := r.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return errors.New("destination: registering metrics: " + err.Error() + "; give each dispatcher its own prometheus.Registerer (or none)")
	}
	return nil
}

func (m *metrics) attempt(a Attempt, source string) {
	status := "none"
	if a.Status != 0 {
		status = strconv.Itoa(a.Status)
	}
	m.attempts.WithLabelValues(a.Class.String(), status, source).Inc()
	m.duration.Observe(a.Duration.Seconds())
}
