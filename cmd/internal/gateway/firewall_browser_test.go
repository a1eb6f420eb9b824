package gateway

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Networks that drop UDP (offices, hotels, some carriers): the browser test
// namespace gets nftables rules that drop every UDP datagram, and in the
// TURN case also TCP to the media port. The gateway runs in the same
// namespace, so what stands for "the server's own network" must pass: UDP
// from and to 127.0.0.2, the built-in TURN server's relay address. The
// browser's own sockets are on 127.0.0.1 and lose every UDP datagram.

const (
	nftTable  = "livegate_test"
	turnRelay = "127.0.0.2"
	pairJS    = `(async (pc) => {
  if (!pc) return {};
  const st = await pc.getStats();
  let out = {};
  st.forEach((s) => {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
    const p = st.get(s.selectedCandidatePairId), l = st.get(p.localCandidateId), r = st.get(p.remoteCandidateId);
    out = { local: l.candidateType + '/' + l.protocol + (l.relayProtocol ? '/' + l.relayProtocol : ''),
      remote: r.candidateType + '/' + r.protocol + '/' + r.port, rtt: p.currentRoundTripTime || 0 };
  });
  return out;
})(%s)`
)

type selectedPair struct {
	Local  string  `json:"local"`  // e.g. host/tcp, relay/udp/tcp
	Remote string  `json:"remote"` // e.g. host/tcp/PORT
	RTT    float64 `json:"rtt"`    // seconds
}

// dropUDP installs the rules in this process's network namespace, which
// must be the test's loopback-only one, and checks that they bite.
func dropUDP(t *testing.T, tcpPorts ...int) {
	t.Helper()
	if only, _, ifaces, err := loopbackOnly(); err != nil || !only {
		t.Fatalf("refusing to change nftables outside the test's loopback-only namespace (interfaces %v, %v)", ifaces, err)
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		skipOrFail(t, "nft (Debian package nftables) is needed to drop UDP in the test namespace: %v", err)
	}
	rules := []string{
		"add table inet " + nftTable,
		"add chain inet " + nftTable + " out { type filter hook output priority 0; }",
		"add rule inet " + nftTable + " out ip saddr " + turnRelay + " accept",
		"add rule inet " + nftTable + " out ip daddr " + turnRelay + " accept",
		"add rule inet " + nftTable + " out meta l4proto udp drop",
	}
	for _, p := range tcpPorts {
		rules = append(rules, fmt.Sprintf("add rule inet %s out tcp dport %d drop", nftTable, p))
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(strings.Join(rules, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(nft, "delete", "table", "inet", nftTable).Run() })
	c, err := net.Dial("udp4", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("a UDP datagram went out although nftables should drop it")
	}
	for _, p := range tcpPorts {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 300*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("TCP port %d is reachable although nftables should drop it", p)
		}
	}
}

// hostNFTablesClean fails if the test's table leaked into this (the
// machine's) namespace.
func hostNFTablesClean(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return
	}
	out, err := exec.Command(nft, "list", "tables").CombinedOutput()
	if err == nil && strings.Contains(string(out), nftTable) {
		t.Errorf("nftables table %s exists outside the test namespace: %s", nftTable, out)
	}
}

func tcpPort(a net.Addr) int { return a.(*net.TCPAddr).Port }

// TestBrowserNoUDPOverICETCP: with every UDP datagram dropped, a Chromium
// host (a plain RTCPeerConnection without ICE servers, like third-party
// WHIP clients) publishes and the page's player plays, both over ICE-TCP
// to the media port.
func TestBrowserNoUDPOverICETCP(t *testing.T) {
	b := browserTest(t, 120*time.Second)
	if b == nil {
		hostNFTablesClean(t)
		return
	}
	g := startGateway(t, nil)
	dropUDP(t)
	const path = "fw/tcp"
	h := g.startChromeHost(t, b, path, chromeHostOpts{Width: 640, Height: 360})
	h.waitLive(t, 15*time.Second)
	hp := mustEvalAsync[selectedPair](t, h.ctx, fmt.Sprintf(pairJS, "window.host.pc"))
	t.Logf("host: selected pair %+v", hp)
	// Chromium's active TCP candidate shows as peer-reflexive once used.
	if !strings.HasSuffix(hp.Local, "/tcp") || !strings.HasSuffix(hp.Remote, fmt.Sprintf("/%d", tcpPort(g.TCPAddr()))) {
		t.Fatalf("host connected over %+v, want ICE-TCP to the media port %d", hp, tcpPort(g.TCPAddr()))
	}
	first := watchFirstPicture(t, b, g, path)
	vp := mustEvalAsync[selectedPair](t, first.ctx, fmt.Sprintf(pairJS, "livegate.viewer.pc"))
	t.Logf("viewer: first picture %v after navigation, selected pair %+v", first.after, vp)
	if !strings.HasSuffix(vp.Local, "/tcp") || !strings.HasSuffix(vp.Remote, fmt.Sprintf("/%d", tcpPort(g.TCPAddr()))) {
		t.Fatalf("viewer connected over %+v, want ICE-TCP", vp)
	}
	if first.after > 1500*time.Millisecond {
		t.Errorf("first picture after %v, want < 1.5 s", first.after)
	}
	h.stop(t)
}

type firstPicture struct {
	ctx   context.Context
	after time.Duration
}

// watchFirstPicture opens the page's player for path and waits until it
// decodes and advances.
func watchFirstPicture(t *testing.T, b *browser, g *testGateway, path string) firstPicture {
	t.Helper()
	ctx, _ := b.tab(t, "viewer "+path)
	start := time.Now()
	b.navigate(t, ctx, g.base+"/?watch="+path)
	type video struct {
		State  string `json:"state"`
		Error  string `json:"error"`
		Frames int    `json:"frames"`
		Width  int    `json:"width"`
	}
	const videoJS = `(v => ({state: v.state, error: v.error, frames: v.frames, width: v.videoWidth}))(livegate.viewer)`
	v := waitPage(t, ctx, 10*time.Second, "video at the viewer", videoJS, func(v video) (bool, error) {
		if v.State == "error" || v.State == "failed" {
			return false, fmt.Errorf("viewer %s: %s", v.State, v.Error)
		}
		return v.Width > 0, nil
	})
	after := time.Since(start)
	time.Sleep(time.Second)
	if v2 := evalJS[video](t, ctx, videoJS); v2.Frames <= v.Frames {
		t.Fatalf("viewer frames did not advance in 1 s (%d -> %d)", v.Frames, v2.Frames)
	}
	return firstPicture{ctx: ctx, after: after}
}

func mustEvalAsync[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// TestBrowserNoUDPNoMediaTCPOverTURN: with every UDP datagram and TCP to
// the media port dropped, the page's publisher and player get the built-in
// TURN server from the gateway's Link headers and connect through it over
// TCP.
func TestBrowserNoUDPNoMediaTCPOverTURN(t *testing.T) {
	b := browserTest(t, 120*time.Second)
	if b == nil {
		hostNFTablesClean(t)
		return
	}
	g := startGateway(t, func(c *Config) {
		c.ICE.TURNTCP = "127.0.0.1:0"
		c.ICE.TURNRelayIP = turnRelay
	})
	dropUDP(t, tcpPort(g.TCPAddr()))
	const path = "fw/turn"
	pubTab, _ := b.tab(t, "publisher")
	b.navigate(t, pubTab, g.base+"/?publish="+path)
	b.do(t, pubTab, "click Go live", chromedp.Click(chromedp.ID("go-live")))
	waitPage(t, pubTab, 15*time.Second, "publisher live", `({state: livegate.state, error: livegate.error})`,
		func(s struct{ State, Error string }) (bool, error) {
			if s.State == "error" || s.State == "failed" {
				return false, fmt.Errorf("publisher %s: %s", s.State, s.Error)
			}
			return s.State == "live", nil
		})
	pp := mustEvalAsync[selectedPair](t, pubTab, fmt.Sprintf(pairJS, "livegate.publisher.pc"))
	t.Logf("publisher: selected pair %+v", pp)
	if pp.Local != "relay/udp/tcp" {
		t.Fatalf("publisher connected over %+v, want a TURN relay reached over TCP", pp)
	}
	first := watchFirstPicture(t, b, g, path)
	vp := mustEvalAsync[selectedPair](t, first.ctx, fmt.Sprintf(pairJS, "livegate.viewer.pc"))
	t.Logf("viewer: first picture %v after navigation, selected pair %+v; TURN allocations %d", first.after, vp, g.turn.Allocations())
	if vp.Local != "relay/udp/tcp" {
		t.Fatalf("viewer connected over %+v, want a TURN relay reached over TCP", vp)
	}
}

// TestBrowserSelfTestTellsNetworksApart: the /check page, in Chromium,
// reports each network correctly: everything open (UDP), UDP dropped
// (TCP), UDP and the media TCP port dropped (TURN over TCP), and the TURN
// ports dropped too (nothing).
func TestBrowserSelfTestTellsNetworksApart(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		hostNFTablesClean(t)
		return
	}
	g := startGateway(t, func(c *Config) {
		c.ICE.TURNUDP, c.ICE.TURNTCP = "127.0.0.1:0", "127.0.0.1:0"
		c.ICE.TURNRelayIP = turnRelay
	})
	_, turnTCP, _ := g.turn.Addrs()
	ctx, _ := b.tab(t, "check")
	type result struct {
		Name   string `json:"name"`
		Kind   string `json:"kind"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	}
	type report struct {
		State   string   `json:"state"`
		Case    string   `json:"case"`
		Verdict string   `json:"verdict"`
		Results []result `json:"results"`
	}
	for _, tc := range []struct {
		name     string
		drop     func()
		want     string
		works    []string // kinds with at least one working path
		verdicts string   // in the verdict
	}{
		{"open", func() {}, "udp", []string{"udp", "tcp", "turn"}, "Everything works"},
		{"no UDP", func() { dropUDP(t) }, "tcp", []string{"tcp", "turn"}, "blocks UDP"},
		{"no UDP, no media TCP", func() { dropUDP(t, tcpPort(g.TCPAddr())) }, "turn", []string{"turn"}, "TURN relay"},
		{"nothing", func() { dropUDP(t, tcpPort(g.TCPAddr()), tcpPort(turnTCP)) }, "none", nil, "No way for media"},
	} {
		resetNFT(t)
		tc.drop()
		start := time.Now()
		b.navigate(t, ctx, g.base+"/check")
		r := waitPage(t, ctx, 20*time.Second, "the check to finish ("+tc.name+")", `window.check`,
			func(r report) (bool, error) { return r.State == "done", nil })
		t.Logf("%s: %s after %v: %q", tc.name, r.Case, time.Since(start).Round(10*time.Millisecond), r.Verdict)
		for _, x := range r.Results {
			t.Logf("  %s: ok=%v %s", x.Name, x.OK, x.Detail)
		}
		if r.Case != tc.want || !strings.Contains(r.Verdict, tc.verdicts) {
			t.Errorf("%s: case %q (%q), want %q", tc.name, r.Case, r.Verdict, tc.want)
		}
		works := map[string]bool{}
		for _, x := range r.Results {
			works[x.Kind] = works[x.Kind] || x.OK
		}
		for _, k := range []string{"udp", "tcp", "turn"} {
			if want := contains(tc.works, k); works[k] != want {
				t.Errorf("%s: %s works = %v, want %v", tc.name, k, works[k], want)
			}
		}
	}
}

// resetNFT removes the test's rules (no-op when there are none).
func resetNFT(t *testing.T) {
	t.Helper()
	if only, _, _, err := loopbackOnly(); err != nil || !only {
		t.Fatal("refusing to change nftables outside the test's namespace")
	}
	_ = exec.Command("nft", "delete", "table", "inet", nftTable).Run()
}

// whipWhepDir is the third-party WHIP/WHEP client (npm whip-whep 1.2.0,
// installed by .ci/run): it trickles its candidates with PATCH and takes
// ICE servers from the 201's Link headers (setConfiguration before its
// local description).
var whipWhepDir = filepath.Join("..", "..", "..", "testdata", "npm", "node_modules", "whip-whep")

// thirdPartyJS publishes the fake camera with WHIPClient and plays it back
// with WHEPClient in the same tab; window.tp has the outcome.
const thirdPartyJS = `(async (o) => {
  const R = window.tp = { pub: '', view: '', error: null, firstFrameMs: null, frames: 0 };
  const connected = (pc) => new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === 'connected') resolve();
      if (pc.connectionState === 'failed') reject(new Error('connection failed'));
    };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const ppc = window.tpPub = new RTCPeerConnection();
    for (const t of media.getTracks()) ppc.addTransceiver(t, { direction: 'sendonly', streams: [media] });
    await new WHIPClient().publish(ppc, o.whip);
    await connected(ppc);
    R.pub = 'connected';
    const vpc = window.tpView = new RTCPeerConnection();
    vpc.addTransceiver('video', { direction: 'recvonly' });
    vpc.addTransceiver('audio', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.append(video);
    const stream = new MediaStream();
    video.srcObject = stream;
    vpc.addEventListener('track', (e) => stream.addTrack(e.track));
    const start = performance.now();
    const count = () => video.requestVideoFrameCallback(() => {
      if (R.firstFrameMs === null) R.firstFrameMs = performance.now() - start;
      R.frames++;
      count();
    });
    count();
    await new WHEPClient().view(vpc, o.whep);
    await connected(vpc);
    R.view = 'connected';
  } catch (e) { R.error = String(e); }
})(%s)`

// TestBrowserThirdPartyClientNoUDP: the third-party whip-whep client in
// Chromium publishes and plays with every UDP datagram dropped (over
// ICE-TCP), and with TCP to the media port dropped too (over the built-in
// TURN server it learns from the Link headers).
func TestBrowserThirdPartyClientNoUDP(t *testing.T) {
	b := browserTest(t, 120*time.Second)
	if b == nil {
		hostNFTablesClean(t)
		return
	}
	var src strings.Builder
	for _, f := range []string{"whip.js", "whep.js"} {
		body, err := os.ReadFile(filepath.Join(whipWhepDir, f))
		if err != nil {
			skipOrFail(t, "the whip-whep npm package is missing (.ci/run installs it): %v", err)
		}
		src.WriteString(strings.Replace(string(body), "export class", "class", 1) + "\n")
	}
	lib := "(() => {\n" + src.String() + "\nwindow.WHIPClient = WHIPClient; window.WHEPClient = WHEPClient; return true; })()"
	g := startGateway(t, func(c *Config) {
		c.ICE.TURNTCP = "127.0.0.1:0"
		c.ICE.TURNRelayIP = turnRelay
	})
	for _, tc := range []struct {
		name string
		drop []int
		want string // local candidate of the selected pair
	}{
		{"no UDP", nil, "/tcp"},
		{"no UDP, no media TCP", []int{tcpPort(g.TCPAddr())}, "relay/udp/tcp"},
	} {
		resetNFT(t)
		dropUDP(t, tc.drop...)
		path := "tp/" + strings.NewReplacer(" ", "-", ",", "").Replace(tc.name)
		ctx, closeTab := b.tab(t, tc.name)
		b.navigate(t, ctx, g.base+"/healthz")
		evalJS[bool](t, ctx, lib)
		opts := fmt.Sprintf(`{"whip": %q, "whep": %q}`, g.base+"/whip/"+path, g.base+"/whep/"+path)
		evalJS[bool](t, ctx, fmt.Sprintf(thirdPartyJS, opts)+", true")
		type state struct {
			Pub, View, Error string
			FirstFrameMs     *float64
			Frames           int
		}
		s := waitPage(t, ctx, 20*time.Second, tc.name+": third-party client publishing and playing",
			`({pub: tp.pub, view: tp.view, error: tp.error, firstFrameMs: tp.firstFrameMs, frames: tp.frames})`,
			func(s state) (bool, error) {
				if s.Error != "" {
					return false, fmt.Errorf("whip-whep client: %s", s.Error)
				}
				return s.Pub == "connected" && s.View == "connected" && s.Frames > 30, nil
			})
		pp := mustEvalAsync[selectedPair](t, ctx, fmt.Sprintf(pairJS, "window.tpPub"))
		vp := mustEvalAsync[selectedPair](t, ctx, fmt.Sprintf(pairJS, "window.tpView"))
		t.Logf("%s: publisher %+v, viewer %+v, first frame %.0f ms after the WHEP request began, %d frames", tc.name, pp, vp, *s.FirstFrameMs, s.Frames)
		for _, p := range []selectedPair{pp, vp} {
			if !strings.HasSuffix(p.Local, tc.want) {
				t.Errorf("%s: connected over %+v, want local candidate %s", tc.name, p, tc.want)
			}
		}
		if *s.FirstFrameMs > 1500 {
			t.Errorf("%s: first frame after %.0f ms, want < 1.5 s", tc.name, *s.FirstFrameMs)
		}
		closeTab()
	}
}
