package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/livegate/livegate/cmd/internal/gateway"
)

// startTestGateway runs a gateway in-process on loopback ports the kernel
// chooses, serving WHEP viewers on the given transport.
func startTestGateway(t *testing.T, whepTransport string) string {
	t.Helper()
	cfg := gateway.Config{
		HTTP: "127.0.0.1:0", WebRTCUDP: "127.0.0.1:0", WebRTCIPs: []string{"127.0.0.1"},
		ConnectTimeout: 10 * time.Second, RecordDir: t.TempDir(),
		RecorderParams: gateway.RecorderParams{SpoolDir: t.TempDir()},
		RelayParams:    gateway.RelayParams{Grace: 10 * time.Second, KeyframeMaxInterval: 2 * time.Second},
		WHEPTransport:  whepTransport,
	}
	g, err := gateway.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10 s")
		}
	})
	return "http://" + g.HTTPAddr()
}

// runBench runs the tool against base and returns its report.
func runBench(t *testing.T, base string, args ...string) report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--url", base, "--path", "bench/lite", "--clip", "../../testdata/clip.h264",
		"--audio", "../../testdata/clip.ogg", "--quiet", "--settle", "500ms", "--keyframe-on-pli"}, args...)
	code := run(args, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("livegate-bench exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	t.Logf("report: %s", stdout.String())
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", stdout.String(), err)
	}
	return rep
}

// The light client receives the stream from both WHEP transports of the
// gateway: livegate's ICE-lite one (DTLS client) and the pion fallback
// (full ICE agent that checks back, DTLS server). Every viewer gets a
// keyframe, nothing is lost, latency samples are real (positive, well
// under a second) and, on Linux, stamped by the kernel.
func TestLiteClientAgainstBothTransports(t *testing.T) {
	for _, transport := range []string{"lite", "pion"} {
		t.Run("whep-transport="+transport, func(t *testing.T) {
			base := startTestGateway(t, transport)
			rep := runBench(t, base, "--viewers", "3", "--ramp", "10", "--duration", "3s", "--client", "lite")
			if rep.Client != "lite" {
				t.Errorf("client %q, want lite", rep.Client)
			}
			if rep.ViewersConnected != 3 || rep.ViewersFailed != 0 || rep.ViewersDown != 0 {
				t.Fatalf("viewers connected %d failed %d down %d, errors %+v", rep.ViewersConnected, rep.ViewersFailed, rep.ViewersDown, rep.Errors)
			}
			if rep.ViewersNoKeyframe != 0 {
				t.Errorf("%d viewers without a keyframe", rep.ViewersNoKeyframe)
			}
			// 3 s window + ramp at ~130 packets/s per viewer.
			if rep.VideoPackets < 3*200 || rep.AudioPackets < 3*100 {
				t.Errorf("received %d video, %d audio packets: too few", rep.VideoPackets, rep.AudioPackets)
			}
			if rep.LossPct > 0.5 {
				t.Errorf("loss %.3f %% (%d of %d)", rep.LossPct, rep.PacketsLost, rep.PacketsExpected)
			}
			for name, d := range map[string]dist{"first packet": rep.LatencyAll, "whole frame": rep.FrameLatencyAll} {
				if d.N == 0 || d.P50 <= 0 || d.Max >= 1000 {
					t.Errorf("%s latency %+v: want samples, positive, under 1 s", name, d)
				}
			}
			if rep.FramesExpected == 0 || rep.FramesMissingPct > 1 {
				t.Errorf("SEI frames expected %d, missing %d", rep.FramesExpected, rep.FramesMissing)
			}
			want := "read"
			if runtime.GOOS == "linux" {
				want = "kernel"
			}
			if rep.ReceiveTimestamps != want {
				t.Errorf("receive timestamps %q, want %q", rep.ReceiveTimestamps, want)
			}
			if lc := rep.LiteClient; lc == nil || lc.SRTPErrors != 0 || lc.BadDatagrams != 0 || lc.BeforeKeys != 0 {
				t.Errorf("light client counters %+v", lc)
			}
			if rep.CloseErrors != 0 {
				t.Errorf("%d close errors", rep.CloseErrors)
			}
		})
	}
}

// The pion client stays available, and the report says which one ran.
func TestPionClientStillWorks(t *testing.T) {
	base := startTestGateway(t, "lite")
	rep := runBench(t, base, "--viewers", "2", "--ramp", "10", "--duration", "2s", "--client", "pion")
	if rep.Client != "pion" || rep.ReceiveTimestamps != "read" || rep.LiteClient != nil {
		t.Errorf("client %q, timestamps %q, lite counters %+v", rep.Client, rep.ReceiveTimestamps, rep.LiteClient)
	}
	if rep.ViewersConnected != 2 || rep.ViewersNoKeyframe != 0 || rep.LatencyAll.N == 0 {
		t.Errorf("viewers %d, without keyframe %d, latency samples %d", rep.ViewersConnected, rep.ViewersNoKeyframe, rep.LatencyAll.N)
	}
}

// What the network sends is never trusted: the answer parser names what
// is missing, and candidates off this machine are ignored (its own
// interface addresses are kept, after loopback ones).
func TestParseLiteAnswer(t *testing.T) {
	saved := localIPs
	t.Cleanup(func() { localIPs = saved })
	localIPs = map[netip.Addr]bool{netip.MustParseAddr("192.0.2.7"): true}
	good := "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n" +
		"a=fingerprint:sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 32), ":") + "\r\na=setup:passive\r\na=mid:0\r\na=sendonly\r\n" +
		"a=rtpmap:102 H264/90000\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
		"a=candidate:4 1 udp 2130706432 192.0.2.7 5002 typ host\r\n" +
		"a=candidate:2 1 udp 2130706430 192.0.2.1 5000 typ host\r\n" +
		"a=candidate:3 1 tcp 1671430143 127.0.0.1 5001 typ host tcptype passive\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
	a, err := parseLiteAnswer(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.dtlsServer || a.videoPT != 102 || a.audioPT != 111 || len(a.cands) != 2 || a.cands[0].String() != "127.0.0.1:5000" || a.cands[1].String() != "192.0.2.7:5002" {
		t.Errorf("parsed %+v", a)
	}
	active, err := parseLiteAnswer(strings.Replace(good, "setup:passive", "setup:active", 1))
	if err != nil || !active.dtlsServer {
		t.Errorf("setup:active: %+v, %v", active, err)
	}
	for name, bad := range map[string]string{
		"not SDP":           "hello",
		"no candidate":      strings.NewReplacer("127.0.0.1 5000", "192.0.2.2 5000", "192.0.2.7", "192.0.2.8").Replace(good),
		"no credentials":    strings.Replace(good, "a=ice-pwd:p\r\n", "", 1),
		"bad fingerprint":   strings.Replace(good, "sha-256 AB", "sha-256 ZZ", 1),
		"video refused":     strings.Replace(good, "m=video 9", "m=video 0", 1),
		"setup nonsense":    strings.Replace(good, "setup:passive", "setup:sideways", 1),
		"payload type junk": strings.Replace(good, "SAVPF 102\r\n", "SAVPF x\r\n", 1),
	} {
		if _, err := parseLiteAnswer(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Control messages are parsed without trusting their lengths.
func TestRxTimestampMalformed(t *testing.T) {
	for _, oob := range [][]byte{nil, make([]byte, 3), bytes.Repeat([]byte{0xff}, 64), make([]byte, 64)} {
		if _, ok := rxTimestamp(oob); ok {
			t.Errorf("timestamp found in %x", oob)
		}
	}
}

// Short or lying RTP headers are rejected before decryption.
func TestRTPHeaderLen(t *testing.T) {
	if _, ok := rtpHeaderLen([]byte{0x80, 96}); ok {
		t.Error("short packet accepted")
	}
	p := make([]byte, 16)
	p[0] = 0x90 // extension
	p[14], p[15] = 0, 10
	if _, ok := rtpHeaderLen(p); ok {
		t.Error("extension past the end accepted")
	}
	p[0] = 0x8f // 15 CSRCs
	if _, ok := rtpHeaderLen(p); ok {
		t.Error("CSRCs past the end accepted")
	}
	if n, ok := rtpHeaderLen(make([]byte, 20)); !ok || n != 12 {
		t.Errorf("plain header: %d %v", n, ok)
	}
}

// Gaps become NACKs for what is still missing, each asked for a bounded
// number of times, and the list of awaited packets stays bounded.
func TestLiteNACKs(t *testing.T) {
	b := &bench{}
	v := &viewer{b: b}
	r := &liteReader{c: &liteConn{v: v, ssrc: 7}, haveV: true, vSSRC: 9}
	var rx videoRx
	var h rtp.Header
	for _, seq := range []uint16{65534, 65535, 2} { // 0 and 1 missing, across the wrap
		h.SequenceNumber = seq
		if gap := v.onVideo(&rx, &h, nil, time.Now()); gap > 0 {
			r.addNACKs(seq, gap)
		}
	}
	nack := func() []uint16 {
		p := r.nackPacket()
		if p == nil {
			return nil
		}
		var out []uint16
		for _, pair := range p.(*rtcp.TransportLayerNack).Nacks {
			out = append(out, pair.PacketList()...)
		}
		return out
	}
	if got := nack(); !slices.Equal(got, []uint16{0, 1}) {
		t.Fatalf("first NACK %v, want [0 1]", got)
	}
	h.SequenceNumber = 0
	v.onVideo(&rx, &h, nil, time.Now())
	for i := 2; i <= liteMaxNACKTries; i++ {
		if got := nack(); !slices.Equal(got, []uint16{1}) {
			t.Fatalf("NACK %d: %v, want [1]", i, got)
		}
	}
	if got := nack(); got != nil {
		t.Fatalf("asked again after %d tries: %v", liteMaxNACKTries, got)
	}
	if n := b.nacked.Load(); n != 2+uint64(liteMaxNACKTries-1) {
		t.Errorf("counted %d NACKed sequence numbers", n)
	}
	r.addNACKs(40000, 30000)
	if len(r.nacks) != liteMaxNACKs {
		t.Errorf("%d awaited, want the bound %d", len(r.nacks), liteMaxNACKs)
	}
}

// Lost video packets are NACKed and the gateway's retransmissions fill
// the gaps: the NACKs the light client sends are well-formed SRTCP the
// gateway acts on.
func TestLiteClientNACKRepairsLoss(t *testing.T) {
	var mu sync.Mutex
	dropped := map[[2]int]bool{}
	liteTestDrop = func(viewer int, seq uint16) bool {
		if seq%40 != 7 {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		k := [2]int{viewer, int(seq)}
		if dropped[k] {
			return false // the retransmission
		}
		dropped[k] = true
		return true
	}
	t.Cleanup(func() { liteTestDrop = nil })
	base := startTestGateway(t, "lite")
	rep := runBench(t, base, "--viewers", "2", "--ramp", "10", "--duration", "2s", "--client", "lite")
	mu.Lock()
	n := len(dropped)
	mu.Unlock()
	if n == 0 || rep.NACKedPackets < uint64(n)/2 {
		t.Fatalf("dropped %d, NACKed %d", n, rep.NACKedPackets)
	}
	if rep.GatewayStream == nil || rep.GatewayStream.Video == nil || rep.GatewayStream.Video.Retransmitted == 0 {
		t.Fatalf("gateway retransmitted nothing: %+v", rep.GatewayStream)
	}
	// The last second's drops may still be awaiting repair at the end.
	if rep.VideoLossPct > 0.5 {
		t.Errorf("video loss %.3f %% after repair (%d dropped)", rep.VideoLossPct, n)
	}
}

// Whatever arrives on a viewer's socket is counted or ignored, never a
// panic, and the queue towards DTLS stays bounded.
func TestLiteReaderMalformedInput(t *testing.T) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	b := &bench{cfg: config{nack: true}}
	v := &viewer{b: b}
	c := &liteConn{v: v, sock: sock, localUfrag: "local", localPwd: "localpasswordlocalpasswo", iceOK: make(chan struct{})}
	c.dtlsPC = newDTLSPacketConn(c)
	c.ans.Store(&liteAnswer{ufrag: "rem", pwd: "remotepasswordremotepass", videoPT: liteVideoPT, audioPT: liteAudioPT})
	r := &liteReader{c: c}
	from := netip.MustParseAddrPort("127.0.0.1:9")
	seed := uint64(1)
	rnd := func() byte {
		seed = seed*6364136223846793005 + 1442695040888963407
		return byte(seed >> 56)
	}
	packets := [][]byte{
		{0}, {1, 1, 0, 4}, {20}, {63, 0}, {0x80}, {0x80, 200}, {0x80, 96, 0, 1},
		append([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff}, make([]byte, 8)...),
		append([]byte{0x8f, 96}, make([]byte, 20)...),
		{255, 255},
	}
	for range 2000 {
		p := make([]byte, 1+int(rnd())*5)
		for i := range p {
			p[i] = rnd()
		}
		packets = append(packets, p)
	}
	at := time.Now()
	run := func() {
		for _, p := range packets {
			r.datagram(bytes.Clone(p), from, at)
		}
		r.tick(at)
	}
	run() // before the keys: media is kept, bounded
	if len(r.early) > liteEarlyMax {
		t.Errorf("%d datagrams kept before the keys, bound %d", len(r.early), liteEarlyMax)
	}
	key, salt := make([]byte, 16), make([]byte, 12)
	rx, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	c.rx.Store(rx)
	c.tx = rx
	c.ready.Store(true)
	run() // with keys: nothing decrypts
	if got := len(c.dtlsPC.in); got > liteDTLSQueue {
		t.Errorf("DTLS queue %d, bound %d", got, liteDTLSQueue)
	}
	if b.lite.srtp.Load() == 0 || b.lite.bad.Load() == 0 || b.lite.dtlsDrop.Load() == 0 {
		t.Errorf("counters: srtp %d bad %d dtls dropped %d", b.lite.srtp.Load(), b.lite.bad.Load(), b.lite.dtlsDrop.Load())
	}
	if v.videoPkts.Load() != 0 || v.audioPkts.Load() != 0 {
		t.Errorf("junk counted as media: %d video, %d audio", v.videoPkts.Load(), v.audioPkts.Load())
	}
	select {
	case <-c.iceOK:
		t.Error("junk completed ICE")
	default:
	}
}
