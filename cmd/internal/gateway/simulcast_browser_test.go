package gateway

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBrowserHostSimulcast: Chromium publishes three simulcast encodings
// (rids q, h, f at 1/4, 1/2 and full 1280x720). The gateway's answer must be
// accepted (before simulcast support Chromium rejected it: "negotiates
// simulcast but does not negotiate the RID RTP header extension"), and a WHEP
// viewer ends up on the top layer's full resolution once Chromium's bandwidth
// estimate lets it send that layer, as one continuous stream.
func TestBrowserHostSimulcast(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	g, h := liveHost(t, b, func(c *Config) { c.HLS = true }, "e2e/simulcast", chromeHostOpts{Simulcast: true})
	v := g.view(t, "e2e/simulcast")
	defer v.close()

	type size struct{ w, h int }
	var sizes []size // picture size at each SPS the viewer got, in order
	var last size
	framesAtTop := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		frames, _, _ := v.snapshot()
		sizes, framesAtTop = sizes[:0], 0
		for _, f := range frames {
			if w, ht, ok := spsSize(f.nalus); ok {
				if s := (size{w, ht}); len(sizes) == 0 || sizes[len(sizes)-1] != s {
					sizes = append(sizes, s)
				}
				framesAtTop = 0
			}
			framesAtTop++
		}
		if len(sizes) > 0 {
			last = sizes[len(sizes)-1]
		}
		st := h.stats(t)
		if last == (size{1280, 720}) && framesAtTop >= 60 {
			t.Logf("host: %+v; viewer: %d frames, picture sizes %v, %d frames at 1280x720", st, len(frames), sizes, framesAtTop)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the viewer is at %v (sizes %v, %d frames since), host %+v", last, sizes, framesAtTop, st)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// One stream for the player: every sequence number from the first to
	// the last arrived (retransmissions included), the SSRC never changed,
	// and every change of picture size comes with a keyframe.
	frames, _, hdrs := v.snapshot()
	seen := map[int64]bool{}
	var cur, lo, hi int64
	for i, hd := range hdrs {
		if i == 0 {
			cur = int64(hd.SequenceNumber)
			lo, hi = cur, cur
		} else {
			cur += int64(int16(hd.SequenceNumber - hdrs[i-1].SequenceNumber))
			if hd.SSRC != hdrs[0].SSRC {
				t.Fatalf("viewer packet %d: SSRC changed", i)
			}
		}
		seen[cur] = true
		lo, hi = min(lo, cur), max(hi, cur)
	}
	if missing := hi - lo + 1 - int64(len(seen)); missing != 0 {
		t.Errorf("%d sequence numbers between %d and %d never arrived", missing, lo, hi)
	}
	incomplete := 0
	for n, f := range frames {
		if _, _, ok := spsSize(f.nalus); ok && !f.keyframe() {
			t.Errorf("frame %d has an SPS but no IDR", n)
		}
		if !f.complete {
			incomplete++
		}
	}
	if incomplete > len(frames)/100 {
		t.Errorf("%d of %d frames incomplete", incomplete, len(frames))
	}

	// Frame outputs take the top layer too: HLS started now is 1280x720.
	if ffprobe, err := exec.LookPath("ffprobe"); err != nil {
		skipOrFail(t, "ffprobe not found: %v", err)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
			"-show_entries", "stream=codec_name,width,height", "-of", "compact",
			g.base+"/hls/e2e/simulcast/index.m3u8").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "codec_name=h264|width=1280|height=720") {
			t.Errorf("ffprobe HLS of the simulcast stream: %v\n%s", err, out)
		} else {
			t.Logf("HLS: %s", strings.TrimSpace(string(out)))
		}
	}
	h.stop(t)
}

// simViewerJS plays /whep/PATH in the page it runs in with a plain
// RTCPeerConnection and a <video>; window.viewer has its state.
const simViewerJS = `(() => {
const V = window.viewer = { state: 'starting', error: null, pc: null };
(async () => {
  try {
    const pc = V.pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.appendChild(video);
    pc.ontrack = e => { if (e.track.kind === 'video') { video.srcObject = new MediaStream([e.track]); video.play().catch(() => {}); } };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise(r => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 2000);
    });
    const res = await fetch(%q, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    const body = await res.text();
    if (res.status !== 201) throw new Error('WHEP ' + res.status + ': ' + body);
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    V.state = 'answered';
  } catch (e) { V.state = 'error'; V.error = String(e); }
})();
return true;
})()`

const simViewerStatsJS = `(async () => {
  const R = { state: window.viewer.state, error: window.viewer.error || '', framesDecoded: 0, keyFramesDecoded: 0,
    width: 0, height: 0, freezeCount: 0, freezesSeconds: 0, packetsLost: 0, mime: '' };
  const pc = window.viewer.pc;
  if (!pc) return R;
  const stats = await pc.getStats();
  stats.forEach(s => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    R.framesDecoded = s.framesDecoded || 0; R.keyFramesDecoded = s.keyFramesDecoded || 0;
    R.width = s.frameWidth || 0; R.height = s.frameHeight || 0;
    R.freezeCount = s.freezeCount || 0; R.freezesSeconds = s.totalFreezesDuration || 0;
    R.packetsLost = s.packetsLost || 0;
    const c = s.codecId && stats.get(s.codecId);
    if (c) R.mime = c.mimeType;
  });
  return R;
})()`

type simViewerStats struct {
	State            string  `json:"state"`
	Error            string  `json:"error"`
	FramesDecoded    int     `json:"framesDecoded"`
	KeyFramesDecoded int     `json:"keyFramesDecoded"`
	Width            int     `json:"width"`
	Height           int     `json:"height"`
	FreezeCount      int     `json:"freezeCount"`
	FreezesSeconds   float64 `json:"freezesSeconds"`
	PacketsLost      int     `json:"packetsLost"`
	Mime             string  `json:"mime"`
}

// setTopLayer turns the host's top encoding (rid f) off or on, as Chromium
// does by itself when its bandwidth estimate drops.
func (h *chromeHost) setTopLayer(t *testing.T, active bool) {
	t.Helper()
	_, err := evalAsync[bool](h.ctx, fmt.Sprintf(`(async () => {
  const s = window.host.pc.getSenders().find(s => s.track && s.track.kind === 'video');
  const p = s.getParameters();
  p.encodings.find(e => e.rid === 'f').active = %v;
  await s.setParameters(p);
  return true;
})()`, active))
	if err != nil {
		t.Fatalf("setting the top layer active=%v: %v", active, err)
	}
}

// TestBrowserSimulcastLayerPause: a Chromium viewer watches a Chromium
// simulcast host, whose top layer is then switched off and on again. The
// viewer's decoder follows: 1280x720, then 640x360 within a second, then
// 1280x720 again, decoding all along (the switches are at keyframes and the
// stream stays continuous), for H.264 and VP8.
func TestBrowserSimulcastLayerPause(t *testing.T) {
	b := browserTest(t, 240*time.Second)
	if b == nil {
		return
	}
	for _, c := range []struct{ codec, mime string }{{"h264", "video/H264"}, {"vp8", "video/VP8"}} {
		t.Run(c.codec, func(t *testing.T) {
			g := startGateway(t, func(cfg *Config) { cfg.VideoCodecs = []string{c.codec} })
			path := "e2e/sim-" + c.codec
			h := g.startChromeHost(t, b, path, chromeHostOpts{Simulcast: true})
			h.waitLive(t, 20*time.Second)
			ctx, closeTab := b.tab(t, "viewer "+path)
			defer closeTab()
			b.navigate(t, ctx, g.base+"/healthz")
			evalJS[bool](t, ctx, fmt.Sprintf(simViewerJS, g.base+"/whep/"+path))
			stats := func() simViewerStats {
				v, err := evalAsync[simViewerStats](ctx, simViewerStatsJS)
				if err != nil {
					t.Fatalf("viewer stats: %v", err)
				}
				if v.State == "error" {
					t.Fatalf("viewer: %s", v.Error)
				}
				return v
			}
			// wait until the viewer decodes width x height and has decoded
			// at least n more frames since from. A width of 0 stands for
			// the host's largest layer now: Chromium short of CPU scales
			// every layer down (its top one to 640x360 on a loaded
			// machine), and the top layer is what viewers must get.
			wait := func(what string, timeout time.Duration, width, n int, from simViewerStats) simViewerStats {
				t.Helper()
				deadline := time.Now().Add(timeout)
				for {
					v := stats()
					want := width
					if want == 0 {
						want = h.stats(t).Width
					}
					if v.Width == want && v.FramesDecoded >= from.FramesDecoded+n {
						return v
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: after %v the viewer is at %+v (host %+v)", what, timeout, v, h.stats(t))
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			top := wait("top layer", 60*time.Second, 1280, 30, simViewerStats{})
			if top.Mime != c.mime {
				t.Fatalf("viewer decodes %q, want %s", top.Mime, c.mime)
			}
			h.setTopLayer(t, false)
			paused := time.Now()
			mid := wait("next layer after the top one paused", 5*time.Second, 640, 1, top)
			tookDown := time.Since(paused)
			mid = wait("decoding the next layer", 10*time.Second, 640, 45, mid)
			h.setTopLayer(t, true)
			resumed := time.Now()
			back := wait("top layer resumed", 10*time.Second, 1280, 1, mid)
			tookUp := time.Since(resumed)
			back = wait("decoding the top layer again", 10*time.Second, 0, 45, back)
			froze := back.FreezesSeconds - top.FreezesSeconds
			t.Logf("%s: down to 640x360 %v after the pause, back to 1280x720 %v after resuming; frozen %.2f s in %d freezes meanwhile; viewer %+v",
				c.codec, tookDown.Round(time.Millisecond), tookUp.Round(time.Millisecond), froze, back.FreezeCount-top.FreezeCount, back)
			// The switch down costs the pause detection (0.6 s) and a
			// keyframe; switching up is immediate.
			if froze > 2 {
				t.Errorf("the viewer's picture froze for %.1f s during the pause and resume", froze)
			}
			h.stop(t)
		})
	}
}
