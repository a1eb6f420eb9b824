// Package whep serves relay streams to WebRTC players (WHEP).
package whep

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
)

// Params configures the WHEP server.
type Params struct {
	rtc.SessionParams // engine, max tracks, connect timeout, logger
	Hub               *relay.Hub
	// MaxSessions bounds concurrent viewers (0: unlimited; DefaultParams:
	// 20000).
	MaxSessions int `flag:"max-viewers" help:"concurrent WHEP sessions (0: unlimited)"`
	// Pull, if set, is asked to make a stream that is not live here
	// available (an edge pulling from its parents).
	Pull func(ctx context.Context, path string) error
}

// Server accepts WHEP offers. Its Session, Sessions, RefusedSections and
// Close are the rtc.Endpoint's.
type Server struct {
	*rtc.Endpoint
	p    Params
	ends streamEnds // lite viewers' stream-end watchers (litelife.go)
	// estimates remembers viewers' link estimates for their next session.
	estimates estimateMemo
}

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for, except MaxSessions (0: unlimited).
func DefaultParams() Params {
	return Params{SessionParams: rtc.DefaultSessionParams(), MaxSessions: 20000}
}

// New returns a WHEP server.
func New(p Params) *Server {
	p.SessionParams = p.SessionParams.WithDefaults()
	return &Server{Endpoint: rtc.NewEndpoint(p.MaxSessions), p: p}
}

type plan struct {
	track *relay.Track
	mid   string
	codec rtc.OfferedCodec
	layer string // simulcast layer asked for (?layer=), see attach
	// start is the viewer's link estimate from its previous session (0:
	// none), remember keeps this session's for the next (layers.go).
	start    float64
	remember func(float64)
}

// Offer answers a viewer's offer for the stream at path.
func (s *Server) Offer(ctx context.Context, path, offer, peer string) (*rtc.Session, error) {
	st, ok := s.p.Hub.Get(path)
	if (!ok || !st.Live()) && s.p.Pull != nil {
		if err := s.p.Pull(ctx, path); err != nil {
			return nil, err
		}
		st, ok = s.p.Hub.Get(path)
	}
	if !ok || !st.Live() {
		// A stream in its grace period keeps its viewers but takes no new
		// ones: it may never come back.
		return nil, fmt.Errorf("%w: %s is not live", relay.ErrNotFound, path)
	}
	if st.Full() {
		return nil, fmt.Errorf("%w: %s", relay.ErrTooManyReaders, path)
	}
	o, err := rtc.ParseOffer(offer, s.p.MaxTracks)
	if err != nil {
		return nil, err
	}
	plans, rp, rejected := match(o, st.Tracks())
	layer := relay.RequestedLayer(ctx)
	if err := checkLayer(layer); err != nil {
		return nil, err
	}
	start, remember := s.estimates.forPeer(peer)
	for i := range plans {
		plans[i].layer, plans[i].start, plans[i].remember = layer, start, remember
	}
	log := s.p.Logger.With("stream", path, "peer", peer)
	s.Refused(log, "viewer", rejected)
	if len(plans) == 0 {
		var have []string
		for _, t := range st.Tracks() {
			have = append(have, t.Info().Codec.MimeType)
		}
		return nil, &rtc.NoCodecError{Offered: o.Names(), Supported: have, Sections: rejected}
	}

	if tr := s.p.Engine.Lite(); tr != nil {
		return s.offerLite(ctx, tr, path, peer, st, o, plans, rejected, log)
	}
	pc, err := s.p.Engine.NewReaderPC()
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	sinks := make([]*sink, len(plans))
	for i, pl := range plans {
		// The viewer's own payload type, so that pion binds the track to
		// exactly the codec the answer names.
		local, err := webrtc.NewTrackLocalStaticRTP(pl.codec.Capability(nil), string(pl.track.Info().Kind), "livegate")
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("local track: %w", err)
		}
		tr, err := pc.AddTransceiverFromTrack(local, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("add track: %w", err)
		}
		sinks[i] = &sink{pc: pc, local: local, sender: tr.Sender(), relay: relay.IsRelayReader(ctx)}
	}
	answer, err := rtc.Answer(ctx, pc, o, rp, func() error {
		for i, pl := range plans {
			t, err := rtc.Negotiated(pc, pl.mid)
			if err != nil {
				return err
			}
			// pion gives our tracks to the offer's sections of their kind in
			// order; a plan that skipped an earlier section of the same kind
			// (it could not receive the codec) would leave the track on the
			// wrong section. Say so rather than answer a section that stays
			// empty.
			if t.Sender() != sinks[i].sender {
				return fmt.Errorf("%w: media section %q: the stream's %s goes here, but an earlier %s section that cannot receive it comes first; offer one %s section",
					rtc.ErrBadOffer, pl.mid, pl.track.Info().Kind, pl.track.Info().Kind, pl.track.Info().Kind)
			}
			if err := rtc.PreferCodec(t, pl.codec, feedback); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	sess := rtc.NewSession(path, peer, pc)
	sess.SetAnswer(answer)
	if err := s.AddSession(sess); err != nil {
		_ = pc.Close()
		return nil, err
	}
	log = log.With("session", rtc.LogID(sess.ID))
	log.Info("viewer connected", "tracks", len(plans), "refused_sections", len(rejected))
	s.run(sess, st, plans, sinks, log)
	return sess, nil
}

// match gives each track of the stream to the first open section of the
// viewer's offer that receives its codec. Every other audio or video
// section is refused: an answer never offers a section with nothing behind
// it, which players would wait on forever (a stream without video gets its
// video section refused, not a silent one).
func match(o *rtc.Offer, tracks []*relay.Track) ([]plan, rtc.Plan, []rtc.Rejection) {
	var plans []plan
	rp := rtc.Plan{Keep: map[string]uint8{}, Direction: "sendonly"}
	why := map[string]*rtc.Rejection{} // mid -> why no track went there
	for _, t := range tracks {
		for _, m := range o.Media {
			if _, used := rp.Keep[m.Mid]; used || m.Closed || m.Kind != t.Info().Kind {
				continue
			}
			c, r := m.Accepts(t.Info().Codec)
			if r != nil {
				if why[m.Mid] == nil {
					why[m.Mid] = r
				}
				continue
			}
			plans = append(plans, plan{track: t, mid: m.Mid, codec: c})
			rp.Keep[m.Mid] = c.PayloadType
			break
		}
	}
	var rejected []rtc.Rejection
	for _, m := range o.Media {
		if _, used := rp.Keep[m.Mid]; used {
			continue
		}
		rp.Close = append(rp.Close, m.Mid)
		if m.Closed {
			continue
		}
		r := rtc.Rejection{Mid: m.Mid, Kind: string(m.Kind)}
		switch {
		case why[m.Mid] != nil:
			r = *why[m.Mid]
		case m.Kind == "application":
			r.Reason, r.Detail = rtc.ReasonDataChannel, "data channels are not relayed"
		case hasKind(tracks, m.Kind):
			r.Reason, r.Detail = rtc.ReasonTooManyTracks, "every "+string(m.Kind)+" track of the stream went to an earlier section"
		default:
			r.Reason, r.Detail = rtc.ReasonNoTrack, "the stream has no "+string(m.Kind)
		}
		rejected = append(rejected, r)
	}
	return plans, rp, rejected
}

func hasKind(tracks []*relay.Track, k codec.Kind) bool {
	for _, t := range tracks {
		if t.Info().Kind == k {
			return true
		}
	}
	return false
}

var feedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	// REMB: the viewer's estimate, which simulcast layer choice uses.
	{Type: webrtc.TypeRTCPFBGoogREMB},
}

// run attaches the viewer to the stream once its transport is up (writes
// before DTLS completes would block), and tears it down when either side ends.
func (s *Server) run(sess *rtc.Session, st *relay.Stream, plans []plan, sinks []*sink, log *slog.Logger) {
	connected := sess.WatchConnection(log, "viewer")
	// RTCP must be read on every sender, or pion stops processing it.
	readers := make([]chan viewerReader, len(sinks))
	for i, sk := range sinks {
		readers[i] = make(chan viewerReader, 1)
		s.Go(func() { readRTCP(sk, readers[i]) })
	}

	s.Go(func() {
		// A stream that ends first ends the session too.
		if !sess.AwaitConnect(connected, st.Done(), s.p.ConnectTimeout, log, "viewer") {
			return
		}
		// pion reports "connected" while still holding the DTLS transport's
		// lock, just before it starts SRTP; packets written before that are
		// silently dropped, which would lose the cached keyframe. Taking the
		// lock (State does) waits for SRTP to be up.
		_ = sinks[0].sender.Transport().State()
		if err := st.Join(); err != nil {
			log.Warn("cannot attach viewer", "err", err)
			sess.Close()
			return
		}
		defer st.Leave()
		var attached []viewerReader
		for i, pl := range plans {
			sk := sinks[i]
			if ps := sk.sender.GetParameters(); len(ps.Encodings) > 0 {
				sk.mu.Lock()
				sk.ssrc = uint32(ps.Encodings[0].SSRC)
				sk.mu.Unlock()
			}
			r, err := attach(st, pl, sk, log)
			if err != nil {
				log.Warn("cannot attach viewer", "err", err)
				break
			}
			attached = append(attached, r)
			readers[i] <- r
		}
		holdViewer(sess, st, attached, len(attached) == len(plans), log)
		log.Info("viewer session ended")
	})
}

// readRTCP answers the viewer's NACKs, forwards its keyframe requests and
// passes its reception reports to a reader that chooses layers by them.
func readRTCP(sk *sink, readerCh <-chan viewerReader) {
	var r viewerReader
	var seqs []uint16
	for {
		pkts, _, err := sk.sender.ReadRTCP()
		if err != nil {
			return
		}
		if r == nil {
			select {
			case r = <-readerCh:
			default:
				continue // not attached yet: nothing to answer from
			}
		}
		seqs = handleRTCP(r, pkts, seqs)
		sk.mu.Lock()
		ssrc := sk.ssrc
		sk.mu.Unlock()
		viewerFeedback(r, ssrc, pkts)
	}
}

// handleRTCP applies a viewer's RTCP to its reader: keyframe requests go to
// the (coalescing) track, NACKs are answered from the shared history. seqs
// is scratch space, returned for reuse.
func handleRTCP(r viewerReader, pkts []rtcp.Packet, seqs []uint16) []uint16 {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			r.RequestKeyframe()
		case *rtcp.TransportLayerNack:
			seqs = seqs[:0]
			for _, n := range p.Nacks {
				n.Range(func(seq uint16) bool {
					seqs = append(seqs, seq)
					return len(seqs) < maxNACKsPerPacket
				})
			}
			r.Retransmit(seqs)
		}
	}
	return seqs
}

// maxNACKsPerPacket bounds the retransmissions one RTCP packet can trigger,
// so a hostile viewer cannot make the gateway send its whole history at
// once.
const maxNACKsPerPacket = 256

// sink writes a reader's packets to one WebRTC sender.
type sink struct {
	mu     sync.Mutex
	pkt    rtp.Packet // reused: the track copies what it sends
	pc     *webrtc.PeerConnection
	local  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	ssrc   uint32
	relay  bool // a child node's relay link: starts on the cached GOP at once
}

// StartFromCache implements relay.CacheStartSink.
func (s *sink) StartFromCache() bool { return s.relay }

func (s *sink) WriteRTP(h *rtp.Header, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkt.Header, s.pkt.Payload = *h, payload
	return s.local.WriteRTP(&s.pkt)
}

func (s *sink) WriteSenderReport(ntp uint64, rtpTime uint32, packets, octets uint32) error {
	return s.pc.WriteRTCP([]rtcp.Packet{&rtcp.SenderReport{
		SSRC: s.ssrc, NTPTime: ntp, RTPTime: rtpTime, PacketCount: packets, OctetCount: octets,
	}})
}

// holdViewer keeps a viewer's readers until its session or the stream
// ends (not at all when some could not be attached: complete is false),
// then closes them and the session.
func holdViewer(sess *rtc.Session, st *relay.Stream, attached []viewerReader, complete bool, log *slog.Logger) {
	if complete {
		select {
		case <-sess.Done():
		case <-st.Done():
			log.Info("stream ended; closing viewer")
		}
	}
	for _, r := range attached {
		r.Close()
	}
	sess.Close()
}
