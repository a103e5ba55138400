package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec   // route, source, outcome
	events   *prometheus.CounterVec   // route, source, outcome
	latency  *prometheus.HistogramVec // route
	inFlight prometheus.Gauge
	anon     prometheus.Gauge       // requests read before their write key is known
	clamped  *prometheus.CounterVec // route, source: event times replaced by receivedAt
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "woorelay", Subsystem: "ingest", Name: "requests_total",
			Help: "Ingest requests by route, source and outcome (ok, client_closed when the client hung up before the answer, or the error code answered: invalid_json, unknown_write_key, overloaded, body_timeout, ...).",
		}, []string{"route", "source", "outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "woorelay", Subsystem: "ingest", Name: "events_total",
			Help: "Events stored by route, source and outcome (queued, filtered, rejected, duplicate), counted also when the client hung up before the answer.",
		}, []string{"route", "source", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "woorelay", Subsystem: "ingest", Name: "request_duration_seconds",
			Help:    "Time from the start of an ingest request to its answer, including the store's append.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "woorelay", Subsystem: "ingest", Name: "in_flight_requests",
			Help: "Authenticated ingest requests being handled now (at most MaxInFlight).",
		}),
		anon: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "woorelay", Subsystem: "ingest", Name: "unauthenticated_requests",
			Help: "Ingest requests whose body is being read before their write key is known (at most MaxUnauthenticated).",
		}),
		clamped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "woorelay", Subsystem: "ingest", Name: "timestamps_clamped_total",
			Help: "Events whose time was out of range (before 2000 or over 366 days after receivedAt) and was replaced by receivedAt.",
		}, []string{"route", "source"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.events, m.latency, m.inFlight, m.anon, m.clamped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
