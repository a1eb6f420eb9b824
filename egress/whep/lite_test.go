package whep

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
)

type countingSource struct{ keyframes atomic.Int64 }

func (c *countingSource) RequestKeyframe(int) { c.keyframes.Add(1) }

type liteRig struct {
	t    *testing.T
	hub  *relay.Hub
	srv  *Server
	eng  *rtc.Engine
	pub  *relay.Publication
	src  *countingSource
	seq  uint16
	ts   uint32
	mu   sync.Mutex
	sent map[uint16][]byte // payloads by sequence number, as published
	tcp  bool
}

func newLiteRig(t *testing.T, consent time.Duration) *liteRig {
	return newLiteRigNet(t, consent, false)
}

// newLiteRigNet is newLiteRig with, if tcp, ICE-TCP on and the viewers
// using TCP only.
func newLiteRigNet(t *testing.T, consent time.Duration, tcp bool) *liteRig {
	return newLiteRigAddr(t, consent, tcp, "127.0.0.1:0")
}

// newLiteRigAddr is newLiteRigNet with the media socket on udpAddr.
func newLiteRigAddr(t *testing.T, consent time.Duration, tcp bool, udpAddr string) *liteRig {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := relay.NewHub(relay.Params{Logger: log, KeyframeWait: -1})
	t.Cleanup(hub.Close)
	cfg := rtc.Config{UDPAddr: udpAddr, IPs: []string{"127.0.0.1"}, Logger: log,
		ICEDisconnectedTimeout: consent / 2, ICEFailedTimeout: consent / 2, LiteViewers: true}
	if tcp {
		cfg.TCPAddr = "127.0.0.1:0"
	}
	eng, err := rtc.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	srv := New(Params{SessionParams: rtc.SessionParams{Engine: eng, Logger: log}, Hub: hub})
	t.Cleanup(srv.Close)
	info := relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
		Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}
	src := &countingSource{}
	pub, err := hub.Publish("live/cam", []relay.TrackInfo{info}, src)
	if err != nil {
		t.Fatal(err)
	}
	return &liteRig{t: t, hub: hub, srv: srv, eng: eng, pub: pub, src: src, sent: map[uint16][]byte{}, tcp: tcp}
}

// write publishes one video packet (a keyframe if key) with a payload
// that names its sequence number.
func (r *liteRig) write(key bool) {
	p := make([]byte, 300)
	p[0] = 0x41
	if key {
		p[0] = 0x65
	}
	p[1], p[2] = byte(r.seq>>8), byte(r.seq)
	h := rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: r.seq, Timestamp: r.ts, Marker: true}
	r.mu.Lock()
	r.sent[r.seq] = p
	r.mu.Unlock()
	r.pub.WriteRTP(0, &h, p)
	r.seq++
	r.ts += 3000
}

type liteViewer struct {
	pc    *webrtc.PeerConnection
	sess  *rtc.Session
	got   chan *rtp.Packet
	ssrc  atomic.Uint32
	track chan struct{}
}

func (r *liteRig) viewer() *liteViewer {
	t := r.t
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	s := webrtc.SettingEngine{}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(true)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if r.tcp {
		s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	v := &liteViewer{pc: pc, got: make(chan *rtp.Packet, 4096), track: make(chan struct{})}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.ssrc.Store(uint32(tr.SSRC()))
		close(v.track)
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case v.got <- p:
			default:
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := r.srv.Offer(ctx, "live/cam", pc.LocalDescription().SDP, "test")
	if err != nil {
		t.Fatal(err)
	}
	v.sess = sess
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer()}); err != nil {
		t.Fatalf("answer refused: %v\n%s", err, sess.Answer())
	}
	return v
}

// next returns the next packet the viewer gets, within d.
func (v *liteViewer) next(t *testing.T, d time.Duration) *rtp.Packet {
	t.Helper()
	select {
	case p := <-v.got:
		return p
	case <-time.After(d):
		t.Fatalf("no packet within %v (state %s)", d, v.pc.ConnectionState())
		return nil
	}
}

func (r *liteRig) waitViewers(n int64) {
	st, _ := r.hub.Get("live/cam")
	deadline := time.Now().Add(10 * time.Second)
	for st.Viewers() != n {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d viewers attached, want %d", st.Viewers(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A pion viewer on the lite transport: the answer is ICE-lite and refuses
// the audio section (the stream has none); the viewer gets every packet
// intact from a keyframe on, in order; its PLI reaches the publisher and
// its NACK is answered from the shared history; DELETE ends it.
func TestLiteViewerMediaPLINACK(t *testing.T) {
	r := newLiteRig(t, 10*time.Second)
	r.write(true)
	v := r.viewer()
	ans := v.sess.Answer()
	for _, want := range []string{"a=ice-lite", "a=setup:passive", "m=audio 0 ", "a=sendonly", "typ host"} {
		if !strings.Contains(ans, want) {
			t.Fatalf("answer lacks %q:\n%s", want, ans)
		}
	}
	// Every section, refused ones too, names the DTLS fingerprint:
	// GStreamer's webrtcbin refuses the answer otherwise.
	if m, f := strings.Count(ans, "\nm="), strings.Count(ans, "a=fingerprint:sha-256 "); m != f {
		t.Fatalf("%d sections, %d fingerprints:\n%s", m, f, ans)
	}
	r.waitViewers(1)
	r.write(true)
	first := v.next(t, 5*time.Second)
	if first.Payload[0] != 0x65 {
		t.Fatalf("first packet is not a keyframe: %x", first.Payload[0])
	}
	<-v.track
	prev := first.SequenceNumber
	for i := range 50 {
		r.write(i%20 == 0)
		p := v.next(t, 2*time.Second)
		if p.SequenceNumber != prev+1 {
			t.Fatalf("sequence %d after %d", p.SequenceNumber, prev)
		}
		prev = p.SequenceNumber
		orig := uint16(p.Payload[1])<<8 | uint16(p.Payload[2])
		r.mu.Lock()
		want := r.sent[orig]
		r.mu.Unlock()
		if !bytes.Equal(p.Payload, want) {
			t.Fatalf("packet %d: payload differs from what was published", p.SequenceNumber)
		}
	}

	for quiet := false; !quiet; { // the cached keyframe came first: one more is queued
		select {
		case p := <-v.got:
			prev = p.SequenceNumber
		case <-time.After(200 * time.Millisecond):
			quiet = true
		}
	}
	before := r.src.keyframes.Load()
	ssrc := v.ssrc.Load()
	if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for r.src.keyframes.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the viewer's PLI did not reach the publisher")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc,
		Nacks: []rtcp.NackPair{{PacketID: prev - 3}}}}); err != nil {
		t.Fatal(err)
	}
	// The viewer's SRTP replay check drops a packet it already has, so
	// the answer is seen on the gateway's side: sent from the history.
	st, _ := r.hub.Get("live/cam")
	deadline = time.Now().Add(3 * time.Second)
	for st.Stats().Tracks[0].Retransmitted == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the viewer's NACK was not answered")
		}
		time.Sleep(10 * time.Millisecond)
	}

	v.sess.Close() // DELETE
	deadline = time.Now().Add(5 * time.Second)
	for v.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatal("the viewer still thinks it is connected after DELETE")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.waitViewers(0)
	if n := r.eng.Lite().Peers(); n != 0 {
		t.Fatalf("%d lite peers after DELETE", n)
	}
}

// A viewer that goes away without a word stops answering, so it sends no
// more consent checks: the gateway ends its session within the consent
// timeout.
func TestLiteConsentExpiryEndsSession(t *testing.T) {
	r := newLiteRig(t, 2*time.Second)
	r.write(true)
	v := r.viewer()
	r.waitViewers(1)
	_ = v.pc.Close() // DTLS close_notify: ends at once; so check silence separately below
	select {
	case <-v.sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session not ended after the viewer closed")
	}

	// Silence: a viewer whose checks stop (its consent lapses).
	v2 := r.viewer()
	r.waitViewers(1)
	start := time.Now()
	// Stop the viewer's ICE agent without DTLS close: closing the ICE
	// transport sends nothing to the gateway.
	if err := v2.pc.SCTP().Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v2.sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session not ended after consent lapsed")
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("session ended after %v: before the consent timeout", el)
	}
	r.waitViewers(0)
}

// ICE restart over PATCH: new credentials are answered and media keeps
// flowing on the same DTLS session.
func TestLiteICERestart(t *testing.T) {
	r := newLiteRig(t, 10*time.Second)
	r.write(true)
	v := r.viewer()
	r.waitViewers(1)
	r.write(true)
	v.next(t, 5*time.Second)
	offer, err := v.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(v.pc)
	if err := v.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	sdp := v.pc.LocalDescription().SDP
	var frag strings.Builder
	for _, l := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:") {
			frag.WriteString(l + "\r\n")
			if strings.HasPrefix(l, "a=ice-pwd:") {
				break
			}
		}
	}
	oldTag := v.sess.ETag()
	ans, err := v.sess.Patch(context.Background(), frag.String(), oldTag)
	if err != nil {
		t.Fatal(err)
	}
	if v.sess.ETag() == oldTag || !strings.Contains(ans, "a=ice-ufrag:") || !strings.Contains(ans, "typ host") {
		t.Fatalf("restart answer %q (etag %s -> %s)", ans, oldTag, v.sess.ETag())
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: v.sess.Answer()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for range 3 {
		r.write(false)
	}
	deadline := time.After(5 * time.Second)
	for n := 0; n < 3; {
		select {
		case <-v.got:
			n++
		case <-deadline:
			t.Fatalf("media stopped after the ICE restart (state %s)", v.pc.ICEConnectionState())
		}
	}
}

// A viewer that can only use TCP (its network drops UDP) gets its media
// over ICE-TCP from the lite transport, on the shared TCP port.
func TestLiteViewerOverICETCP(t *testing.T) {
	r := newLiteRigNet(t, 10*time.Second, true)
	r.write(true)
	v := r.viewer()
	if !strings.Contains(v.sess.Answer(), "tcptype passive") {
		t.Fatalf("answer has no passive TCP candidate:\n%s", v.sess.Answer())
	}
	r.waitViewers(1)
	r.write(true)
	v.next(t, 5*time.Second)
	for range 20 {
		r.write(false)
		v.next(t, 2*time.Second)
	}
	if r.eng.Lite().Peers() != 1 {
		t.Fatalf("%d lite peers", r.eng.Lite().Peers())
	}
	v.sess.Close()
	r.waitViewers(0)
}

type countingReader struct{ resent, keyframes int }

func (c *countingReader) RequestKeyframe()         { c.keyframes++ }
func (c *countingReader) Retransmit(seqs []uint16) { c.resent += len(seqs) }
func (c *countingReader) Close()                   {}

// A viewer's NACKs are answered within a budget: asking for 680 packets at
// once gets the burst (512), and the budget refills with time, so one
// viewer cannot hold the socket's reading goroutine (which also reads the
// publishers) however much it asks.
func TestLiteRetransmitBudget(t *testing.T) {
	rs := &liteRTCPState{}
	r := &countingReader{}
	var pairs []rtcp.NackPair
	for s := uint16(1000); s != 1680; s += 17 {
		pairs = append(pairs, rtcp.NackPair{PacketID: s, LostPackets: 0xffff})
	}
	for i := 0; i < len(pairs); i += 10 {
		rs.retransmit(r, &rtcp.TransportLayerNack{Nacks: pairs[i:min(i+10, len(pairs))]})
	}
	if r.resent != retransmitBurst {
		t.Fatalf("680 packets NACKed at once: %d retransmitted, want the burst %d", r.resent, retransmitBurst)
	}
	rs.last = rs.last.Add(-100 * time.Millisecond) // 100 ms later
	rs.retransmit(r, &rtcp.TransportLayerNack{Nacks: pairs[:10]})
	if got := r.resent - retransmitBurst; got < 90 || got > 110 {
		t.Fatalf("100 ms later %d more, want about %d", got, retransmitsPerSecond/10)
	}
}

// On a socket bound to every address (dual stack, as ":8189" is), the
// batched sends reach an IPv4 viewer.
func TestLiteViewerOnDualStackSocket(t *testing.T) {
	r := newLiteRigAddr(t, 10*time.Second, false, ":0")
	r.write(true)
	v := r.viewer()
	r.waitViewers(1)
	r.write(true)
	v.next(t, 5*time.Second)
	for range 20 {
		r.write(false)
		v.next(t, 2*time.Second)
	}
}
