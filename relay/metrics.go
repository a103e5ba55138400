package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/queue"
)

// countersCollector exports the queue's reconciling counters as the woorelay_events metric.
type countersCollector struct {
	q    queue.Queue
	desc *prometheus.Desc
}

func newCountersCollector(q queue.Queue) *countersCollector {
	return &countersCollector{q: q, desc: prometheus.NewDesc("woorelay_events",
		"Events by state since the queue was created; received = delivered + dead_lettered + filtered + queued (duplicates and replayed are counted apart).",
		[]string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

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
}
