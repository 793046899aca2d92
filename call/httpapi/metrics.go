package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API's Prometheus collectors. They exist whether or not a
// Registerer was given; only registered ones are exported.
//
//	callfsm_calls_live                          gauge: live calls in the engine
//	callfsm_transitions_total{event}            counter: events in the log, by name
//	callfsm_http_requests_total{route,code}     counter: requests by route pattern and status
//	callfsm_http_request_duration_seconds{route} histogram: time to answer (SSE: the stream's life)
//	callfsm_sse_streams                         gauge: open GET /v1/events streams
//	callfsm_history_calls{live}                 gauge: calls the history holds
//	callfsm_history_lag_events                  gauge: log records the history has not applied yet
//
// callfsm_transitions_total counts every record the history reads,
// replayed ones included, so it is the log's total and does not reset when
// the server restarts.
type metrics struct {
	collectors  []prometheus.Collector
	transitions *prometheus.CounterVec
	requests    *prometheus.CounterVec
	durations   *prometheus.HistogramVec
	streams     prometheus.Gauge
	// byEvent caches transitions' children; only the history's goroutine
	// uses it.
	byEvent map[string]prometheus.Counter
}

func newMetrics(a *API) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callfsm_transitions_total",
			Help: "Events in the event log, by event name (each is one transition, or a call's creation).",
		}, []string{"event"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callfsm_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callfsm_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern (for event streams, how long they stayed open).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callfsm_sse_streams",
			Help: "Open GET /v1/events streams.",
		}),
		byEvent: make(map[string]prometheus.Counter),
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "callfsm_calls_live",
		Help: "Live calls, as the event log tells (every node's, when nodes share the log).",
	}, func() float64 { n, _ := a.hist.size(); return float64(n) })
	historyLive := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "callfsm_history_calls", Help: "Calls whose history GET /v1/calls/{call_id} can answer.",
		ConstLabels: prometheus.Labels{"live": "true"},
	}, func() float64 { n, _ := a.hist.size(); return float64(n) })
	historyEnded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "callfsm_history_calls", Help: "Calls whose history GET /v1/calls/{call_id} can answer.",
		ConstLabels: prometheus.Labels{"live": "false"},
	}, func() float64 { _, n := a.hist.size(); return float64(n) })
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "callfsm_history_lag_events",
		Help: "Records in the event log the call history has not applied yet.",
	}, func() float64 {
		last, seq := a.log.LastSeq(), a.hist.applied()
		if seq >= last {
			return 0
		}
		return float64(last - seq)
	})
	m.collectors = []prometheus.Collector{live, m.transitions, m.requests, m.durations, m.streams, historyLive, historyEnded, lag}
	return m
}

// register registers every collector with r.
func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// transition counts one event read from the log.
func (m *metrics) transition(name string) {
	c, ok := m.byEvent[name]
	if !ok {
		c = m.transitions.WithLabelValues(name)
		m.byEvent[name] = c
	}
	c.Inc()
}

// request counts one answered request.
func (m *metrics) request(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.durations.WithLabelValues(route).Observe(d.Seconds())
}

// handler serves the gatherer's metrics in the Prometheus text format.
func (m *metrics) handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
