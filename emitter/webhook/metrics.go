package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The values of the result label of callfsm_webhook_deliveries_total.
const (
	resultDelivered    = "delivered"
	resultDeadLettered = "dead_lettered"
)

// The values of the reason label of callfsm_webhook_failures_total: why an
// attempt failed.
const (
	reasonNetwork   = "network"    // no response: refused, reset, timed out, TLS…
	reasonStatus5xx = "status_5xx" // retried
	reasonStatus408 = "status_408" // retried
	reasonStatus429 = "status_429" // retried, after Retry-After
	reasonStatus4xx = "status_4xx" // any other 4xx: dead-lettered at once
	reasonStatus3xx = "status_3xx" // redirects are not followed: dead-lettered at once
	reasonOther     = "status_other"
)

var failureReasons = []string{
	reasonNetwork, reasonStatus5xx, reasonStatus408, reasonStatus429,
	reasonStatus4xx, reasonStatus3xx, reasonOther,
}

type metrics struct {
	deliveries *prometheus.CounterVec
	attempts   prometheus.Counter
	failures   *prometheus.CounterVec
	latency    prometheus.Histogram
}

const metricsNamespace, metricsSubsystem = "callfsm", "webhook"

// newMetrics makes the metrics every dispatcher keeps; register registers
// them.
func newMetrics() *metrics {
	const ns, sub = metricsNamespace, metricsSubsystem
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Events whose delivery finished, by result: delivered (a 2xx) or dead_lettered.",
		}, []string{"result"}),
		attempts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "attempts_total",
			Help: "HTTP requests made to deliver events, first tries and retries.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "failures_total",
			Help: "Attempts that failed, by reason: network, status_5xx, status_408, status_429 (retried), status_4xx, status_3xx, status_other (not retried).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_latency_seconds",
			Help:    "From an event's append to the 2xx that delivered it (the append time is the earlier of when the dispatcher read the event and the end of its timestamp's second).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}),
	}
	for _, r := range []string{resultDelivered, resultDeadLettered} {
		m.deliveries.WithLabelValues(r)
	}
	for _, r := range failureReasons {
		m.failures.WithLabelValues(r)
	}
	return m
}

// register registers m and the dispatcher's own collectors on reg, with
// the label url; nil reg registers nothing. On error nothing stays
// registered.
func (m *metrics) register(reg prometheus.Registerer, url string, own ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	cs := append([]prometheus.Collector{m.deliveries, m.attempts, m.failures, m.latency}, own...)
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"url": url}, reg)
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// queueDepthGauge reads depth, what a dispatcher holds unfinished, at
// scrape time. Its help is the same for every dispatcher, so that
// dispatchers of both kinds may share a registry.
func queueDepthGauge(depth func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "queue_depth",
		Help: "Events read (a Dispatcher, at most Config.Window) or received (a JetStreamDispatcher, at most Window per partition) whose delivery has not finished.",
	}, depth)
}
