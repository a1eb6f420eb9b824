package whep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtc/lite"
)

// offerLite answers a viewer on the engine's lite transport: no
// PeerConnection, the answer is written here, and the viewer's packets
// never pass through pion.
func (s *Server) offerLite(ctx context.Context, tr *lite.Transport, path, peer string, st *relay.Stream,
	o *rtc.Offer, plans []plan, rejected []rtc.Rejection, log *slog.Logger,
) (*rtc.Session, error) {
	ri, err := offerICE(o.SDP)
	if err != nil {
		return nil, err
	}
	secs := make([]liteSection, len(plans))
	sinks := make([]*liteSink, len(plans))
	for i, pl := range plans {
		secs[i] = liteSection{plan: pl, ssrc: newSSRC(secs)}
	}
	ccID, err := offerCC(o.SDP, o, secs, choosesLayers(plans))
	if err != nil {
		return nil, err
	}
	for i, pl := range plans {
		sinks[i] = &liteSink{tr: tr, ssrc: secs[i].ssrc, pt: pl.codec.PayloadType, relay: relay.IsRelayReader(ctx),
			rtxSSRC: secs[i].rtxSSRC, rtxPT: secs[i].rtxPT, noResend: !secs[i].canResend()}
	}
	v := &liteLife{s: s, st: st, plans: plans, sinks: sinks}
	var sess atomic.Pointer[rtc.Session]
	rs := &liteRTCPState{}
	lp, err := tr.NewPeer(lite.PeerParams{
		RemoteUfrag: ri.ufrag, RemotePwd: ri.pwd, Fingerprints: ri.fingerprints,
		OnConnected: v.onConnected,
		OnRTCP:      func(pkts []rtcp.Packet) { rs.handle(sinks, pkts) },
		CC:          lite.CC{ExtID: ccID, OnEstimate: func(e lite.Estimate) { liteEstimate(sinks, e) }},
		OnClose: func(why string) {
			log.Info("viewer transport ended", "why", why)
			if ss := sess.Load(); ss != nil {
				go ss.Close() // Close closes the peer: not from inside its own Close
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", rtc.ErrBadOffer, err)
	}
	for _, sk := range sinks {
		sk.peer = lp
	}
	ufrag, pwd := lp.LocalCredentials()
	answer, err := liteAnswer(o.SDP, o, secs, ufrag, pwd, tr.Fingerprint(), s.p.Engine.LiteCandidates())
	if err != nil {
		lp.Close()
		return nil, err
	}
	ss := rtc.NewTransportSession(path, peer, lp)
	ss.SetAnswer(answer)
	if err := s.AddSession(ss); err != nil {
		lp.Close()
		return nil, err
	}
	sess.Store(ss)
	select {
	case <-lp.Done():
		ss.Close() // ended before the session was stored
	default:
	}
	log = log.With("session", rtc.LogID(ss.ID))
	log.Info("viewer connected", "tracks", len(plans), "refused_sections", len(rejected), "transport", "lite")
	v.mu.Lock()
	v.sess, v.lp, v.log = ss, lp, log
	v.mu.Unlock()
	v.start()
	return ss, nil
}

// liteRTCPState is one lite viewer's RTCP handling state. RTCP comes from
// the goroutine reading the shared UDP socket, which also reads every
// publisher's media, or from an ICE-TCP connection's reader: the lock is
// for the rare viewer with both, and the retransmission budget keeps one
// viewer's NACKs from holding that goroutine.
type liteRTCPState struct {
	mu     sync.Mutex
	seqs   []uint16
	tokens float64
	last   time.Time
}

// Retransmissions answered per viewer: a 2.5 Mbit/s stream that loses 30 %
// needs about 100 a second; a burst covers a short outage.
const (
	retransmitsPerSecond = 1000
	retransmitBurst      = 512
)

// handle applies a viewer's RTCP to the reader its media SSRC names:
// keyframe requests to the (coalescing) track, NACKs answered from the
// shared history within the budget, feedback to simulcast switchers.
func (rs *liteRTCPState) handle(sinks []*liteSink, pkts []rtcp.Packet) {
	find := func(ssrc uint32) viewerReader {
		for _, sk := range sinks {
			if sk.ssrc == ssrc {
				if ref := sk.reader.Load(); ref != nil {
					return ref.viewerReader
				}
			}
		}
		return nil
	}
	for _, sk := range sinks {
		if ref := sk.reader.Load(); ref != nil {
			viewerFeedback(ref.viewerReader, sk.ssrc, pkts)
		}
	}
	for _, p := range pkts {
		var r viewerReader
		switch p := p.(type) {
		case *rtcp.PictureLossIndication:
			r = find(p.MediaSSRC)
		case *rtcp.FullIntraRequest:
			r = find(p.MediaSSRC)
			if r == nil && len(p.FIR) > 0 {
				r = find(p.FIR[0].SSRC)
			}
		case *rtcp.TransportLayerNack:
			if r := find(p.MediaSSRC); r != nil {
				rs.retransmit(r, p)
			}
			continue
		default:
			continue
		}
		if r != nil {
			r.RequestKeyframe()
		}
	}
}

func (rs *liteRTCPState) retransmit(r viewerReader, p *rtcp.TransportLayerNack) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	if rs.last.IsZero() {
		rs.tokens = retransmitBurst
	} else {
		rs.tokens = min(retransmitBurst, rs.tokens+now.Sub(rs.last).Seconds()*retransmitsPerSecond)
	}
	rs.last = now
	limit := min(maxNACKsPerPacket, int(rs.tokens))
	rs.seqs = rs.seqs[:0]
	for _, n := range p.Nacks {
		n.Range(func(seq uint16) bool {
			if len(rs.seqs) >= limit {
				return false
			}
			rs.seqs = append(rs.seqs, seq)
			return true
		})
	}
	rs.tokens -= float64(len(rs.seqs))
	if len(rs.seqs) > 0 {
		r.Retransmit(rs.seqs)
	}
}

// liteSink writes a reader's packets to a lite peer: batched by the
// fan-out worker, at once for NACK answers.
type liteSink struct {
	tr      *lite.Transport
	peer    *lite.Peer
	ssrc    uint32
	pt      uint8
	relay   bool
	reader  atomic.Pointer[readerRef]
	rtxSSRC uint32 // probes and NACK answers go here; 0: no RTX negotiated
	rtxPT   uint8
	// noResend: transport-cc without RTX, see liteSection.canResend.
	noResend bool
}

// errNoResend answers a NACK for a section whose packets cannot be resent
// safely (liteSection.canResend).
var errNoResend = errors.New("whep: no retransmission without an RTX stream on a transport-cc session")

// readerRef holds a section's reader for the RTCP path.
type readerRef struct{ viewerReader }

// StartFromCache implements relay.CacheStartSink.
func (s *liteSink) StartFromCache() bool { return s.relay }

// WriteRTP sends what the fan-out does not batch: NACK answers. With an
// RTX stream (negotiated with transport-cc) they go on it, see
// lite.Peer.WriteRTX.
func (s *liteSink) WriteRTP(h *rtp.Header, payload []byte) error {
	hh := *h
	hh.SSRC, hh.PayloadType = s.ssrc, s.pt
	switch {
	case s.rtxSSRC != 0:
		return s.peer.WriteRTX(&hh, payload, s.rtxSSRC, s.rtxPT)
	case s.noResend:
		return errNoResend
	}
	return s.peer.WriteRTP(&hh, payload)
}

// QueueRTP implements relay.BatchSink. h is the worker's scratch header.
func (s *liteSink) QueueRTP(worker int, h *rtp.Header, payload []byte) (relay.Flusher, error) {
	h.SSRC, h.PayloadType = s.ssrc, s.pt
	return s.tr, s.peer.QueueRTP(worker, h, payload)
}

func (s *liteSink) WriteSenderReport(ntp uint64, rtpTime uint32, packets, octets uint32) error {
	return s.peer.WriteRTCP([]rtcp.Packet{&rtcp.SenderReport{
		SSRC: s.ssrc, NTPTime: ntp, RTPTime: rtpTime, PacketCount: packets, OctetCount: octets,
	}})
}
