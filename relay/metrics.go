package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/queue"
)

// countersCollector exports the queue's reconciling counters as the woorelay_events metric,
// the dead letters waiting, and (when the queue can tell) the age of the oldest queued event.
type countersCollector struct {
	q      queue.Queue
	desc   *prometheus.Desc
	dead   *prometheus.Desc
	oldest *prometheus.Desc
	now    func() time.Time
}

func newCountersCollector(q queue.Queue) *countersCollector {
	return &countersCollector{q: q, now: time.Now,
		desc: prometheus.NewDesc("woorelay_events",
			"Events by state since the queue was created; received = delivered + dead_lettered + filtered + queued (duplicates and replayed are counted apart).",
			[]string{"state"}, nil),
		dead: prometheus.NewDesc("woorelay_queue_dead_letters",
			"Dead letters waiting for a fix and a replay (woorelay dlq list).", nil, nil),
		oldest: prometheus.NewDesc("woorelay_queue_oldest_event_age_seconds",
			"Age of the oldest event waiting for delivery (0 when none waits): how far delivery is behind ingest.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.dead
	if _, ok := c.q.(queue.OldestReporter); ok {
		ch <- c.oldest
	}
}

// Collect implements prometheus.Collector.
func (c *countersCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.q.Counters()
	for _, s := range []struct {
		state string
		v     int64
	}{{"received", n.Received}, {"delivered", n.Delivered}, {"dead_lettered", n.DeadLettered}, {"filtered", n.Filtered},
		{"queued", n.Queued}, {"duplicates", n.Duplicates}, {"replayed", n.Replayed}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(s.v), s.state)
	}
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(n.DeadLettered))
	if o, ok := c.q.(queue.OldestReporter); ok {
		t, found, err := o.OldestReceived()
		if err != nil {
			return // a scrape that fails whole for one figure would hide the others
		}
		age := 0.0
		if found {
			age = max(c.now().Sub(t).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
	}
}
