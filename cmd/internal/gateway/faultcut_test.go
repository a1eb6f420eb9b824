package gateway

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
)

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
	pub := link.mustPublish(t, ctx, g, path)
	// The player model: a gap not filled within 400 ms costs a keyframe
	// request, as a browser would send one.
	v := g.faultView(t, path, 400*time.Millisecond)
	waitReaders(t, g, path, 1)

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
