package whip

import (
	"bytes"
	"log/slog"
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/simulcast"
)

// Simulcast publishing (step 1): every layer of a simulcast video section is
// received, and one relay track per section carries the highest layer that
// is being sent (see package relay/simulcast for how "highest" is decided
// and when it changes). Sections without simulcast take the unchanged
// single-stream path.

// simulcastSections checks the simulcast sections among the chosen ones
// (mid -> codec) and returns their descriptions by mid. An offer whose
// simulcast cannot be received is refused with a reason rather than
// answered with something the publisher would reject.
func simulcastSections(o *rtc.Offer, chosen map[string]rtc.OfferedCodec) (map[string]*rtc.Simulcast, error) {
	all, err := rtc.ParseSimulcast(o.SDP)
	if err != nil {
		return nil, err
	}
	out := map[string]*rtc.Simulcast{}
	for _, m := range o.Media {
		c, ok := chosen[m.Mid]
		sc := all[m.Mid]
		if !ok || sc == nil {
			continue
		}
		if err := sc.CheckPublish(m.Mid, c); err != nil {
			return nil, err
		}
		out[m.Mid] = sc
	}
	return out, nil
}

// simTrack is the simulcast state of one published track.
type simTrack struct {
	sel  *simulcast.Selector
	pub  *relay.Publication // set once published, before media flows
	i    int                // track index in the publication
	mime string
	pc   *webrtc.PeerConnection
}

// describe tells the relay what the layers carry.
func (st *simTrack) describe() []relay.LayerInfo {
	ls := st.sel.Layers()
	out := make([]relay.LayerInfo, len(ls))
	for i, l := range ls {
		out[i] = relay.LayerInfo{RID: l.RID, Width: l.Width, Height: l.Height, Bitrate: l.Bitrate,
			Active: l.Active, Top: l.Forwarded}
	}
	return out
}

// readLayerRTP hands layer's packets (read is its track's Read) to the
// selector and to the layer track lt (nil: none) until read fails. One read
// buffer serves every packet, as in readRTP: both get exact-size copies of
// the payload and copy the header's fields.
func (st *simTrack) readLayerRTP(read func([]byte) (int, interceptor.Attributes, error), layer int, lt *relay.Track) {
	// The selector rewrites VP8/VP9 picture numbers in place, and the
	// layer track keeps the packet as received: those codecs get a copy.
	copyForSelector := fieldsRewritten(st.mime)
	buf := make([]byte, 1500)
	for {
		n, _, err := read(buf)
		if err != nil {
			return
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			continue
		}
		// The relay keeps what it is given (history, GOP cache, queues):
		// exact-size copies, so a small packet does not hold a 1,500-byte
		// buffer as long as the history remembers it.
		payload := bytes.Clone(p.Payload)
		forSelector := payload
		if copyForSelector {
			forSelector = bytes.Clone(payload)
		}
		st.sel.Push(layer, &p.Header, forSelector)
		if lt != nil {
			st.pub.WriteLayerRTP(lt, &p.Header, payload)
		}
	}
}

// fieldsRewritten reports whether the selector rewrites payloads of mime.
func fieldsRewritten(mime string) bool {
	return strings.EqualFold(mime, codec.MimeVP8) || strings.EqualFold(mime, codec.MimeVP9)
}

// newSimTracks makes a selector for every simulcast section; index maps
// mids to publication track indexes.
func newSimTracks(pc *webrtc.PeerConnection, sections map[string]*rtc.Simulcast, index map[string]int,
	infos []relay.TrackInfo, log *slog.Logger) map[int]*simTrack {
	if len(sections) == 0 {
		return nil
	}
	out := make(map[int]*simTrack, len(sections))
	for mid := range sections {
		i, ok := index[mid]
		if !ok {
			continue
		}
		st := &simTrack{i: i, mime: infos[i].Codec.MimeType, pc: pc}
		st.sel = simulcast.New(simulcast.Params{
			MimeType:  infos[i].Codec.MimeType,
			ClockRate: infos[i].Codec.ClockRate,
			Write:     func(h *rtp.Header, p []byte) { st.pub.WriteRTP(st.i, h, p) },
			WriteSenderReport: func(ntp uint64, ts uint32) {
				st.pub.WriteSenderReport(st.i, ntp, ts)
			},
			RequestKeyframe: func(ssrc uint32) {
				_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
			},
			Logger: log.With("mid", mid),
		})
		out[i] = st
	}
	return out
}

// readLayer receives one simulcast layer: its packets go through the
// track's selector; its RTCP is read (keeping pion's per-stream
// interceptors running) for the sender reports that align layers.
func (s *Server) readLayer(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, st *simTrack, log *slog.Logger) {
	rid := track.RID()
	ssrc := uint32(track.SSRC())
	layer := st.sel.AddLayer(rid, ssrc)
	// The layer is also a relay layer track of its own, which viewers
	// read when their network carries less than the top layer.
	lt := st.pub.AddLayer(st.i, rid, st.describe, func() {
		_ = st.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	})
	log.Info("simulcast layer started", "rid", rid, "ssrc", ssrc)
	s.Go(func() { st.readLayerRTP(track.Read, layer, lt) })
	s.Go(func() {
		read := func() ([]rtcp.Packet, interceptor.Attributes, error) { return recv.ReadSimulcastRTCP(rid) }
		rtc.ReadSenderReports(read, func(ntp uint64, rtpTime uint32) {
			st.sel.SenderReport(layer, ntp, rtpTime)
			st.pub.WriteLayerSenderReport(lt, ntp, rtpTime)
		})
	})
}
