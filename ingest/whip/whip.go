// Package whip ingests WebRTC publishers (RFC 9725) into the relay.
package whip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
)

// Params configures the WHIP server.
type Params struct {
	rtc.SessionParams // engine, max tracks, connect timeout, logger
	Hub               *relay.Hub
	// VideoCodecs orders video codecs by preference (MIME subtypes,
	// lower case). Default: h264, vp8, vp9, av1.
	VideoCodecs []string `flag:"video-codecs" list:"lower" help:"accepted video codecs in order of preference (h264, vp8, vp9, av1)"`
	// MaxSessions bounds concurrent publishers (0: unlimited; DefaultParams:
	// 1000).
	MaxSessions int `flag:"max-publishers" help:"concurrent WHIP sessions (0: unlimited)"`
}

// Server accepts WHIP offers. Its Session, Sessions, RefusedSections and
// Close are the rtc.Endpoint's.
type Server struct {
	*rtc.Endpoint
	p Params
}

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for, except MaxSessions (0: unlimited).
func DefaultParams() Params {
	return Params{
		SessionParams: rtc.DefaultSessionParams(),
		VideoCodecs:   []string{"h264", "vp8", "vp9", "av1"},
		MaxSessions:   1000,
	}
}

// New returns a WHIP server.
func New(p Params) *Server {
	if len(p.VideoCodecs) == 0 {
		p.VideoCodecs = DefaultParams().VideoCodecs
	}
	p.SessionParams = p.SessionParams.WithDefaults()
	return &Server{Endpoint: rtc.NewEndpoint(p.MaxSessions), p: p}
}

// feedback is offered with every chosen codec; pion keeps what the engine
// supports for the kind.
var feedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"}, {Type: webrtc.TypeRTCPFBTransportCC},
}

// Offer answers a publisher's offer for path and starts publishing.
// Every audio and video section gets one codec or is refused in the answer
// (port 0) with its reason logged and counted: a publisher always learns
// what is not forwarded.
func (s *Server) Offer(ctx context.Context, path, offer, peer string) (*rtc.Session, error) {
	o, err := rtc.ParseOffer(offer, s.p.MaxTracks)
	if err != nil {
		return nil, err
	}
	type choice struct {
		mid string
		c   rtc.OfferedCodec
	}
	var chosen []choice
	var rejected []rtc.Rejection
	plan := rtc.Plan{Keep: map[string]uint8{}, Direction: "recvonly"}
	for _, m := range o.Media {
		if m.Closed {
			plan.Close = append(plan.Close, m.Mid)
			continue
		}
		c, r := m.Choose(s.p.VideoCodecs)
		if r != nil {
			rejected = append(rejected, *r)
			plan.Close = append(plan.Close, m.Mid)
			continue
		}
		chosen = append(chosen, choice{m.Mid, c})
		plan.Keep[m.Mid] = c.PayloadType
	}
	log := s.p.Logger.With("stream", path, "peer", peer)
	s.Refused(log, "publisher", rejected)
	if len(chosen) == 0 {
		return nil, &rtc.NoCodecError{Offered: o.Names(), Supported: rtc.SupportedNames(), Sections: rejected}
	}
	picked := make(map[string]rtc.OfferedCodec, len(chosen))
	for _, ch := range chosen {
		picked[ch.mid] = ch.c
	}
	simSections, err := simulcastSections(o, picked)
	if err != nil {
		return nil, err
	}

	newPC := s.p.Engine.NewPublisherPC
	if len(simSections) > 0 {
		newPC = s.p.Engine.NewSimulcastPublisherPC
	}
	pc, err := newPC()
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	sess := rtc.NewSession(path, peer, pc)
	answer, err := rtc.Answer(ctx, pc, o, plan, func() error {
		for _, ch := range chosen {
			t, err := rtc.Negotiated(pc, ch.mid)
			if err != nil {
				return err
			}
			if err := rtc.PreferCodec(t, ch.c, feedback); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	sess.SetAnswer(answer)

	infos := make([]relay.TrackInfo, len(chosen))
	index := make(map[string]int, len(chosen))
	for i, ch := range chosen {
		infos[i] = relay.TrackInfo{Kind: codec.KindOf(ch.c.MimeType), Codec: ch.c.Codec}
		infos[i].Codec.MimeType = codec.Canonical(ch.c.MimeType)
		index[ch.mid] = i
	}
	sim := newSimTracks(pc, simSections, index, infos, log)
	// The owner's new session may take over its own silent stream (a
	// publisher killed without a DELETE): see relay.PublishAs.
	pub, err := s.p.Hub.PublishAs(relay.OwnerOf(ctx), path, infos, &source{pc: pc, chosen: index, sim: sim})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	for _, st := range sim {
		st.pub = pub
	}
	if err := s.AddSession(sess); err != nil {
		pub.End("session limit")
		_ = pc.Close()
		return nil, err
	}
	log = log.With("session", rtc.LogID(sess.ID))
	log.Info("publisher connected", "codecs", codecNames(infos), "refused_sections", len(rejected))
	s.run(sess, pub, index, sim, log)
	return sess, nil
}

// run wires the session's lifecycle: media in, stalls, takeover, teardown.
func (s *Server) run(sess *rtc.Session, pub *relay.Publication, index map[string]int, sim map[int]*simTrack, log *slog.Logger) {
	pc := sess.PC
	sess.OnClose(func() { pub.End("session closed") })

	pc.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		i, ok := -1, false
		for _, t := range pc.GetTransceivers() {
			if t.Receiver() == recv {
				i, ok = index[t.Mid()]
			}
		}
		if !ok {
			log.Warn("ignoring unexpected track", "ssrc", track.SSRC(), "rid", track.RID())
			return
		}
		if st := sim[i]; st != nil && track.RID() != "" {
			s.readLayer(track, recv, st, log)
			return
		}
		s.Go(func() { readRTP(track.Read, pub, i) })
		s.Go(func() {
			rtc.ReadSenderReports(recv.ReadRTCP, func(ntp uint64, rtpTime uint32) { pub.WriteSenderReport(i, ntp, rtpTime) })
		})
	})
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		pub.SetStalled(st == webrtc.ICEConnectionStateDisconnected)
	})
	connected := sess.WatchConnection(log, "publisher")

	s.Go(func() {
		if !sess.AwaitConnect(connected, nil, s.p.ConnectTimeout, log, "publisher") {
			return
		}
		select {
		case <-pub.Superseded():
			log.Info("publisher replaced by a new session")
			sess.Close()
		case <-sess.Done():
		}
		log.Info("publisher session ended")
	})
}

// readRTP hands the relay track i's packets (read is the track's Read)
// until read fails.
//
// One read buffer serves every packet, because nothing reads it once
// WriteRTP has returned: the relay copies the header's fields (not its
// extensions, which point into buf) and keeps an exact-size copy of the
// payload, so that a 100-byte Opus packet does not hold 1,500 bytes for as
// long as the history remembers it (1,024 packets a track). pion copies
// each packet into the buffer it is given and keeps none of it: the NACK,
// report and TWCC interceptors the engine registers parse the header
// during Read (the TWCC one passes that header to its goroutine, which
// uses only the numbers copied out of it). Checked with the buffer
// overwritten after every WriteRTP (TestLateViewerGetsPacketsReadBefore;
// the gateway's publish tests under -race: no race, a pion publisher's
// media arrives byte for byte, a Chromium host's recording decodes whole).
// Reusing it was once blamed for
// TestHLSJSPlaysAcrossHostPause's larger lag after the pause, which is
// hls.js's and as frequent with a fresh buffer per packet.
func readRTP(read func([]byte) (int, interceptor.Attributes, error), pub *relay.Publication, i int) {
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
		pub.WriteRTP(i, &p.Header, bytes.Clone(p.Payload))
	}
}

// source lets the relay ask this publisher for keyframes.
type source struct {
	pc     *webrtc.PeerConnection
	chosen map[string]int
	sim    map[int]*simTrack // simulcast tracks: ask the forwarded layer
}

func (s *source) RequestKeyframe(i int) {
	if st := s.sim[i]; st != nil {
		st.sel.RequestKeyframe()
		return
	}
	for _, t := range s.pc.GetTransceivers() {
		if idx, ok := s.chosen[t.Mid()]; ok && idx == i {
			if tr := t.Receiver().Track(); tr != nil {
				_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
			}
		}
	}
}

func codecNames(infos []relay.TrackInfo) string {
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = in.Codec.MimeType
	}
	return strings.Join(names, ",")
}
