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
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	pub := link.mustPublish(t, ctx, g, path)
	v := g.faultView(t, path, 0)
	waitReaders(t, g, path, 1)

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
	st, _ := g.Hub().Get(path)
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
