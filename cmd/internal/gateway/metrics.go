package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/web/metrics"
)

// metrics is the /metrics source: the relay's streams, the sessions and
// the counters of the other parts.
func (g *Gateway) metrics() *metrics.Metrics {
	return metrics.New(metrics.Source{
		Streams: func() []relay.StreamStats {
			var out []relay.StreamStats
			for _, s := range g.hub.Streams() {
				out = append(out, s.Stats())
			}
			return out
		},
		FanoutDelay: g.hub.FanoutDelay,
		Publishers:  g.whip.Sessions,
		Viewers:     g.whep.Sessions,
		RelayLinks: func() int {
			if g.puller == nil {
				return 0
			}
			return len(g.puller.Links())
		},
		RefusedSections: func(f func(direction, kind, reason string, n uint64)) {
			g.whip.RefusedSections(func(k, r string, n uint64) { f("whip", k, r, n) })
			g.whep.RefusedSections(func(k, r string, n uint64) { f("whep", k, r, n) })
		},
		Extra: g.collectors(),
	})
}

// collectors export the counters of the parts outside the relay.
func (g *Gateway) collectors() []prometheus.Collector {
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "livegate", Name: name, Help: help, ConstLabels: labels}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "livegate", Name: name, Help: help}, f)
	}
	const hookHelp = "Webhook events by outcome: delivered, failed (attempts exhausted) or dropped (queue full)."
	out := []prometheus.Collector{
		counter("webhook_events_total", hookHelp, prometheus.Labels{"result": "delivered"}, func() float64 { return float64(g.hooks.Delivered.Load()) }),
		counter("webhook_events_total", hookHelp, prometheus.Labels{"result": "failed"}, func() float64 { return float64(g.hooks.Failed.Load()) }),
		counter("webhook_events_total", hookHelp, prometheus.Labels{"result": "dropped"}, func() float64 { return float64(g.hooks.Dropped.Load()) }),
		counter("recorder_spool_errors_total", "Segment writes to the recording spool that failed (disk full, record-spool-max, I/O errors).", nil,
			func() float64 { return float64(g.rec.SpoolErrors()) }),
		gauge("recorder_spool_bytes", "Bytes of recording files waiting in the spool for upload.", func() float64 { return float64(g.rec.SpoolBytes()) }),
	}
	if g.rtmpIn != nil {
		out = append(out, gauge("rtmp_connections", "Open RTMP ingest connections.", func() float64 { return float64(g.rtmpIn.Conns()) }))
	}
	if g.rtsp != nil {
		out = append(out, gauge("rtsp_sessions", "Open RTSP sessions (publishers and players).", func() float64 { return float64(g.rtsp.Sessions()) }))
	}
	return out
}
