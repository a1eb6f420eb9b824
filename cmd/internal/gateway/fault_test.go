package gateway

// Fault tests: loss, jitter and a link cut on a publisher's link, with a
// WHEP viewer on a clean link checking what a player would get.
//
// Run them with: go test -race -run TestFault -v ./cmd/internal/gateway/
// (-v logs the measurements; LIVEGATE_FAULT_SEED overrides the seeds.)
//
// Why not netem: issue 8 asks for network namespaces and `tc qdisc ...
// netem`, but the kernel these tests run on has no sch_netem (`tc qdisc add
// dev lo root netem loss 10%` fails with "Specified qdisc kind is unknown",
// and there is no module to load). So the link is impaired in user space,
// at the publisher: its pion PeerConnection gets its UDP socket through
// ice.NewUDPMuxDefault(impairedConn) (impair_test.go), which drops a seeded
// random share of outgoing (optionally also incoming) datagrams, holds each
// outgoing datagram for a uniform random delay in a bounded queue (so later
// datagrams overtake earlier ones, as with netem's jitter), or black-holes
// everything for a link cut, the publisher's HTTP to the gateway included.
// The gateway is the production code, in process, untouched by the tests:
// its NACK generator, SRTP, relay and session handling see real, lost,
// late and reordered datagrams on a real UDP socket. What user space cannot
// model is the kernel's queueing (netem's rate/limit interplay with socket
// buffers); the delay queue keeps netem's default limit of 1000 datagrams.
//
// The same scenarios with netem, as root on a kernel with sch_netem: put
// the publisher in its own namespace behind a veth pair, the gateway and
// the viewer in the root namespace, and shape the publisher's end:
//
//	ip netns add pub
//	ip link add veth-gw type veth peer name veth-pub
//	ip link set veth-pub netns pub
//	ip addr add 10.99.0.1/24 dev veth-gw && ip link set veth-gw up
//	ip -n pub addr add 10.99.0.2/24 dev veth-pub
//	ip -n pub link set lo up && ip -n pub link set veth-pub up
//	livegate --http 10.99.0.1:8080 --webrtc-udp 10.99.0.1:8189 --webrtc-ips 10.99.0.1 --auth-key ... &
//	ip netns exec pub tc qdisc add dev veth-pub root netem loss 10%          # 10 % uplink loss
//	ip netns exec pub tc qdisc change dev veth-pub root netem loss 30%       # 30 %
//	ip netns exec pub tc qdisc change dev veth-pub root netem delay 100ms 100ms  # 0-200 ms jitter (reorders)
//	ip -n pub link set veth-pub down; sleep 3; ip -n pub link set veth-pub up    # 3 s cut, both ways
//	ip netns exec pub gst-launch-1.0 ... ! whipclientsink signaller::whip-endpoint=http://10.99.0.1:8080/whip/fault/cam
//
// (Off loopback the gateway wants a token: mint one with `livegate token
// --room fault --identity cam --grant publish` and pass it as the WHIP
// bearer token. netem on veth-pub shapes the uplink only, as these tests
// do; a second netem on veth-gw shapes the downlink.) To run these very tests over
// netem instead, open the publisher's UDP socket and its HTTP connections
// inside the namespace (runtime.LockOSThread, unix.Setns to
// /var/run/netns/pub, net.ListenUDP or dial, setns back: a socket stays in
// the namespace it was made in), start the gateway on 10.99.0.1, and leave
// the impairment at zero: the viewer-side checks (frames compared to the
// clip's access units, completeness within a playout delay, recovery times)
// are the same.

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

func faultSeed(t *testing.T, def uint64) uint64 {
	if s, err := strconv.ParseUint(os.Getenv("LIVEGATE_FAULT_SEED"), 10, 64); err == nil {
		def = s
	}
	t.Logf("impairment seed %d (LIVEGATE_FAULT_SEED)", def)
	return def
}

// ---- publisher side -------------------------------------------------------

// publisherSlot holds the publisher the clip is currently sent to; a client
// that re-publishes swaps it.
type publisherSlot struct {
	p atomic.Pointer[rtcclient.Publisher]
}

// faultPlay sends the clip in real time to slot's publisher, looping, for
// frames video frames (0: until ctx ends), with the matching audio. Like an
// encoder, it answers keyframe requests (when keyframes is set) and starts
// a new publisher with a keyframe: the next frame sent is then the clip's
// next IDR, so a viewer does not wait up to a GOP (2 s) for a picture.
func faultPlay(ctx context.Context, slot *publisherSlot, c testClip, frames int, keyframes bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // audio until the video is done
		defer wg.Done()
		_ = clip.Play(ctx, c.audio, func(s clip.Sample, _ int) error {
			return slot.p.Load().WriteAudio(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	defer wg.Wait()
	defer cancel() // before the Wait: stops the audio
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	var at time.Duration
	var cur *rtcclient.Publisher
	var seenReqs int64
	idx := 0
	for n := 0; frames == 0 || n < frames; n++ {
		if w := time.Until(start.Add(at)); w > 0 {
			timer.Reset(w)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		p := slot.p.Load()
		key := false
		if p != cur {
			cur, seenReqs, key = p, p.KeyframeRequests.Load(), n > 0
		} else if r := p.KeyframeRequests.Load(); r != seenReqs && keyframes {
			seenReqs, key = r, true
		}
		if key {
			for !c.video[idx%len(c.video)].Keyframe {
				idx++
			}
		}
		s := c.video[idx%len(c.video)]
		idx++
		_ = p.WriteVideo(media.Sample{Data: s.Data, Duration: s.Duration})
		at += s.Duration
	}
}

// ---- loss -----------------------------------------------------------------

// playoutDelay is the jitter-buffer delay of the player model: a frame
// counts as shown if it is complete within this time after the stream
// reached it. Browsers adapt theirs to loss and jitter and wait up to
// seconds for a missing packet before asking for a keyframe, so 500 ms is a
// strict low-latency setting.
const playoutDelay = 500 * time.Millisecond

// lossRun publishes about 8 s of the clip with loss on the publisher's
// uplink and returns what a clean-link viewer got.
func lossRun(t *testing.T, path string, imp impairment, seed uint64) (lossReport, []rxPacket) {
	g := startGateway(t, nil)
	c := loadClip(t)
	index := clipIndex(c)
	link := newImpairedLink(t, faultSeed(t, seed))
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	pub, err := link.publish(ctx, g, path)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	waitConnected(t, pub.PC)
	v := g.faultView(t, path, 0)
	st, _ := g.Hub().Get(path)
	waitFor(t, 5*time.Second, "viewer attached", func() bool { return st.Stats().Readers == 1 })

	slot := &publisherSlot{}
	slot.p.Store(pub)
	const frames = 255 // 8.5 s
	played := make(chan struct{})
	go func() {
		defer close(played)
		faultPlay(ctx, slot, c, frames, false)
	}()
	// The link turns bad once the viewer has its first picture, so that
	// the measurement is not about which keyframe it starts on.
	waitFor(t, 5*time.Second, "first frame at the viewer", func() bool {
		for _, p := range v.packets() {
			if p.marker {
				return true
			}
		}
		return false
	})
	from := time.Now()
	link.set(imp)
	<-played
	until := time.Now().Add(-300 * time.Millisecond) // the last frames' losses are noticed only by later packets
	time.Sleep(time.Second)                          // retransmissions still on their way
	link.set(impairment{})

	pkts := v.packets()
	r := report(c, assemble(pkts, index, playoutDelay), from, until)
	t.Logf("uplink %v: %s", imp, r)
	v.mu.Lock()
	audio := v.audio
	v.mu.Unlock()
	t.Logf("publisher link: %s; NACKed sequence numbers at the publisher: %d; viewer got %d audio packets of about %d sent (Opus is not retransmitted, as with browsers)",
		link.impairedConn, link.nacked.Load(), audio, frames*50/30)
	for _, ts := range st.Stats().Tracks {
		t.Logf("gateway %s: %d packets in, %d retransmitted to viewers, %d dropped", ts.Codec.MimeType, ts.PacketsIn, ts.Retransmitted, ts.Dropped)
	}
	if len(r.wrongContent) > 0 {
		t.Errorf("%d complete frames differ from the clip, e.g. %s", len(r.wrongContent), r.wrongContent[0])
	}
	if r.expected < 200 {
		t.Fatalf("only %d frames measured, want about 240", r.expected)
	}
	return r, pkts
}

// TestFaultLoss10: with 10 % of the publisher's outgoing datagrams lost,
// the gateway's NACKs make the publisher resend, and the viewer gets more
// than 99 % of the frames complete and byte for byte the clip's.
func TestFaultLoss10(t *testing.T) {
	r, _ := lossRun(t, "fault/loss10", impairment{LossOut: 0.10}, 10)
	if r.pct(r.complete) <= 99 {
		t.Errorf("%.1f%% of frames complete at the viewer with 10%% uplink loss, want more than 99%%", r.pct(r.complete))
	}
	if r.pct(r.onTime) < 97 {
		t.Errorf("%.1f%% of frames complete within %v, want at least 97%%", r.pct(r.onTime), playoutDelay)
	}
}

// TestFaultLoss30: with 30 % loss a packet needs several rounds of NACKs
// (each retransmission is lost with 30 % too), so some frames complete late.
//
// Measured (8 s, 3 runs, -race, 2 cores): every frame complete, 99.2-100 %
// within the 500 ms playout delay (the slowest after 0.4-0.6 s). The bounds
// leave room for a loaded machine: at least 98 % complete and 95 % within
// the playout delay.
func TestFaultLoss30(t *testing.T) {
	r, _ := lossRun(t, "fault/loss30", impairment{LossOut: 0.30}, 30)
	if r.pct(r.complete) < 98 {
		t.Errorf("%.1f%% of frames complete at the viewer with 30%% uplink loss, want at least 98%%", r.pct(r.complete))
	}
	if r.pct(r.onTime) < 95 {
		t.Errorf("%.1f%% of frames complete within %v with 30%% uplink loss, want at least 95%%", r.pct(r.onTime), playoutDelay)
	}
}

// TestFaultLoss10BothWays: 10 % loss in both directions, so NACKs and
// receiver reports from the gateway are lost too; NACKs are repeated every
// 100 ms until the packet arrives, so the goal still holds.
func TestFaultLoss10BothWays(t *testing.T) {
	r, _ := lossRun(t, "fault/loss10x2", impairment{LossOut: 0.10, LossIn: 0.10}, 11)
	if r.pct(r.complete) <= 99 {
		t.Errorf("%.1f%% of frames complete at the viewer with 10%% loss both ways, want more than 99%%", r.pct(r.complete))
	}
}

// ---- jitter ---------------------------------------------------------------

// TestFaultJitter: every datagram from the publisher is delayed by 0-200 ms
// at random, so packets arrive reordered. The gateway forwards each packet
// as it arrives, reordering included (it does not buffer: that would add
// latency for every viewer); a player's jitter buffer puts them back in
// sequence order. What is checked is what such a player shows: complete
// frames, byte for byte the clip's, in the clip's order, within the
// playout delay. A reassembly in arrival order (no jitter buffer) is
// reported for comparison.
func TestFaultJitter(t *testing.T) {
	r, pkts := lossRun(t, "fault/jitter", impairment{Jitter: 200 * time.Millisecond}, 200)
	late, hi := 0, int64(-1<<62)
	for _, p := range pkts {
		if p.ext < hi {
			late++
		}
		hi = max(hi, p.ext)
	}
	naive := 0
	for _, f := range arrivalOrderFrames(pkts) {
		if f {
			naive++
		}
	}
	t.Logf("%d of %d video packets reached the viewer after a later one; reassembled in arrival order, %d frames would be complete",
		late, len(pkts), naive)
	if late == 0 {
		t.Error("no reordering reached the viewer: the jitter did not work")
	}
	if r.pct(r.complete) <= 99 {
		t.Errorf("%.1f%% of frames complete with 200 ms jitter, want more than 99%%", r.pct(r.complete))
	}
	if r.pct(r.onTime) < 98 {
		t.Errorf("%.1f%% of frames complete within %v with 200 ms jitter, want at least 98%%", r.pct(r.onTime), playoutDelay)
	}
}

// arrivalOrderFrames reassembles like the harness viewer (no jitter
// buffer): a frame is complete only if its packets came in sequence.
func arrivalOrderFrames(pkts []rxPacket) []bool {
	var out []bool
	var curTS uint32
	var last int64
	have, complete := false, true
	for _, p := range pkts {
		contiguous := have && p.ext == last+1
		if !have || p.ts != curTS {
			curTS, complete = p.ts, contiguous || !have
		} else if !contiguous {
			complete = false
		}
		have, last = true, p.ext
		if p.marker {
			out = append(out, complete)
			complete = true
		}
	}
	return out
}

// ---- link cut -------------------------------------------------------------

// cutTimeline is what happened around a link cut, for the log.
type cutTimeline struct {
	mu                     sync.Mutex
	cut, restored, noticed time.Time
	recovered              time.Time // PATCH answered / new session connected
	attempts               int
	errs                   []string
	how                    string
}

func (c *cutTimeline) mark(f func(*cutTimeline)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// cutRun plays the clip, cuts the publisher's link in both directions (its
// HTTP to the gateway included) for 3 s, and lets client recover: client
// is started with the first publisher and reacts, like a browser or OBS,
// when that publisher's ICE reports the link lost. It returns the time from
// the link's return to the first decodable picture at the viewer, after
// checking that the viewer kept its session and that frames resumed in
// order and intact.
func cutRun(t *testing.T, path string, client func(ctx context.Context, g *testGateway, link *impairedLink, slot *publisherSlot, tl *cutTimeline)) time.Duration {
	g := startGateway(t, nil)
	c := loadClip(t)
	index := clipIndex(c)
	link := newImpairedLink(t, faultSeed(t, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	pub, err := link.publish(ctx, g, path)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	waitConnected(t, pub.PC)
	// The player model: a gap not filled within 400 ms costs a keyframe
	// request, as a browser would send one.
	v := g.faultView(t, path, 400*time.Millisecond)
	st, _ := g.Hub().Get(path)
	waitFor(t, 5*time.Second, "viewer attached", func() bool { return st.Stats().Readers == 1 })

	slot := &publisherSlot{}
	slot.p.Store(pub)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		faultPlay(ctx, slot, c, 0, true)
	}()
	tl := &cutTimeline{}
	go func() {
		defer wg.Done()
		client(ctx, g, link, slot, tl)
	}()

	time.Sleep(2 * time.Second)
	tl.mark(func(tl *cutTimeline) { tl.cut = time.Now() })
	link.setCut(true)
	time.Sleep(3 * time.Second)
	link.setCut(false)
	restored := time.Now()
	tl.mark(func(tl *cutTimeline) { tl.restored = restored })

	// Wait for live pictures again, then 2 s more.
	live := -1
	var frames []rxFrame
	for deadline := time.Now().Add(6 * time.Second); live < 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		frames = assemble(v.packets(), index, playoutDelay)
		_, live = resumption(frames, tl.cut, restored)
	}
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	frames = assemble(v.packets(), index, playoutDelay)
	first, live := resumption(frames, tl.cut, restored)

	tl.mu.Lock()
	t.Logf("%s: link cut at 0, back at %v; client noticed the loss at %v, recovered at %v after %d failed attempts (%q)",
		tl.how, tl.restored.Sub(tl.cut).Round(time.Millisecond), tl.noticed.Sub(tl.cut).Round(time.Millisecond),
		tl.recovered.Sub(tl.cut).Round(time.Millisecond), tl.attempts, tl.errs)
	tl.mu.Unlock()
	v.mu.Lock()
	t.Logf("viewer: %d keyframe requests sent, connection states %v, %d video SSRC(s); publisher link: %s; NACKed sequence numbers at the publisher: %d",
		v.plis, v.states, len(v.ssrcs), link.impairedConn, link.nacked.Load())
	if len(v.ssrcs) != 1 {
		t.Errorf("viewer saw %d video SSRCs, want 1 (one continuous stream)", len(v.ssrcs))
	}
	// The gateway asks for what the cut lost once or a few times, not in a
	// loop: a retransmission it would discard (an SRTP replay window
	// smaller than the NACK window) makes it ask every 100 ms until the
	// packet leaves its window, and the publisher resend each time.
	if n, lost := link.nacked.Load(), link.droppedOut.Load(); n > 3*lost {
		t.Errorf("the publisher was asked for %d retransmissions after losing %d datagrams: a retransmission storm", n, lost)
	}
	for _, s := range v.states {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateDisconnected {
			t.Errorf("viewer connection went %s: it must keep its session", s)
		}
	}
	v.mu.Unlock()
	if s := v.PC.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
		t.Errorf("viewer connection is %s after the cut", s)
	}
	if tl.recovered.IsZero() {
		t.Errorf("the client did not recover by %s", tl.how)
	}
	if first < 0 || live < 0 {
		t.Fatalf("no live decodable frame at the viewer within 6 s of the link's return (first decodable: %v)", first >= 0)
	}
	t.Logf("first decodable frame %v after the link came back (clip frame %d); live again (a decodable frame within %v of its sending) after %v (clip frame %d)",
		frames[first].done.Sub(restored).Round(time.Millisecond), frames[first].clip, playoutDelay,
		frames[live].done.Sub(restored).Round(time.Millisecond), frames[live].clip)

	// From there on: frames complete, intact and in the clip's order (a
	// jump only to a keyframe, which is what the publisher sends for a
	// keyframe request or a new session).
	n, bad, prev := 0, 0, -1
	for _, f := range frames[live:] {
		n++
		if !f.usable || f.clip < 0 {
			bad++
			prev = -1
			continue
		}
		if prev >= 0 && f.clip != (prev+1)%len(c.video) && !f.key {
			t.Errorf("after the recovery clip frame %d follows %d", f.clip, prev)
		}
		prev = f.clip
	}
	t.Logf("from then on: %d frames, %d not decodable", n, bad)
	if n < 50 || bad > n/50 {
		t.Errorf("after the recovery %d of %d frames were not decodable, want about 60 frames and at most 2%% bad", bad, n)
	}
	return frames[live].done.Sub(restored)
}

// resumption finds the first decodable frame completed after the link came
// back (possibly one sent before or during the cut and recovered by
// retransmission) and the first such frame that is also live: complete
// within the playout delay of its sending. Sending times come from RTP
// timestamps, which follow the wall clock (the clip is paced in real time
// and the gateway remaps a new publisher's timestamps by the time elapsed),
// offset by the fastest delivery seen before the cut. -1: none.
func resumption(frames []rxFrame, cut, restored time.Time) (first, live int) {
	first, live = -1, -1
	if len(frames) == 0 {
		return
	}
	ref := frames[0].ts
	rtpTime := func(ts uint32) time.Duration { return time.Duration(int32(ts-ref)) * time.Second / 90000 }
	var base time.Time
	for _, f := range frames {
		if f.first.Before(cut) {
			if b := f.first.Add(-rtpTime(f.ts)); base.IsZero() || b.Before(base) {
				base = b
			}
		}
	}
	for i, f := range frames {
		if !f.usable || !f.done.After(restored) {
			continue
		}
		if first < 0 {
			first = i
		}
		if f.done.Sub(base.Add(rtpTime(f.ts))) <= playoutDelay {
			return first, i
		}
	}
	return first, -1
}

// onLinkLost calls f once when p's ICE connection is disconnected or
// failed: the link is gone.
func onLinkLost(ctx context.Context, p *rtcclient.Publisher) <-chan struct{} {
	lost := make(chan struct{}, 1)
	p.PC.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateDisconnected || s == webrtc.ICEConnectionStateFailed {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
	})
	return lost
}

// retry runs f every 250 ms until it succeeds or ctx ends.
func retry(ctx context.Context, tl *cutTimeline, f func(context.Context) error) bool {
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return true
		}
		tl.mark(func(tl *cutTimeline) { tl.attempts++; tl.errs = append(tl.errs, err.Error()) })
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return false
}

// TestFaultLinkCutICERestart: the publisher notices the dead link (ICE
// disconnected) and restarts ICE through PATCH on its session resource,
// retrying until the gateway is reachable again; the session, and the
// viewer's, survive, and the viewer's keyframe request brings a picture.
func TestFaultLinkCutICERestart(t *testing.T) {
	d := cutRun(t, "fault/restart", func(ctx context.Context, g *testGateway, link *impairedLink, slot *publisherSlot, tl *cutTimeline) {
		p := slot.p.Load()
		tl.mark(func(tl *cutTimeline) { tl.how = "ICE restart" })
		select {
		case <-ctx.Done():
			return
		case <-onLinkLost(ctx, p):
		}
		tl.mark(func(tl *cutTimeline) { tl.noticed = time.Now() })
		if retry(ctx, tl, p.RestartICE) {
			tl.mark(func(tl *cutTimeline) { tl.recovered = time.Now() })
		}
	})
	if d > 2*time.Second {
		t.Errorf("first decodable frame %v after the link came back, want under 2 s", d)
	}
}

// TestFaultLinkCutRepublish: the publisher gives up its session when the
// link dies and publishes the same path again (DELETE of the old resource
// and a new WHIP POST, retried until the gateway is reachable): within the
// grace period the viewer keeps its session and continues on the new
// publisher's media.
func TestFaultLinkCutRepublish(t *testing.T) {
	var mu sync.Mutex
	var pubs []*rtcclient.Publisher
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pubs {
			_ = p.Close(context.Background())
		}
	})
	d := cutRun(t, "fault/republish", func(ctx context.Context, g *testGateway, link *impairedLink, slot *publisherSlot, tl *cutTimeline) {
		old := slot.p.Load()
		tl.mark(func(tl *cutTimeline) { tl.how = "re-publish" })
		select {
		case <-ctx.Done():
			return
		case <-onLinkLost(ctx, old):
		}
		tl.mark(func(tl *cutTimeline) { tl.noticed = time.Now() })
		_ = old.PC.Close()
		deleted := false
		retry(ctx, tl, func(ctx context.Context) error {
			if !deleted {
				req, err := http.NewRequestWithContext(ctx, http.MethodDelete, old.Resource, nil)
				if err != nil {
					return err
				}
				if resp, err := link.http.Do(req); err == nil {
					resp.Body.Close()
					deleted = true
				}
			}
			p, err := link.publish(ctx, g, "fault/republish")
			if err != nil {
				return err
			}
			mu.Lock()
			pubs = append(pubs, p)
			mu.Unlock()
			for p.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
			slot.p.Store(p)
			tl.mark(func(tl *cutTimeline) { tl.recovered = time.Now() })
			return nil
		})
	})
	if d > 2*time.Second {
		t.Errorf("first decodable frame %v after the link came back, want under 2 s", d)
	}
}
