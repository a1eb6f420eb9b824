package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST convention
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
	"github.com/livegate/livegate/relay/turn"
	"github.com/livegate/livegate/web/auth"
)

// tcpOnlyOpts are client options whose PeerConnections use TCP only: they
// dial the gateway's passive ICE-TCP candidates.
func tcpOnlyOpts(t *testing.T) rtcclient.Options {
	t.Helper()
	api, err := rtcclient.Loopback{TCP: true}.API()
	if err != nil {
		t.Fatal(err)
	}
	return rtcclient.Options{API: api, HTTP: httpClient}
}

// TestICETCPOnlyOriginRelays: an origin with UDP media off serves a
// TCP-only publisher, and an edge's relay link pulls from it over ICE-TCP
// (the edge's UDP viewer proves the link carries media).
func TestICETCPOnlyOriginRelays(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.WebRTCUDP = "off"; c.WebRTCTCP = "127.0.0.1:0"; c.ClusterKey = clusterKey })
	if origin.UDPAddr() != nil || origin.TCPAddr() == nil {
		t.Fatalf("origin media: udp %v tcp %v, want TCP only", origin.UDPAddr(), origin.TCPAddr())
	}
	e := edge(t, 30*time.Second, origin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, err := rtcclient.Publish(ctx, origin.base+"/whip/tcp/cam", tcpOnlyOpts(t), rtcclient.H264ConstrainedBaseline, true)
	if err != nil {
		t.Fatalf("TCP-only publisher: %v", err)
	}
	defer pub.Close(context.Background())
	waitConnected(t, pub.PC)
	pctx, stop := context.WithCancel(context.Background())
	defer stop()
	go play(pctx, pub, loadClip(t), 0)
	v := e.view(t, "tcp/cam")
	defer v.close()
	v.waitFrames(t, 10*time.Second, 31, "frames at the edge's viewer")
	if n := len(e.Puller().Links()); n != 1 {
		t.Fatalf("%d relay links, want 1", n)
	}
}

// TestMediaSettings: either transport can be turned off, not both; by
// default ICE-TCP listens on the UDP address's port number.
func TestMediaSettings(t *testing.T) {
	for _, tc := range []struct{ udp, tcp, wantUDP, wantTCP, err string }{
		{":8189", "", ":8189", ":8189", ""},
		{":8189", "off", ":8189", "", ""},
		{"off", ":443", "", ":443", ""},
		{"off", "", "", "", "webrtc-tcp"},
		{"off", "off", "", "", "both off"},
	} {
		u, tc2, err := mediaAddrs(tc.udp, tc.tcp)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q/%q: error %v, want one about %s", tc.udp, tc.tcp, err, tc.err)
			}
			continue
		}
		if err != nil || u != tc.wantUDP || tc2 != tc.wantTCP {
			t.Errorf("%q/%q: %q %q %v, want %q %q", tc.udp, tc.tcp, u, tc2, err, tc.wantUDP, tc.wantTCP)
		}
	}
	// A fixed port: the same number for both.
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close()
	g := startGateway(t, func(c *Config) { c.WebRTCUDP = addr; c.WebRTCTCP = "" })
	if g.UDPAddr().String() != addr || g.TCPAddr().String() != addr {
		t.Fatalf("udp %v tcp %v, want both %s", g.UDPAddr(), g.TCPAddr(), addr)
	}
}

var candRE = regexp.MustCompile(`a=candidate:\S+ 1 (udp|tcp) \d+ (\S+) (\d+) typ host( tcptype passive)?`)

// answerCandidates posts a receive-only offer and returns the answer's
// candidates as "udp IP" / "tcp IP" and the Link headers.
func answerCandidates(t *testing.T, g *testGateway, path, tok string) ([]string, []string) {
	t.Helper()
	offer := pionOffer(t, webrtc.RTPTransceiverDirectionRecvonly, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}, nil)
	res, body := fetch(t, http.MethodPost, g.base+"/whep/"+path, offer, "Content-Type", "application/sdp", "Authorization", bearer(tok))
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP: %d %s", res.StatusCode, body)
	}
	var cands []string
	for _, m := range candRE.FindAllStringSubmatch(body, -1) {
		if m[1] == "tcp" && m[4] == "" {
			t.Errorf("TCP candidate without tcptype passive: %s", m[0])
		}
		cands = append(cands, m[1]+" "+m[2])
	}
	// The session is not needed further.
	if loc := res.Header.Get("Location"); loc != "" {
		fetch(t, http.MethodDelete, g.base+loc, "", "Authorization", bearer(tok))
	}
	return cands, res.Header.Values("Link")
}

// TestAdvertisedAddresses: host candidates for UDP and TCP carry the
// configured address; a PUBLIC/LOCAL pair replaces LOCAL only.
func TestAdvertisedAddresses(t *testing.T) {
	for _, tc := range []struct {
		ips  []string
		want string
	}{
		{[]string{"127.0.0.1"}, "127.0.0.1"},
		{[]string{"203.0.113.7/127.0.0.1"}, "203.0.113.7"},
	} {
		g := startGateway(t, func(c *Config) { c.WebRTCIPs = tc.ips })
		p, stop := publishClip(t, g, "adv/cam")
		cands, _ := answerCandidates(t, g, "adv/cam", "")
		stop()
		p.Close(context.Background())
		var udp, tcp bool
		for _, c := range cands {
			proto, ip, _ := strings.Cut(c, " ")
			if ip != tc.want {
				t.Errorf("%v: candidate %s, want only %s", tc.ips, c, tc.want)
			}
			udp = udp || proto == "udp"
			tcp = tcp || proto == "tcp"
		}
		if !udp || !tcp {
			t.Errorf("%v: candidates %v, want UDP and TCP host candidates", tc.ips, cands)
		}
	}
}

// TestICEServerLinks: with the built-in TURN server on, every 201 and an
// authorized OPTIONS carry RFC 9725 Link headers whose credentials the
// TURN server accepts (TURN REST: HMAC-SHA1 of the username, which ends
// at the expiry); a CORS preflight (no token) gets none.
func TestICEServerLinks(t *testing.T) {
	const secret = "turn-secret-for-tests"
	g := startGateway(t, func(c *Config) {
		c.AuthMode, c.AuthKey = "on", testKey
		c.ICE.TURNUDP, c.ICE.TURNTCP = "127.0.0.1:0", "127.0.0.1:0"
		c.ICE.TURNSecret = secret
		c.ICE.TURNCredentialTTL = time.Hour
		c.ICE.ICEServers = nil
	})
	pubTok := token(t, "links", "cam", time.Hour, auth.GrantPublish)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := clientOpts(t)
	o.Token = pubTok
	pub, err := rtcclient.Publish(ctx, g.base+"/whip/links/cam", o, rtcclient.H264ConstrainedBaseline, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	_, links := answerCandidates(t, g, "links/cam", token(t, "links", "bob", time.Hour, auth.GrantSubscribe))
	udp, tcp, _ := g.turn.Addrs()
	checkLinks(t, links, secret, "bob", []string{
		"turn:127.0.0.1:" + port(udp) + "?transport=udp", "turn:127.0.0.1:" + port(tcp) + "?transport=tcp"})

	options := func(tok string) []string {
		res, _ := fetch(t, http.MethodOptions, g.base+"/whep/links/cam", "", "Authorization", bearer(tok))
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("OPTIONS: %d", res.StatusCode)
		}
		return res.Header.Values("Link")
	}
	if l := options(""); len(l) != 0 {
		t.Errorf("OPTIONS without a token got ICE servers: %v", l)
	}
	if l := options(token(t, "other", "dave", time.Hour, auth.GrantSubscribe)); len(l) != 0 {
		t.Errorf("OPTIONS with a token for another room got ICE servers: %v", l)
	}
	checkLinks(t, options(token(t, "links", "carol", time.Hour, auth.GrantSubscribe)), secret, "carol", nil)
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="ice-server"; username="([^"]+)"; credential="([^"]+)"; credential-type="password"$`)

func checkLinks(t *testing.T, links []string, secret, user string, urls []string) {
	t.Helper()
	if len(links) != 2 {
		t.Fatalf("Link headers %q, want 2 ICE servers", links)
	}
	for i, l := range links {
		m := linkRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("Link %q is not an ice-server link with credentials", l)
		}
		if urls != nil && m[1] != urls[i] {
			t.Errorf("Link URL %q, want %q", m[1], urls[i])
		}
		exp, who, _ := strings.Cut(m[2], ":")
		sec, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || who != user {
			t.Fatalf("username %q: want EXPIRY:%s", m[2], user)
		}
		if d := time.Until(time.Unix(sec, 0)); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("credentials expire in %v, want the TTL of 1 h", d)
		}
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(m[2]))
		if m[3] != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			t.Errorf("credential of %q is not HMAC-SHA1(secret, username)", m[2])
		}
	}
}

// TestAutoPublicAddress: webrtc-ips auto takes the address a STUN server
// sees (here a local one: tests never ask the internet).
func TestAutoPublicAddress(t *testing.T) {
	stunSrv, err := turn.New(turn.Config{UDPAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), Secret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer stunSrv.Close()
	udp, _, _ := stunSrv.Addrs()
	g := startGateway(t, func(c *Config) {
		c.WebRTCIPs = []string{"auto"}
		c.STUNServers = []string{"stun:" + udp.String()}
	})
	if len(g.ips) != 1 || g.ips[0] != "127.0.0.1" {
		t.Fatalf("auto resolved to %v, want [127.0.0.1]", g.ips)
	}
	if _, err := New(Config{HTTP: "127.0.0.1:0", WebRTCUDP: "127.0.0.1:0", WebRTCIPs: []string{"auto"}}, quietLog()); err == nil ||
		!strings.Contains(err.Error(), "stun-servers") {
		t.Fatalf("auto without STUN servers: %v, want an error naming stun-servers", err)
	}
}

// TestStartupLogSaysWhatClientsAreTold: the log names the advertised
// addresses and media ports, and warns when HTTP is public but the
// advertised addresses are private or loopback.
func TestStartupLogSaysWhatClientsAreTold(t *testing.T) {
	for _, tc := range []struct {
		http string
		ips  []string
		warn bool
	}{
		{"0.0.0.0:0", []string{"10.1.2.3"}, true},
		{"0.0.0.0:0", []string{"203.0.113.7/10.1.2.3"}, false},
		{"127.0.0.1:0", []string{"127.0.0.1"}, false},
	} {
		var buf testenv.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		g, err := New(Config{HTTP: tc.http, WebRTCUDP: "127.0.0.1:0", WebRTCIPs: tc.ips, AuthMode: "on", AuthKey: testKey,
			RecordDir: t.TempDir(), RecorderParams: RecorderParams{SpoolDir: t.TempDir()}}, log)
		if err != nil {
			t.Fatal(err)
		}
		g.logMedia()
		g.closeMedia()
		_ = g.ln.Close()
		out := buf.String()
		pub, _, _ := strings.Cut(tc.ips[0], "/")
		if !strings.Contains(out, "media: clients are told") || !strings.Contains(out, "candidate_ips="+pub) ||
			!strings.Contains(out, "webrtc_tcp=127.0.0.1:") {
			t.Errorf("%v: log lacks what clients are told:\n%s", tc.ips, out)
		}
		if got := strings.Contains(out, "level=WARN msg=\"HTTP listens on a public interface"); got != tc.warn {
			t.Errorf("http %s, ips %v: warning %v, want %v:\n%s", tc.http, tc.ips, got, tc.warn, out)
		}
	}
}

// TestDiagnoseRunningGateway: next to a running gateway, the server-side
// check finds livegate answering, its ports in use, the TURN server
// answering, and compares the STUN server's view with webrtc-ips.
func TestDiagnoseRunningGateway(t *testing.T) {
	stunSrv, err := turn.New(turn.Config{UDPAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), Secret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer stunSrv.Close()
	su, _, _ := stunSrv.Addrs()
	g := startGateway(t, func(c *Config) { c.ICE.TURNUDP = "127.0.0.1:0" })
	tu, _, _ := g.turn.Addrs()
	cfg := g.cfg
	cfg.HTTP, cfg.WebRTCUDP, cfg.WebRTCTCP, cfg.ICE.TURNUDP = g.HTTPAddr(), g.UDPAddr().String(), g.TCPAddr().String(), tu.String()
	for _, tc := range []struct {
		ips      []string
		problems bool
		want     string
	}{
		{[]string{"127.0.0.1"}, false, "sees this machine as 127.0.0.1, as advertised"},
		{[]string{"198.51.100.9"}, true, "FAIL STUN stun:" + su.String() + " sees this machine as 127.0.0.1 but clients are told 198.51.100.9"},
	} {
		cfg.WebRTCIPs, cfg.STUNServers = tc.ips, []string{"stun:" + su.String()}
		var out strings.Builder
		problems := Diagnose(context.Background(), cfg, &out)
		t.Logf("\n%s", out.String())
		for _, w := range []string{"livegate answers /healthz", "in use (by the running livegate", "TURN UDP " + tu.String() + " answers", tc.want} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q", tc.ips, w)
			}
		}
		if problems != tc.problems {
			t.Errorf("%v: problems %v, want %v", tc.ips, problems, tc.problems)
		}
	}
}

// TestICETCPViewerLatency: a viewer that can only use TCP gets each frame
// within 30 ms (p95) of the publisher writing it, on loopback, about as a
// UDP viewer does.
func TestICETCPViewerLatency(t *testing.T) {
	g := startGateway(t, nil)
	const path = "lat/cam"
	pub := g.publish(t, path)
	c := loadClip(t)
	var mu sync.Mutex
	sent := map[[32]byte]time.Time{}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		_ = clip.Play(ctx, c.video, func(s clip.Sample, _ int) error {
			mu.Lock()
			sent[frameKey(sentNALUs(s.Data))] = time.Now() // the latest loop wins
			mu.Unlock()
			return pub.WriteVideo(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	time.Sleep(300 * time.Millisecond)
	vt, err := dialViewer(t, g.base+"/whep/"+path, tcpOnlyOpts(t))
	if err != nil {
		t.Fatalf("TCP-only viewer: %v", err)
	}
	vu := g.view(t, path)
	time.Sleep(4 * time.Second)
	lat := func(v *viewer) []time.Duration {
		frames, _, _ := v.snapshot()
		mu.Lock()
		defer mu.Unlock()
		var d []time.Duration
		for _, f := range frames[min(len(frames), 30):] { // past the cached start
			if s, ok := sent[frameKey(f.nalus)]; ok && f.at.After(s) && f.at.Sub(s) < time.Second {
				d = append(d, f.at.Sub(s))
			}
		}
		slices.Sort(d)
		return d
	}
	pct := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
	dt, du := lat(vt), lat(vu)
	if len(dt) < 60 || len(du) < 60 {
		t.Fatalf("frames compared: TCP %d, UDP %d", len(dt), len(du))
	}
	t.Logf("publisher write -> viewer frame: TCP p50 %v p95 %v max %v (%d frames); UDP p50 %v p95 %v max %v (%d frames)",
		pct(dt, 50), pct(dt, 95), dt[len(dt)-1], len(dt), pct(du, 50), pct(du, 95), du[len(du)-1], len(du))
	if pct(dt, 95) > 30*time.Millisecond {
		t.Errorf("TCP viewer latency p95 %v, want < 30 ms", pct(dt, 95))
	}
}

// TestGatewayDialsNoClientTCPCandidate: a client's passive TCP candidate
// is never dialed (only relay links dial, toward their parents), so an
// offer cannot make the gateway open TCP connections to other hosts or to
// services on its own network.
func TestGatewayDialsNoClientTCPCandidate(t *testing.T) {
	g := startGateway(t, nil)
	p, stop := publishClip(t, g, "dial/cam")
	defer p.Close(context.Background())
	defer stop()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	dialed := make(chan struct{}, 1)
	go func() {
		if c, err := target.Accept(); err == nil {
			c.Close()
			dialed <- struct{}{}
		}
	}()
	offer := pionOffer(t, webrtc.RTPTransceiverDirectionRecvonly, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}, nil)
	port := target.Addr().(*net.TCPAddr).Port
	sdp := strings.Replace(offer, "a=mid:", fmt.Sprintf("a=candidate:1 1 tcp 1518280447 127.0.0.1 %d typ host tcptype passive\r\na=mid:", port), 1)
	res, _ := fetch(t, http.MethodPost, g.base+"/whep/dial/cam", sdp, "Content-Type", "application/sdp")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP: %d", res.StatusCode)
	}
	select {
	case <-dialed:
		t.Fatal("the gateway dialed the client's passive TCP candidate")
	case <-time.After(2 * time.Second):
	}
}
