package whep

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
)

// BenchmarkFanout measures the gateway's cost of sending one video packet
// to each of N WHEP viewers through the real write path: the relay's
// worker pool, per-viewer header rewrite, pion's track and SRTP (AES-GCM),
// ICE and the shared UDP socket. Viewers complete ICE/DTLS with real pion
// peers whose sockets are then closed, so the benchmark process pays for
// sending only (the kernel discards the datagrams).
//
//	go test -run '^$' -bench Fanout -benchtime 20000x ./egress/whep/
//
// transport=lite is livegate's own viewer transport (batched sendmmsg, no
// PeerConnection); transport=pion the fallback.
func BenchmarkFanout(b *testing.B) {
	for _, lite := range []bool{true, false} {
		for _, n := range []int{1, 10, 100} {
			name := map[bool]string{true: "lite", false: "pion"}[lite]
			b.Run(fmt.Sprintf("transport=%s/viewers=%d", name, n), func(b *testing.B) { benchFanout(b, n, lite) })
		}
	}
}

func benchFanout(b *testing.B, viewers int, lite bool) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := relay.NewHub(relay.Params{Logger: log, WorkerQueue: 1 << 16, MaxQueueDelay: -1, KeyframeWait: -1})
	defer hub.Close()
	eng, err := rtc.NewEngine(rtc.Config{UDPAddr: "127.0.0.1:0", IPs: []string{"127.0.0.1"}, Logger: log,
		ICEDisconnectedTimeout: time.Minute, ICEFailedTimeout: 2 * time.Minute, LiteViewers: lite})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	srv := New(Params{SessionParams: rtc.SessionParams{Engine: eng, Logger: log}, Hub: hub})
	defer srv.Close()

	info := relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
		Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}
	pub, err := hub.Publish("bench/cam", []relay.TrackInfo{info}, nopSource{})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1100)
	key := append([]byte{0x65}, payload[1:]...)
	seq, ts := uint16(0), uint32(0)
	write := func(p []byte) {
		h := rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: ts, Marker: true}
		pub.WriteRTP(0, &h, p)
		seq++
		ts += 3000
	}
	write(key) // so viewers start at once

	var clients []*webrtc.PeerConnection
	var conns []net.PacketConn
	defer func() {
		for _, pc := range clients {
			_ = pc.Close()
		}
	}()
	for range viewers {
		pc, conn, err := benchViewer(srv)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, pc)
		conns = append(conns, conn)
	}
	st, _ := hub.Get("bench/cam")
	deadline := time.Now().Add(30 * time.Second)
	for st.Viewers() < int64(viewers) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d viewers attached", st.Viewers(), viewers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range conns {
		_ = c.Close() // from now on the kernel discards what the gateway sends
	}
	out := func() uint64 { return st.Stats().Tracks[0].BytesOut }
	base := out()

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%60 == 0 {
			write(key)
		} else {
			write(payload)
		}
	}
	want := base + uint64(b.N)*uint64(viewers)*uint64(len(payload)+12)
	for out() < want {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(viewers), "ns/viewer-packet")
	b.ReportMetric(0, "ns/op")
}

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}

// benchViewer connects one recvonly pion peer through Server.Offer. It
// returns the peer and its socket.
func benchViewer(srv *Server) (*webrtc.PeerConnection, net.PacketConn, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, nil, err
	}
	s := webrtc.SettingEngine{}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(true)
	s.SetICEUDPMux(ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn}))
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return nil, nil, err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, nil, err
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := srv.Offer(ctx, "bench/cam", pc.LocalDescription().SDP, "bench")
	if err != nil {
		return nil, nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer()}); err != nil {
		return nil, nil, err
	}
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("viewer did not connect: %s", pc.ConnectionState())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return pc, conn, nil
}
