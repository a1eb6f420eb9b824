package whep

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/rtcp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtc/lite"
	"github.com/livegate/livegate/relay/simulcast"
)

// viewerReader is what a viewer's section reads: a relay reader, or for a
// simulcast track a simulcast.Switcher that moves the viewer between the
// track's layers.
type viewerReader interface {
	RequestKeyframe()
	Retransmit(seqs []uint16)
	Close()
}

// feedbackReader is a viewerReader that acts on the viewer's reception
// reports (the Switcher).
type feedbackReader interface {
	Feedback(simulcast.Feedback)
}

// checkLayer refuses a ?layer= that names no layer form.
func checkLayer(layer string) error {
	if layer == relay.TrackLayer || simulcast.ValidPin(layer) {
		return nil
	}
	return fmt.Errorf("%w: layer %q: name a simulcast layer by its rid, low, mid, high or a number from 0 (the lowest)",
		rtc.ErrBadOffer, layer)
}

// attach starts a viewer's reader of one track. A simulcast video track
// gets a Switcher (unless a relay link asks for the track itself); every
// other track a plain relay reader.
func attach(st *relay.Stream, pl plan, sk relay.Sink, log *slog.Logger) (viewerReader, error) {
	t := pl.track
	if t.Info().Kind != codec.Video || pl.layer == relay.TrackLayer || !t.HasLayers() {
		return st.AddReader(t, sk)
	}
	prober, _ := sk.(simulcast.Prober)
	sw, err := simulcast.NewSwitcher(simulcast.SwitcherParams{
		Stream: st, Track: t, Sink: sk, Layer: pl.layer, Logger: log,
		Prober: prober, StartBitrate: pl.start,
	})
	if err != nil || pl.remember == nil {
		return sw, err
	}
	return rememberingSwitcher{sw, pl.remember}, nil
}

// choosesLayers reports whether a viewer with these plans gets a Switcher
// (see attach): a simulcast video track, not read as a relay link.
func choosesLayers(plans []plan) bool {
	for _, pl := range plans {
		if pl.track.Info().Kind == codec.Video && pl.layer != relay.TrackLayer && pl.track.HasLayers() {
			return true
		}
	}
	return false
}

// rememberingSwitcher keeps the viewer's link estimate when it leaves.
type rememberingSwitcher struct {
	*simulcast.Switcher
	remember func(float64)
}

func (r rememberingSwitcher) Close() {
	r.remember(r.Remembered())
	r.Switcher.Close()
}

// A viewer starts on the layer its link is known to carry: when its
// previous session (from the same address, within estimateTTL) ended held
// below the top layer by what the send side measured, the new one starts
// on the layer that estimate covers and probes upward from there, instead
// of starting on the top layer and losing its first second of packets to
// a link that cannot carry it. Otherwise it starts on the top layer (or
// the ?layer= pin). Keyed by address: viewers behind one NAT share it,
// which costs at most a probe.
const (
	estimateTTL      = 10 * time.Minute
	estimateMemoSize = 4096
)

type estimateEntry struct {
	bitrate float64
	at      time.Time
}

// estimateMemo holds recent viewers' link estimates by address.
type estimateMemo struct {
	mu sync.Mutex
	m  map[string]estimateEntry
}

// forPeer returns what is known about the viewer at addr and how to
// remember its estimate when it leaves.
func (m *estimateMemo) forPeer(addr string) (float64, func(float64)) {
	if addr == "" {
		return 0, nil
	}
	now := time.Now()
	m.mu.Lock()
	e, ok := m.m[addr]
	m.mu.Unlock()
	start := 0.0
	if ok && now.Sub(e.at) < estimateTTL {
		start = e.bitrate
	}
	return start, func(b float64) { m.remember(addr, b, time.Now()) }
}

func (m *estimateMemo) remember(addr string, b float64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b <= 0 {
		delete(m.m, addr) // it left on the top layer: nothing holds it back
		return
	}
	if m.m == nil {
		m.m = map[string]estimateEntry{}
	}
	if _, ok := m.m[addr]; !ok && len(m.m) >= estimateMemoSize {
		for k, e := range m.m {
			if now.Sub(e.at) >= estimateTTL {
				delete(m.m, k)
			}
		}
		if len(m.m) >= estimateMemoSize {
			return
		}
	}
	m.m[addr] = estimateEntry{bitrate: b, at: now}
}

// liteEstimate passes what a lite viewer's transport-cc feedback says to
// the sections that choose layers by it.
func liteEstimate(sinks []*liteSink, e lite.Estimate) {
	fb := simulcast.Feedback{Loss: e.Loss}
	switch {
	case e.Probe == lite.ProbeCarried:
		fb = simulcast.Feedback{Loss: -1, Bitrate: e.Bitrate, Probe: simulcast.ProbeCarried}
	case e.Probe == lite.ProbeFailed:
		fb = simulcast.Feedback{Loss: -1, Bitrate: e.Bitrate, Probe: simulcast.ProbeFailed}
	case e.Overuse:
		fb.Overuse, fb.Bitrate = true, e.Bitrate
	}
	for _, sk := range sinks {
		if ref := sk.reader.Load(); ref != nil {
			if fr, ok := ref.viewerReader.(feedbackReader); ok {
				fr.Feedback(fb)
			}
		}
	}
}

// CanProbe implements simulcast.Prober: probes need transport-cc and an
// RTX stream to pad on.
func (s *liteSink) CanProbe() bool { return s.rtxSSRC != 0 && s.peer.CanProbe() }

// Probe implements simulcast.Prober.
func (s *liteSink) Probe(rate float64) bool { return s.peer.Probe(rate, s.rtxSSRC, s.rtxPT) }

// viewerFeedback passes what RTCP from the viewer says about its reception
// (REMB, and the loss in the report block about our SSRC) to r if it acts
// on it.
func viewerFeedback(r viewerReader, ssrc uint32, pkts []rtcp.Packet) {
	fr, ok := r.(feedbackReader)
	if !ok {
		return
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			if p.Bitrate > 0 {
				fr.Feedback(simulcast.Feedback{Bitrate: float64(p.Bitrate), Loss: -1})
			}
		case *rtcp.ReceiverReport:
			for _, b := range p.Reports {
				if b.SSRC == ssrc || ssrc == 0 {
					fr.Feedback(simulcast.Feedback{Loss: float64(b.FractionLost) / 256})
					break
				}
			}
		}
	}
}
