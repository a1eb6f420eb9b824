package gateway

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/web/auth"
)

// Found: --auth off checked only the HTTP address; RTMP and RTSP listened
// on every interface and took publishes without a token.
func TestAuthOffEveryListenerLoopback(t *testing.T) {
	for _, tc := range []struct{ name, http, rtmp, rtsp, want string }{
		{"rtmp on all interfaces", "127.0.0.1:0", "0.0.0.0:0", "", "rtmp"},
		{"rtsp on all interfaces", "127.0.0.1:0", "", "0.0.0.0:0", "rtsp"},
		{"http on all interfaces", "0.0.0.0:0", "", "", "http"},
	} {
		_, err := New(Config{HTTP: tc.http, RTMPAddr: tc.rtmp, RTSPAddr: tc.rtsp, WebRTCUDP: "127.0.0.1:0", AuthMode: "off",
			RecordDir: t.TempDir(), RecorderParams: RecorderParams{SpoolDir: t.TempDir()}}, quietLog())
		if err == nil || !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Addresses without a host (the defaults) are bound to loopback.
	g, err := New(Config{HTTP: ":0", RTMPAddr: ":0", RTSPAddr: ":0", WebRTCUDP: "127.0.0.1:0", AuthMode: "off",
		RecordDir: t.TempDir(), RecorderParams: RecorderParams{SpoolDir: t.TempDir()}}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer g.closeMedia()
	defer g.ln.Close()
	for name, a := range map[string]net.Addr{"http": g.ln.Addr(), "rtmp": g.RTMPAddr(), "rtsp": g.RTSPAddr()} {
		if ta, ok := a.(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			t.Errorf("auth off, %s default address bound to %v", name, a)
		}
	}
}

// Found: a same-host proxy without X-Forwarded-For made every client
// local; CORS answered * to any Host.
func TestOpenGatewayRefusesProxiesAndOtherHosts(t *testing.T) {
	g := startGateway(t, nil)
	get := func(hdr map[string]string, host string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, g.base+"/api/v1/me", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := get(nil, ""); r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("local client: %d, CORS %q", r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
	}
	if r := get(map[string]string{"X-Real-Ip": "198.51.100.7"}, ""); r.StatusCode != 401 {
		t.Fatalf("through a proxy: %d", r.StatusCode)
	}
	if r := get(nil, "rebind.attacker.example"); r.StatusCode != 403 {
		t.Fatalf("DNS-rebound Host: %d", r.StatusCode)
	}
	if r := get(map[string]string{"Origin": "http://attacker.example"}, ""); r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("page of another origin: %d", r.StatusCode)
	}
}

// Found: 260 idle TCP connections from one address locked every tokened
// RTMP publisher out (a global cap of 256, the token checked after the
// handshake).
func TestRTMPIdleConnectionsCannotLockOthersOut(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.RTMPAddr = "127.0.0.1:0"; c.AuthMode, c.AuthKey = "on", testKey })
	addr := g.RTMPAddr().String()
	idle := idleConns(t, addr, 260)
	// A publisher from another address still gets its handshake.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot use 127.0.0.2 as a second client address: %v", err)
	}
	defer c.Close()
	if err := rtmpHandshake(c); err != nil {
		t.Fatalf("publisher from another address after 260 idle connections: %v", err)
	}
	// Most of the idle connections were closed at once.
	open := stillOpen(idle)
	if open > 8 {
		t.Fatalf("%d idle connections from one address kept open, want at most 8", open)
	}
}

// rtmpHandshake sends C0+C1 and reads S0+S1.
func rtmpHandshake(c net.Conn) error {
	c1 := make([]byte, 1+1536)
	c1[0] = 3
	_, _ = rand.Read(c1[9:])
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(c1); err != nil {
		return err
	}
	s := make([]byte, 1+1536)
	_, err := io.ReadFull(c, s)
	if err == nil && s[0] != 3 {
		err = fmt.Errorf("S0 version %d", s[0])
	}
	return err
}

// Found: one token held 1,000 room event streams and locked others out.
func TestEventStreamsPerIdentity(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.AuthMode, c.AuthKey, c.Limits.EventStreamsPerIdentity = "on", testKey, 3 })
	tok := roomToken(t, "r1", "mallory", "", auth.GrantSubscribe)
	for i := range 3 {
		s, status, body := openEvents(t, g.base+"/api/v1/rooms/r1/events", tok)
		if status != 200 {
			t.Fatalf("stream %d: %d %v", i, status, body)
		}
		t.Cleanup(s.close)
	}
	if _, status, body := openEvents(t, g.base+"/api/v1/rooms/r1/events", tok); status != http.StatusTooManyRequests {
		t.Fatalf("4th stream of one identity: %d %v", status, body)
	}
	s, status, _ := openEvents(t, g.base+"/api/v1/rooms/r1/events", roomToken(t, "r1", "alice", "", auth.GrantSubscribe))
	if status != 200 {
		t.Fatalf("another identity: %d", status)
	}
	s.close()
}

// Found: the per-address session limit let 201 of 200 through under a
// burst (checked before the offer, counted after).
func TestSessionLimitHoldsUnderBurst(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.Limits.SessionsPerIP = 3 })
	g.publish(t, "burst/cam")
	offer := offerSDP(t, []webrtc.RTPCodecParameters{{RTPCodecCapability: rtcclient.H264ConstrainedBaseline, PayloadType: 102}},
		webrtc.RTPTransceiverDirectionRecvonly)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		codes     = map[int]int{}
		resources []string
	)
	start := make(chan struct{})
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodPost, g.base+"/whep/burst/cam", strings.NewReader(offer))
			req.Header.Set("Content-Type", "application/sdp")
			resp, err := httpClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			if resp.StatusCode == 201 {
				resources = append(resources, resp.Header.Get("Location"))
			}
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	for _, r := range resources {
		req, _ := http.NewRequest(http.MethodDelete, g.base+r, nil)
		if resp, err := httpClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	// One slot is the publisher's.
	if codes[201] > 2 || codes[429] < 10 {
		t.Fatalf("12 concurrent offers with max-sessions-per-ip 3 and one publisher: %v", codes)
	}
}

// Found: a token for identity alice-screen published roomA/alice-screen
// and took the real alice's screen share name.
func TestScreenSuffixIsReserved(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.AuthMode, c.AuthKey, c.AdminKey = "on", testKey, "admin-key-0123456789" })
	status, body, _ := apiCall(t, http.MethodPost, g.base+"/api/v1/tokens", "admin-key-0123456789",
		`{"room":"roomA","identity":"alice-screen","grants":["publish"]}`)
	if status != 400 {
		t.Fatalf("minting for alice-screen: %d %v", status, body)
	}
	// A token an older backend signed without the check.
	c := auth.Claims{Room: "roomA", Identity: "alice-screen", Grants: []string{"publish"}, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "livegate", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
	old, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	publish := func(path, tok string) int { return g.publishStatus(t, path, tok) }
	if got := publish("roomA/alice-screen", old); got != 403 {
		t.Fatalf("alice-screen identity publishing roomA/alice-screen: %d", got)
	}
	if got := publish("roomA/alice-screen", token(t, "roomA", "alice", time.Hour, "publish")); got != 201 {
		t.Fatalf("alice publishing her screen share: %d", got)
	}
}

// Found: one PATCH with 1,700 candidates made the gateway send 8,000 STUN
// packets to ports of the client's choosing.
func TestTrickleCandidatesBounded(t *testing.T) {
	g := startGateway(t, nil)
	pub := g.publish(t, "trickle/cam")
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + ufrag(pub.PC.LocalDescription().SDP) + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n")
	for i := range 1700 {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, 10000+i)
	}
	resp, body := request(t, http.MethodPatch, pub.Resource, "application/trickle-ice-sdpfrag", b.String())
	if resp.StatusCode != 400 || body["code"] != "too_many_candidates" {
		t.Fatalf("PATCH with 1,700 candidates: %d %v", resp.StatusCode, body)
	}
	// Addresses no client owns are dropped, not checked.
	resp, body = request(t, http.MethodPatch, pub.Resource, "application/trickle-ice-sdpfrag",
		"a=ice-ufrag:"+ufrag(pub.PC.LocalDescription().SDP)+"\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"+
			"a=candidate:1 1 udp 2130706431 224.0.0.251 5353 typ host\r\na=candidate:2 1 udp 2130706431 255.255.255.255 9 typ host\r\n")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH with multicast and broadcast candidates: %d %v", resp.StatusCode, body)
	}
}

// Found: /metrics counted every API error as status="200" and showed
// nothing of webhooks, the recording spool, RTMP or RTSP.
func TestMetricsShowWhatOperatorsNeed(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.RTMPAddr, c.RTSPAddr = "127.0.0.1:0", "127.0.0.1:0" })
	if resp, _ := request(t, http.MethodGet, g.base+"/api/v1/streams/bad.room/x", "", ""); resp.StatusCode != 400 {
		t.Fatalf("bad path: %d", resp.StatusCode)
	}
	b := g.metricsPage(t)
	for _, want := range []string{`status="400"`, `livegate_webhook_events_total{result="dropped"}`, "livegate_recorder_spool_errors_total",
		"livegate_recorder_spool_bytes", "livegate_rtmp_connections", "livegate_rtsp_sessions"} {
		if !strings.Contains(b, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The RTMP finding, tried on RTSP: one address's idle connections are
// capped, and another address is still served.
func TestRTSPIdleConnectionsCapped(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.RTSPAddr = "127.0.0.1:0" })
	addr := g.RTSPAddr().String()
	idle := idleConns(t, addr, 60)
	time.Sleep(200 * time.Millisecond)
	open := stillOpen(idle)
	if open > 16 {
		t.Fatalf("%d idle RTSP connections from one address kept open, want at most 16", open)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot use 127.0.0.2 as a second client address: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("OPTIONS rtsp://" + addr + "/r/a RTSP/1.0\r\nCSeq: 1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 15)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "RTSP/1.0 200 OK" {
		t.Fatalf("another address after 60 idle connections: %q %v", line, err)
	}
}
