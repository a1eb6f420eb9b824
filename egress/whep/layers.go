package whep

import (
	"fmt"
	"log/slog"

	"github.com/pion/rtcp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
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
	return simulcast.NewSwitcher(simulcast.SwitcherParams{
		Stream: st, Track: t, Sink: sk, Layer: pl.layer, Logger: log,
	})
}

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
