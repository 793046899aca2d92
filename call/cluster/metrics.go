package cluster

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds the stream queries of one scrape.
const scrapeTimeout = 2 * time.Second

// Collector returns the node's and the streams' figures for Prometheus:
// this node's transitions, lost races, timeouts applied and timers held;
// the call stream's messages, bytes and last sequence and the fired timers
// waiting for a node, read from JetStream at each scrape (absent when it
// is unreachable).
func (e *Engine) Collector() prometheus.Collector { return (*collector)(e) }

type collector Engine

var (
	descTransitions = prometheus.NewDesc("callfsm_cluster_transitions_total",
		"Events this node appended to the call stream (creations included).", nil, nil)
	descConflicts = prometheus.NewDesc("callfsm_cluster_conflicts_total",
		"Appends of this node refused because another node's came first (each is retried from the new state).", nil, nil)
	descTimeouts = prometheus.NewDesc("callfsm_timeouts_fired_total",
		"Timeouts that fired and applied a transition (on this node).", nil, nil)
	descArmErrors = prometheus.NewDesc("callfsm_cluster_timer_arm_errors_total",
		"Timer schedules this node failed to publish.", nil, nil)
	descHeld = prometheus.NewDesc("callfsm_cluster_timers_held",
		"Fired timers this node holds until their deadline.", nil, nil)
	descStreamMsgs = prometheus.NewDesc("callfsm_stream_messages",
		"Messages in a JetStream stream of callfsm.", []string{"stream"}, nil)
	descStreamBytes = prometheus.NewDesc("callfsm_stream_bytes",
		"Bytes in a JetStream stream of callfsm.", []string{"stream"}, nil)
	descStreamLast = prometheus.NewDesc("callfsm_stream_last_sequence",
		"Last sequence of a JetStream stream of callfsm.", []string{"stream"}, nil)
	descTimersWaiting = prometheus.NewDesc("callfsm_cluster_timers_waiting",
		"Fired timers no node has taken yet.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTransitions, descConflicts, descTimeouts, descArmErrors, descHeld,
		descStreamMsgs, descStreamBytes, descStreamLast, descTimersWaiting} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := (*Engine)(c)
	st := e.Stats()
	ch <- prometheus.MustNewConstMetric(descTransitions, prometheus.CounterValue, float64(st.Transitions))
	ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.CounterValue, float64(st.Conflicts))
	ch <- prometheus.MustNewConstMetric(descTimeouts, prometheus.CounterValue, float64(st.Timeouts))
	ch <- prometheus.MustNewConstMetric(descArmErrors, prometheus.CounterValue, float64(e.timers.armErrors.Load()))
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(st.TimersHeld))

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	js := e.log.JetStream()
	for _, name := range []string{e.log.Stream(), e.cfg.TimerStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info := s.CachedInfo()
		ch <- prometheus.MustNewConstMetric(descStreamMsgs, prometheus.GaugeValue, float64(info.State.Msgs), name)
		ch <- prometheus.MustNewConstMetric(descStreamBytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
		ch <- prometheus.MustNewConstMetric(descStreamLast, prometheus.GaugeValue, float64(info.State.LastSeq), name)
	}
	if cons, err := js.Consumer(ctx, e.cfg.TimerStream, timerConsumer); err == nil {
		ch <- prometheus.MustNewConstMetric(descTimersWaiting, prometheus.GaugeValue, float64(cons.CachedInfo().NumPending))
	}
}
