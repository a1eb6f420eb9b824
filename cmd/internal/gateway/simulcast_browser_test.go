package gateway

import (
	"context"
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
	g := startGateway(t, func(c *Config) { c.HLS = true })
	h := g.startChromeHost(t, b, "e2e/simulcast", chromeHostOpts{Simulcast: true})
	h.waitLive(t, 20*time.Second)
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
