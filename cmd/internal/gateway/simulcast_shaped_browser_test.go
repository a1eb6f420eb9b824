package gateway

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// shapedStatsJS reads the page viewer's (simViewerJS) video reception.
const shapedStatsJS = `(async () => {
  const R = { state: window.viewer.state, error: window.viewer.error || '', frames: 0, width: 0, height: 0,
    received: 0, lost: 0, freezes: 0 };
  const pc = window.viewer.pc;
  if (!pc) return R;
  (await pc.getStats()).forEach(s => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    R.frames = s.framesDecoded || 0; R.width = s.frameWidth || 0; R.height = s.frameHeight || 0;
    R.received = s.packetsReceived || 0; R.lost = s.packetsLost || 0; R.freezes = s.totalFreezesDuration || 0;
  });
  return R;
})()`

type shapedStats struct {
	State    string  `json:"state"`
	Error    string  `json:"error"`
	Frames   int     `json:"frames"`
	Width    int     `json:"width"`
	Height   int     `json:"height"`
	Received int     `json:"received"`
	Lost     int     `json:"lost"`
	Freezes  float64 `json:"freezes"`
}

// viewerPortJS is the UDP port of the page viewer's (simViewerJS) selected
// candidate pair: where the gateway sends it media.
const viewerPortJS = `(async () => {
  const pc = window.viewer.pc;
  if (!pc) return 0;
  const st = await pc.getStats();
  let port = 0;
  st.forEach(s => {
    if (s.type !== 'candidate-pair' || s.state !== 'succeeded' || !s.nominated) return;
    const l = st.get(s.localCandidateId);
    if (l && l.port) port = l.port;
  });
  return port;
})()`

// shapeFrom limits what goes from UDP port port to UDP port to in this
// (loopback-only test) namespace to rate, with a queue of about 200 ms, as
// the viewer's slow access link would (tc htb: those packets in a class of
// that rate, everything else in an unlimited one). Only the viewer's
// packets: the gateway's RTCP to the publisher leaves the same port, and a
// keyframe request stuck in the viewer's queue would be no slow link of the
// viewer's but a slow publisher.
func shapeFrom(t *testing.T, port, to int, rate string) (unshape func()) {
	t.Helper()
	if only, _, ifaces, err := loopbackOnly(); err != nil || !only {
		t.Fatalf("refusing to shape traffic outside the test's loopback-only namespace (interfaces %v, %v)", ifaces, err)
	}
	tc, err := exec.LookPath("tc")
	if err != nil {
		skipOrFail(t, "tc (Debian package iproute2) is needed to shape the viewer's link: %v", err)
	}
	run := func(args string) error {
		out, err := exec.Command(tc, strings.Fields(args)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tc %s: %v: %s", args, err, out)
		}
		return nil
	}
	if err := run("qdisc add dev lo root handle 1: htb default 10"); err != nil {
		skipOrFail(t, "cannot shape traffic (the kernel needs sch_htb and cls_u32): %v", err)
	}
	for _, c := range []string{
		"class add dev lo parent 1: classid 1:10 htb rate 10gbit",
		"class add dev lo parent 1: classid 1:20 htb rate " + rate + " ceil " + rate + " burst 8kb",
		// About 200 ms of queue at 400 kbit/s.
		"qdisc add dev lo parent 1:20 handle 20: pfifo limit 10",
		fmt.Sprintf("filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip sport %d 0xffff match ip dport %d 0xffff flowid 1:20", port, to),
	} {
		if err := run(c); err != nil {
			_ = run("qdisc del dev lo root")
			t.Fatal(err)
		}
	}
	done := false
	unshape = func() {
		if !done {
			done = true
			_ = run("qdisc del dev lo root")
		}
	}
	t.Cleanup(unshape)
	return unshape
}

// TestBrowserSimulcastViewerOnSlowLink: a Chromium viewer of a Chromium
// simulcast host, on a link that carries 400 kbit/s from the gateway,
// moves down by its own feedback (transport-cc, receiver reports, NACKs)
// to a layer the link carries within one keyframe interval + 100 ms, loses
// under 1 % of its packets over the next 50 s, tries of higher layers
// included (they are probes first: the viewer moves up only if the link
// carried the higher layer's rate), and when the link clears goes back up
// to the top layer.
func TestBrowserSimulcastViewerOnSlowLink(t *testing.T) {
	b := browserTest(t, 170*time.Second)
	if b == nil {
		return
	}
	g := startGateway(t, nil)
	path := "e2e/slowlink"
	h := g.startChromeHost(t, b, path, chromeHostOpts{Simulcast: true})
	h.waitLive(t, 20*time.Second)
	waitFor(t, 30*time.Second, "three sending layers", func() bool {
		n := 0
		for _, l := range streamLayers(t, g, path) {
			if l.Active && l.Width > 0 {
				n++
			}
		}
		return n == 3
	})
	for _, l := range streamLayers(t, g, path) {
		t.Logf("layer %s %dx%d %d kbit/s", l.RID, l.Width, l.Height, l.Bitrate/1000)
	}
	ctx, closeTab := b.tab(t, "viewer "+path)
	defer closeTab()
	b.navigate(t, ctx, g.base+"/healthz")
	evalJS[bool](t, ctx, fmt.Sprintf(simViewerJS, g.base+"/whep/"+path))
	stats := func() shapedStats {
		v, err := evalAsync[shapedStats](ctx, shapedStatsJS)
		if err != nil {
			t.Fatalf("viewer stats: %v", err)
		}
		if v.State == "error" {
			t.Fatalf("viewer: %s", v.Error)
		}
		return v
	}
	poll := 200 * time.Millisecond
	wait := func(what string, timeout time.Duration, ok func(shapedStats) bool) shapedStats {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			v := stats()
			if ok(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after %v the viewer is at %+v", what, timeout, v)
			}
			time.Sleep(poll)
		}
	}
	wait("the top layer", 30*time.Second, func(v shapedStats) bool { return v.Width == 1280 && v.Frames > 30 })

	vport, err := evalAsync[int](ctx, viewerPortJS)
	if err != nil || vport == 0 {
		t.Fatalf("the viewer's UDP port: %d, %v", vport, err)
	}
	unshape := shapeFrom(t, g.UDPAddr().(*net.UDPAddr).Port, vport, "400kbit")
	shaped := time.Now()
	poll = 20 * time.Millisecond
	low := wait("a lower layer on a 400 kbit/s link", 30*time.Second, func(v shapedStats) bool { return v.Width > 0 && v.Width < 1280 })
	down := time.Since(shaped)
	poll = 200 * time.Millisecond
	t.Logf("down to %dx%d %v after the link slowed", low.Width, low.Height, down.Round(time.Millisecond))
	// The host sends keyframes only when asked (Chromium), so a layer's
	// keyframe interval is the switch's own request; the feedback that
	// shows the slow link (transport-cc, every 50-250 ms) gets a second.
	if limit := time.Second + 100*time.Millisecond; down > limit {
		t.Errorf("down %v after the link slowed, want within %v", down.Round(time.Millisecond), limit)
	}
	for _, l := range streamLayers(t, g, path) {
		t.Logf("layer %s %dx%d %d kbit/s", l.RID, l.Width, l.Height, l.Bitrate/1000)
	}
	// 50 s on the slow link, sampled: the loss over all of it (tries of a
	// higher layer included), and over the longest stretch on one layer.
	var samples []shapedStats
	for end := time.Now().Add(50 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		samples = append(samples, stats())
	}
	lossOf := func(a, b shapedStats) (int, int, float64) {
		lost, got := b.Lost-a.Lost, b.Received-a.Received
		return got, lost, float64(lost) / float64(max(lost+got, 1))
	}
	first, last := samples[0], samples[len(samples)-1]
	got, lost, loss := lossOf(first, last)
	tries, from, best := 0, 0, [2]int{0, 0}
	for i := 1; i < len(samples); i++ {
		if samples[i].Width != samples[i-1].Width {
			if samples[i].Width > samples[i-1].Width {
				tries++
			}
			from = i
		}
		if i-from > best[1]-best[0] {
			best = [2]int{from, i}
		}
	}
	t.Logf("on the slow link, 50 s: %d packets, %d lost (%.2f %%), %d moves up (tries), %dx%d at the end, freezes %.1f s",
		got, lost, 100*loss, tries, last.Width, last.Height, last.Freezes-first.Freezes)
	sa, sb := samples[best[0]], samples[best[1]]
	span := time.Duration(best[1]-best[0]) * 250 * time.Millisecond
	got, lost, steady := lossOf(sa, sb)
	t.Logf("longest stretch on one layer (%dx%d): %v, %d packets, %d lost (%.2f %%)", sb.Width, sb.Height, span, got, lost, 100*steady)
	if last.Width >= 1280 {
		t.Errorf("the viewer is on the top layer on a 400 kbit/s link")
	}
	if loss >= 0.01 {
		t.Errorf("lost %.2f %% of the packets over the 50 s on the slow link, want < 1 %%", 100*loss)
	}
	if span < 15*time.Second || steady >= 0.01 {
		t.Errorf("on a layer the link carries, want >= 15 s at < 1 %% loss; got %v at %.2f %%", span, 100*steady)
	}
	unshape()
	cleared := time.Now()
	wait("the top layer once the link cleared", 75*time.Second, func(v shapedStats) bool { return v.Width == 1280 })
	t.Logf("back to 1280x720 %v after the link cleared", time.Since(cleared).Round(time.Millisecond))
	h.stop(t)
}
