// Package metrics exports livegate's state and traffic to Prometheus.
// Stream counters are read from the relay at scrape time, so the media
// path pays nothing for them.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/livegate/livegate/relay"
)

// Source is what the metrics read at scrape time. Nil funcs are skipped.
type Source struct {
	Streams    func() []relay.StreamStats
	Publishers func() int // WHIP sessions
	Viewers    func() int // WHEP sessions
	RelayLinks func() int
	// RefusedSections reports media sections refused in SDP answers, by
	// direction ("whip", "whep"), kind and reason.
	RefusedSections func(f func(direction, kind, reason string, n uint64))
	// FanoutDelay is the relay's own delay per packet (relay.Hub.FanoutDelay).
	FanoutDelay func() relay.FanoutStats
	// Extra lets other parts (recorder, egress) add their own collectors.
	Extra []prometheus.Collector
}

// Metrics owns a registry and the HTTP latency histogram.
type Metrics struct {
	reg  *prometheus.Registry
	http *prometheus.HistogramVec
}

// New builds the registry.
func New(src Source) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "livegate", Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method", "status"}),
	}
	reg.MustRegister(m.http, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&streamCollector{src: src})
	for _, c := range src.Extra {
		reg.MustRegister(c)
	}
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// Middleware records every request's latency under its route pattern (not
// the raw path, which would explode label cardinality).
func (m *Metrics) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				// Render the error now, so that the status recorded is
				// the one the client got, not the 200 of an unwritten
				// response.
				c.Error(err)
				err = nil
			}
			status := c.Response().Status
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			m.http.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

var (
	descStreams    = prometheus.NewDesc("livegate_streams", "Streams by state (live, or waiting for their publisher).", []string{"state"}, nil)
	descPublishers = prometheus.NewDesc("livegate_publisher_sessions", "WHIP sessions.", nil, nil)
	descViewerSess = prometheus.NewDesc("livegate_viewer_sessions", "WHEP sessions.", nil, nil)
	descLinks      = prometheus.NewDesc("livegate_relay_links", "Streams pulled from a parent node.", nil, nil)
	descViewers    = prometheus.NewDesc("livegate_stream_viewers", "Viewers per stream.", []string{"stream"}, nil)
	descBytesIn    = prometheus.NewDesc("livegate_stream_bytes_in_total", "RTP bytes received from the publisher.", []string{"stream", "kind"}, nil)
	descBytesOut   = prometheus.NewDesc("livegate_stream_bytes_out_total", "RTP bytes sent to viewers.", []string{"stream", "kind"}, nil)
	descPktsIn     = prometheus.NewDesc("livegate_stream_packets_in_total", "RTP packets received from the publisher.", []string{"stream", "kind"}, nil)
	descDropped    = prometheus.NewDesc("livegate_stream_dropped_packets", "Packets dropped for viewers that fell behind (current viewers).", []string{"stream", "kind"}, nil)
	descResent     = prometheus.NewDesc("livegate_stream_nack_retransmissions", "Packets retransmitted in answer to viewers' NACKs (current viewers).", []string{"stream", "kind"}, nil)
	descPLIs       = prometheus.NewDesc("livegate_stream_keyframe_requests_total", "Keyframe requests (PLI/FIR) from viewers.", []string{"stream", "kind"}, nil)
	descPLIsSent   = prometheus.NewDesc("livegate_stream_keyframe_requests_sent_total", "Keyframe requests sent to the publisher after coalescing.", []string{"stream", "kind"}, nil)
	descDelay      = prometheus.NewDesc("livegate_stream_delay_seconds",
		"Delay from the publisher to this node per frame: arrival minus the publisher's send time from its RTCP sender reports (relays forward them, so every node of a tree measures the whole way; across machines it includes their clock offset).",
		[]string{"stream", "kind"}, nil)
	descHop = prometheus.NewDesc("livegate_relay_hop_delay_seconds",
		"For a stream pulled from a parent node: this node's median delay from the publisher minus the parent's (last 128 frames each), i.e. what the last hop added.",
		[]string{"stream", "kind"}, nil)
	descFanout = prometheus.NewDesc("livegate_fanout_delay_seconds",
		"This node's own delay per packet: from its arrival from the publisher or parent node to when the last of its viewers' datagrams were handed to the kernel (queue to the fan-out worker and the fan-out itself; its tail is what the last viewer of a busy worker waits). Packets dropped for waiting over 500 ms for a busy worker are not counted here but in livegate_stream_dropped_packets.",
		nil, nil)
	descLayerBitrate = prometheus.NewDesc("livegate_simulcast_layer_bitrate_bits",
		"Bitrate a simulcast layer arrives at (last second), by stream and rid; with its picture size.",
		[]string{"stream", "rid", "width", "height"}, nil)
	descLayerViewers = prometheus.NewDesc("livegate_simulcast_layer_viewers",
		"WebRTC viewers reading a simulcast layer, by stream and rid.", []string{"stream", "rid"}, nil)
	descRefused = prometheus.NewDesc("livegate_refused_media_sections_total",
		"Media sections of WHIP/WHEP offers refused in the answer (port 0; inactive for the offer's BUNDLE tag), by reason.", []string{"direction", "kind", "reason"}, nil)
)

type streamCollector struct{ src Source }

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreams, descPublishers, descViewerSess, descLinks, descViewers,
		descBytesIn, descBytesOut, descPktsIn, descDropped, descResent, descPLIs, descPLIsSent, descRefused, descDelay, descHop,
		descFanout, descLayerBitrate, descLayerViewers} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	if f := c.src.Publishers; f != nil {
		gauge(descPublishers, float64(f()))
	}
	if f := c.src.Viewers; f != nil {
		gauge(descViewerSess, float64(f()))
	}
	if f := c.src.RelayLinks; f != nil {
		gauge(descLinks, float64(f()))
	}
	if f := c.src.RefusedSections; f != nil {
		f(func(direction, kind, reason string, n uint64) {
			counter(descRefused, float64(n), direction, kind, reason)
		})
	}
	if f := c.src.FanoutDelay; f != nil {
		d := f()
		buckets, cum := make(map[float64]uint64, len(relay.FanoutBuckets)), uint64(0)
		for i, b := range relay.FanoutBuckets {
			cum += d.Buckets[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descFanout, d.Samples, d.SumSeconds, buckets)
	}
	if c.src.Streams == nil {
		return
	}
	live, waiting := 0, 0
	for _, st := range c.src.Streams() {
		if st.Live {
			live++
		} else {
			waiting++
		}
		gauge(descViewers, float64(st.Readers), st.Path)
		// A stream may have several tracks of one kind (a publisher can
		// offer two video sections): their series are summed, since one
		// series emitted twice makes the registry fail the whole scrape.
		sums := map[string]*relay.TrackStats{}
		var kinds []string
		delays := map[string]*relay.DelayStats{}
		layers := map[string]bool{}
		for _, t := range st.Tracks {
			k := string(t.Kind)
			a := sums[k]
			if a == nil {
				a = &relay.TrackStats{}
				sums[k] = a
				kinds = append(kinds, k)
			}
			a.BytesIn += t.BytesIn
			a.BytesOut += t.BytesOut
			a.PacketsIn += t.PacketsIn
			a.Dropped += t.Dropped
			a.Retransmitted += t.Retransmitted
			a.KeyframeRequests += t.KeyframeRequests
			a.KeyframesAsked += t.KeyframesAsked
			for _, l := range t.Layers {
				if layers[l.RID] {
					continue // the same rid in another track: the first one's
				}
				layers[l.RID] = true
				gauge(descLayerBitrate, float64(l.Bitrate), st.Path, l.RID, strconv.Itoa(l.Width), strconv.Itoa(l.Height))
				gauge(descLayerViewers, float64(l.Readers), st.Path, l.RID)
			}
			if d := t.Delay; d != nil {
				m := delays[k]
				if m == nil {
					m = &relay.DelayStats{HopMs: d.HopMs, Buckets: make([]uint64, len(relay.DelayBuckets))}
					delays[k] = m
				}
				m.Samples += d.Samples
				m.SumSeconds += d.SumSeconds
				for i := range m.Buckets {
					if i < len(d.Buckets) {
						m.Buckets[i] += d.Buckets[i]
					}
				}
			}
		}
		for _, k := range kinds {
			a := sums[k]
			counter(descBytesIn, float64(a.BytesIn), st.Path, k)
			counter(descBytesOut, float64(a.BytesOut), st.Path, k)
			counter(descPktsIn, float64(a.PacketsIn), st.Path, k)
			gauge(descDropped, float64(a.Dropped), st.Path, k)
			gauge(descResent, float64(a.Retransmitted), st.Path, k)
			counter(descPLIs, float64(a.KeyframeRequests), st.Path, k)
			counter(descPLIsSent, float64(a.KeyframesAsked), st.Path, k)
			if d := delays[k]; d != nil {
				buckets, cum := make(map[float64]uint64, len(relay.DelayBuckets)), uint64(0)
				for i, b := range relay.DelayBuckets {
					cum += d.Buckets[i]
					buckets[b] = cum
				}
				ch <- prometheus.MustNewConstHistogram(descDelay, d.Samples, d.SumSeconds, buckets, st.Path, k)
				if d.HopMs != nil {
					gauge(descHop, *d.HopMs/1000, st.Path, k)
				}
			}
		}
	}
	gauge(descStreams, float64(live), "live")
	gauge(descStreams, float64(waiting), "waiting")
}
